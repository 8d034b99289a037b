// Package client is a Go client of refgate's storefront API, for storefront
// back ends: bind customers at registration and login, report paid orders
// and refunds, look up and explain attribution.
//
//	rg := client.New("http://127.0.0.1:8081", os.Getenv("REFGATE_STOREFRONT_TOKEN"))
//	ans, err := rg.Bind(ctx, client.BindRequest{Program: "shop", Customer: id, Event: client.Register,
//		Token: client.TokenFromRequest(r, "shop"), Visitor: client.VisitorFromRequest(r)})
//
// Errors from refgate come back as *Error with its code and HTTP status.
// A *Error with Status 503 means refgate could not answer: retry, and never
// book the sale as unattributed because of it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Bind events.
const (
	Register = "register"
	Login    = "login"
)

// Client talks to one refgate API. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the API at base (such as http://127.0.0.1:8081)
// with a storefront (or admin) token. Requests time out after 5 s unless the
// context says sooner.
func New(base, token string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 5 * time.Second}}
}

// WithHTTPClient replaces the HTTP client (for custom transports or
// timeouts) and returns c.
func (c *Client) WithHTTPClient(h *http.Client) *Client {
	c.http = h
	return c
}

// Error is an error answer from refgate.
type Error struct {
	Status  int    // HTTP status
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("refgate: %d %s: %s", e.Status, e.Code, e.Message) }

// Temporary reports whether retrying may succeed (the store was unavailable).
func (e *Error) Temporary() bool { return e.Status == http.StatusServiceUnavailable }

// Fingerprints are identity data; refgate normalises and hashes them and
// never echoes them.
type Fingerprints struct {
	IPs       []string `json:"ips,omitempty"`
	Phones    []string `json:"phones,omitempty"`
	Emails    []string `json:"emails,omitempty"`
	IDNumbers []string `json:"id_numbers,omitempty"`
	Devices   []string `json:"devices,omitempty"`
}

// CustomerInfo is what the storefront knows of a customer.
type CustomerInfo struct {
	Paid         bool          `json:"paid,omitempty"`
	AgentServed  bool          `json:"agent_served,omitempty"`
	Fingerprints *Fingerprints `json:"fingerprints,omitempty"`
}

// BindRequest ties a customer to the promoter of the visitor's click. Give
// Token (the rg_{program} cookie, or the rg_token parameter a cross-domain
// link carried) or Visitor (the rg_vid cookie), or both.
type BindRequest struct {
	Program      string        `json:"program"`
	Customer     string        `json:"customer"`
	Event        string        `json:"event"`
	Token        string        `json:"token,omitempty"`
	Visitor      string        `json:"visitor,omitempty"`
	CustomerInfo *CustomerInfo `json:"customer_info,omitempty"`
}

// BindAnswer says whether the customer is now associated, and with whom.
type BindAnswer struct {
	Associated bool       `json:"associated"`
	Promoter   string     `json:"promoter"`
	Kind       string     `json:"kind"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Reason     string     `json:"reason"`
}

// Customer is a customer as refgate answers it.
type Customer struct {
	ID           string `json:"id"`
	Paid         bool   `json:"paid"`
	AgentServed  bool   `json:"agent_served"`
	Fingerprints int    `json:"fingerprints"`
}

// Attribution is who holds a customer now.
type Attribution struct {
	Attributed bool       `json:"attributed"`
	Promoter   string     `json:"promoter"`
	Kind       string     `json:"kind"`
	Link       string     `json:"link"`
	Click      string     `json:"click"`
	Since      *time.Time `json:"since"`
	ExpiresAt  *time.Time `json:"expires_at"`
	Reason     string     `json:"reason,omitempty"`
}

// Decision is one entry of a customer's explain log.
type Decision struct {
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	Promoter string    `json:"promoter"`
	Click    string    `json:"click"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason"`
	Order    string    `json:"order"`
}

// Conversion is a paid order.
type Conversion struct {
	Program      string        `json:"program"`
	Order        string        `json:"order"`
	Customer     string        `json:"customer"`
	Amount       int64         `json:"amount"` // cash paid, minor units
	Currency     string        `json:"currency,omitempty"`
	Product      string        `json:"product,omitempty"`
	Prepaid      bool          `json:"prepaid"`
	Fingerprints *Fingerprints `json:"fingerprints,omitempty"`
}

// ConversionAnswer is refgate's decision on an order.
type ConversionAnswer struct {
	Order      string      `json:"order"`
	Eligible   bool        `json:"eligible"`
	Reason     string      `json:"reason"`
	Promoter   string      `json:"promoter"`
	Kind       string      `json:"kind"`
	Rate       json.Number `json:"rate"` // exact decimal, e.g. "0.3"
	Commission int64       `json:"commission"`
	Currency   string      `json:"currency"`
}

// RefundAnswer is an order's refund total and remaining commission.
type RefundAnswer struct {
	Order      string `json:"order"`
	Refunded   int64  `json:"refunded"`
	Commission int64  `json:"commission"`
}

// Bind ties a customer to the promoter of the visitor's click.
func (c *Client) Bind(ctx context.Context, r BindRequest) (*BindAnswer, error) {
	var out BindAnswer
	return &out, c.do(ctx, "POST", "/v1/bind", r, &out)
}

// PutCustomer records what the storefront knows of a customer.
func (c *Client) PutCustomer(ctx context.Context, id string, info CustomerInfo) (*Customer, error) {
	var out Customer
	return &out, c.do(ctx, "PUT", "/v1/customers/"+url.PathEscape(id), info, &out)
}

// Attribution returns who holds a customer in a program now.
func (c *Client) Attribution(ctx context.Context, program, customer string) (*Attribution, error) {
	var out Attribution
	q := url.Values{"program": {program}, "customer": {customer}}
	return &out, c.do(ctx, "GET", "/v1/attribution?"+q.Encode(), nil, &out)
}

// TokenAttribution returns what an attribution token says.
func (c *Client) TokenAttribution(ctx context.Context, program, token string) (*Attribution, error) {
	var out Attribution
	q := url.Values{"program": {program}, "token": {token}}
	return &out, c.do(ctx, "GET", "/v1/attribution?"+q.Encode(), nil, &out)
}

// Explain returns the customer's latest decisions for a program, newest
// first.
func (c *Client) Explain(ctx context.Context, program, customer string) ([]Decision, error) {
	var out struct {
		Decisions []Decision `json:"decisions"`
	}
	q := url.Values{"program": {program}, "customer": {customer}}
	err := c.do(ctx, "GET", "/v1/attribution/explain?"+q.Encode(), nil, &out)
	return out.Decisions, err
}

// Convert reports a paid order. Safe to retry: the same order id gets the
// same decision.
func (c *Client) Convert(ctx context.Context, o Conversion) (*ConversionAnswer, error) {
	var out ConversionAnswer
	return &out, c.do(ctx, "POST", "/v1/conversions", o, &out)
}

// Refund reports cash refunded on an order.
func (c *Client) Refund(ctx context.Context, order string, amount int64) (*RefundAnswer, error) {
	var out RefundAnswer
	return &out, c.do(ctx, "POST", "/v1/conversions/"+url.PathEscape(order)+"/refunds", map[string]int64{"amount": amount}, &out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("refgate %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == nil {
			e.Error = &Error{Code: "unknown", Message: strings.TrimSpace(string(raw))}
		}
		e.Error.Status = resp.StatusCode
		return e.Error
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("refgate %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// TokenFromRequest returns the attribution token for program from the
// visitor's request: the rg_{program} cookie, or an rg_token query
// parameter (set on destinations of programs with append_token). It returns
// "" when there is neither.
func TokenFromRequest(r *http.Request, program string) string {
	if ck, err := r.Cookie("rg_" + program); err == nil && ck.Value != "" {
		return ck.Value
	}
	return r.URL.Query().Get("rg_token")
}

// VisitorFromRequest returns the rg_vid visitor cookie, or "".
func VisitorFromRequest(r *http.Request) string {
	if ck, err := r.Cookie("rg_vid"); err == nil {
		return ck.Value
	}
	return ""
}

// IsUnavailable reports whether err means refgate could not answer (retry
// later; do not treat the customer as unattributed).
func IsUnavailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary()
}
