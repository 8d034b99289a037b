package attribution

import (
	"errors"
	"testing"
	"time"
)

// TestAssociationEnds: an association ends (docs/rules.md T 2.5) when the customer
// becomes agent-served, or when a bind or a conversion finds customer and
// holder to be the same person; a later bind by another promoter may start
// a new one (unless agent-served, which is for good).
func TestAssociationEnds(t *testing.T) {
	p := prog(nil)
	alice := promoter("alice", func(pr *Promoter) {
		pr.Fingerprints = must(hasher.Hash(Fingerprints{Emails: []string{"alice@example.com"}}))
	})
	bob := promoter("bob", nil)
	shared := CustomerInfo{Fingerprints: must(hasher.Hash(Fingerprints{Emails: []string{"alice@example.com"}}))}

	t.Run("AgentServed", func(t *testing.T) {
		c := &Customer{ID: "c"}
		bind(c, p, EventRegister, alice, t0)
		other := prog(func(p *Program) { p.ID = "aliyun" })
		bind(c, other, EventRegister, bob, t0)
		if ds := EndAgentServed(c, EventCustomer, t0); ds != nil {
			t.Fatalf("not agent-served yet: %+v", ds)
		}
		c.Merge(CustomerInfo{AgentServed: true})
		ds := EndAgentServed(c, EventCustomer, t0.Add(time.Hour))
		if len(ds) != 2 || ds[0].Program != "aliyun" || ds[1].Program != "tencent" ||
			ds[0].Outcome != DecisionEnded || ds[0].Reason != ReasonAgentServed || ds[1].Promoter != "alice" {
			t.Fatalf("one ending per program, in name order: %+v", ds)
		}
		a := c.State("tencent").Assoc
		if a.Active(t0.Add(time.Hour)) || a.Ended != ReasonAgentServed || !a.EndedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("ended association: %+v", a)
		}
		if ds := EndAgentServed(c, EventCustomer, t0.Add(2*time.Hour)); len(ds) != 0 {
			t.Errorf("an association ends once: %+v", ds)
		}
		if r := bind(c, p, EventRegister, bob, t0.Add(3*time.Hour)); r.Associated || r.Reason != ReasonAgentServed {
			t.Errorf("agent-served is for good: %+v", r)
		}
	})
	t.Run("SamePersonAtBind", func(t *testing.T) {
		c := &Customer{ID: "c"}
		bind(c, p, EventLogin, alice, t0)
		c.Merge(shared)
		// bob's click arrives: alice's association ends first, then bob
		// gets the customer.
		r := Bind(c, BindRequest{Event: EventLogin, Program: p, Click: clickBy("bob", t0), Promoter: bob, Holder: alice, Now: t0.Add(day)})
		if r.Ended == nil || r.Ended.Reason != ReasonSamePerson || r.Ended.Promoter != "alice" || r.Ended.Outcome != DecisionEnded {
			t.Fatalf("ending: %+v", r.Ended)
		}
		if !r.Associated || r.Decision.Outcome != DecisionCreated || r.Assoc.Promoter != "bob" {
			t.Errorf("bob binds a customer whose association ended: %+v", r)
		}
	})
	t.Run("SamePersonAtBindByHolder", func(t *testing.T) {
		c := &Customer{ID: "c"}
		bind(c, p, EventRegister, alice, t0)
		c.Merge(shared)
		r := Bind(c, BindRequest{Event: EventLogin, Program: p, Click: clickBy("alice", t0), Promoter: alice, Holder: alice, Now: t0.Add(day)})
		if r.Ended == nil || r.Associated || r.Reason != ReasonSamePerson || r.Assoc != nil {
			t.Errorf("the holder's own click: ended and rejected: %+v", r)
		}
	})
	t.Run("SamePersonAtConversion", func(t *testing.T) {
		c := &Customer{ID: "c"}
		bind(c, p, EventRegister, alice, t0)
		c.Merge(shared)
		o := Convert(c, ConversionRequest{Program: p, Order: "o1", Amount: 100, Prepaid: true, Promoter: alice, Now: t0.Add(day)})
		if o.Reason != ReasonSamePerson || len(o.Decisions) != 2 || o.Decisions[0].Outcome != DecisionEnded ||
			o.Decisions[0].Reason != ReasonSamePerson || o.Decisions[1].Event != EventConversion {
			t.Fatalf("order %+v", o)
		}
		if c.State(p.ID).Assoc.Active(t0.Add(day)) {
			t.Error("the association stands after a same-person order")
		}
		// The next order has no association at all.
		if o := Convert(c, ConversionRequest{Program: p, Order: "o2", Amount: 100, Prepaid: true, Now: t0.Add(day)}); o.Reason != ReasonNoAssociation {
			t.Errorf("next order: %+v", o)
		}
	})
}

func TestBindClickChecks(t *testing.T) {
	p := prog(nil)
	alice := promoter("alice", nil)
	c := &Customer{ID: "c"}
	f := func(name string, r BindRequest, reason string) {
		t.Helper()
		r.Event, r.Program, r.Now = EventRegister, p, t0
		if r.Promoter == nil {
			r.Promoter = alice
		}
		if got := Bind(c, r); got.Reason != reason {
			t.Errorf("%s: %+v, want reason %q", name, got, reason)
		}
	}
	f("ErrClickUsed", BindRequest{Click: clickBy("alice", t0), ClickUsed: true}, ReasonClickUsed)
	f("ErrTokenExpiredFirst", BindRequest{Click: nil, ClickReason: ReasonTokenExpired, ClickUsed: true}, ReasonTokenExpired)
	f("ErrClickExpired", BindRequest{Click: clickBy("alice", t0.Add(-31*day)), ClickUsed: true}, ReasonNoClick)
	c.Merge(CustomerInfo{AgentServed: true})
	f("ErrClickUsedBeforeAgentServed", BindRequest{Click: clickBy("alice", t0), ClickUsed: true}, ReasonClickUsed)

	g := func(issued, expires time.Time, want bool) {
		t.Helper()
		if got := (&ClickRef{IssuedAt: issued, ExpiresAt: expires}).Plausible(); got != want {
			t.Errorf("click issued %s expiring %s plausible = %v", issued, expires, got)
		}
	}
	g(t0, t0.Add(365*day), true)
	g(t0, t0.Add(365*day+time.Second), false)
	g(t0, t0.Add(100*365*day), false)
	g(t0, t0, false)
	g(t0, t0.Add(-time.Hour), false)
}

func TestRefundIDs(t *testing.T) {
	p := prog(nil)
	c := &Customer{ID: "cust"}
	assoc(c, p, "alice", Protected)
	o := Convert(c, ConversionRequest{Program: p, Order: "o1", Amount: 10000, Product: "cvm", Promoter: promoter("alice", nil), Now: t0})
	r1, replay, err := Refund(c, &o, "r1", 1000, t0.Add(time.Hour))
	if err != nil || replay || r1.Refunded != 1000 || r1.Commission != 2700 || r1.Delta != -300 || o.RefundDecision(r1).Refund != "r1" {
		t.Fatalf("first refund: %+v %v %v", r1, replay, err)
	}
	again, replay, err := Refund(c, &o, "r1", 1000, t0.Add(2*time.Hour))
	if err != nil || !replay || *again != *r1 || o.Refunded != 1000 || o.Commission != 2700 || c.State(p.ID).CapUsed != 2700 {
		t.Fatalf("the same refund again: %+v %v %v; order %+v", again, replay, err, o)
	}
	var de *Error
	if _, _, err := Refund(c, &o, "r1", 999, t0); !errors.As(err, &de) || de.Code != EConflict {
		t.Errorf("the same id with another amount: %v", err)
	}
	for i := len(o.Refunds); i < MaxRefunds; i++ {
		if _, _, err := Refund(c, &o, "x"+string(rune('A'+i%26))+string(rune('a'+i/26)), 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Refund(c, &o, "one-too-many", 1, t0); !errors.As(err, &de) || de.Code != EInvalid {
		t.Errorf("past MaxRefunds: %v", err)
	}
}

// TestRefundExactAtTheTop: the largest order at the largest rate, refunded
// in awkward parts, never overflows and ends at zero.
func TestRefundExactAtTheTop(t *testing.T) {
	p := prog(func(p *Program) { p.Rates.Protected = RateScale; p.TierBonus = []Rate{RateScale} })
	c := &Customer{ID: "cust"}
	assoc(c, p, "alice", Protected)
	o := Convert(c, ConversionRequest{Program: p, Order: "o1", Amount: MaxAmount, Product: "cvm", Promoter: promoter("alice", nil), Now: t0})
	if o.Commission != 2*MaxAmount {
		t.Fatalf("10^15 at 200%%: %d", o.Commission)
	}
	r, _, err := Refund(c, &o, "r1", MaxAmount/3, t0)
	// granted × kept / amount = 2e15 × (1e15 − 333333333333333) / 1e15
	if err != nil || r.Commission != 1333333333333334 {
		t.Fatalf("a third back: %+v %v", r, err)
	}
	if r, _, err := Refund(c, &o, "r2", MaxAmount-MaxAmount/3, t0); err != nil || r.Commission != 0 || c.State(p.ID).CapUsed != 0 {
		t.Fatalf("the rest back: %+v %v cap %d", r, err, c.State(p.ID).CapUsed)
	}
	// The example from the report: 5e9 at 30 %, 1e9 refunded.
	p2 := prog(nil)
	c2 := &Customer{ID: "c2"}
	assoc(c2, p2, "alice", Protected)
	o2 := Convert(c2, ConversionRequest{Program: p2, Order: "o", Amount: 5_000_000_000, Product: "cvm", Promoter: promoter("alice", nil), Now: t0})
	if r, _, err := Refund(c2, &o2, "r", 1_000_000_000, t0); o2.Granted != 1_500_000_000 || err != nil || r.Commission != 1_200_000_000 {
		t.Errorf("5e9 at 30%%, 1e9 back: granted %d, %+v %v", o2.Granted, r, err)
	}
}

func TestOrderCheckSame(t *testing.T) {
	o := &Order{ID: "o1", Program: "p", Customer: "c", Amount: 10000, Currency: "CNY", Product: "cvm", Prepaid: true}
	if err := o.CheckSame("p", "c", 10000, "CNY", "cvm", true); err != nil {
		t.Errorf("the same values: %v", err)
	}
	f := func(name string, err error) {
		t.Helper()
		var de *Error
		if !errors.As(err, &de) || de.Code != EConflict {
			t.Errorf("%s: %v, want a conflict", name, err)
		}
	}
	f("ErrProgram", o.CheckSame("q", "c", 10000, "CNY", "cvm", true))
	f("ErrCustomer", o.CheckSame("p", "d", 10000, "CNY", "cvm", true))
	f("ErrAmount", o.CheckSame("p", "c", 999999999, "CNY", "cvm", true))
	f("ErrCurrency", o.CheckSame("p", "c", 10000, "USD", "cvm", true))
	f("ErrProduct", o.CheckSame("p", "c", 10000, "CNY", "lighthouse", true))
	f("ErrPrepaid", o.CheckSame("p", "c", 10000, "CNY", "cvm", false))
}

func TestApplied(t *testing.T) {
	c := &Customer{ID: "c"}
	for i := 0; i < MaxApplied+3; i++ {
		c.Remember(Applied{Op: string(rune('a' + i)), At: t0})
	}
	if len(c.Applied) != MaxApplied || c.Recall("a", t0) != nil || c.Recall(string(rune('a'+MaxApplied+2)), t0) == nil {
		t.Errorf("the latest %d are kept: %+v", MaxApplied, c.Applied)
	}
	if c.Recall("d", t0.Add(ReplayWindow)) != nil {
		t.Error("remembered past the replay window")
	}
}
