package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	tok, _ := signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "l1", Click: "c1",
		Visitor: "v1", Issued: now, Expires: now.Add(time.Hour)})
	// The storefront reads the cookie from the visitor's request.
	r := httptest.NewRequest("POST", "/register", nil)
	r.AddCookie(&http.Cookie{Name: "rg_shop", Value: string(tok)})
	r.AddCookie(&http.Cookie{Name: "rg_vid", Value: "v1"})
	if client.TokenFromRequest(r, "shop") != string(tok) || client.VisitorFromRequest(r) != "v1" {
		t.Fatal("cookie helpers")
	}
	if got := client.TokenFromRequest(httptest.NewRequest("GET", "/?rg_token=abc", nil), "shop"); got != "abc" {
		t.Errorf("rg_token parameter: %q", got)
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
	if ref, err := rg.Refund(ctx, "o1", 5000); err != nil || ref.Commission != 1500 || ref.Refunded != 5000 {
		t.Errorf("refund: %+v %v", ref, err)
	}
	if ds, err := rg.Explain(ctx, "shop", "c1"); err != nil || len(ds) != 3 || ds[0].Event != "refund" {
		t.Errorf("explain: %+v %v", ds, err)
	}

	_, err = rg.Refund(ctx, "o1", 999999)
	var e *client.Error
	if !asError(err, &e) || e.Status != 422 || e.Code != "invalid" || e.Temporary() {
		t.Errorf("a 422 comes back as *Error: %v", err)
	}
	if _, err := client.New(base, "wrong").Attribution(ctx, "shop", "c1"); !asError(err, &e) || e.Status != 401 {
		t.Errorf("bad token: %v", err)
	}
	st.Close()
	if _, err := rg.Attribution(ctx, "shop", "c1"); !client.IsUnavailable(err) {
		t.Errorf("store down must be unavailable, not unattributed: %v", err)
	}
}

func asError(err error, e **client.Error) bool {
	x, ok := err.(*client.Error)
	*e = x
	return ok
}
