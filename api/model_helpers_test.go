package api

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/refgate/refgate/attribution"
)

// The model: a plain, independent statement of docs/design.md's semantics
// (Program, Promoter, Binding, Conversion, refunds), written without the
// attribution package's rules. The driver in model_test.go runs the same
// steps against a Service and compares every answer with this.

const (
	day          = 24 * time.Hour
	mMaxAmount   = int64(1_000_000_000_000_000) // DESIGN: amounts are 1..10^15 minor units
	mMaxRefunds  = 100
	mMaxDecision = 100 // the explain log keeps the latest 100 per customer and program
	mMaxLife     = 365 * day
	// A bind, or a customer update that ended associations, sent again
	// within the replay window gets its first answer and changes nothing;
	// a customer remembers the latest 16 such writes.
	mReplayWindow = 10 * time.Minute
	mMaxApplied   = 16
)

// mPolicy is a program's policy.
type mPolicy struct {
	cookieDays, protectDays, associateDays int
	firstClick                             bool
	associatePaid                          bool
	productScope                           bool
	requirePrepaid                         bool
	products                               []string // empty: all
	protectedPPM, standardPPM              int64    // rates in parts per million
	tierBonus                              []int64  // ppm
	cap                                    int64    // 0: none
	bindsPerClick                          int
	holdDays                               int   // the ledger's hold
	minPayout                              int64 // a statement's least amount
}

type mProgram struct {
	id string
	mPolicy
}

type mPromoter struct {
	id        string
	tier      int
	suspended bool
	fps       []string // "kind:value"
}

type mAssoc struct {
	promoter    int
	protected   bool
	link, click string
	since       time.Time
	expires     time.Time
	ended       string // agent_served or same_person
}

type mState struct {
	assoc        *mAssoc
	paidProducts map[string]bool
	capUsed      int64
}

type mDecision struct {
	at                             time.Time
	event, outcome, reason         string
	promoter, click, order, refund string
}

type mCustomer struct {
	id      string
	paid    bool
	agent   bool
	fps     map[string]bool
	states  []*mState     // by program index
	log     [][]mDecision // by program index, oldest first
	applied []*mApplied   // the latest writes a retry is recognised by, oldest first
}

// mApplied is a write remembered for its retries.
type mApplied struct {
	op  string
	at  time.Time
	ans BindAnswer
	ids []string // the event ids it emitted (the driver fills them in)
}

func (m *model) recall(c *mCustomer, op string) *mApplied {
	for _, a := range c.applied {
		if a.op == op && m.now.Sub(a.at) < mReplayWindow {
			return a
		}
	}
	return nil
}

func (m *model) remember(c *mCustomer, a *mApplied) {
	a.at = m.now
	c.applied = append(c.applied, a)
	if n := len(c.applied); n > mMaxApplied {
		c.applied = c.applied[n-mMaxApplied:]
	}
}

// key names what a request asks, as a retry repeats it.
func (in mInfo) key() string {
	fps := slices.Clone(in.fps)
	slices.Sort(fps)
	return fmt.Sprint(in.paid, in.agent, slices.Compact(fps))
}

// mClick is what a click says: a visitor's server-side record or the
// content of a token.
type mClick struct {
	promoter        int
	link, click     string
	issued, expires time.Time
}

// mToken is a signed token as a storefront presents it.
type mToken struct {
	program int
	mClick
	token    string
	tampered bool // its signature does not verify
}

type mLink struct {
	program, promoter int
	deleted           bool
}

type mRefund struct{ amount, refunded, commission int64 }

type mOrder struct {
	id                string
	program, customer int
	amount            int64
	currency, product string
	prepaid           bool
	ans               ConversionAnswer
	promoter, click   string // of the association it was decided on
	granted           int64
	refunded          int64
	commission        int64
	refunds           map[string]mRefund
	nRefunds          int
	erased            bool // its customer was erased since
}

// mInfo is customer_info, fingerprints, or a PUT of a customer.
type mInfo struct {
	paid, agent bool
	fps         []string
}

type model struct {
	now       time.Time
	programs  []*mProgram
	promoters []*mPromoter
	customers []*mCustomer
	links     map[string]*mLink
	visits    map[[2]int]*mClick      // (program, visitor) → the visitor's click record
	uses      map[string]map[int]bool // click id → customers it binds (an erased one: a negative number)
	orders    map[string]*mOrder
	nErased   int
}

func (m *model) active(st *mState) *mAssoc {
	if a := st.assoc; a != nil && a.ended == "" && m.now.Before(a.expires) {
		return a
	}
	return nil
}

// canonFP is the model's own normal form of a fingerprint: a phone written
// without "+" is a national number of CN (the default --phone-region).
func canonFP(f string) string {
	kind, v, _ := strings.Cut(f, ":")
	if kind != "phone" {
		return f
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, v)
	if !strings.HasPrefix(v, "+") {
		digits = "86" + digits
	}
	return "phone:+" + digits
}

func shares(c *mCustomer, p *mPromoter) bool {
	for _, f := range p.fps {
		if c.fps[canonFP(f)] {
			return true
		}
	}
	return false
}

func (m *model) merge(c *mCustomer, in mInfo) {
	c.paid = c.paid || in.paid
	c.agent = c.agent || in.agent
	for _, f := range in.fps {
		c.fps[canonFP(f)] = true
	}
}

func (m *model) log(c *mCustomer, pi int, d mDecision) {
	d.at = m.now
	c.log[pi] = append(c.log[pi], d)
}

// end ends the customer's active association with program pi.
func (m *model) end(c *mCustomer, pi int, reason, event string) {
	a := c.states[pi].assoc
	ended := *a
	ended.ended = reason
	c.states[pi].assoc = &ended
	m.log(c, pi, mDecision{event: event, outcome: "ended", reason: reason, promoter: m.promoters[a.promoter].id, click: a.click})
}

// endAgent: a customer served by an agent or sales team loses every active
// association (docs/rules.md T 2.5), programs in id order.
func (m *model) endAgent(c *mCustomer, event string) {
	if !c.agent {
		return
	}
	for pi := range m.programs { // ids sort as their indexes do
		if m.active(c.states[pi]) != nil {
			m.end(c, pi, "agent_served", event)
		}
	}
}

// resolve finds the click a bind presents: a token, else the visitor's
// record (visitor ≥ 0), else none.
func (m *model) resolve(pi int, tok *mToken, visitor int) (*mClick, string) {
	var k mClick
	switch {
	case tok != nil:
		switch {
		case tok.tampered:
			return nil, "token_invalid"
		case !m.now.Before(tok.expires):
			return nil, "token_expired"
		case tok.program != pi:
			return nil, "token_invalid"
		}
		k = tok.mClick
	case visitor >= 0:
		r := m.visits[[2]int{pi, visitor}]
		if r == nil {
			return nil, "no_click"
		}
		k = *r
	default:
		return nil, "no_click"
	}
	if life := k.expires.Sub(k.issued); life <= 0 || life > mMaxLife {
		return nil, "no_click"
	}
	if l := m.links[k.link]; l == nil || l.deleted || l.program != pi || l.promoter != k.promoter {
		return nil, "no_click"
	}
	return &k, ""
}

// click is the edge recording an attributable click for a visitor: with
// click_model first an unexpired earlier record stands.
func (m *model) click(pi, visitor int, k mClick) {
	key := [2]int{pi, visitor}
	if old := m.visits[key]; old != nil && m.programs[pi].firstClick && old.expires.After(m.now) {
		return
	}
	m.visits[key] = &k
}

func kindOf(a *mAssoc) string {
	if a.protected {
		return "protected"
	}
	return "standard"
}

func (m *model) answer(associated bool, a *mAssoc, reason string) BindAnswer {
	ans := BindAnswer{Associated: associated, Reason: reason}
	if a != nil {
		exp := a.expires
		ans.Promoter, ans.Kind, ans.ExpiresAt = m.promoters[a.promoter].id, kindOf(a), &exp
	}
	return ans
}

// bind is POST /v1/bind for customer ci, program pi, by token or visitor
// record. It returns the write remembered for retries; replay says the
// request is a retry of it, answered as before, changing nothing.
func (m *model) bind(ci, pi int, event string, tok *mToken, visitor int, info mInfo) (ap *mApplied, replay bool) {
	c := m.customers[ci]
	ref, reason := m.resolve(pi, tok, visitor)
	op := fmt.Sprint("bind|", pi, "|", event, "|", reason, "|", info.key())
	if ref != nil {
		op += "|" + ref.click
	}
	if a := m.recall(c, op); a != nil {
		return a, true
	}
	ap = &mApplied{op: op, ans: m.bindFresh(ci, pi, event, ref, reason, info)}
	m.remember(c, ap)
	return ap, false
}

func (m *model) bindFresh(ci, pi int, event string, ref *mClick, reason string, info mInfo) BindAnswer {
	c, p := m.customers[ci], m.programs[pi]
	const (
		held = iota
		used
		claimed
	)
	claim := held
	if ref != nil {
		switch u := m.uses[ref.click]; {
		case u[ci]:
			claim = held // the same customer again is not a new use
		case len(u) >= p.bindsPerClick:
			claim = used
		default:
			claim = claimed
		}
	}
	m.merge(c, info)
	m.endAgent(c, event)
	st := c.states[pi]
	if a := m.active(st); a != nil && shares(c, m.promoters[a.promoter]) {
		m.end(c, pi, "same_person", event)
	}
	d := mDecision{event: event}
	if ref != nil {
		d.promoter, d.click = m.promoters[ref.promoter].id, ref.click
	}
	reject := func(r string) BindAnswer {
		d.outcome, d.reason = "rejected", r
		m.log(c, pi, d)
		return m.answer(false, m.active(st), r)
	}
	if ref == nil {
		return reject(reason)
	}
	pr := m.promoters[ref.promoter]
	switch {
	case !m.now.Before(ref.expires):
		return reject("no_click")
	case claim == used:
		return reject("click_used")
	case c.agent:
		return reject("agent_served")
	case pr.suspended:
		return reject("promoter_suspended")
	case shares(c, pr):
		return reject("same_person")
	case event == "login" && c.paid && !p.associatePaid:
		return reject("old_customer")
	}
	prev := m.active(st)
	if prev != nil && prev.protected && prev.promoter != ref.promoter {
		return reject("protected_by_other")
	}
	// Associated: the click now binds this customer (a rejected bind uses
	// nothing).
	if m.uses[ref.click] == nil {
		m.uses[ref.click] = map[int]bool{}
	}
	m.uses[ref.click][ci] = true
	if prev != nil && prev.protected {
		d.outcome = "kept" // never renewed or downgraded
		m.log(c, pi, d)
		return m.answer(true, prev, "")
	}
	days, protected := p.associateDays, false
	if event == "register" {
		days, protected = p.protectDays, true
	}
	a := &mAssoc{promoter: ref.promoter, protected: protected, link: ref.link, click: ref.click,
		since: m.now, expires: m.now.Add(time.Duration(days) * day)}
	switch {
	case prev == nil:
		d.outcome = "created"
	case prev.promoter == ref.promoter:
		d.outcome, a.since = "renewed", prev.since
	default:
		d.outcome = "overridden"
	}
	st.assoc = a
	m.log(c, pi, d)
	return m.answer(true, a, "")
}

// halfUp is a × b / c rounded half up, exactly.
func halfUp(a, b, c int64) int64 {
	n := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	n.Mul(n, big.NewInt(2)).Add(n, big.NewInt(c))
	n.Quo(n, new(big.Int).Mul(big.NewInt(c), big.NewInt(2)))
	if !n.IsInt64() {
		panic("halfUp overflows int64")
	}
	return n.Int64()
}

func (p *mProgram) rate(protected bool, tier int) int64 {
	r := p.standardPPM
	if protected {
		r = p.protectedPPM
	}
	if n := len(p.tierBonus); n > 0 {
		r += p.tierBonus[min(max(tier, 0), n-1)]
	}
	return r
}

type mConv struct {
	order             string
	program, customer int
	amount            int64
	currency, product string
	prepaid           bool
	fps               []string
}

// convert is POST /v1/conversions; code is the error code expected, if any.
func (m *model) convert(in mConv) (ans ConversionAnswer, code string) {
	if in.amount < 0 || in.amount > mMaxAmount {
		return ans, "invalid"
	}
	if o := m.orders[in.order]; o != nil {
		if o.customer != in.customer || o.program != in.program || o.amount != in.amount || o.currency != in.currency ||
			o.product != in.product || o.prepaid != in.prepaid {
			return ans, "conflict"
		}
		return o.ans, ""
	}
	c, p := m.customers[in.customer], m.programs[in.program]
	m.merge(c, mInfo{fps: in.fps})
	m.endAgent(c, "conversion")
	st := c.states[in.program]
	a := m.active(st)
	ans = ConversionAnswer{Order: in.order, Currency: in.currency}
	o := &mOrder{id: in.order, program: in.program, customer: in.customer, amount: in.amount, currency: in.currency,
		product: in.product, prepaid: in.prepaid, refunds: map[string]mRefund{}}
	var pr *mPromoter
	if a != nil {
		pr = m.promoters[a.promoter]
		ans.Promoter, ans.Kind = pr.id, kindOf(a)
		o.promoter, o.click = pr.id, a.click
	}
	switch {
	case in.amount == 0:
		ans.Reason = "zero_amount"
	case c.agent:
		ans.Reason = "agent_served"
	case a == nil:
		ans.Reason = "no_association"
	case shares(c, pr):
		ans.Reason = "same_person"
	case pr.suspended:
		ans.Reason = "promoter_suspended"
	case p.productScope && st.paidProducts[in.product], !p.productScope && c.paid:
		ans.Reason = "repeat_purchase"
	case p.requirePrepaid && !in.prepaid:
		ans.Reason = "not_prepaid"
	case len(p.products) > 0 && !slices.Contains(p.products, in.product):
		ans.Reason = "product_not_eligible"
	}
	if in.amount > 0 { // any paid order marks the customer as paid, eligible or not
		c.paid = true
		st.paidProducts[in.product] = true
	}
	if ans.Reason == "same_person" {
		m.end(c, in.program, "same_person", "conversion")
	}
	d := mDecision{event: "conversion", outcome: "rejected", reason: ans.Reason, promoter: o.promoter, click: o.click, order: in.order}
	if ans.Reason == "" {
		rate := p.rate(a.protected, pr.tier)
		comm := halfUp(in.amount, rate, 1_000_000)
		if p.cap > 0 {
			comm = min(comm, max(p.cap-st.capUsed, 0))
		}
		st.capUsed += comm
		ans.Eligible, ans.Rate, ans.Commission = true, attribution.Rate(rate), comm
		o.granted, o.commission = comm, comm
		d.outcome = "attributed"
	}
	m.log(c, in.program, d)
	o.ans = ans
	m.orders[in.order] = o
	return ans, ""
}

// refund is POST /v1/conversions/{order}/refunds.
func (m *model) refund(order, id string, amount int64) (RefundAnswer, string) {
	if amount < 1 || amount > mMaxAmount {
		return RefundAnswer{}, "invalid"
	}
	o := m.orders[order]
	if o == nil {
		return RefundAnswer{}, "not_found"
	}
	if r, ok := o.refunds[id]; ok {
		if r.amount != amount {
			return RefundAnswer{}, "conflict"
		}
		return RefundAnswer{Order: order, Refund: id, Refunded: r.refunded, Commission: r.commission}, ""
	}
	if amount > o.amount-o.refunded || o.nRefunds >= mMaxRefunds {
		return RefundAnswer{}, "invalid"
	}
	o.refunded += amount
	comm := halfUp(o.granted, o.amount-o.refunded, o.amount)
	if !o.erased { // an erased customer's order is refunded alone
		c := m.customers[o.customer]
		st := c.states[o.program]
		st.capUsed = max(st.capUsed-(o.commission-comm), 0) // cap use drops by the commission taken back
		m.log(c, o.program, mDecision{event: "refund", outcome: "refunded", promoter: o.promoter, click: o.click, order: order, refund: id})
	}
	o.commission = comm
	o.refunds[id] = mRefund{amount: amount, refunded: o.refunded, commission: comm}
	o.nRefunds++
	return RefundAnswer{Order: order, Refund: id, Refunded: o.refunded, Commission: comm}, ""
}

// erase is DELETE /v1/customers/{id} (DESIGN "Privacy"): the customer is
// forgotten and its id, used again, is a new customer. Its orders stay and
// are answered as before when reported again by the same id (with another
// customer or other values: a conflict); a refund of one changes nothing
// of any customer and logs nothing. The clicks it used stay used, by
// nobody the model can name.
func (m *model) erase(ci int) {
	for _, o := range m.orders {
		if o.customer == ci {
			o.erased = true
		}
	}
	for _, u := range m.uses {
		if u[ci] {
			m.nErased++
			delete(u, ci)
			u[-m.nErased] = true
		}
	}
	c := m.customers[ci]
	*c = mCustomer{id: c.id, fps: map[string]bool{}}
	for range m.programs {
		c.states = append(c.states, &mState{paidProducts: map[string]bool{}})
		c.log = append(c.log, nil)
	}
}

// putCustomer is PUT /v1/customers/{id}.
func (m *model) putCustomer(ci int, in mInfo) (ap *mApplied, replay bool) {
	c := m.customers[ci]
	op := "customer|" + in.key()
	if a := m.recall(c, op); a != nil {
		return a, true
	}
	m.merge(c, in)
	n := 0
	for pi := range m.programs {
		n += len(c.log[pi])
	}
	m.endAgent(c, "customer")
	for pi := range m.programs {
		n -= len(c.log[pi])
	}
	ap = &mApplied{op: op}
	if n != 0 { // remembered only if it ended something
		m.remember(c, ap)
	}
	return ap, false
}

// attribution is GET /v1/attribution.
func (m *model) attribution(ci, pi int) AttributionAnswer {
	st := m.customers[ci].states[pi]
	switch a := st.assoc; {
	case a == nil:
		return AttributionAnswer{}
	case a.ended != "":
		return AttributionAnswer{Reason: a.ended}
	case !m.now.Before(a.expires):
		return AttributionAnswer{}
	default:
		since, exp := a.since, a.expires
		return AttributionAnswer{Attributed: true, Promoter: m.promoters[a.promoter].id, Kind: kindOf(a), Link: a.link,
			Click: a.click, Since: &since, ExpiresAt: &exp}
	}
}
