package attribution

import (
	"fmt"
	"testing"
	"time"
)

var (
	t0     = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	day    = 24 * time.Hour
	hasher = NewFingerprintHasher([]byte("0123456789abcdef"))
)

// hashed is hasher.Hash for fingerprints a test knows to be valid.
func hashed(f Fingerprints) FingerprintSet {
	set, err := hasher.Hash(f)
	if err != nil {
		panic(err)
	}
	return set
}

func prog(mod func(*Program)) *Program {
	p := &Program{ID: "tencent", CookieDays: 30, AllowedHosts: []string{"a.com"},
		Rates: Rates{Protected: 300000, Standard: 250000}, TierBonus: []Rate{0, 20000, 40000}}
	if mod != nil {
		mod(p)
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

func promoter(id string, mod func(*Promoter)) *Promoter {
	p := &Promoter{ID: id, Status: StatusActive}
	if mod != nil {
		mod(p)
	}
	return p
}

func clickBy(id string, at time.Time) *ClickRef {
	return &ClickRef{Promoter: id, Link: "l-" + id, Click: "c-" + id, ExpiresAt: at.Add(30 * day)}
}

func bind(c *Customer, p *Program, event string, pr *Promoter, at time.Time) BindResult {
	var ref *ClickRef
	if pr != nil {
		ref = clickBy(pr.ID, at)
	}
	return Bind(c, BindRequest{Event: event, Program: p, Click: ref, Promoter: pr, Now: at})
}

type step struct {
	event    string
	promoter string
	at       time.Duration // after t0
}

// TestBindRules runs each docs/rules.md case as a sequence of binds and checks
// the last answer.
func TestBindRules(t *testing.T) {
	alice, bob := promoter("alice", nil), promoter("bob", nil)
	prs := map[string]*Promoter{"alice": alice, "bob": bob}
	tests := []struct {
		name     string
		rule     string // the docs/rules.md line enforced
		program  *Program
		customer Customer
		steps    []step
		want     string // promoter holding the customer afterwards, "" for none
		kind     Kind
		reason   string
		outcome  string
	}{
		{name: "Protected", rule: "New registrant via a link: 30-day protection (T 2.3, A 2.2, K)",
			steps: []step{{"register", "alice", 0}}, want: "alice", kind: Protected, outcome: DecisionCreated},
		{name: "ProtectedByOtherOnRegister", rule: "no other promoter can take the customer during it",
			steps: []step{{"register", "alice", 0}, {"register", "bob", day}}, want: "alice", kind: Protected, reason: ReasonProtectedByOther, outcome: DecisionRejected},
		{name: "ProtectedByOtherOnLogin", rule: "even if the customer visits other promoters' links",
			steps: []step{{"register", "alice", 0}, {"login", "bob", 29 * day}}, want: "alice", kind: Protected, reason: ReasonProtectedByOther, outcome: DecisionRejected},
		{name: "ProtectionEndsAfter30Days", rule: "Association ends when 30 days pass (T 2.5)",
			steps: []step{{"register", "alice", 0}, {"login", "bob", 30 * day}}, want: "bob", kind: Standard, outcome: DecisionCreated},
		{name: "ProtectedNeverRenewed", rule: "a protected one is never renewed or downgraded",
			steps: []step{{"register", "alice", 0}, {"login", "alice", 10 * day}}, want: "alice", kind: Protected, outcome: DecisionKept},
		{name: "LoginOverride", rule: "Registered but never paid customer logging in: a later promoter overrides (T 2.4, A 2.2, K)",
			steps: []step{{"login", "alice", 0}, {"login", "bob", day}}, want: "bob", kind: Standard, outcome: DecisionOverridden},
		{name: "LoginRenewSame", rule: "the same promoter again renews a standard association",
			steps: []step{{"login", "alice", 0}, {"login", "alice", day}}, want: "alice", kind: Standard, outcome: DecisionRenewed},
		{name: "RegisterUpgradesStandard", rule: "New registrant via a link gets protection",
			steps: []step{{"login", "alice", 0}, {"register", "bob", day}}, want: "bob", kind: Protected, outcome: DecisionOverridden},
		{name: "ErrOldCustomer", rule: "Old (paid) customers cannot be associated (T 2.2)",
			customer: Customer{Paid: true}, steps: []step{{"login", "alice", 0}}, reason: ReasonOldCustomer, outcome: DecisionRejected},
		{name: "PaidAcceptedWhereAssociatePaid", rule: "K allows associating paid customers",
			program: prog(func(p *Program) { p.AssociatePaid = true }), customer: Customer{Paid: true},
			steps: []step{{"login", "alice", 0}}, want: "alice", kind: Standard, outcome: DecisionCreated},
		{name: "ErrAgentServed", rule: "A customer once served by an agent or a sales team never earns commission (T 2.6)",
			customer: Customer{AgentServed: true}, steps: []step{{"register", "alice", 0}}, reason: ReasonAgentServed, outcome: DecisionRejected},
		{name: "ErrNoClick", rule: "Associating requires a click on the promoter's link",
			steps: []step{{"register", "", 0}}, reason: ReasonNoClick, outcome: DecisionRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.program
			if p == nil {
				p = prog(nil)
			}
			c := tt.customer
			c.ID = "cust"
			var res BindResult
			for _, s := range tt.steps {
				res = bind(&c, p, s.event, prs[s.promoter], t0.Add(s.at))
			}
			last := tt.steps[len(tt.steps)-1]
			now := t0.Add(last.at)
			got := ""
			if a := c.State(p.ID).Assoc; a.Active(now) {
				got = a.Promoter
				if a.Kind != tt.kind {
					t.Errorf("%s: kind %s, want %s", tt.rule, a.Kind, tt.kind)
				}
			}
			if got != tt.want || res.Reason != tt.reason || res.Decision.Outcome != tt.outcome {
				t.Errorf("%s:\n holder %q reason %q outcome %q, want %q %q %q", tt.rule, got, res.Reason, res.Decision.Outcome, tt.want, tt.reason, tt.outcome)
			}
			if res.Associated != (tt.reason == "") {
				t.Errorf("associated = %v with reason %q", res.Associated, res.Reason)
			}
		})
	}
}

func TestBindRejections(t *testing.T) {
	p := prog(nil)
	f := func(name, rule string, c Customer, r BindRequest, want string) {
		t.Helper()
		c.ID = "cust"
		r.Program, r.Now = p, t0
		if r.Event == "" {
			r.Event = EventRegister
		}
		if res := Bind(&c, r); res.Reason != want || res.Associated {
			t.Errorf("%s (%s): reason %q, want %q", name, rule, res.Reason, want)
		}
	}
	al := promoter("alice", nil)
	ok := clickBy("alice", t0)
	f("ErrTokenInvalid", "a forged or tampered cookie", Customer{}, BindRequest{ClickReason: ReasonTokenInvalid}, ReasonTokenInvalid)
	f("ErrTokenExpired", "C: the cookie lasts 7 days", Customer{}, BindRequest{ClickReason: ReasonTokenExpired}, ReasonTokenExpired)
	f("ErrClickExpired", "T, A, K: association lasts 30 days", Customer{},
		BindRequest{Click: &ClickRef{Promoter: "alice", ExpiresAt: t0}, Promoter: al}, ReasonNoClick)
	f("ErrPromoterSuspended", "suspended promoter", Customer{},
		BindRequest{Click: ok, Promoter: promoter("alice", func(p *Promoter) { p.Status = StatusSuspended })}, ReasonPromoterSuspended)
	for _, fp := range []Fingerprints{{IPs: []string{"203.0.113.9"}}, {Phones: []string{"+86 138 0000 0000"}},
		{Emails: []string{" Bob@Example.com"}}, {IDNumbers: []string{"11010519491231002x"}}, {Devices: []string{"dev-1"}}} {
		pr := promoter("alice", func(p *Promoter) {
			p.Fingerprints = hashed(Fingerprints{IPs: []string{"203.0.113.9"}, Phones: []string{"8613800000000"},
				Emails: []string{"bob@example.com"}, IDNumbers: []string{"11010519491231002X"}, Devices: []string{"dev-1"}})
		})
		f("ErrSamePerson", "Same person: shared IP, phone, e-mail, ID number or device (T, A, K)",
			Customer{Fingerprints: hashed(fp)}, BindRequest{Click: ok, Promoter: pr}, ReasonSamePerson)
	}
	f("ErrAgentBeforeSuspended", "reasons are checked in order", Customer{AgentServed: true},
		BindRequest{Click: ok, Promoter: promoter("alice", func(p *Promoter) { p.Status = StatusSuspended })}, ReasonAgentServed)
}

// TestLastClickSevenDays: C's 7-day cookie, the last partner's link wins.
func TestLastClickSevenDays(t *testing.T) {
	p := prog(func(p *Program) { p.CookieDays = 7 })
	c := &Customer{ID: "cust"}
	ref := &ClickRef{Promoter: "bob", Click: "c2", ExpiresAt: t0.Add(7 * day)}
	if res := Bind(c, BindRequest{Event: EventRegister, Program: p, Click: ref, Promoter: promoter("bob", nil), Now: t0.Add(7*day - time.Second)}); !res.Associated {
		t.Errorf("a click 1s before its 7 days end still binds: %+v", res)
	}
	c = &Customer{ID: "cust"}
	if res := Bind(c, BindRequest{Event: EventRegister, Program: p, Click: ref, Promoter: promoter("bob", nil), Now: t0.Add(7 * day)}); res.Reason != ReasonNoClick {
		t.Errorf("a 7-day click is gone at day 7: %+v", res)
	}
}

func TestProgramEditKeepsExpiry(t *testing.T) {
	p := prog(nil)
	c := &Customer{ID: "cust"}
	bind(c, p, EventRegister, promoter("alice", nil), t0)
	before := c.State(p.ID).Assoc.ExpiresAt
	p.ProtectDays, p.AssociateDays = 7, 7 // the program changes
	bind(c, p, EventLogin, promoter("bob", nil), t0.Add(10*day))
	if a := c.State(p.ID).Assoc; a.Promoter != "alice" || !a.ExpiresAt.Equal(before) {
		t.Errorf("an existing association keeps the expiry it was given: %+v", a)
	}
	if !before.Equal(t0.Add(30 * day)) {
		t.Errorf("expiry %v", before)
	}
}

func assoc(c *Customer, p *Program, pr string, kind Kind) {
	c.State(p.ID).Assoc = &Association{Promoter: pr, Kind: kind, Since: t0, ExpiresAt: t0.Add(30 * day)}
}

func TestConversionRules(t *testing.T) {
	type order struct {
		amount  int64
		product string
		prepaid bool
	}
	tests := []struct {
		name     string
		rule     string
		program  func(*Program)
		customer Customer
		kind     Kind // association; "" for none
		promoter func(*Promoter)
		before   []order // earlier orders
		order    order
		reason   string
		rate     Rate
		comm     int64
	}{
		{name: "Protected", rule: "A: registered via link 26-34 %", kind: Protected, order: order{10000, "cvm", true}, rate: 300000, comm: 3000},
		{name: "Standard", rule: "A: login-associated 21-29 %", kind: Standard, order: order{10000, "cvm", true}, rate: 250000, comm: 2500},
		{name: "TierBonus", rule: "Rate = base + tier bonus (T)", kind: Standard, promoter: func(p *Promoter) { p.Tier = 2 },
			order: order{10000, "cvm", true}, rate: 290000, comm: 2900},
		{name: "TierPastEnd", rule: "Tiers recomputed monthly (T, A, K)", kind: Standard, promoter: func(p *Promoter) { p.Tier = 9 },
			order: order{10000, "cvm", true}, rate: 290000, comm: 2900},
		{name: "RoundHalfUp", rule: "Commission = cash × rate (T 3.5, A 2.5, K)", kind: Standard, order: order{2, "cvm", true}, rate: 250000, comm: 1},
		{name: "ErrZeroAmount", rule: "Free trials and 0-yuan orders do not use up the first purchase (A)", kind: Protected, order: order{0, "cvm", true}, reason: ReasonZeroAmount},
		{name: "ZeroAmountKeepsFirstPurchase", rule: "Free trials do not use up the first purchase (A)", kind: Protected,
			before: []order{{0, "cvm", true}}, order: order{10000, "cvm", true}, rate: 300000, comm: 3000},
		{name: "ErrRepeatPurchase", rule: "repeat orders earn nothing (T, A since 2022-01-01)", kind: Protected,
			before: []order{{100, "cvm", true}}, order: order{10000, "cvm", true}, reason: ReasonRepeatPurchase},
		{name: "IneligiblePaidOrderUsesFirstPurchase", rule: "Any paid order marks the customer as paid, eligible or not", kind: Protected,
			before: []order{{100, "cvm", false}}, order: order{10000, "cvm", true}, reason: ReasonRepeatPurchase},
		{name: "ErrRepeatPurchasePaidFlag", rule: "Old (paid) customers: repeat orders earn nothing (T 2.2)", kind: Protected,
			customer: Customer{Paid: true}, order: order{10000, "cvm", true}, reason: ReasonRepeatPurchase},
		{name: "ProductScopeNewLine", rule: "K pays on the first order of a product line not bought before",
			program: func(p *Program) { p.FirstPurchaseScope = ScopeProduct; p.AssociatePaid = true }, kind: Standard,
			before: []order{{100, "cvm", true}}, order: order{10000, "cdn", true}, rate: 250000, comm: 2500},
		{name: "ErrProductScopeRepeat", rule: "K: first order of each product line only",
			program: func(p *Program) { p.FirstPurchaseScope = ScopeProduct }, kind: Standard,
			before: []order{{100, "cvm", true}}, order: order{10000, "cvm", true}, reason: ReasonRepeatPurchase},
		{name: "ErrNotPrepaid", rule: "Only prepaid (subscription) orders count (A, K)", program: func(p *Program) { p.RequirePrepaid = true },
			kind: Protected, order: order{10000, "cvm", false}, reason: ReasonNotPrepaid},
		{name: "ErrProductNotEligible", rule: "Only listed products earn (T 1.3)", program: func(p *Program) { p.Products = []string{"cvm"} },
			kind: Protected, order: order{10000, "domain", true}, reason: ReasonProductIneligible},
		{name: "ErrNoAssociation", rule: "no association, no commission", order: order{10000, "cvm", true}, reason: ReasonNoAssociation},
		{name: "ErrAgentServed", rule: "agent-served customers never earn (T 2.6)", customer: Customer{AgentServed: true}, kind: Protected,
			order: order{10000, "cvm", true}, reason: ReasonAgentServed},
		{name: "ErrSamePerson", rule: "same-person checks run again (A)", kind: Protected,
			customer: Customer{Fingerprints: hashed(Fingerprints{Emails: []string{"x@y.z"}})},
			promoter: func(p *Promoter) { p.Fingerprints = hashed(Fingerprints{Emails: []string{"X@Y.Z "}}) },
			order:    order{10000, "cvm", true}, reason: ReasonSamePerson},
		{name: "ErrPromoterSuspended", rule: "suspended promoter", kind: Protected, promoter: func(p *Promoter) { p.Status = StatusSuspended },
			order: order{10000, "cvm", true}, reason: ReasonPromoterSuspended},
		{name: "Cap", rule: "A: per-customer commission cap", program: func(p *Program) { p.CustomerCap = 1000; p.FirstPurchaseScope = ScopeProduct },
			kind: Protected, before: []order{{3000, "cvm", true}}, order: order{10000, "cdn", true}, rate: 300000, comm: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := prog(tt.program)
			c := tt.customer
			c.ID = "cust"
			pr := promoter("alice", tt.promoter)
			if tt.kind != "" {
				assoc(&c, p, "alice", tt.kind)
			}
			var promo *Promoter
			if tt.kind != "" {
				promo = pr
			}
			for i, b := range tt.before {
				Convert(&c, ConversionRequest{Program: p, Order: "o" + string(rune('0'+i)), Amount: b.amount, Product: b.product, Prepaid: b.prepaid, Promoter: promo, Now: t0})
			}
			o := Convert(&c, ConversionRequest{Program: p, Order: "o", Amount: tt.order.amount, Product: tt.order.product,
				Prepaid: tt.order.prepaid, Promoter: promo, Now: t0.Add(time.Hour)})
			if o.Reason != tt.reason || o.Eligible != (tt.reason == "") || o.Commission != tt.comm || (tt.reason == "" && o.Rate != tt.rate) {
				t.Errorf("%s:\n got reason %q eligible %v rate %s commission %d\nwant reason %q rate %s commission %d",
					tt.rule, o.Reason, o.Eligible, o.Rate, o.Commission, tt.reason, tt.rate, tt.comm)
			}
			if tt.order.amount > 0 && !c.Paid {
				t.Error("a paid order marks the customer as paid")
			}
			if d := o.Decision(); d.Order != "o" || d.Reason != tt.reason || (d.Outcome == DecisionAttributed) != o.Eligible {
				t.Errorf("decision %+v", d)
			}
		})
	}
}

func TestRatesAreExact(t *testing.T) {
	p := prog(func(p *Program) { p.Rates.Standard = 270000; p.TierBonus = []Rate{0, 20000} })
	if r := p.RateFor(Standard, 1); r != 290000 || r.Apply(10000) != 2900 {
		t.Errorf("10000 × (0.27 + 0.02) = %d at rate %s, want 2900", r.Apply(10000), r)
	}
}

func TestRefund(t *testing.T) {
	p := prog(func(p *Program) { p.CustomerCap = 5000 })
	c := &Customer{ID: "cust"}
	assoc(c, p, "alice", Protected)
	o := Convert(c, ConversionRequest{Program: p, Order: "o1", Amount: 10000, Product: "cvm", Promoter: promoter("alice", nil), Now: t0})
	if o.Commission != 3000 || c.State(p.ID).CapUsed != 3000 {
		t.Fatalf("%+v", o)
	}
	n := 0
	f := func(amount, wantRefunded, wantComm int64, wantErr bool) {
		t.Helper()
		n++
		_, _, err := Refund(c, &o, fmt.Sprint("r", n), amount, t0)
		if (err != nil) != wantErr || o.Refunded != wantRefunded || o.Commission != wantComm {
			t.Errorf("refund %d: err %v refunded %d commission %d, want %d %d", amount, err, o.Refunded, o.Commission, wantRefunded, wantComm)
		}
	}
	f(2500, 2500, 2250, false) // a quarter of the cash back: a quarter of the commission (docs/rules.md: reduced by the refunded share, A)
	f(0, 2500, 2250, true)
	f(-1, 2500, 2250, true)
	f(7501, 2500, 2250, true) // more than is left
	f(2500, 5000, 1500, false)
	f(5000, 10000, 0, false)
	if c.State(p.ID).CapUsed != 0 {
		t.Errorf("cap use after a full refund: %d", c.State(p.ID).CapUsed)
	}
}

func TestCustomerMerge(t *testing.T) {
	c := &Customer{ID: "c"}
	c.Merge(CustomerInfo{Paid: true, Fingerprints: hashed(Fingerprints{Emails: []string{"a@b.c"}})})
	c.Merge(CustomerInfo{AgentServed: true, Fingerprints: hashed(Fingerprints{Emails: []string{"a@b.c"}, Phones: []string{"13800000001"}})})
	c.Merge(CustomerInfo{})
	if !c.Paid || !c.AgentServed || len(c.Fingerprints) != 2 {
		t.Errorf("paid and agent_served stay true, fingerprints add up: %+v", c)
	}
}
