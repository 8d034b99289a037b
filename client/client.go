// Package client is a Go client of refgate's storefront API, for storefront
// back ends: bind customers at registration and login, report paid orders
// and refunds, look up and explain attribution. With an admin token it also
// settles a program's ledger ([Client.Settle], what refgate settle runs).
//
//	rg := client.New("http://127.0.0.1:8081", os.Getenv("REFGATE_STOREFRONT_TOKEN"))
//	ans, err := rg.Bind(ctx, client.BindRequest{Program: "shop", Customer: id, Event: client.Register,
//		Token: client.TokenFromRequest(r, "shop"), Visitor: client.VisitorFromRequest(r)})
//
// Errors from refgate come back as *Error with its code and HTTP status.
// Errors on the way there (refgate not listening, a timeout, a cut
// connection) come back wrapped, naming the request and refgate's address.
//
// # Errors
//
// Every call that fails returns a nil answer with the error: there is no
// zero answer to mistake for "not attributed" or "no commission".
//
//   - [IsUnavailable] (a 503, a 502 or 504 from a proxy, a timeout, a
//     refused, reset or cut connection, a failed DNS lookup): refgate could
//     not answer. Retry later with the same order id or refund id, and never
//     book the sale as unattributed because of it. A timed-out call may have
//     been applied; the retry gets its answer.
//   - 409 (Code "conflict"): the order id was reported with another customer,
//     amount, currency, product or prepaid flag, or the refund id was used
//     with another amount. That is a bug in the storefront (an id reused for
//     another order or refund); retrying cannot fix it.
//   - 422 (Code "invalid"): a value is wrong (an amount outside 0..10^15, a
//     refund larger than what is left, a fingerprint that does not parse);
//     the message names it. Do not retry as is.
//
// # Retries
//
// [Client.Convert] is idempotent on the order id and [Client.Refund] on the
// refund id, and refgate applies a write whose answer was lost only once.
// So the client itself retries them, with the same id and the same body,
// when refgate could not answer: a refused, reset or cut connection, a
// timeout of one attempt, a 502, 503 or 504. It retries the reads
// ([Client.Attribution], [Client.TokenAttribution], [Client.Explain]) and
// the calls that set a state ([Client.PutCustomer], [Client.DeleteCustomer])
// and [Client.Settle] (refgate never settles an entry twice) the same way.
// [Client.Bind] has no id, and a second bind is a second decision in the
// customer's log, so it is retried only when the request never reached
// refgate (a refused connection, a failed DNS lookup or dial).
//
// By default a call makes up to 3 attempts, waiting about 100 ms and then
// 200 ms between them (exponential backoff with jitter, capped at 2 s);
// [Client.WithRetry] changes that. A Retry-After on a 503 is waited for
// instead, when it is no longer than the cap; a longer one ends the retries,
// and [Error.RetryAfter] says it. A 429 is retried only after a Retry-After
// within the cap; any other answer (a 4xx, a 500) is never retried. The
// context bounds the whole call: when it ends, or when its deadline comes
// before the next attempt would, the call returns the last error at once.
//
// What the client's retries did not fix is still [IsUnavailable]: queue the
// report and send it again later, with the same ids (examples/storefront
// shows one way). Never generate a fresh order or refund id for a retry:
// that is a new order or a second refund.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bind events.
const (
	Register = "register"
	Login    = "login"
)

// Client talks to one refgate API. It is safe for concurrent use once
// configured: call its With methods before the first request.
type Client struct {
	base  string
	token string
	http  *http.Client
	retry Retry
}

// New returns a client for the API at base (such as http://127.0.0.1:8081)
// with a storefront (or admin) token. Each attempt times out after 5 s, and
// a call retries as the package documentation says ([DefaultRetry]), unless
// the context ends sooner.
func New(base, token string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: token,
		http: &http.Client{Timeout: 5 * time.Second}, retry: DefaultRetry}
}

// WithHTTPClient replaces the HTTP client (for custom transports or
// timeouts) and returns c. Its Timeout bounds each attempt, not the call.
func (c *Client) WithHTTPClient(h *http.Client) *Client {
	c.http = h
	return c
}

// Retry says how a call retries when refgate could not answer.
type Retry struct {
	// Attempts is how many requests a call makes at most, the first
	// included; 1 turns retries off. Zero or less means 1.
	Attempts int
	// Base is the wait before the second attempt; each later wait doubles,
	// up to Max. Each wait is drawn between half of it and all of it, so
	// that storefront instances that failed together do not retry together.
	Base time.Duration
	// Max caps every wait, a Retry-After included: refgate asking for a
	// longer wait ends the retries.
	Max time.Duration
}

// DefaultRetry is what [New] uses: 3 attempts, waits of about 100 ms and
// 200 ms, none over 2 s.
var DefaultRetry = Retry{Attempts: 3, Base: 100 * time.Millisecond, Max: 2 * time.Second}

// WithRetry sets how calls retry and returns c. Retry{Attempts: 1} turns
// retries off.
func (c *Client) WithRetry(r Retry) *Client {
	c.retry = r
	return c
}

// Error is an error answer from refgate (or from a proxy in front of it).
type Error struct {
	Status  int    `json:"-"` // HTTP status
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter is the answer's Retry-After (on a 503 or a 429), or 0.
	RetryAfter time.Duration `json:"-"`
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
//
// It is retried only when the request did not reach refgate (see the package
// documentation).
func (c *Client) Bind(ctx context.Context, r BindRequest) (*BindAnswer, error) {
	return call[BindAnswer](ctx, c, notSent, "POST", "/v1/bind", r)
}

// PutCustomer records what the storefront knows of a customer.
// Sending the same info again sets the same state, so it is retried.
func (c *Client) PutCustomer(ctx context.Context, id string, info CustomerInfo) (*Customer, error) {
	return call[Customer](ctx, c, idempotent, "PUT", "/v1/customers/"+url.PathEscape(id), info)
}

// DeleteCustomer erases what refgate holds about a customer: fingerprints,
// associations and decision log, in every program. Their orders keep their
// decisions and amounts under a keyed hash of the id: reporting one again
// with Convert gets its decision as before, and Refund still applies. It is
// idempotent: a customer refgate does not know, or erased already, is no
// error, and an erasure that failed (IsUnavailable) is finished by calling
// it again. The id may be used again afterwards, as a new customer.
func (c *Client) DeleteCustomer(ctx context.Context, id string) error {
	return c.do(ctx, idempotent, "DELETE", "/v1/customers/"+url.PathEscape(id), nil, nil)
}

// Attribution returns who holds a customer in a program now.
func (c *Client) Attribution(ctx context.Context, program, customer string) (*Attribution, error) {
	q := url.Values{"program": {program}, "customer": {customer}}
	return call[Attribution](ctx, c, idempotent, "GET", "/v1/attribution?"+q.Encode(), nil)
}

// TokenAttribution returns what an attribution token says.
func (c *Client) TokenAttribution(ctx context.Context, program, token string) (*Attribution, error) {
	q := url.Values{"program": {program}, "token": {token}}
	return call[Attribution](ctx, c, idempotent, "GET", "/v1/attribution?"+q.Encode(), nil)
}

// Explain returns the customer's latest decisions for a program, newest
// first.
func (c *Client) Explain(ctx context.Context, program, customer string) ([]Decision, error) {
	var out struct {
		Decisions []Decision `json:"decisions"`
	}
	q := url.Values{"program": {program}, "customer": {customer}}
	if err := c.do(ctx, idempotent, "GET", "/v1/attribution/explain?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Decisions, nil
}

// Convert reports a paid order. Safe to retry with the same values: the
// same order id gets the same decision, and the client retries it itself
// when refgate could not answer. The same order id with another customer,
// amount, currency, product or prepaid flag is a 409 *Error.
func (c *Client) Convert(ctx context.Context, o Conversion) (*ConversionAnswer, error) {
	return call[ConversionAnswer](ctx, c, idempotent, "POST", "/v1/conversions", o)
}

// Refund reports amount of cash refunded on an order. refund is the
// storefront's id for this refund, unique per order ([A-Za-z0-9._:-], 1 to
// 128 characters); derive it from the storefront's own refund record.
//
// Refund is safe to retry with the same refund id: refgate answers the same
// and refunds nothing more; the client retries it itself when refgate could
// not answer. A 409 *Error means the id was used on this
// order with another amount; a 422 that amount is more than is left; a 404
// that refgate does not know the order (report it with Convert first).
func (c *Client) Refund(ctx context.Context, order, refund string, amount int64) (*RefundAnswer, error) {
	in := struct {
		Refund string `json:"refund"`
		Amount int64  `json:"amount"`
	}{refund, amount}
	return call[RefundAnswer](ctx, c, idempotent, "POST", "/v1/conversions/"+url.PathEscape(order)+"/refunds", in)
}

// Statement is what a settlement run owes one promoter in one currency of
// a program: the sum of the ledger entries it settled.
type Statement struct {
	ID        string     `json:"id"`
	Program   string     `json:"program"`
	Promoter  string     `json:"promoter"`
	Currency  string     `json:"currency"`
	Through   time.Time  `json:"through"` // entries available by then were settled
	Entries   int        `json:"entries"` // how many
	Amount    int64      `json:"amount"`  // their sum, minor units, > 0
	Status    string     `json:"status"`  // "open", or "paid"
	CreatedAt time.Time  `json:"created_at"`
	PaidAt    *time.Time `json:"paid_at,omitempty"`
	Reference string     `json:"reference,omitempty"` // the payment's, once paid
}

// Settle settles program (POST /v1/admin/statements, with an admin token):
// every unsettled ledger entry available at or before through (the zero
// time: refgate's now) goes on a new open statement, one per promoter and
// currency; a promoter whose sum is not positive or below the program's
// min_payout gets none, their entries waiting for a later run. It returns
// the new statements, an empty list when nothing was due.
//
// refgate never settles an entry twice, so Settle is retried as Convert is.
// A retry after a lost answer settles nothing more and answers without the
// statements the lost answer listed (GET /v1/admin/statements lists them).
// A through later than refgate's now is a 422 *Error.
func (c *Client) Settle(ctx context.Context, program string, through time.Time) ([]Statement, error) {
	in := struct {
		Program string     `json:"program"`
		Through *time.Time `json:"through,omitempty"`
	}{Program: program}
	if !through.IsZero() {
		in.Through = &through
	}
	var out struct {
		Statements *[]Statement `json:"statements"`
	}
	const path = "/v1/admin/statements"
	if err := c.doLimit(ctx, idempotent, "POST", path, in, &out, maxSettleAnswer); err != nil {
		return nil, err
	}
	if out.Statements == nil {
		return nil, fmt.Errorf("refgate POST %s: bad answer: no statements", path)
	}
	return append([]Statement{}, *out.Statements...), nil
}

// Do sends a request to path (its query included) with the client's token
// and decodes a 2xx answer's JSON into out (nil: none; a *json.RawMessage
// keeps the answer as sent), for the admin routes this package has no
// method of; refgate's own command line uses it. With repeatable it is
// retried whenever refgate could not answer, as Convert is (a read, a
// PATCH); without, only when the request never reached refgate, as Bind is
// (a POST that would do its work twice). An error answer is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any, repeatable bool) error {
	r := notSent
	if repeatable {
		r = idempotent
	}
	return c.do(ctx, r, method, path, in, out)
}

// The largest answer a call reads: a settlement lists a statement (about
// 300 bytes) for every promoter paid, the other calls answer one object.
const (
	maxAnswer       = 1 << 20
	maxSettleAnswer = 256 << 20
)

// retryable says which failures a call may be retried on.
type retryable int

const (
	// idempotent calls are retried whenever refgate could not answer: a
	// second request has the effect of one.
	idempotent retryable = iota
	// notSent calls are retried only when the request never reached refgate.
	notSent
)

// call makes a request whose answer is a T; the answer is nil on error.
func call[T any](ctx context.Context, c *Client, r retryable, method, path string, in any) (*T, error) {
	var out T
	if err := c.do(ctx, r, method, path, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends the request, retrying as c.retry and r allow, and decodes a 2xx
// answer into out. Every attempt sends the same body.
func (c *Client) do(ctx context.Context, r retryable, method, path string, in, out any) error {
	return c.doLimit(ctx, r, method, path, in, out, maxAnswer)
}

// doLimit is do for an answer of up to limit bytes.
func (c *Client) doLimit(ctx context.Context, r retryable, method, path string, in, out any, limit int64) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, path, body, out, limit)
		if err == nil {
			return nil
		}
		wait, ok := c.retry.wait(attempt, err, r)
		if ok && ctx.Err() == nil {
			if deadline, has := ctx.Deadline(); !has || time.Until(deadline) > wait {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					continue
				case <-ctx.Done():
					t.Stop()
				}
			}
		}
		var te *transportError
		if errors.As(err, &te) {
			te.attempts = attempt
		}
		return err
	}
}

// once makes one attempt.
func (c *Client) once(ctx context.Context, method, path string, body []byte, out any, limit int64) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &transportError{method: method, path: path, base: c.base, err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		// The connection was cut or timed out in the middle of the answer:
		// as unavailable as no answer at all.
		return &transportError{method: method, path: path, base: c.base, err: err}
	}
	tooLong := int64(len(raw)) > limit
	raw = raw[:min(int64(len(raw)), limit)]
	if resp.StatusCode >= 300 {
		var e struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == nil {
			e.Error = &Error{Code: "unknown", Message: strings.TrimSpace(string(raw))}
		}
		e.Error.Status = resp.StatusCode
		e.Error.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return e.Error
	}
	if out == nil {
		return nil
	}
	if tooLong {
		return fmt.Errorf("refgate %s %s: bad answer: over %d bytes", method, path, limit)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("refgate %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// wait returns how long to wait before attempt+1 after err, and false when
// err is not to be retried.
func (r Retry) wait(attempt int, err error, kind retryable) (time.Duration, bool) {
	if attempt >= r.Attempts {
		return 0, false
	}
	var e *Error
	if errors.As(err, &e) {
		switch {
		case e.Status == http.StatusTooManyRequests:
			// Only when refgate says when: a 429 without Retry-After is
			// nothing a quick retry fixes. refgate refused it before doing
			// anything, so a bind may be retried too.
			return e.RetryAfter, e.RetryAfter > 0 && e.RetryAfter <= r.Max
		case !e.Temporary() || kind != idempotent:
			return 0, false
		case e.RetryAfter > 0:
			return e.RetryAfter, e.RetryAfter <= r.Max
		}
		return r.backoff(attempt), true
	}
	var te *transportError
	if !errors.As(err, &te) || !te.unavailable() || (kind != idempotent && !te.notSent()) {
		return 0, false
	}
	return r.backoff(attempt), true
}

// backoff is the wait after attempt: Base doubled attempt-1 times, at most
// Max, drawn from its upper half.
func (r Retry) backoff(attempt int) time.Duration {
	d := r.Base
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses a Retry-After value (seconds, or an HTTP date); 0 when
// there is none or it is in the past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 32); err == nil {
		return max(time.Duration(secs)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// transportError is a request that got no HTTP answer, or no whole one,
// from refgate.
type transportError struct {
	method, path, base string
	attempts           int
	err                error
}

func (e *transportError) Error() string {
	err := e.err
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err // it repeats the method and URL said already
	}
	tries := ""
	if e.attempts > 1 {
		tries = fmt.Sprintf(" (%d attempts)", e.attempts)
	}
	return fmt.Sprintf("refgate %s %s: no answer from %s%s: %v", e.method, e.path, e.base, tries, err)
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

// notSent reports whether the request surely did not reach refgate: the
// connection to it could not be made.
func (e *transportError) notSent() bool {
	var op *net.OpError
	if errors.As(e.err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(e.err, &dns)
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
// (its store did not answer), a 502 or 504 from a proxy, or no whole answer
// at all (a refused, reset or cut connection, a failed DNS lookup, a
// timeout, a cancelled context). The client's own retries were used up or
// cut short by the context. Retry later with the same order or refund id; do
// not treat the customer as unattributed.
func IsUnavailable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	var te *transportError
	return errors.As(err, &te) && te.unavailable()
}
