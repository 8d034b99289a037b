package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/apitest"
)

func TestClient(t *testing.T) {
	srv := apitest.Serve(t)
	base, st, signer := srv.URL, srv.Store, srv.Signer
	rg := client.New(base, apitest.StorefrontToken)
	ctx := context.Background()

	now := time.Now()
	createLink(t, srv, "link-1")
	tok, _ := signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "link-1", Click: "c1",
		Visitor: "v1", Issued: now, Expires: now.Add(time.Hour)})
	// The storefront reads the cookie from the visitor's request.
	r := httptest.NewRequest("POST", "/register", nil)
	r.AddCookie(&http.Cookie{Name: "rg_shop", Value: string(tok)})
	r.AddCookie(&http.Cookie{Name: "rg_vid", Value: "v1"})
	if client.TokenFromRequest(r, "shop") != string(tok) || client.VisitorFromRequest(r) != "v1" {
		t.Fatal("cookie helpers")
	}
	// The rg_token parameter is for append_token programs' landing pages,
	// read only by TokenFromQuery.
	landing := httptest.NewRequest("GET", "/?rg_token=abc", nil)
	if got := client.TokenFromRequest(landing, "shop"); got != "" {
		t.Errorf("TokenFromRequest must read only the rg_shop cookie, got %q from the query", got)
	}
	if got := client.TokenFromQuery(landing); got != "abc" {
		t.Errorf("TokenFromQuery: %q", got)
	}
	if got := client.TokenFromQuery(r); got != "" {
		t.Errorf("TokenFromQuery must not read cookies, got %q", got)
	}

	b, err := rg.Bind(ctx, client.BindRequest{Program: "shop", Customer: "c1", Event: client.Register,
		Token: client.TokenFromRequest(r, "shop"), Visitor: client.VisitorFromRequest(r)})
	if err != nil || !b.Associated || b.Promoter != "alice" || b.Kind != "protected" {
		t.Fatalf("bind: %+v %v", b, err)
	}
	if c, err := rg.PutCustomer(ctx, "c1", client.CustomerInfo{Fingerprints: &client.Fingerprints{Emails: []string{"c1@example.net"}}}); err != nil || c.Fingerprints != 1 {
		t.Errorf("put customer: %+v %v", c, err)
	}
	if a, err := rg.Attribution(ctx, "shop", "c1"); err != nil || !a.Attributed || a.Promoter != "alice" || a.Click != "c1" {
		t.Errorf("attribution: %+v %v", a, err)
	}
	if a, err := rg.TokenAttribution(ctx, "shop", string(tok)); err != nil || !a.Attributed {
		t.Errorf("token attribution: %+v %v", a, err)
	}
	conv, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
	if err != nil || !conv.Eligible || conv.Commission != 3000 || conv.Rate.String() != "0.3" {
		t.Fatalf("convert: %+v %v", conv, err)
	}
	if again, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true}); err != nil || *again != *conv {
		t.Errorf("the same order again must get the same decision: %+v %v", again, err)
	}
	if ds, err := rg.Explain(ctx, "shop", "c1"); err != nil || len(ds) != 2 || ds[0].Event != "conversion" || ds[0].Order != "o1" {
		t.Errorf("explain: %+v %v", ds, err)
	}

	_, err = rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o2", Customer: "c1", Amount: -1})
	var e *client.Error
	if !asError(err, &e) || e.Status != 422 || e.Code != "invalid" || e.Temporary() || client.IsUnavailable(err) {
		t.Errorf("a 422 comes back as *Error: %v", err)
	}
	if _, err := client.New(base, "wrong").Attribution(ctx, "shop", "c1"); !asError(err, &e) || e.Status != 401 {
		t.Errorf("bad token: %v", err)
	}
	st.Close()
	if a, err := rg.Attribution(ctx, "shop", "c1"); !client.IsUnavailable(err) || a != nil {
		t.Errorf("store down must be unavailable, not unattributed: %+v %v", a, err)
	}
}

// TestClientRefund: refunds are idempotent on the refund id. Needs the
// server's refund ids.
func TestClientRefund(t *testing.T) {
	srv := apitest.Serve(t)
	rg := client.New(srv.URL, apitest.StorefrontToken)
	ctx := context.Background()
	bindAlice(t, srv, rg, "c1")
	conv, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true})
	if err != nil || conv.Commission != 3000 {
		t.Fatalf("convert: %+v %v", conv, err)
	}

	want := client.RefundAnswer{Order: "o1", Refund: "rf-1", Refunded: 5000, Commission: 1500}
	for i := range 2 { // the second is a retry: the same answer, nothing more refunded
		if ref, err := rg.Refund(ctx, "o1", "rf-1", 5000); err != nil || *ref != want {
			t.Fatalf("refund, attempt %d: %+v %v, want %+v", i+1, ref, err, want)
		}
	}
	var e *client.Error
	if _, err := rg.Refund(ctx, "o1", "rf-1", 4000); !asError(err, &e) || e.Status != 409 || e.Code != "conflict" || client.IsUnavailable(err) {
		t.Errorf("the same refund id with another amount must be a 409: %v", err)
	}
	if _, err := rg.Refund(ctx, "o1", "rf-2", 5001); !asError(err, &e) || e.Status != 422 || e.Code != "invalid" {
		t.Errorf("a refund larger than what is left must be a 422: %v", err)
	}
	if _, err := rg.Refund(ctx, "o1", "bad id!", 1); !asError(err, &e) || e.Status != 422 {
		t.Errorf("a malformed refund id must be a 422: %v", err)
	}
	if _, err := rg.Refund(ctx, "o-unknown", "rf-1", 1); !asError(err, &e) || e.Status != 404 {
		t.Errorf("an unknown order must be a 404: %v", err)
	}
	if ref, err := rg.Refund(ctx, "o1", "rf-2", 5000); err != nil || ref.Refunded != 10000 || ref.Commission != 0 || ref.Refund != "rf-2" {
		t.Errorf("second refund: %+v %v", ref, err)
	}

	ds, err := rg.Explain(ctx, "shop", "c1")
	if err != nil {
		t.Fatal(err)
	}
	var refunds []string
	for _, d := range ds {
		if d.ID == "" {
			t.Errorf("decision without an id: %+v", d)
		}
		if d.Event == "refund" {
			refunds = append(refunds, d.Refund)
		}
	}
	if strings.Join(refunds, ",") != "rf-2,rf-1" {
		t.Errorf("refund decisions, newest first: %q, want each refund once: %+v", refunds, ds)
	}
}

// TestClientConversionConflict: the same order id with other values is a
// 409, never the old answer. Needs the server's order checks.
func TestClientConversionConflict(t *testing.T) {
	srv := apitest.Serve(t)
	rg := client.New(srv.URL, apitest.StorefrontToken)
	ctx := context.Background()
	bindAlice(t, srv, rg, "c1")
	o := client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true}
	if _, err := rg.Convert(ctx, o); err != nil {
		t.Fatal(err)
	}
	f := func(name string, change func(*client.Conversion)) {
		t.Helper()
		c := o
		change(&c)
		var e *client.Error
		if ans, err := rg.Convert(ctx, c); !asError(err, &e) || e.Status != 409 || e.Code != "conflict" {
			t.Errorf("%s: want a 409 conflict, got %+v %v", name, ans, err)
		}
	}
	f("Amount", func(c *client.Conversion) { c.Amount = 12000 })
	f("Currency", func(c *client.Conversion) { c.Currency = "USD" })
	f("Product", func(c *client.Conversion) { c.Product = "lighthouse" })
	f("Prepaid", func(c *client.Conversion) { c.Prepaid = false })
	f("Customer", func(c *client.Conversion) { c.Customer = "c2" })

	var e *client.Error
	if _, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o2", Customer: "c1", Amount: 1_000_000_000_000_001}); !asError(err, &e) || e.Status != 422 {
		t.Errorf("an amount over 10^15 must be a 422: %v", err)
	}
	if ans, err := rg.Convert(ctx, client.Conversion{Program: "shop", Order: "o3", Customer: "c1", Amount: 1_000_000_000_000_000, Prepaid: true}); err != nil {
		t.Errorf("an amount of 10^15 is allowed: %+v %v", ans, err)
	}
}

// TestClientDeleteCustomer: erasing a customer forgets their attribution;
// their order answers as before; erasing again is no error.
func TestClientDeleteCustomer(t *testing.T) {
	srv := apitest.Serve(t)
	rg := client.New(srv.URL, apitest.StorefrontToken)
	ctx := context.Background()
	bindAlice(t, srv, rg, "c1")
	order := client.Conversion{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true}
	conv, err := rg.Convert(ctx, order)
	if err != nil || !conv.Eligible {
		t.Fatalf("convert: %+v %v", conv, err)
	}
	for range 2 {
		if err := rg.DeleteCustomer(ctx, "c1"); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	if a, err := rg.Attribution(ctx, "shop", "c1"); err != nil || a.Attributed {
		t.Errorf("attribution after erasure: %+v %v", a, err)
	}
	if again, err := rg.Convert(ctx, order); err != nil || *again != *conv {
		t.Errorf("the order again after erasure: %+v %v, want %+v", again, err, conv)
	}
	var e *client.Error
	if err := rg.DeleteCustomer(ctx, "not valid"); !asError(err, &e) || e.Status != 422 {
		t.Errorf("a bad id: %v", err)
	}
}

// createLink stores a link of alice's in program shop: a token binds only
// while its link exists.
func createLink(t *testing.T, srv *apitest.Server, code string) {
	t.Helper()
	l := &attribution.Link{Code: code, Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/", CreatedAt: time.Now()}
	if err := srv.Store.CreateLink(context.Background(), l); err != nil {
		t.Fatal(err)
	}
}

// bindAlice binds customer to alice through a fresh click on a link of its
// own.
func bindAlice(t *testing.T, srv *apitest.Server, rg *client.Client, customer string) {
	t.Helper()
	now := time.Now()
	createLink(t, srv, "link-"+customer)
	tok, _ := srv.Signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "link-" + customer, Click: "c-" + customer,
		Visitor: "v-" + customer, Issued: now, Expires: now.Add(time.Hour)})
	if b, err := rg.Bind(context.Background(), client.BindRequest{Program: "shop", Customer: customer, Event: client.Register, Token: string(tok)}); err != nil || !b.Associated {
		t.Fatalf("bind: %+v %v", b, err)
	}
}

func asError(err error, e **client.Error) bool {
	x, ok := err.(*client.Error)
	*e = x
	return ok
}
