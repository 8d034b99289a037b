package api

import (
	"context"
	"strings"
	"testing"
)

// TestFingerprintsInvalid: a fingerprint that does not normalise is a 422
// naming the field on every route that takes fingerprints, and nothing is
// written.
func TestFingerprintsInvalid(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	routes := []struct {
		name, method, path, token, field string
		body                             func(fp string) string
	}{
		{"PromoterPut", "PUT", "/v1/admin/promoters/alice", adminTok, "fingerprints",
			func(fp string) string { return `{"status":"active","tier":0,"fingerprints":` + fp + `}` }},
		{"BindCustomerInfo", "POST", "/v1/bind", sfTok, "customer_info.fingerprints",
			func(fp string) string {
				return `{"program":"shop","customer":"c1","event":"register",` + tok(e.token("shop", "bob", 30)) +
					`,"customer_info":{"fingerprints":` + fp + `}}`
			}},
		{"CustomerPut", "PUT", "/v1/customers/c1", sfTok, "fingerprints",
			func(fp string) string { return `{"paid":true,"fingerprints":` + fp + `}` }},
		{"Conversion", "POST", "/v1/conversions", sfTok, "fingerprints",
			func(fp string) string {
				return `{"program":"shop","order":"o1","customer":"c1","amount":100,"currency":"CNY","fingerprints":` + fp + `}`
			}},
	}
	kinds := []struct{ name, fp, field, value string }{
		{"ErrIP", `{"ips":["203.0.113.9","999.1.1.1"]}`, "ips[1]", `"999.1.1.1" is not an IP address`},
		{"ErrIPEmpty", `{"ips":[""]}`, "ips[0]", `"" is not an IP address`},
		{"ErrPhoneNoDigits", `{"phones":["call me"]}`, "phones[0]", `"call me" is not a phone number`},
		{"ErrPhoneTooShort", `{"phones":["13800000001","12"]}`, "phones[1]", `"12" is not a phone number`},
		{"ErrEmail", `{"emails":["bob"]}`, "emails[0]", `"bob" is not an e-mail address`},
		{"ErrEmailSpace", `{"emails":["bob smith@example.com"]}`, "emails[0]", `"bob smith@example.com" is not an e-mail address`},
		{"ErrIDNumber", `{"id_numbers":["  "]}`, "id_numbers[0]", `"  " is empty`},
		{"ErrDevice", `{"devices":["d1",""]}`, "devices[1]", `"" is empty`},
	}
	for _, rt := range routes {
		for _, k := range kinds {
			t.Run(rt.name+"/"+k.name, func(t *testing.T) {
				r := e.call(rt.method, rt.path, rt.token, rt.body(k.fp))
				msg, _ := r.body["error"].(map[string]any)["message"].(string)
				if want := rt.field + "." + k.field + ": " + k.value; r.status != 422 || r.errCode() != "invalid" || msg != want {
					t.Errorf("got %d %s, want 422 invalid %q", r.status, r.raw, want)
				}
			})
		}
	}
	// Nothing was written: alice keeps her fingerprints and tier, c1 and
	// order o1 do not exist.
	if r := e.call("GET", "/v1/admin/promoters/alice", adminTok, ""); r.body["fingerprints"] != 2.0 || r.body["tier"] != 1.0 {
		t.Errorf("promoter changed by a rejected PUT: %s", r.raw)
	}
	if _, err := e.st.Customer(context.Background(), "c1"); err == nil {
		t.Error("customer written by a rejected request")
	}
	if r := e.convert("o1", "c2", 100, ""); r.status != 200 {
		t.Errorf("order o1 was recorded by a rejected conversion: %s", r.raw)
	}
}

// TestPromoterPutKeepsFingerprints: a PUT without fingerprints keeps the
// stored ones, so self-referral stays caught after a tier update; a PUT with
// fingerprints, even {}, replaces them.
func TestPromoterPutKeepsFingerprints(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	put := func(body string, want float64) {
		t.Helper()
		r := e.call("PUT", "/v1/admin/promoters/pat", adminTok, body)
		if r.status != 200 || r.body["fingerprints"] != want || len(r.body) != 4 {
			t.Fatalf("PUT %s: %d %s, want %v fingerprints", body, r.status, r.raw, want)
		}
	}
	bind := func(customer, reason string) {
		t.Helper()
		r := e.bind(customer, "register", tok(e.token("shop", "pat", 30))+`,"customer_info":{"fingerprints":{"phones":["13800000001"]}}`)
		if r.status != 200 || r.body["reason"] != reason || r.body["associated"] != (reason == "") {
			t.Errorf("bind %s: %d %s, want reason %q", customer, r.status, r.raw, reason)
		}
	}
	put(`{"status":"active","tier":0}`, 0) // new promoter, no fingerprints
	put(`{"status":"active","tier":0,"fingerprints":{"phones":["+86 138-0000-0001"],"emails":["pat@example.com"]}}`, 2)
	put(`{"status":"active","tier":1}`, 2) // the monthly tier update
	if r := e.call("GET", "/v1/admin/promoters/pat", adminTok, ""); r.body["tier"] != 1.0 || r.body["fingerprints"] != 2.0 {
		t.Errorf("after the tier update: %s", r.raw)
	}
	bind("c1", "same_person")
	put(`{"status":"active","tier":1,"fingerprints":{}}`, 0)
	bind("c2", "")
}

func TestFingerprintsNormalisedAlike(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	// alice holds "+86 138-0000-0000" and 203.0.113.7 (seed).
	for i, fp := range []string{`{"phones":["008613800000000"]}`, `{"phones":["13800000000"]}`, `{"phones":[" 138 0000 0000 "]}`,
		`{"ips":["::ffff:203.0.113.7"]}`} {
		c := "c" + strings.Repeat("x", i)
		r := e.bind(c, "register", tok(e.token("shop", "alice", 30))+`,"customer_info":{"fingerprints":`+fp+`}`)
		if r.status != 200 || r.body["reason"] != "same_person" {
			t.Errorf("%s: %d %s", fp, r.status, r.raw)
		}
	}
}
