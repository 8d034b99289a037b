package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/apitest"
)

// TestStorefront walks a visitor who clicked alice's link through register
// and checkout against a real refgate API.
func TestStorefront(t *testing.T) {
	rg := apitest.Serve(t)
	shop := httptest.NewServer((&Shop{RG: client.New(rg.URL, apitest.StorefrontToken), Program: "shop"}).Handler())
	defer shop.Close()

	now := time.Now()
	tok, _ := rg.Signer.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: "alice", Link: "l1", Click: "c1",
		Visitor: "v1", Issued: now, Expires: now.Add(time.Hour)})
	post := func(path string, form url.Values, cookies ...*http.Cookie) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", shop.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	reg := post("/register", url.Values{"user": {"u1"}}, &http.Cookie{Name: "rg_shop", Value: string(tok)})
	if ref := reg["referral"].(map[string]any); ref["associated"] != true || ref["promoter"] != "alice" {
		t.Fatalf("register: %v", reg)
	}
	out := post("/checkout", url.Values{"user": {"u1"}, "order": {"o1"}, "amount": {"10000"}, "product": {"cvm"}})
	if c := out["commission"].(map[string]any); c["eligible"] != true || c["commission"] != 3000.0 {
		t.Fatalf("checkout: %v", out)
	}
	if login := post("/login", url.Values{"user": {"u1"}}); login["referral"].(map[string]any)["reason"] != "no_click" {
		t.Errorf("login without cookies: %v", login)
	}
}
