//go:build !race

// A fault test of the ledger: it runs the real binary (built without the
// race detector) through twenty SIGKILLs, in the test command's second,
// uninstrumented pass, like the durable path's.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// TestKill9Ledger: storefronts convert and refund and a settlement run
// goes on every few hundred milliseconds while the real binary is killed
// with SIGKILL twenty times and started again on the same data. Most
// requests cut by a kill are sent again, unchanged, until answered; some
// are given up, as a storefront that stopped retrying, leaving their
// decision (if it was stored) to the ledger's repair. Afterwards, past the
// repair's grace and one settlement run later, the ledger read from the API
// holds exactly one entry per decision that moved money, of its amount,
// and nothing else, and no entry is on two statements.
func TestKill9Ledger(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; about 10 s a store")
	}
	t.Run("Embedded", func(t *testing.T) {
		data := t.TempDir()
		kill9Ledger(t, []string{"--data-dir", data}, func() store.Store {
			st, err := embedded.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
		kill9Ledger(t, []string{"--data-dir", t.TempDir(), "--redis-url", srv.URL()}, func() store.Store {
			st, err := redisstore.New(redisstore.Config{URL: srv.URL()})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
}

// ledgerClient is the storefronts' and the settlement job's client. Its
// timeout only bounds a request the kill left without an answer.
var ledgerClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// ask sends a request until refgate answers with a status other than 503,
// through kills and restarts. When an attempt gets no answer, the request
// is given up with probability giveUp (only then: once retried, it is
// retried until answered), and answered is false.
func ask(api, token, method, path, body string, giveUp float64) (status int, raw []byte, answered bool, err error) {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(method, "http://"+api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := ledgerClient.Do(req)
		if err == nil {
			raw, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 {
				return resp.StatusCode, raw, true, nil
			}
		} else if attempt == 0 && rand.Float64() < giveUp {
			return 0, nil, false, nil
		}
		if attempt > 3000 {
			return 0, nil, false, fmt.Errorf("%s %s %s: no answer after %d attempts: %v", method, path, body, attempt, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getJSON reads an admin GET into out, failing the test on anything but 200.
func getJSON(t *testing.T, api, path string, out any) {
	t.Helper()
	s, raw, _, err := ask(api, adminTok, "GET", path, "", 0)
	if err != nil || s != 200 {
		t.Fatalf("GET %s: %d %s %v", path, s, raw, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, raw)
	}
}

type ledgerEntry struct {
	ID        string `json:"id"`
	Promoter  string `json:"promoter"`
	Kind      string `json:"kind"`
	Amount    int64  `json:"amount"`
	Order     string `json:"order"`
	Refund    string `json:"refund"`
	Statement string `json:"statement"`
}

type ledgerStatement struct {
	ID       string `json:"id"`
	Promoter string `json:"promoter"`
	Currency string `json:"currency"`
	Entries  int    `json:"entries"`
	Amount   int64  `json:"amount"`
}

type conversionReply struct {
	Order      string `json:"order"`
	Eligible   bool   `json:"eligible"`
	Promoter   string `json:"promoter"`
	Commission int64  `json:"commission"`
}

type refundReply struct {
	Refunded   int64 `json:"refunded"`
	Commission int64 `json:"commission"`
}

// givenUp is a conversion or refund whose storefront stopped retrying:
// whether it was decided is known only afterwards.
type givenUp struct {
	customer, order, refund string // refund "" for a conversion
	promoter                string // the customer's, "" when unbound
	path, body              string
	before                  int64 // a refund's: the commission before it
}

// ledgerPromoters are the kill test's promoters, each with a link of the
// same name; every seventh customer is bound to none.
var ledgerPromoters = []string{"lp0", "lp1", "lp2", "lp3", "lp4"}

func kill9Ledger(t *testing.T, args []string, open func() store.Store) {
	k := newKillable(t, append(args, "--test-clock", "--shutdown-timeout", "3s"))
	api := remoteAPI(k.api)
	if s, b := callAPI(t, api, "PUT", "/v1/admin/programs/shop", `{"cookie_days":7,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.3,"standard":0.25},"hold_days":0,"min_payout":0}`); s != 200 {
		t.Fatalf("program: %d %v", s, b)
	}
	for _, p := range ledgerPromoters {
		if s, b := callAPI(t, api, "PUT", "/v1/admin/promoters/"+p, `{"status":"active"}`); s != 200 {
			t.Fatalf("promoter: %d %v", s, b)
		}
		if s, b := callAPI(t, api, "POST", "/v1/admin/links", `{"program":"shop","promoter":"`+p+`","destination":"https://shop.example.com/","code":"`+p+`"}`); s != 201 {
			t.Fatalf("link: %d %v", s, b)
		}
	}
	const most = 20000 // customers at most; the work stops after the kills
	now := time.Now()
	tokenOf := func(i int) string {
		p := ledgerPromoters[i%len(ledgerPromoters)]
		b, err := testSigner.AppendToken(nil, &cookie.Token{Program: "shop", Promoter: p, Link: p,
			Click: fmt.Sprint("lk-", i), Issued: now, Expires: now.Add(7 * 24 * time.Hour)})
		if err != nil {
			panic(err)
		}
		return string(b)
	}

	var (
		mu          sync.Mutex
		problems    []string
		want        = map[string]ledgerEntry{} // entry id → the entry the answers call for
		conversions []conversionReply          // answered
		refunds     int                        // answered
		cuts        int                        // answered with a commission cut
		gaveUp      []givenUp
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	expect := func(e ledgerEntry) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := want[e.ID]; ok {
			problems = append(problems, "two decisions call for entry "+e.ID)
		}
		want[e.ID] = e
	}

	// The storefronts: eight workers, each customer's bind, order (sent
	// twice for some, as a storefront unsure of the first answer would)
	// and up to two refunds in turn.
	var next atomic.Int64
	var enough atomic.Bool // killed often enough: finish the customers begun
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= most || enough.Load() {
					return
				}
				c := fmt.Sprint("lc-", i)
				promoter := ""
				if i%7 != 6 {
					promoter = ledgerPromoters[i%len(ledgerPromoters)]
					body := `{"program":"shop","customer":"` + c + `","event":"register","token":"` + tokenOf(i) + `"}`
					s, raw, _, err := ask(k.api, sfTok, "POST", "/v1/bind", body, 0)
					var b struct {
						Associated bool   `json:"associated"`
						Promoter   string `json:"promoter"`
					}
					json.Unmarshal(raw, &b)
					if err != nil || s != 200 || !b.Associated || b.Promoter != promoter {
						fail("bind %s: %d %s %v", c, s, raw, err)
						continue
					}
				}
				amount := int64(4000 + i*373%12000)
				order := "lo-" + c
				body := fmt.Sprintf(`{"program":"shop","order":%q,"customer":%q,"amount":%d,"currency":"CNY","product":"cvm","prepaid":true}`, order, c, amount)
				var conv conversionReply
				answered := false
				for n := 0; n < 1+boolInt(i%5 == 0); n++ {
					s, raw, ok, err := ask(k.api, sfTok, "POST", "/v1/conversions", body, 0.5)
					if err != nil {
						fail("%v", err)
						break
					}
					if !ok {
						continue // given up; the second send, if any, may still answer
					}
					var a conversionReply
					json.Unmarshal(raw, &a)
					if s != 200 || a.Eligible != (promoter != "") || a.Promoter != promoter || (promoter != "" && a.Commission <= 0) {
						fail("conversion %s: %d %s", order, s, raw)
					}
					if answered && a != conv {
						fail("conversion %s answered %+v, then %+v", order, conv, a)
					}
					conv, answered = a, true
				}
				if !answered {
					mu.Lock()
					gaveUp = append(gaveUp, givenUp{customer: c, order: order, promoter: promoter, path: "/v1/conversions", body: body})
					mu.Unlock()
					continue
				}
				mu.Lock()
				conversions = append(conversions, conv)
				mu.Unlock()
				if conv.Commission > 0 {
					expect(ledgerEntry{ID: attribution.AccrualID(order), Promoter: promoter, Kind: "accrual", Amount: conv.Commission, Order: order})
				}
				left := conv.Commission
				for r := 0; r < i%3; r++ {
					refund := fmt.Sprint("lr", r)
					path := "/v1/conversions/" + order + "/refunds"
					rbody := fmt.Sprintf(`{"refund":%q,"amount":%d}`, refund, amount/(5-int64(r)*2))
					s, raw, ok, err := ask(k.api, sfTok, "POST", path, rbody, 0.5)
					if err != nil {
						fail("%v", err)
						break
					}
					if !ok {
						mu.Lock()
						gaveUp = append(gaveUp, givenUp{customer: c, order: order, refund: refund, promoter: promoter, path: path, body: rbody, before: left})
						mu.Unlock()
						break // what is left of the commission is unknown now
					}
					var a refundReply
					json.Unmarshal(raw, &a)
					if s != 200 || a.Commission > left || a.Commission < 0 {
						fail("refund %s of %s: %d %s (commission %d before)", refund, order, s, raw, left)
						break
					}
					mu.Lock()
					refunds++
					mu.Unlock()
					if cut := left - a.Commission; cut > 0 {
						mu.Lock()
						cuts++
						mu.Unlock()
						expect(ledgerEntry{ID: attribution.ReversalID(order, refund), Promoter: promoter, Kind: "reversal", Amount: -cut, Order: order, Refund: refund})
					}
					left = a.Commission
				}
			}
		}()
	}

	// The settlement job: a run every 100 to 300 ms, given up now and
	// then as a cron job killed with the instance would be, and a ledger
	// read (which repairs too) in between.
	stopSettle := make(chan struct{})
	var settleRuns, settleGivenUp, made atomic.Int64
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		for n := 0; ; n++ {
			select {
			case <-stopSettle:
				return
			case <-time.After(time.Duration(100+rand.IntN(200)) * time.Millisecond):
			}
			s, raw, ok, err := ask(k.api, adminTok, "POST", "/v1/admin/statements", `{"program":"shop"}`, 0.25)
			switch {
			case err != nil:
				fail("%v", err)
			case !ok:
				settleGivenUp.Add(1)
			case s != 201:
				fail("settlement: %d %s", s, raw)
			default:
				var a struct{ Statements []ledgerStatement }
				json.Unmarshal(raw, &a)
				settleRuns.Add(1)
				made.Add(int64(len(a.Statements)))
			}
			p := ledgerPromoters[n%len(ledgerPromoters)]
			if s, raw, ok, err := ask(k.api, adminTok, "GET", "/v1/admin/ledger?program=shop&promoter="+p+"&limit=10", "", 0.25); err != nil || ok && s != 200 {
				fail("ledger read: %d %s %v", s, raw, err)
			}
		}
	}()

	// The killer: twenty SIGKILLs, 50 to 400 ms apart.
	start := time.Now()
	for k.kills < 20 {
		time.Sleep(time.Duration(50+rand.IntN(351)) * time.Millisecond)
		k.kill()
	}
	killing := time.Since(start)
	enough.Store(true)
	wg.Wait()
	close(stopSettle)
	<-settled
	customers := int(min(next.Load(), most))
	if customers >= most {
		t.Errorf("all %d customers were done before the 20th kill: the test needs more of them", most)
	}
	for _, p := range problems {
		t.Error(p)
	}
	problems = nil

	// Past the repair's grace (a minute), one settlement run: it writes
	// the entries of decisions whose requests were given up before theirs.
	if s, b := callAPI(t, api, "POST", "/v1/admin/test-clock", `{"advance":"2m"}`); s != 200 {
		t.Fatalf("test clock: %d %v", s, b)
	}
	var final struct{ Statements []ledgerStatement }
	s, raw, _, err := ask(k.api, adminTok, "POST", "/v1/admin/statements", `{"program":"shop"}`, 0)
	if err != nil || s != 201 || json.Unmarshal(raw, &final) != nil {
		t.Fatalf("final settlement: %d %s %v", s, raw, err)
	}
	// The repair logs each mark of a stored decision it takes, whether
	// or not the entry was there already (a given-up replay's mark).
	repaired := strings.Count(k.logs.String(), "ledger entry repaired")

	// The ledger as the API has it, every promoter's, every page.
	got := map[string]ledgerEntry{}
	sums := map[string]int64{}
	unsettled := map[string]int64{}
	for _, p := range ledgerPromoters {
		cursor := ""
		for pages := 0; ; pages++ {
			var page struct {
				Items      []ledgerEntry `json:"items"`
				NextCursor string        `json:"next_cursor"`
			}
			getJSON(t, k.api, "/v1/admin/ledger?program=shop&promoter="+p+"&limit=500&cursor="+url.QueryEscape(cursor), &page)
			for _, e := range page.Items {
				if _, ok := got[e.ID]; ok {
					t.Errorf("entry %s listed twice", e.ID)
				}
				if e.Promoter != p {
					t.Errorf("entry %s of %s in %s's ledger", e.ID, e.Promoter, p)
				}
				got[e.ID] = e
				sums[p] += e.Amount
				if e.Statement == "" {
					unsettled[p] += e.Amount
				}
			}
			if page.NextCursor == "" {
				break
			}
			if pages > 1000 {
				t.Fatal("the ledger's pages do not end")
			}
			cursor = page.NextCursor
		}
	}
	balances := map[string]int64{}
	for _, p := range ledgerPromoters {
		var b struct {
			Balances map[string]attribution.Balance `json:"balances"`
		}
		getJSON(t, k.api, "/v1/admin/promoters/"+p+"/balance?program=shop", &b)
		for cur, x := range b.Balances {
			if cur != "CNY" {
				t.Errorf("%s has a balance in %s", p, cur)
			}
			balances[p] += x.Pending + x.Available + x.Settled + x.Paid
		}
	}

	// Every statement and its entries: each entry on one at most, each
	// statement's amount the sum of its entries.
	onStatement := map[string]string{}
	var statements []ledgerStatement
	for cursor, pages := "", 0; ; pages++ {
		var page struct {
			Items      []ledgerStatement `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		getJSON(t, k.api, "/v1/admin/statements?program=shop&limit=200&cursor="+url.QueryEscape(cursor), &page)
		statements = append(statements, page.Items...)
		if page.NextCursor == "" {
			break
		}
		if pages > 1000 {
			t.Fatal("the statements' pages do not end")
		}
		cursor = page.NextCursor
	}
	seenStatement := map[string]bool{}
	for _, st := range statements {
		if seenStatement[st.ID] {
			t.Errorf("statement %s listed twice", st.ID)
		}
		seenStatement[st.ID] = true
		var page struct {
			Items []ledgerEntry `json:"items"`
		}
		getJSON(t, k.api, "/v1/admin/statements/"+st.ID+"/entries", &page)
		var sum int64
		for _, e := range page.Items {
			if other, ok := onStatement[e.ID]; ok {
				t.Errorf("entry %s is on statements %s and %s", e.ID, other, st.ID)
			}
			onStatement[e.ID] = st.ID
			sum += e.Amount
			if e.Promoter != st.Promoter || e.Statement != st.ID {
				t.Errorf("statement %s of %s lists entry %+v", st.ID, st.Promoter, e)
			}
			if g, ok := got[e.ID]; !ok || g.Statement != st.ID {
				t.Errorf("statement %s lists entry %s, which the ledger has as %+v", st.ID, e.ID, g)
			}
		}
		if sum != st.Amount || len(page.Items) != st.Entries || st.Amount <= 0 || st.Currency != "CNY" {
			t.Errorf("statement %+v: %d entries summing to %d", st, len(page.Items), sum)
		}
	}
	for id, e := range got {
		if e.Statement != "" && onStatement[id] != e.Statement {
			t.Errorf("entry %s names statement %s, which does not list it", id, e.Statement)
		}
	}
	// Everything was due (hold_days 0) and min_payout is 0: what the last
	// run left unsettled cannot sum to more than nothing.
	for p, sum := range unsettled {
		if sum > 0 {
			t.Errorf("%s has %d unsettled after the last run, which should have settled it", p, sum)
		}
	}

	// What the given-up requests did is in the decision log: a decision
	// there must have its entry (written by the repair), none there no
	// entry. The request is then sent again for its answer, which says
	// the amount; the ledger above was read before.
	var decidedGivenUp int
	for _, g := range gaveUp {
		var ex struct {
			Decisions []attribution.Decision `json:"decisions"`
		}
		getJSON(t, k.api, "/v1/attribution/explain?program=shop&customer="+g.customer, &ex)
		decided := false
		for _, d := range ex.Decisions {
			if g.refund == "" && d.Event == attribution.EventConversion && d.Order == g.order ||
				g.refund != "" && d.Event == attribution.EventRefund && d.Order == g.order && d.Refund == g.refund {
				decided = true
			}
		}
		s, raw, _, err := ask(k.api, sfTok, "POST", g.path, g.body, 0)
		if err != nil || s != 200 {
			t.Errorf("%s %s sent again: %d %s %v", g.path, g.body, s, raw, err)
			continue
		}
		if !decided {
			continue
		}
		decidedGivenUp++
		if g.refund == "" {
			var a conversionReply
			json.Unmarshal(raw, &a)
			if a.Commission > 0 {
				expect(ledgerEntry{ID: attribution.AccrualID(g.order), Promoter: g.promoter, Kind: "accrual", Amount: a.Commission, Order: g.order})
			}
			continue
		}
		var a refundReply
		json.Unmarshal(raw, &a)
		if cut := g.before - a.Commission; cut > 0 {
			expect(ledgerEntry{ID: attribution.ReversalID(g.order, g.refund), Promoter: g.promoter, Kind: "reversal", Amount: -cut, Order: g.order, Refund: g.refund})
		}
	}
	for _, p := range problems {
		t.Error(p)
	}

	// Exactly the entries the decisions call for, and nothing else.
	wantSums := map[string]int64{}
	for id, w := range want {
		wantSums[w.Promoter] += w.Amount
		e, ok := got[id]
		switch {
		case !ok:
			t.Errorf("no entry %s: want %+v", id, w)
		case e.Promoter != w.Promoter || e.Kind != w.Kind || e.Amount != w.Amount || e.Order != w.Order || e.Refund != w.Refund:
			t.Errorf("entry %s is %+v, want %+v", id, e, w)
		}
	}
	for id, e := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("entry %+v belongs to no decision", e)
		}
	}
	for _, p := range ledgerPromoters {
		if sums[p] != wantSums[p] || balances[p] != wantSums[p] {
			t.Errorf("%s: entries sum to %d, the balance to %d; commissions after refunds to %d", p, sums[p], balances[p], wantSums[p])
		}
	}

	ledgerClient.CloseIdleConnections()
	k.stop()
	st := open()
	defer st.Close()
	if marks, err := st.LedgerMarks(context.Background(), "shop", time.Now().Add(time.Hour), 10); err != nil || len(marks) > 0 {
		t.Errorf("marks left after the repair and every request answered: %v %v", marks, err)
	}
	t.Logf("%d customers, %d conversions and %d refunds answered (%d cutting a commission), %d given up of which %d were decided; %d entries (the last repair took %d marks of stored decisions), %d statements (%d made by the %d settlement runs answered, %d runs given up); %d kills in %s, a restart took at most %s",
		customers, len(conversions), refunds, cuts, len(gaveUp), decidedGivenUp, len(got), repaired,
		len(statements), made.Load()+int64(len(final.Statements)), settleRuns.Load()+1, settleGivenUp.Load(), k.kills, killing.Round(time.Millisecond), k.restartFor.Round(time.Millisecond))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
