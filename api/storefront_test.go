package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/store/storetest"
)

// token signs a new click on promoter's link, issued now by the env's
// clock.
func (e *env) token(program, promoter string, days int) string {
	now := e.clock.Now()
	storetest.Link(e.t, e.st, program, promoter, "l-"+promoter)
	e.clicks++
	tok := cookie.Token{Program: program, Promoter: promoter, Link: "l-" + promoter, Click: fmt.Sprintf("c%d-%s", e.clicks, promoter),
		Visitor: "v1", Issued: now, Expires: now.Add(time.Duration(days) * 24 * time.Hour)}
	b, err := e.signer.AppendToken(nil, &tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) seedStorefront() {
	e.t.Helper()
	e.seed()
	for _, id := range []string{"bob", "carol"} {
		if r := e.call("PUT", "/v1/admin/promoters/"+id, adminTok, `{"status":"active"}`); r.status != 200 {
			e.t.Fatal(r.raw)
		}
	}
	if r := e.call("PUT", "/v1/admin/promoters/mallory", adminTok, `{"status":"suspended"}`); r.status != 200 {
		e.t.Fatal(r.raw)
	}
}

func (e *env) bind(customer, event, tokenJSON string) result {
	e.t.Helper()
	return e.call("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"`+customer+`","event":"`+event+`",`+tokenJSON+`}`)
}

func tok(t string) string { return `"token":"` + t + `"` }

// tamper changes a token's last character (always to a different one).
func tamper(t string) string {
	last := byte('A')
	if t[len(t)-1] == 'A' {
		last = 'B'
	}
	return t[:len(t)-1] + string(last)
}

func TestBindAndAttribution(t *testing.T) {
	e := newEnv(t, true)
	e.seedStorefront()
	r := e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	if r.status != 200 || r.body["associated"] != true || r.body["promoter"] != "bob" || r.body["kind"] != "protected" || r.body["reason"] != "" {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	// Protection: another promoter's login click does not take the customer.
	r = e.bind("c1", "login", tok(e.token("shop", "carol", 30)))
	if r.body["associated"] != false || r.body["reason"] != "protected_by_other" || r.body["promoter"] != "bob" {
		t.Errorf("protected_by_other: %s", r.raw)
	}
	a := e.call("GET", "/v1/attribution?program=shop&customer=c1", sfTok, "")
	if a.status != 200 || a.body["attributed"] != true || a.body["promoter"] != "bob" || a.body["link"] != "l-bob" || a.body["click"] != "c1-bob" {
		t.Errorf("attribution: %s", a.raw)
	}
	// 30 days later the protection has ended: the next login click wins.
	e.call("POST", "/v1/admin/test-clock", adminTok, `{"advance":"720h"}`)
	if a := e.call("GET", "/v1/attribution?program=shop&customer=c1", sfTok, ""); a.body["attributed"] != false {
		t.Errorf("after 30 days: %s", a.raw)
	}
	r = e.bind("c1", "login", tok(e.token("shop", "carol", 30)))
	if r.body["associated"] != true || r.body["kind"] != "standard" || r.body["promoter"] != "carol" {
		t.Errorf("login after protection: %s", r.raw)
	}
	x := e.call("GET", "/v1/attribution/explain?program=shop&customer=c1", sfTok, "")
	ds, _ := x.body["decisions"].([]any)
	if x.status != 200 || len(ds) != 3 {
		t.Fatalf("explain: %s", x.raw)
	}
	newest := ds[0].(map[string]any)
	if newest["event"] != "login" || newest["promoter"] != "carol" || newest["outcome"] != "created" || newest["click"] != "c3-carol" {
		t.Errorf("newest decision: %v", newest)
	}
	if mid := ds[1].(map[string]any); mid["outcome"] != "rejected" || mid["reason"] != "protected_by_other" {
		t.Errorf("middle decision: %v", mid)
	}
	// Unknown customers are simply not attributed.
	if a := e.call("GET", "/v1/attribution?program=shop&customer=nobody", sfTok, ""); a.status != 200 || a.body["attributed"] != false {
		t.Errorf("unknown customer: %s", a.raw)
	}
	if x := e.call("GET", "/v1/attribution/explain?program=shop&customer=nobody", sfTok, ""); x.status != 200 || !strings.Contains(x.raw, `"decisions":[]`) {
		t.Errorf("explain unknown: %s", x.raw)
	}
}

func TestBindByVisitorRecord(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	now := e.clock.Now()
	storetest.Link(t, e.st, "shop", "bob", "lnk")
	e.st.RecordClicks(context.Background(), "b-clk1", []attribution.Click{{ID: "clk1", Program: "shop", Promoter: "bob", Link: "lnk",
		Visitor: "vis1", At: now, ExpiresAt: now.Add(time.Hour), Outcome: attribution.OutcomeAttributed}})
	r := e.bind("c1", "register", `"visitor":"vis1"`)
	if r.body["associated"] != true || r.body["promoter"] != "bob" {
		t.Fatalf("bind by visitor: %s", r.raw)
	}
	if a := e.call("GET", "/v1/attribution?program=shop&customer=c1", sfTok, ""); a.body["click"] != "clk1" || a.body["link"] != "lnk" {
		t.Errorf("click and link come from the visitor record: %s", a.raw)
	}
	if r := e.bind("c2", "register", `"visitor":"unknown"`); r.body["reason"] != "no_click" {
		t.Errorf("unknown visitor: %s", r.raw)
	}
}

func TestBindReasons(t *testing.T) {
	e := newEnv(t, true)
	e.seedStorefront()
	f := func(name, customer, event, body, reason string) {
		t.Helper()
		r := e.bind(customer, event, body)
		if r.status != 200 || r.body["associated"] != false || r.body["reason"] != reason {
			t.Errorf("%s: %d %s, want reason %s", name, r.status, r.raw, reason)
		}
	}
	good := e.token("shop", "bob", 30)
	f("ErrTokenInvalid", "c1", "register", tok(tamper(good)), "token_invalid")
	f("ErrTokenOtherProgram", "c1", "register", tok(e.token("other", "bob", 30)), "token_invalid")
	f("ErrNoClick", "c1", "register", `"visitor":""`, "no_click")
	f("ErrPromoterSuspended", "c1", "register", tok(e.token("shop", "mallory", 30)), "promoter_suspended")
	f("ErrAgentServed", "c2", "register", tok(good)+`,"customer_info":{"agent_served":true}`, "agent_served")
	f("ErrAgentServedSticky", "c2", "register", tok(good)+`,"customer_info":{"agent_served":false}`, "agent_served")
	f("ErrOldCustomer", "c3", "login", tok(good)+`,"customer_info":{"paid":true}`, "old_customer")
	f("ErrSamePerson", "c4", "register", tok(e.token("shop", "alice", 30))+`,"customer_info":{"fingerprints":{"phones":["86-138-0000-0000"]}}`, "same_person")
	if r := e.call("PUT", "/v1/customers/c5", sfTok, `{"fingerprints":{"ips":["203.0.113.7"]}}`); r.status != 200 || r.body["fingerprints"] != 1.0 {
		t.Fatalf("put customer: %s", r.raw)
	}
	f("ErrSamePersonFromCustomer", "c5", "register", tok(e.token("shop", "alice", 30)), "same_person")
	expiring := e.token("shop", "bob", 1)
	e.call("POST", "/v1/admin/test-clock", adminTok, `{"advance":"25h"}`)
	f("ErrTokenExpired", "c6", "register", tok(expiring), "token_expired")
}

func TestCustomers(t *testing.T) {
	e := newEnv(t, false)
	r := e.call("PUT", "/v1/customers/c1", sfTok, `{"paid":true,"fingerprints":{"emails":["A@B.C"]}}`)
	if r.status != 200 || r.body["paid"] != true || r.body["agent_served"] != false || r.body["fingerprints"] != 1.0 {
		t.Fatalf("%s", r.raw)
	}
	r = e.call("PUT", "/v1/customers/c1", sfTok, `{"paid":false,"agent_served":true,"fingerprints":{"emails":["a@b.c"],"devices":["d"]}}`)
	if r.body["paid"] != true || r.body["agent_served"] != true || r.body["fingerprints"] != 2.0 || strings.Contains(r.raw, "a@b.c") {
		t.Errorf("paid and agent_served stay true; fingerprints add up and are never echoed: %s", r.raw)
	}
}

func (e *env) convert(order, customer string, amount int64, extra string) result {
	e.t.Helper()
	return e.call("POST", "/v1/conversions", sfTok, fmt.Sprintf(`{"program":"shop","order":%q,"customer":%q,"amount":%d,"currency":"CNY","product":"cvm","prepaid":true%s}`, order, customer, amount, extra))
}

func TestConversionsAndRefunds(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	r := e.convert("o1", "c1", 10000, "")
	want := `{"order":"o1","eligible":true,"reason":"","promoter":"bob","kind":"protected","rate":0.3,"commission":3000,"currency":"CNY"}`
	if r.status != 200 || strings.TrimSpace(r.raw) != want {
		t.Fatalf("conversion:\n got %s\nwant %s", r.raw, want)
	}
	// The same order again: the same decision, even though the customer has
	// paid since (which would make a new order a repeat purchase).
	if again := e.convert("o1", "c1", 10000, ""); strings.TrimSpace(again.raw) != want {
		t.Errorf("idempotent: %s", again.raw)
	}
	if r := e.convert("o2", "c1", 5000, ""); r.body["eligible"] != false || r.body["reason"] != "repeat_purchase" {
		t.Errorf("second order: %s", r.raw)
	}
	if r := e.convert("o3", "nobody", 5000, ""); r.body["reason"] != "no_association" || r.body["commission"] != 0.0 {
		t.Errorf("no association: %s", r.raw)
	}
	f := func(name, order, body string, status int, code string) {
		t.Helper()
		r := e.call("POST", "/v1/conversions/"+order+"/refunds", sfTok, body)
		if r.status != status || (code != "" && r.errCode() != code) {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	f("ErrUnknownOrder", "nope", `{"refund":"r1","amount":1}`, 404, "not_found")
	f("ErrBadOrderID", "a%7Bb%7D", `{"refund":"r1","amount":1}`, 404, "not_found")
	f("ErrOverRefund", "o1", `{"refund":"r1","amount":10001}`, 422, "invalid")
	f("ErrZeroRefund", "o1", `{"refund":"r1","amount":0}`, 422, "invalid")
	f("ErrNoAmount", "o1", `{"refund":"r1"}`, 422, "invalid")
	f("ErrNoRefundID", "o1", `{"amount":1}`, 422, "invalid")
	f("ErrBadRefundID", "o1", `{"refund":"a@b","amount":1}`, 422, "invalid")
	f("ErrTooLarge", "o1", `{"refund":"r1","amount":1000000000000001}`, 422, "invalid")
	refund := func(id string, amount int64) string {
		t.Helper()
		return strings.TrimSpace(e.call("POST", "/v1/conversions/o1/refunds", sfTok, fmt.Sprintf(`{"refund":%q,"amount":%d}`, id, amount)).raw)
	}
	if r := refund("r1", 4000); r != `{"order":"o1","refund":"r1","refunded":4000,"commission":1800}` {
		t.Errorf("refund: %s", r)
	}
	// The same refund again, by a storefront that did not get the answer:
	// the same answer, nothing more refunded.
	if r := refund("r1", 4000); r != `{"order":"o1","refund":"r1","refunded":4000,"commission":1800}` {
		t.Errorf("refund again: %s", r)
	}
	f("ErrRefundIDOtherAmount", "o1", `{"refund":"r1","amount":3999}`, 409, "conflict")
	if r := refund("r2", 6000); r != `{"order":"o1","refund":"r2","refunded":10000,"commission":0}` {
		t.Errorf("full refund: %s", r)
	}
	if r := refund("r1", 4000); r != `{"order":"o1","refund":"r1","refunded":4000,"commission":1800}` {
		t.Errorf("a refund's answer is the one it had, also after later refunds: %s", r)
	}
	x := e.call("GET", "/v1/attribution/explain?program=shop&customer=c1", sfTok, "")
	ds := x.body["decisions"].([]any)
	if len(ds) != 5 || ds[0].(map[string]any)["event"] != "refund" || ds[0].(map[string]any)["order"] != "o1" || ds[2].(map[string]any)["reason"] != "repeat_purchase" {
		t.Errorf("explain: %s", x.raw)
	}
	g := func(name, body string, status int) {
		t.Helper()
		if r := e.call("POST", "/v1/conversions", sfTok, body); r.status != status {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	g("ErrNegativeAmount", `{"program":"shop","order":"o9","customer":"c1","amount":-1}`, 422)
	g("ErrNoAmount", `{"program":"shop","order":"o9","customer":"c1"}`, 422)
	g("ErrUnknownProgram", `{"program":"nope","order":"o9","customer":"c1","amount":1}`, 422)
	g("ErrBadOrder", `{"program":"shop","order":"a b","customer":"c1","amount":1}`, 422)
	g("ErrUnknownField", `{"program":"shop","order":"o9","customer":"c1","amount":1,"coupon":1}`, 400)
	g("ErrAmountNotInteger", `{"program":"shop","order":"o9","customer":"c1","amount":1.5}`, 422)
	g("ErrOrderOtherCustomer", `{"program":"shop","order":"o1","customer":"c2","amount":1}`, 409)
	for name, body := range map[string]string{
		"ErrOrderOtherAmount":   `"amount":999999999,"currency":"CNY","product":"cvm"`,
		"ErrOrderOtherCurrency": `"amount":10000,"currency":"USD","product":"cvm"`,
		"ErrOrderOtherProduct":  `"amount":10000,"currency":"CNY","product":"lighthouse"`,
		"ErrOrderOtherPrepaid":  `"amount":10000,"currency":"CNY","product":"cvm","prepaid":false`,
	} {
		g(name, `{"program":"shop","order":"o1","customer":"c1",`+body+`}`, 409)
	}
	g("ErrAmountTooLarge", `{"program":"shop","order":"o9","customer":"c1","amount":1000000000000001}`, 422)
	g("ErrAmountMaxInt", `{"program":"shop","order":"o9","customer":"c1","amount":9223372036854775807}`, 422)
	if r := e.call("POST", "/v1/conversions", metTok, `{}`); r.status != 403 {
		t.Errorf("metrics token on a storefront route: %d", r.status)
	}
	if r := e.call("POST", "/v1/conversions", "", `{}`); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	if r := e.call("POST", "/v1/bind", adminTok, `{"program":"shop","customer":"c9","event":"signup"}`); r.status != 422 {
		t.Errorf("bad event: %d", r.status)
	}
}

// TestEraseCustomer: DELETE /v1/customers/{id} forgets the customer
// (attribution, explain, fingerprints); its order keeps its decision and
// amounts, answered again as before to the same order, and refunds go on;
// deleting again is fine.
func TestEraseCustomer(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	e.call("PUT", "/v1/customers/c1", sfTok, `{"fingerprints":{"emails":["c1@example.net"]}}`)
	e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	r := e.convert("o1", "c1", 10000, "")
	want := strings.TrimSpace(r.raw)
	if r.status != 200 || r.body["commission"] != 3000.0 {
		t.Fatalf("conversion: %s", r.raw)
	}
	refund := func(id string, amount int64) result {
		t.Helper()
		return e.call("POST", "/v1/conversions/o1/refunds", sfTok, fmt.Sprintf(`{"refund":%q,"amount":%d}`, id, amount))
	}
	refund("r1", 4000)

	for _, token := range []string{sfTok, adminTok} { // the second time: nothing left, still 204
		if d := e.call("DELETE", "/v1/customers/c1", token, ""); d.status != 204 || d.raw != "" {
			t.Fatalf("delete: %d %s", d.status, d.raw)
		}
	}
	if a := e.call("GET", "/v1/attribution?program=shop&customer=c1", sfTok, ""); a.status != 200 || a.body["attributed"] != false {
		t.Errorf("attribution after erasure: %s", a.raw)
	}
	if x := e.call("GET", "/v1/attribution/explain?program=shop&customer=c1", sfTok, ""); x.status != 200 ||
		strings.TrimSpace(x.raw) != `{"decisions":[]}` {
		t.Errorf("explain after erasure: %s", x.raw)
	}
	if _, err := e.st.Customer(context.Background(), "c1"); err == nil {
		t.Error("the customer record is kept")
	}

	// The order again: its decision, not a new one (the customer's record
	// is gone, so a new decision would differ: no association), and no
	// customer made again.
	if again := e.convert("o1", "c1", 10000, ""); strings.TrimSpace(again.raw) != want {
		t.Errorf("the order again after erasure:\n got %d %s\nwant %s", again.status, again.raw, want)
	}
	if _, err := e.st.Customer(context.Background(), "c1"); err == nil {
		t.Error("the order again made the customer again")
	}
	for name, body := range map[string]string{
		"ErrOtherCustomer": `{"program":"shop","order":"o1","customer":"c2","amount":10000,"currency":"CNY","product":"cvm","prepaid":true}`,
		"ErrOtherAmount":   `{"program":"shop","order":"o1","customer":"c1","amount":9999,"currency":"CNY","product":"cvm","prepaid":true}`,
	} {
		if r := e.call("POST", "/v1/conversions", sfTok, body); r.status != 409 {
			t.Errorf("%s after erasure: %d %s", name, r.status, r.raw)
		}
	}
	// Refunds: the one made before answers as before; a new one is
	// applied to the order.
	if r := refund("r1", 4000); strings.TrimSpace(r.raw) != `{"order":"o1","refund":"r1","refunded":4000,"commission":1800}` {
		t.Errorf("refund again after erasure: %s", r.raw)
	}
	if r := refund("r2", 1000); strings.TrimSpace(r.raw) != `{"order":"o1","refund":"r2","refunded":5000,"commission":1500}` {
		t.Errorf("a new refund after erasure: %s", r.raw)
	}
	// The id is a new customer now: a new order of theirs is decided anew.
	if r := e.convert("o2", "c1", 5000, ""); r.status != 200 || r.body["reason"] != "no_association" {
		t.Errorf("a new order of the id used again: %s", r.raw)
	}

	if r := e.call("DELETE", "/v1/customers/a%20b", sfTok, ""); r.status != 422 {
		t.Errorf("a bad id: %d %s", r.status, r.raw)
	}
	if r := e.call("DELETE", "/v1/customers/c1", "", ""); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	if r := e.call("DELETE", "/v1/customers/c1", metTok, ""); r.status != 403 {
		t.Errorf("metrics token: %d", r.status)
	}
}

func TestTokenAttribution(t *testing.T) {
	e := newEnv(t, false)
	good := e.token("shop", "bob", 30)
	r := e.call("GET", "/v1/attribution?token="+good, sfTok, "")
	if r.body["attributed"] != true || r.body["promoter"] != "bob" || r.body["click"] != "c1-bob" {
		t.Errorf("valid token: %s", r.raw)
	}
	r = e.call("GET", "/v1/attribution?program=shop&token="+tamper(good), sfTok, "")
	if r.body["attributed"] != false || r.body["reason"] != "token_invalid" {
		t.Errorf("bad token: %s", r.raw)
	}
	if r := e.call("GET", "/v1/attribution?program=shop", sfTok, ""); r.status != 400 {
		t.Errorf("no customer, no token: %d", r.status)
	}
}

// TestReadsDegradeHonestly: with the store down, the read endpoints answer
// 503, never "not attributed".
func TestReadsDegradeHonestly(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	e.st.Close()
	for _, p := range []string{"/v1/attribution?program=shop&customer=c1", "/v1/attribution/explain?program=shop&customer=c1"} {
		if r := e.call("GET", p, sfTok, ""); r.status != 503 || r.errCode() != "unavailable" || strings.Contains(r.raw, "attributed") {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	if r := e.convert("o1", "c1", 100, ""); r.status != 503 {
		t.Errorf("conversion with the store down: %d %s", r.status, r.raw)
	}
}

// FuzzStorefrontBodies: any body sent to bind, conversions or customers is
// answered with a status from the contract (200, 400, 409, 422), never a
// panic or a 500, and the store keeps working after it.
func FuzzStorefrontBodies(f *testing.F) {
	f.Add(0, []byte(`{"program":"shop","customer":"c1","event":"register","token":"1.k1.AAAA.AAAA"}`))
	f.Add(1, []byte(`{"program":"shop","order":"o1","customer":"c1","amount":100,"currency":"CNY","product":"cvm","prepaid":true}`))
	f.Add(2, []byte(`{"paid":true,"fingerprints":{"ips":["::1"],"phones":["+1 (555) 010-0000"]}}`))
	f.Add(1, []byte(`{"program":"shop","order":"o1","customer":"c1","amount":1e3}`))
	f.Add(3, []byte(`{"refund":"r1","amount":100}`))
	f.Add(3, []byte(`{"refund":"r1","amount":99}`))
	f.Add(3, []byte(`{"refund":"","amount":9223372036854775807}`))
	e := newEnv(f, false) // one server for the whole run
	e.seedStorefront()
	e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	e.convert("o1", "c1", 10000, "")
	f.Fuzz(func(t *testing.T, route int, body []byte) {
		e.t = t
		method, path := "POST", "/v1/bind"
		switch route % 4 {
		case 1:
			path = "/v1/conversions"
		case 2:
			method, path = "PUT", "/v1/customers/c1"
		case 3:
			path = "/v1/conversions/o1/refunds"
		}
		r := e.call(method, path, sfTok, string(body))
		switch r.status {
		case 200, 400, 409, 422:
		default:
			t.Fatalf("%s %s %q: %d %s", method, path, body, r.status, r.raw)
		}
		if r.status != 200 && r.errCode() == "" {
			t.Fatalf("error without a JSON error body: %s", r.raw)
		}
	})
}

// TestBindClickLimits: a click token is a bearer credential with bounds: it
// binds binds_per_click customers, only while its link exists, and only if
// its lifetime is one a program gives.
func TestBindClickLimits(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	f := func(name, customer, body string, associated bool, reason string) {
		t.Helper()
		r := e.bind(customer, "register", body)
		if r.status != 200 || r.body["associated"] != associated || r.body["reason"] != reason {
			t.Errorf("%s: %d %s, want associated=%v reason %q", name, r.status, r.raw, associated, reason)
		}
	}
	shared := e.token("shop", "bob", 30)
	f("First", "c1", tok(shared), true, "")
	f("SameCustomerAgain", "c1", tok(shared), true, "")
	f("SameCustomerLogin", "c1", tok(shared)+`,"customer_info":{"paid":false}`, true, "")
	f("ErrClickUsed", "c2", tok(shared), false, "click_used")
	// A rejected bind uses nothing: an agent-served customer does not take
	// the click's one use.
	fresh := e.token("shop", "bob", 30)
	f("ErrAgentServed", "c3", tok(fresh)+`,"customer_info":{"agent_served":true}`, false, "agent_served")
	f("AfterRejected", "c4", tok(fresh), true, "")

	// binds_per_click 3: three customers, not a fourth.
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, strings.Replace(programBody, `"cookie_days"`, `"binds_per_click":3,"cookie_days"`, 1)); r.status != 200 || r.body["binds_per_click"] != 3.0 {
		t.Fatalf("program: %s", r.raw)
	}
	three := e.token("shop", "bob", 30)
	for _, c := range []string{"d1", "d2", "d3"} {
		f("Within"+c, c, tok(three), true, "")
	}
	f("ErrPastThree", "d4", tok(three), false, "click_used")
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, strings.Replace(programBody, `"cookie_days"`, `"binds_per_click":0.5,"cookie_days"`, 1)); r.status != 422 {
		t.Errorf("fractional binds_per_click: %s", r.raw)
	}

	// A deleted link's token binds no one, also not by the visitor record.
	gone := e.token("shop", "carol", 30)
	if r := e.call("DELETE", "/v1/admin/links/l-carol", adminTok, ""); r.status != 204 {
		t.Fatalf("delete link: %d %s", r.status, r.raw)
	}
	f("ErrDeletedLink", "e1", tok(gone), false, "no_click")
	if r := e.call("GET", "/v1/attribution?token="+gone, sfTok, ""); r.body["attributed"] != false || r.body["reason"] != "no_click" {
		t.Errorf("a deleted link's token says nothing: %s", r.raw)
	}

	// A validly signed token whose expiry is 100 years after its issue.
	now := e.clock.Now()
	long := cookie.Token{Program: "shop", Promoter: "bob", Link: "l-bob", Click: "c-long", Issued: now, Expires: now.Add(100 * 365 * 24 * time.Hour)}
	b, err := e.signer.AppendToken(nil, &long)
	if err != nil {
		t.Fatal(err)
	}
	f("ErrCenturyToken", "e2", tok(string(b)), false, "no_click")
}

// TestAssociationEnds: agent-served ends every association; a conversion
// or a bind that finds customer and holder to be the same person ends it.
// Reads say so, and the decision log too.
func TestAssociationEnds(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	attr := func(customer string) result {
		t.Helper()
		return e.call("GET", "/v1/attribution?program=shop&customer="+customer, sfTok, "")
	}
	e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	if r := e.call("PUT", "/v1/customers/c1", sfTok, `{"agent_served":true}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	if a := attr("c1"); a.body["attributed"] != false || a.body["reason"] != "agent_served" {
		t.Errorf("after agent_served: %s", a.raw)
	}
	x := e.call("GET", "/v1/attribution/explain?program=shop&customer=c1", sfTok, "")
	if d := x.body["decisions"].([]any)[0].(map[string]any); d["outcome"] != "ended" || d["reason"] != "agent_served" || d["event"] != "customer" || d["promoter"] != "bob" {
		t.Errorf("explain: %s", x.raw)
	}

	// alice holds c2; at checkout c2 turns out to share alice's phone,
	// written another way.
	e.bind("c2", "register", tok(e.token("shop", "alice", 30)))
	r := e.convert("o1", "c2", 10000, `,"fingerprints":{"phones":["+86 138 0000 0000"]}`)
	if r.body["reason"] != "same_person" {
		t.Fatalf("conversion: %s", r.raw)
	}
	if a := attr("c2"); a.body["attributed"] != false || a.body["reason"] != "same_person" {
		t.Errorf("after a same-person order: %s", a.raw)
	}

	// bob holds c3; a bind tells that c3 shares alice's IP... that is
	// another promoter; then that c3 shares bob's own fingerprint: bob's
	// association ends and carol's click takes the customer.
	if r := e.call("PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"active","fingerprints":{"emails":["bob@example.com"]}}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	e.bind("c3", "login", tok(e.token("shop", "bob", 30)))
	r = e.call("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"c3","event":"login",`+tok(e.token("shop", "carol", 30))+
		`,"customer_info":{"fingerprints":{"emails":["BOB@example.com"]}}}`)
	if r.body["associated"] != true || r.body["promoter"] != "carol" {
		t.Errorf("carol after bob's same-person end: %s", r.raw)
	}
	ds := e.call("GET", "/v1/attribution/explain?program=shop&customer=c3", sfTok, "").body["decisions"].([]any)
	if len(ds) != 3 || ds[1].(map[string]any)["outcome"] != "ended" || ds[1].(map[string]any)["promoter"] != "bob" || ds[0].(map[string]any)["outcome"] != "created" {
		t.Errorf("decisions: %v", ds)
	}
}

// TestBindReplay: the same bind request again (a storefront retrying after
// a timeout) gets the same answer, not "kept" or "renewed" as a second
// decision.
func TestBindReplay(t *testing.T) {
	e := newEnv(t, false)
	e.seedStorefront()
	body := tok(e.token("shop", "bob", 30))
	first := e.bind("c1", "register", body)
	again := e.bind("c1", "register", body)
	if first.raw != again.raw || first.body["associated"] != true {
		t.Errorf("first %s, again %s", first.raw, again.raw)
	}
	if ds := e.call("GET", "/v1/attribution/explain?program=shop&customer=c1", sfTok, "").body["decisions"].([]any); len(ds) != 1 {
		t.Errorf("one decision for one request sent twice: %v", ds)
	}
}
