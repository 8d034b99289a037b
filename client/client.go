// Package client is a Go client of refgate's storefront API, for storefront
// back ends: bind customers at registration and login, report paid orders
// and refunds, look up and explain attribution.
//
//	rg := client.New("http://127.0.0.1:8081", os.Getenv("REFGATE_STOREFRONT_TOKEN"))
//	ans, err := rg.Bind(ctx, client.BindRequest{Program: "shop", Customer: id, Event: client.Register,
//		Token: client.TokenFromRequest(r, "shop"), Visitor: client.VisitorFromRequest(r)})
//
// Errors from refgate come back as *Error with its code and HTTP status.
// Errors on the way there (refgate not listening, a timeout, a cut
// connection) come back wrapped, naming the request and refgate's address.
//
// # Retries
//
// [Client.Convert] is idempotent on the order id and [Client.Refund] on the
// refund id, and refgate applies a write whose answer was lost only once. So:
//
//   - [IsUnavailable] (a 503, a 502 or 504 from a proxy, a timeout, a
//     refused or cut connection): retry later with the same order id or
//     refund id, and never book the sale as unattributed because of it. A
//     timed-out call may have been applied; the retry gets its answer.
//   - 409 (Code "conflict"): the order id was reported with another customer,
//     amount, currency, product or prepaid flag, or the refund id was used
//     with another amount. That is a bug in the storefront (an id reused for
//     another order or refund); retrying cannot fix it.
//   - 422 (Code "invalid"): a value is wrong (an amount outside 0..10^15, a
//     refund larger than what is left, a fingerprint that does not parse);
//     the message names it. Do not retry as is.
//
// Never generate a fresh order or refund id for a retry: that is a new
// order or a second refund.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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

// Temporary reports whether retrying may succeed: refgate's store was
// unavailable (503), or a proxy in front of refgate could not reach it (502,
// 504).
func (e *Error) Temporary() bool {
	switch e.Status {
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	}
	return false
}

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
// Token (the rg_{program} cookie, see [TokenFromRequest], or for a program
// with append_token the rg_token parameter the landing page got, see
// [TokenFromQuery]) or Visitor (the rg_vid cookie), or both.
type BindRequest struct {
	Program      string        `json:"program"`
	Customer     string        `json:"customer"`
	Event        string        `json:"event"`
	Token        string        `json:"token,omitempty"`
	Visitor      string        `json:"visitor,omitempty"`
	CustomerInfo *CustomerInfo `json:"customer_info,omitempty"`
}

// BindAnswer says whether the customer is now associated, and with whom.
// A rejected bind is not an error: Associated is false and Reason says why
// (such as "protected_by_other", "no_click", or "click_used" when the click
// already bound as many customers as the program's binds_per_click).
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

// Attribution is who holds a customer now. When Attributed is false, Reason
// may say why: "agent_served" or "same_person" when the customer's
// association ended for that reason, "token_invalid" or "token_expired" for
// a token lookup.
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

// Decision is one entry of a customer's explain log. Event "ended" (with
// Outcome "ended") records an association that ended, Reason saying why.
type Decision struct {
	ID       string    `json:"id"` // also the CloudEvents id of the decision's event
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	Promoter string    `json:"promoter"`
	Click    string    `json:"click"`
	Outcome  string    `json:"outcome"`
	Reason   string    `json:"reason"`
	Order    string    `json:"order"`
	Refund   string    `json:"refund"` // the refund id, on refund decisions
}

// Conversion is a paid order.
type Conversion struct {
	Program      string        `json:"program"`
	Order        string        `json:"order"`
	Customer     string        `json:"customer"`
	Amount       int64         `json:"amount"` // cash paid, minor units, 0..10^15
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

// RefundAnswer is an order's refund total and remaining commission after a
// refund.
type RefundAnswer struct {
	Order      string `json:"order"`
	Refund     string `json:"refund"`     // the refund id
	Refunded   int64  `json:"refunded"`   // cash refunded on the order so far, all refunds
	Commission int64  `json:"commission"` // the commission left on the order
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

// DeleteCustomer erases what refgate holds about a customer: fingerprints,
// associations and decision log, in every program. Their orders keep their
// decisions and amounts under a keyed hash of the id: reporting one again
// with Convert gets its decision as before, and Refund still applies. It is
// idempotent: a customer refgate does not know, or erased already, is no
// error, and an erasure that failed (IsUnavailable) is finished by calling
// it again. The id may be used again afterwards, as a new customer.
func (c *Client) DeleteCustomer(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/customers/"+url.PathEscape(id), nil, nil)
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

// Convert reports a paid order. Safe to retry with the same values: the
// same order id gets the same decision. The same order id with another
// customer, amount, currency, product or prepaid flag is a 409 *Error.
func (c *Client) Convert(ctx context.Context, o Conversion) (*ConversionAnswer, error) {
	var out ConversionAnswer
	return &out, c.do(ctx, "POST", "/v1/conversions", o, &out)
}

// Refund reports amount of cash refunded on an order. refund is the
// storefront's id for this refund, unique per order ([A-Za-z0-9._:-], 1 to
// 128 characters); derive it from the storefront's own refund record.
//
// Refund is safe to retry with the same refund id: refgate answers the same
// and refunds nothing more. A 409 *Error means the id was used on this
// order with another amount; a 422 that amount is more than is left; a 404
// that refgate does not know the order (report it with Convert first).
func (c *Client) Refund(ctx context.Context, order, refund string, amount int64) (*RefundAnswer, error) {
	var out RefundAnswer
	in := struct {
		Refund string `json:"refund"`
		Amount int64  `json:"amount"`
	}{refund, amount}
	return &out, c.do(ctx, "POST", "/v1/conversions/"+url.PathEscape(order)+"/refunds", in, &out)
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
		return &transportError{method: method, path: path, base: c.base, err: err}
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

// transportError is a request that got no HTTP answer from refgate.
type transportError struct {
	method, path, base string
	err                error
}

func (e *transportError) Error() string {
	err := e.err
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err // it repeats the method and URL said already
	}
	return fmt.Sprintf("refgate %s %s: no answer from %s: %v", e.method, e.path, e.base, err)
}

func (e *transportError) Unwrap() error { return e.err }

// unavailable reports whether the request failed on the way to refgate or
// back (so a retry may succeed, and the write may have been applied), rather
// than because it could not be sent at all (a base URL with a bad scheme).
func (e *transportError) unavailable() bool {
	err := e.err
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err // *url.Error is itself a net.Error; look at what it wraps
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// TokenFromRequest returns the attribution token for program from the
// visitor's request: the rg_{program} cookie refgate's edge set, or "". It
// reads only that cookie; for the rg_token query parameter see
// [TokenFromQuery].
func TokenFromRequest(r *http.Request, program string) string {
	if ck, err := r.Cookie("rg_" + program); err == nil {
		return ck.Value
	}
	return ""
}

// TokenFromQuery returns the rg_token query parameter of r, or "". refgate
// appends it to the destination of a click only for programs with
// append_token: true, for storefronts on another registrable domain than
// refgate's edge, where the browser holds no rg_{program} cookie for them.
// Such a storefront reads it on the landing page and keeps it (in its own
// cookie or session) until the visitor registers or logs in, then passes it
// as BindRequest.Token. refgate verifies the token's signature and expiry.
func TokenFromQuery(r *http.Request) string {
	return r.URL.Query().Get("rg_token")
}

// VisitorFromRequest returns the rg_vid visitor cookie, or "".
func VisitorFromRequest(r *http.Request) string {
	if ck, err := r.Cookie("rg_vid"); err == nil {
		return ck.Value
	}
	return ""
}

// IsUnavailable reports whether err means refgate could not answer: a 503
// (its store did not answer), a 502 or 504 from a proxy, or no answer at all
// (refused or cut connection, timeout, a cancelled context). Retry later
// with the same order or refund id; do not treat the customer as
// unattributed.
func IsUnavailable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	var te *transportError
	return errors.As(err, &te) && te.unavailable()
}
