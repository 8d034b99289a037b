package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/store"
)

// The model: a plain, independent statement of DESIGN.md's semantics for one
// program (30-day cookie, protection and association windows; scope account;
// prepaid required; rates 0.30/0.25 plus a tier bonus; a 4000 cap), written
// without the attribution package.

const day = 24 * time.Hour

type mPromoter struct {
	id        string
	tier      int
	suspended bool
	email     string
}

var mPromoters = []mPromoter{{"p0", 0, false, "p0@example.com"}, {"p1", 1, false, "p1@example.com"}, {"p2", 0, true, ""}}

type mHolder struct {
	promoter  int
	protected bool
	expires   time.Time
}

type mCustomer struct {
	id      string
	paid    bool
	agent   bool
	email   string // a fingerprint shared with a promoter makes them the same person
	holder  *mHolder
	capUsed int64
}

type mOrder struct {
	customer   int
	amount     int64
	prepaid    bool
	ans        ConversionAnswer
	granted    int64
	refunded   int64
	commission int64
}

type mClick struct {
	promoter int
	token    string
	visitor  string
	expires  time.Time
}

type model struct {
	now       time.Time
	customers []*mCustomer
	clicks    []*mClick // per visitor, the last click (the program is last-click)
	orders    []*mOrder
	orderIDs  []string
}

func (m *model) active(c *mCustomer) *mHolder {
	if c.holder != nil && m.now.Before(c.holder.expires) {
		return c.holder
	}
	return nil
}

func samePerson(c *mCustomer, p mPromoter) bool { return c.email != "" && c.email == p.email }

// bind returns (associated, holder promoter id or "", reason).
func (m *model) bind(c *mCustomer, k *mClick, byToken bool, register bool) (bool, string, string) {
	holderID := func() string {
		if h := m.active(c); h != nil {
			return mPromoters[h.promoter].id
		}
		return ""
	}
	reject := func(r string) (bool, string, string) { return false, holderID(), r }
	switch {
	case k == nil:
		return reject("no_click")
	case !m.now.Before(k.expires) && byToken:
		return reject("token_expired")
	case !m.now.Before(k.expires):
		return reject("no_click")
	}
	p := mPromoters[k.promoter]
	switch {
	case c.agent:
		return reject("agent_served")
	case p.suspended:
		return reject("promoter_suspended")
	case samePerson(c, p):
		return reject("same_person")
	case !register && c.paid:
		return reject("old_customer")
	}
	if h := m.active(c); h != nil && h.protected {
		if h.promoter != k.promoter {
			return reject("protected_by_other")
		}
		return true, p.id, ""
	}
	c.holder = &mHolder{promoter: k.promoter, protected: register, expires: m.now.Add(30 * day)}
	return true, p.id, ""
}

func (m *model) convert(ci int, amount int64, prepaid bool) ConversionAnswer {
	c := m.customers[ci]
	a := ConversionAnswer{Currency: "CNY"}
	h := m.active(c)
	if h != nil {
		a.Promoter = mPromoters[h.promoter].id
		a.Kind = "standard"
		if h.protected {
			a.Kind = "protected"
		}
	}
	switch {
	case amount == 0:
		a.Reason = "zero_amount"
	case c.agent:
		a.Reason = "agent_served"
	case h == nil:
		a.Reason = "no_association"
	case samePerson(c, mPromoters[h.promoter]):
		a.Reason = "same_person"
	case mPromoters[h.promoter].suspended:
		a.Reason = "promoter_suspended"
	case c.paid:
		a.Reason = "repeat_purchase"
	case !prepaid:
		a.Reason = "not_prepaid"
	}
	if amount > 0 {
		c.paid = true
	}
	if a.Reason != "" {
		return a
	}
	ppm := int64(250000)
	if h.protected {
		ppm = 300000
	}
	ppm += []int64{0, 20000}[mPromoters[h.promoter].tier]
	a.Eligible, a.Rate = true, attribution.Rate(ppm)
	a.Commission = min((amount*ppm+500000)/1000000, max(4000-c.capUsed, 0))
	c.capUsed += a.Commission
	return a
}

func TestModel(t *testing.T) {
	for name, newStore := range backends(t) {
		if name == "Cluster" {
			continue // the conformance and concurrency suites cover the cluster; keep CI short
		}
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			steps := 0
			check := 0
			rapid.Check(t, func(rt *rapid.T) {
				check++
				steps += runModel(rt, t, st, check)
			})
			t.Logf("%d checks, %d steps, 0 violations", check, steps)
			if steps < 10000 {
				t.Errorf("only %d steps; want at least 10000", steps)
			}
		})
	}
}

func runModel(rt *rapid.T, t *testing.T, st store.Store, check int) int {
	ctx := context.Background()
	m := &model{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	signer, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	hasher := attribution.NewFingerprintHasher([]byte("0123456789abcdef"))
	sv := &Service{Store: st, Signer: signer, Hasher: hasher, Now: func() time.Time { return m.now }}
	p := &attribution.Program{ID: "mshop", CookieDays: 30, AllowedHosts: []string{"a.com"}, RequirePrepaid: true,
		Rates: attribution.Rates{Protected: 300000, Standard: 250000}, TierBonus: []attribution.Rate{0, 20000}, CustomerCap: 4000}
	p.Normalize()
	must := func(err error) {
		if err != nil {
			rt.Fatal(err)
		}
	}
	must(st.PutProgram(ctx, p))
	for _, pr := range mPromoters {
		status := "active"
		if pr.suspended {
			status = "suspended"
		}
		var fp attribution.Fingerprints
		if pr.email != "" {
			fp.Emails = []string{pr.email}
		}
		set, err := hasher.Hash(fp)
		must(err)
		must(st.PutPromoter(ctx, &attribution.Promoter{ID: pr.id, Status: status, Tier: pr.tier, Fingerprints: set}))
	}
	prefix := fmt.Sprintf("k%d-", check)
	for i := 0; i < 4; i++ {
		m.customers = append(m.customers, &mCustomer{id: fmt.Sprintf("%sc%d", prefix, i)})
	}
	for i := 0; i < 3; i++ {
		m.clicks = append(m.clicks, nil)
	}
	visitor := func(v int) string { return fmt.Sprintf("%sv%d", prefix, v) }
	customer := rapid.IntRange(0, 3)
	const n = 100
	for step := 0; step < n; step++ {
		switch action := rapid.IntRange(0, 9).Draw(rt, "action"); action {
		case 0, 1: // a click on a promoter's link by a visitor
			v, pi := rapid.IntRange(0, 2).Draw(rt, "visitor"), rapid.IntRange(0, 2).Draw(rt, "promoter")
			tok := cookie.Token{Program: p.ID, Promoter: mPromoters[pi].id, Link: "l", Click: fmt.Sprint(prefix, "click", step),
				Visitor: visitor(v), Issued: m.now, Expires: m.now.Add(30 * day)}
			b, err := signer.AppendToken(nil, &tok)
			must(err)
			must(st.RecordClicks(ctx, []attribution.Click{{ID: tok.Click, Program: p.ID, Promoter: tok.Promoter, Link: "l",
				Visitor: tok.Visitor, At: m.now, ExpiresAt: tok.Expires, Model: attribution.LastClick, Outcome: attribution.OutcomeAttributed}}))
			m.clicks[v] = &mClick{promoter: pi, token: string(b), visitor: tok.Visitor, expires: tok.Expires}
		case 2, 3: // register or login with a visitor's click, by token or by visitor id
			ci, v := customer.Draw(rt, "customer"), rapid.IntRange(0, 2).Draw(rt, "visitor")
			register, byToken := rapid.Bool().Draw(rt, "register"), rapid.Bool().Draw(rt, "byToken")
			in := BindInput{Program: p.ID, Customer: m.customers[ci].id, Event: "login"}
			if register {
				in.Event = "register"
			}
			k := m.clicks[v]
			if k != nil && byToken {
				in.Token = k.token
			} else {
				in.Visitor = visitor(v)
			}
			got, err := sv.Bind(ctx, in)
			must(err)
			ok, holder, reason := m.bind(m.customers[ci], k, byToken && k != nil, register)
			if got.Associated != ok || got.Promoter != holder || got.Reason != reason {
				rt.Fatalf("step %d bind %+v: got %+v, model says associated=%v promoter=%q reason=%q", step, in, got, ok, holder, reason)
			}
		case 4, 5: // a new order
			ci := customer.Draw(rt, "customer")
			amount := rapid.SampledFrom([]int64{0, 1, 333, 10000, 20000}).Draw(rt, "amount")
			prepaid := rapid.Float64Range(0, 1).Draw(rt, "prepaid") < 0.8
			id := fmt.Sprint(prefix, "o", len(m.orders))
			got, err := sv.Convert(ctx, ConversionInput{Program: p.ID, Order: id, Customer: m.customers[ci].id,
				Amount: amount, Currency: "CNY", Product: "cvm", Prepaid: prepaid})
			must(err)
			want := m.convert(ci, amount, prepaid)
			want.Order = id
			if *got != want {
				rt.Fatalf("step %d order %s amount %d prepaid %v:\n got %+v\nwant %+v", step, id, amount, prepaid, *got, want)
			}
			m.orders = append(m.orders, &mOrder{customer: ci, amount: amount, prepaid: prepaid, ans: want, granted: want.Commission, commission: want.Commission})
			m.orderIDs = append(m.orderIDs, id)
		case 6: // the same order again: the same decision
			if len(m.orders) == 0 {
				continue
			}
			i := rapid.IntRange(0, len(m.orders)-1).Draw(rt, "order")
			o := m.orders[i]
			got, err := sv.Convert(ctx, ConversionInput{Program: p.ID, Order: m.orderIDs[i], Customer: m.customers[o.customer].id,
				Amount: o.amount, Currency: "CNY", Product: "cvm", Prepaid: o.prepaid})
			must(err)
			if *got != o.ans {
				rt.Fatalf("step %d: order %s again: got %+v, first answer %+v", step, m.orderIDs[i], *got, o.ans)
			}
		case 7: // a refund
			if len(m.orders) == 0 {
				continue
			}
			i := rapid.IntRange(0, len(m.orders)-1).Draw(rt, "order")
			o := m.orders[i]
			amount := rapid.Int64Range(-1, o.amount+1).Draw(rt, "refund")
			got, err := sv.Refund(ctx, m.orderIDs[i], fmt.Sprint(prefix, "r", step), amount)
			if amount <= 0 || amount > o.amount-o.refunded {
				var ae *attribution.Error
				if !errors.As(err, &ae) || ae.Code != attribution.EInvalid {
					rt.Fatalf("step %d: refund %d of %d left must be invalid, got %+v %v", step, amount, o.amount-o.refunded, got, err)
				}
				continue
			}
			must(err)
			o.refunded += amount
			kept := o.amount - o.refunded
			newComm := (o.granted*kept*2 + o.amount) / (2 * o.amount)
			m.customers[o.customer].capUsed -= o.commission - newComm
			o.commission = newComm
			if got.Refunded != o.refunded || got.Commission != o.commission {
				rt.Fatalf("step %d refund %d on %s: got %+v, model refunded %d commission %d", step, amount, m.orderIDs[i], got, o.refunded, o.commission)
			}
		case 8: // the storefront reports a customer fact
			ci := customer.Draw(rt, "customer")
			c := m.customers[ci]
			var info attribution.CustomerInfo
			switch rapid.IntRange(0, 2).Draw(rt, "fact") {
			case 0:
				info.Paid, c.paid = true, true
			case 1:
				info.AgentServed, c.agent = true, true
			case 2:
				set, err := hasher.Hash(attribution.Fingerprints{Emails: []string{"p0@example.com"}})
				must(err)
				info.Fingerprints, c.email = set, "p0@example.com"
			}
			_, err := sv.PutCustomer(ctx, c.id, info)
			must(err)
		case 9: // time passes
			m.now = m.now.Add(rapid.SampledFrom([]time.Duration{time.Hour, 10 * day, 29 * day, 30 * day, 31 * day}).Draw(rt, "advance"))
		}
		// After every step, every customer's attribution matches the model.
		for _, c := range m.customers {
			got, err := sv.Attribution(ctx, p.ID, c.id)
			must(err)
			want := ""
			if h := m.active(c); h != nil {
				want = mPromoters[h.promoter].id
			}
			if got.Promoter != want || got.Attributed != (want != "") {
				rt.Fatalf("step %d: %s attributed to %q, model says %q", step, c.id, got.Promoter, want)
			}
		}
	}
	return n
}
