package api

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// entries are the items of a ledger answer, as JSON objects.
func items(t *testing.T, r result) []map[string]any {
	t.Helper()
	raw, _ := r.body["items"].([]any)
	out := make([]map[string]any, len(raw))
	for i, it := range raw {
		out[i], _ = it.(map[string]any)
	}
	return out
}

func (e *env) advance(d string) {
	e.t.Helper()
	if r := e.call("POST", "/v1/admin/test-clock", adminTok, `{"advance":"`+d+`"}`); r.status != 200 {
		e.t.Fatalf("advance: %s", r.raw)
	}
}

func (e *env) balance(promoter string) map[string]any {
	e.t.Helper()
	r := e.call("GET", "/v1/admin/promoters/"+promoter+"/balance?program=shop", adminTok, "")
	if r.status != 200 {
		e.t.Fatalf("balance: %d %s", r.status, r.raw)
	}
	b, _ := r.body["balances"].(map[string]any)
	cny, _ := b["CNY"].(map[string]any)
	return cny
}

// TestLedgerMonth walks a month of DESIGN's ledger: accruals held for the
// refund window, a settlement run, a refund after the statement becoming a
// negative entry on the next one, min payout rolling forward, marking paid,
// the CSV, adjustments.
func TestLedgerMonth(t *testing.T) {
	e := newEnv(t, true)
	e.seedStorefront()
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, `{"cookie_days":30,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.3,"standard":0.25},"hold_days":30,"min_payout":1000}`); r.status != 200 || r.body["hold_days"] != 30.0 || r.body["min_payout"] != 1000.0 {
		t.Fatalf("program: %d %s", r.status, r.raw)
	}
	e.bind("c1", "register", tok(e.token("shop", "bob", 30)))
	if r := e.convert("o1", "c1", 10000, ""); r.body["commission"] != 3000.0 {
		t.Fatalf("conversion: %s", r.raw)
	}
	e.bind("c2", "register", tok(e.token("shop", "carol", 30)))
	e.convert("o2", "c2", 1000, "") // 300: under the minimum payout

	r := e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob", adminTok, "")
	es := items(t, r)
	if r.status != 200 || len(es) != 1 || es[0]["id"] != "acc:o1" || es[0]["kind"] != "accrual" || es[0]["amount"] != 3000.0 ||
		es[0]["status"] != "pending" || es[0]["order"] != "o1" || es[0]["customer"] != "c1" || es[0]["currency"] != "CNY" {
		t.Fatalf("ledger: %d %s", r.status, r.raw)
	}
	if b := e.balance("bob"); b["pending"] != 3000.0 || b["available"] != 0.0 {
		t.Errorf("balance before the hold ends: %v", b)
	}
	// Retrying the order writes no second entry.
	e.convert("o1", "c1", 10000, "")
	if es := items(t, e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob", adminTok, "")); len(es) != 1 {
		t.Errorf("a retried order has %d entries", len(es))
	}
	// Nothing is due before the hold ends.
	if r := e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop"}`); r.status != 201 || r.raw != "{\"statements\":[]}\n" {
		t.Errorf("settlement inside the hold: %d %s", r.status, r.raw)
	}
	if r := e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop","through":"2999-01-01T00:00:00Z"}`); r.status != 422 {
		t.Errorf("through in the future: %d %s", r.status, r.raw)
	}

	e.advance("744h") // 31 days
	if b := e.balance("bob"); b["available"] != 3000.0 || b["pending"] != 0.0 {
		t.Errorf("balance after the hold: %v", b)
	}
	r = e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop"}`)
	sts, _ := r.body["statements"].([]any)
	if r.status != 201 || len(sts) != 1 {
		t.Fatalf("settlement: %d %s (carol's 300 is under the 1000 minimum)", r.status, r.raw)
	}
	st := sts[0].(map[string]any)
	id, _ := st["id"].(string)
	if st["promoter"] != "bob" || st["amount"] != 3000.0 || st["entries"] != 1.0 || st["status"] != "open" || st["currency"] != "CNY" {
		t.Errorf("statement: %v", st)
	}
	if again := e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop"}`); again.raw != "{\"statements\":[]}\n" {
		t.Errorf("a second run settles again: %s", again.raw)
	}
	if b := e.balance("bob"); b["settled"] != 3000.0 || b["available"] != 0.0 {
		t.Errorf("balance once settled: %v", b)
	}

	// A refund after the statement: a negative entry, deducted next time.
	if r := e.call("POST", "/v1/conversions/o1/refunds", sfTok, `{"refund":"rf1","amount":5000}`); r.status != 200 || r.body["commission"] != 1500.0 {
		t.Fatalf("refund: %s", r.raw)
	}
	es = items(t, e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob", adminTok, ""))
	if len(es) != 2 || es[0]["id"] != "rev:o1:rf1" || es[0]["amount"] != -1500.0 || es[0]["refund"] != "rf1" || es[1]["status"] != "settled" || es[1]["statement"] != id {
		t.Errorf("ledger after the refund: %v", es)
	}
	if es := items(t, e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob&status=settled", adminTok, "")); len(es) != 1 || es[0]["id"] != "acc:o1" {
		t.Errorf("status=settled: %v", es)
	}

	// Paid with a reference, idempotent; another reference is a conflict.
	r = e.call("POST", "/v1/admin/statements/"+id+"/paid", adminTok, `{"reference":"bank-2027-02-001"}`)
	if r.status != 200 || r.body["status"] != "paid" || r.body["reference"] != "bank-2027-02-001" || r.body["paid_at"] == nil {
		t.Errorf("paid: %d %s", r.status, r.raw)
	}
	if r2 := e.call("POST", "/v1/admin/statements/"+id+"/paid", adminTok, `{"reference":"bank-2027-02-001"}`); r2.status != 200 || r2.raw != r.raw {
		t.Errorf("paid again: %d %s", r2.status, r2.raw)
	}
	if r := e.call("POST", "/v1/admin/statements/"+id+"/paid", adminTok, `{"reference":"other"}`); r.status != 409 {
		t.Errorf("paid with another reference: %d %s", r.status, r.raw)
	}
	if r := e.call("POST", "/v1/admin/statements/st_0000000000000000_shop/paid", adminTok, `{"reference":"x"}`); r.status != 404 {
		t.Errorf("unknown statement: %d %s", r.status, r.raw)
	}
	if b := e.balance("bob"); b["paid"] != 3000.0 || b["pending"] != -1500.0 {
		t.Errorf("balance once paid, with the refund pending: %v", b)
	}

	// The statement's entries, as JSON and as CSV.
	if r := e.call("GET", "/v1/admin/statements/"+id+"/entries", adminTok, ""); len(items(t, r)) != 1 || items(t, r)[0]["status"] != "paid" {
		t.Errorf("entries: %s", r.raw)
	}
	req := fmt.Sprintf("http://api/v1/admin/statements/%s/entries", id)
	csvResp := e.get(req, adminTok, "text/csv")
	rows, err := csv.NewReader(strings.NewReader(csvResp)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "statement" || rows[1][4] != "acc:o1" || rows[1][6] != "3000" || rows[1][7] != "o1" {
		t.Errorf("CSV: %v %q", err, csvResp)
	}

	// An adjustment: 201, again 200 with the same entry, other values 409.
	adj := `{"id":"goodwill-1","program":"shop","promoter":"carol","amount":800,"currency":"CNY","reason":"late tracking"}`
	a1 := e.call("POST", "/v1/admin/ledger/adjustments", adminTok, adj)
	a2 := e.call("POST", "/v1/admin/ledger/adjustments", adminTok, adj)
	if a1.status != 201 || a1.body["id"] != "adj:goodwill-1" || a1.body["kind"] != "adjustment" || a2.status != 200 || a2.raw != a1.raw {
		t.Errorf("adjustment: %d %s / again %d %s", a1.status, a1.raw, a2.status, a2.raw)
	}
	if r := e.call("POST", "/v1/admin/ledger/adjustments", adminTok, strings.Replace(adj, "800", "900", 1)); r.status != 409 {
		t.Errorf("adjustment with another amount: %d %s", r.status, r.raw)
	}
	if r := e.call("POST", "/v1/admin/ledger/adjustments", adminTok, strings.Replace(adj, "800", "0", 1)); r.status != 422 {
		t.Errorf("adjustment of 0: %d %s", r.status, r.raw)
	}
	// Carol's 300 + 800 = 1100 reach the minimum once the hold ends.
	e.advance("744h")
	r = e.call("POST", "/v1/admin/statements", adminTok, `{"program":"shop"}`)
	sts, _ = r.body["statements"].([]any)
	var got []string
	for _, s := range sts {
		m := s.(map[string]any)
		got = append(got, fmt.Sprintf("%s:%v", m["promoter"], m["amount"]))
	}
	// Bob's -1500 is not positive: no statement, it rolls forward.
	if len(got) != 1 || got[0] != "carol:1100" {
		t.Errorf("second run: %v (%s)", got, r.raw)
	}
	if r := e.call("GET", "/v1/admin/statements?program=shop", adminTok, ""); len(items(t, r)) != 2 || items(t, r)[0]["promoter"] != "carol" {
		t.Errorf("statements newest first: %s", r.raw)
	}
	if r := e.call("GET", "/v1/admin/statements?program=shop&promoter=bob", adminTok, ""); len(items(t, r)) != 1 {
		t.Errorf("bob's statements: %s", r.raw)
	}
	if r := e.call("GET", "/v1/admin/statements/"+id, adminTok, ""); r.body["id"] != id {
		t.Errorf("one statement: %s", r.raw)
	}
}

// TestLedgerPaging: limit and cursor walk every entry once, newest first.
func TestLedgerPaging(t *testing.T) {
	e := newEnv(t, true)
	e.seedStorefront()
	for i := range 7 {
		e.call("POST", "/v1/admin/ledger/adjustments", adminTok, fmt.Sprintf(`{"id":"a%d","program":"shop","promoter":"bob","amount":%d,"currency":"CNY","reason":"r"}`, i, i+1))
		e.advance("1s")
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		r := e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob&limit=3&cursor="+cursor, adminTok, "")
		if r.status != 200 || pages > 5 {
			t.Fatalf("page: %d %s", r.status, r.raw)
		}
		for _, it := range items(t, r) {
			seen = append(seen, it["id"].(string))
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(seen, ",") != "adj:a6,adj:a5,adj:a4,adj:a3,adj:a2,adj:a1,adj:a0" {
		t.Errorf("pages: %v", seen)
	}
	for _, q := range []string{"limit=0", "limit=1001", "cursor=nonsense", "status=owed", "from=yesterday"} {
		if r := e.call("GET", "/v1/admin/ledger?program=shop&promoter=bob&"+q, adminTok, ""); r.status/100 != 4 {
			t.Errorf("%s: %d %s", q, r.status, r.raw)
		}
	}
	if r := e.call("GET", "/v1/admin/ledger?program=nope&promoter=bob", adminTok, ""); r.status != 422 {
		t.Errorf("unknown program: %d", r.status)
	}
}

// get is a GET with an Accept header; it returns the body.
func (e *env) get(url, token, accept string) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", accept)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); accept == "text/csv" && !strings.HasPrefix(ct, "text/csv") {
		e.t.Errorf("Content-Type %q for Accept: text/csv", ct)
	}
	return string(b)
}
