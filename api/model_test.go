package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/store"
)

// TestModel runs random sequences of clicks, binds, orders, refunds,
// customer facts, program and promoter edits, link deletions and time
// jumps, with retries of each, against a Service on each store, and checks
// every answer, every customer's attribution and every promoter's customers
// (store.Holders) after every step, the explain log and the events against
// the model in model_helpers_test.go.

const (
	modelSteps    = 100   // per rapid check
	modelMinSteps = 10000 // per backend
)

func TestModel(t *testing.T) {
	for name, newStore := range backends(t) {
		if name == "Cluster" {
			continue // the conformance and concurrency suites cover the cluster; keep CI short
		}
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			stats := &modelStats{reasons: map[string]int{}}
			check := 0
			start := time.Now()
			rapid.Check(t, func(rt *rapid.T) {
				check++
				stats.steps += runModel(rt, st, fmt.Sprintf("k%d-", check), stats)
			})
			t.Logf("%d checks, %d steps in %v, 0 violations", check, stats.steps, time.Since(start).Round(time.Millisecond))
			t.Logf("decisions seen: %s", stats)
			if stats.steps < modelMinSteps {
				t.Errorf("only %d steps ran; want at least %d", stats.steps, modelMinSteps)
			}
		})
	}
}

type modelStats struct {
	steps   int
	reasons map[string]int // "event/outcome/reason" → count
}

func (s *modelStats) String() string {
	keys := make([]string, 0, len(s.reasons))
	for k := range s.reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, s.reasons[k])
	}
	return b.String()
}

// errCode is the code of an *attribution.Error, "" for none.
func errCode(err error) string {
	var de *attribution.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de):
		return de.Code
	}
	return "other: " + err.Error()
}

func eqTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.Format(time.RFC3339)
}

// The fingerprint pool: "kind:value". email:d-1@x and device:d-1@x hold the
// same value under different kinds and must not match; the two phones are
// one number written two ways and must.
var mFPPool = []string{"email:ann@example.com", "email:bob@example.com", "phone:13800000001", "device:d-1@x",
	"ip:192.0.2.7", "email:d-1@x", "phone:+86 138-0000-0001"}

func toFingerprints(raw []string) attribution.Fingerprints {
	var f attribution.Fingerprints
	for _, r := range raw {
		kind, v, _ := strings.Cut(r, ":")
		switch kind {
		case "email":
			f.Emails = append(f.Emails, v)
		case "phone":
			f.Phones = append(f.Phones, v)
		case "device":
			f.Devices = append(f.Devices, v)
		case "ip":
			f.IPs = append(f.IPs, v)
		}
	}
	return f
}

func drawFPs(rt *rapid.T, label string, most int) []string {
	n := rapid.IntRange(0, most).Draw(rt, label+"N")
	var fps []string
	for i := 0; i < n; i++ {
		fps = append(fps, rapid.SampledFrom(mFPPool).Draw(rt, label))
	}
	return fps
}

var (
	mRates   = []int64{0, 1, 250000, 300000, 333333, 999999, 1000000}
	mDays    = []int{1, 7, 30, 90}
	mAmounts = []int64{0, 1, 2, 3, 333, 10000, 20000, 999_999, 1_000_000_000_007, mMaxAmount - 1, mMaxAmount}
	mAdvance = []time.Duration{11 * time.Minute, time.Hour, day, 6 * day, 7 * day, 29 * day, 30 * day, 31 * day,
		89 * day, 90 * day, 91 * day, 366 * day}
	mProducts = []string{"cvm", "lighthouse", "cdn"}
)

func drawPolicy(rt *rapid.T) mPolicy {
	return mPolicy{
		cookieDays:     rapid.SampledFrom([]int{1, 7, 30, 90, 365}).Draw(rt, "cookieDays"),
		protectDays:    rapid.SampledFrom(mDays).Draw(rt, "protectDays"),
		associateDays:  rapid.SampledFrom(mDays).Draw(rt, "associateDays"),
		firstClick:     rapid.Bool().Draw(rt, "firstClick"),
		associatePaid:  rapid.Bool().Draw(rt, "associatePaid"),
		productScope:   rapid.Bool().Draw(rt, "productScope"),
		requirePrepaid: rapid.Bool().Draw(rt, "requirePrepaid"),
		products:       rapid.SampledFrom([][]string{nil, {"cvm", "lighthouse"}, {"cvm"}}).Draw(rt, "products"),
		protectedPPM:   rapid.SampledFrom(mRates).Draw(rt, "protectedRate"),
		standardPPM:    rapid.SampledFrom(mRates).Draw(rt, "standardRate"),
		tierBonus:      rapid.SampledFrom([][]int64{nil, {0, 20000}, {0, 20000, 40000}, {1, 999999}}).Draw(rt, "tierBonus"),
		cap:            rapid.SampledFrom([]int64{0, 0, 1, 4000, 123457, 1_000_000_000_000, mMaxAmount}).Draw(rt, "cap"),
		bindsPerClick:  rapid.SampledFrom([]int{1, 1, 2, 3}).Draw(rt, "bindsPerClick"),
		holdDays:       rapid.SampledFrom([]int{0, 7, 30}).Draw(rt, "holdDays"),
		minPayout:      rapid.SampledFrom([]int64{0, 0, 1000, 1_000_000_000}).Draw(rt, "minPayout"),
	}
}

func (p *mProgram) record() *attribution.Program {
	ap := &attribution.Program{ID: p.id, CookieDays: p.cookieDays, ProtectDays: p.protectDays, AssociateDays: p.associateDays,
		AssociatePaid: p.associatePaid, RequirePrepaid: p.requirePrepaid, Products: slices.Clone(p.products),
		AllowedHosts: []string{"shop.example.com"}, CustomerCap: p.cap, BindsPerClick: p.bindsPerClick,
		HoldDays: &p.holdDays, MinPayout: p.minPayout,
		Rates: attribution.Rates{Protected: attribution.Rate(p.protectedPPM), Standard: attribution.Rate(p.standardPPM)}}
	if p.firstClick {
		ap.ClickModel = attribution.FirstClick
	}
	if p.productScope {
		ap.FirstPurchaseScope = attribution.ScopeProduct
	}
	for _, b := range p.tierBonus {
		ap.TierBonus = append(ap.TierBonus, attribution.Rate(b))
	}
	ap.Normalize()
	return ap
}

// driver runs one rapid check: the model, the Service, and what ties them.
type driver struct {
	rt     *rapid.T
	ctx    context.Context
	st     store.Store
	sv     *Service
	signer *cookie.Signer
	hasher *attribution.FingerprintHasher
	rec    *recorder
	m      *model
	stats  *modelStats
	prefix string
	step   int
	trace  []string // what was done, for the failure message

	cur      [][]string // (program, promoter) → the current link code
	deleted  []string   // deleted link codes
	nLinks   int
	nClicks  int
	tokens   []*mToken
	binds    []bindReq
	orderIDs []string
	seen     map[string]bool     // every event id emitted
	evIDs    map[string][]string // order id, or order id/refund id → the event ids its decision emitted
	stepIDs  map[string]bool     // event ids first emitted in this step
	unlogged int                 // of them, decisions no explain log keeps (refunds of an erased customer's orders)
	ledger   mLedger
}

func (d *driver) fatalf(format string, args ...any) {
	d.rt.Helper()
	d.rt.Fatalf("step %d: "+format+"\nwhat was done (model time, step, request, answer):\n%s", append(append([]any{d.step}, args...),
		strings.Join(d.trace, "\n"))...)
}

func (d *driver) tracef(format string, args ...any) {
	d.trace = append(d.trace, fmt.Sprintf("%s %3d: ", d.m.now.Format("2006-01-02T15:04"), d.step)+fmt.Sprintf(format, args...))
}

func (d *driver) describeToken(t *mToken) string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("{program %s promoter %s link %s click %s issued %s expires %s tampered %v}", d.m.programs[t.program].id,
		d.m.promoters[t.promoter].id, t.link, t.click, t.issued.Format("2006-01-02T15:04"), t.expires.Format("2006-01-02T15:04"), t.tampered)
}

func (d *driver) must(err error) {
	d.rt.Helper()
	if err != nil {
		d.fatalf("%v", err)
	}
}

func (d *driver) putProgram(pi int) {
	p := d.m.programs[pi].record()
	d.must(p.Validate())
	d.must(d.st.PutProgram(d.ctx, p))
	d.sv.Invalidate(store.Invalidation{Kind: store.Program, ID: p.ID}) // as the invalidation feed does
}

// hash hashes the model's fingerprints, every one of which is valid.
func (d *driver) hash(raw []string) attribution.FingerprintSet {
	set, err := d.hasher.Hash(toFingerprints(raw))
	d.must(err)
	return set
}

func (d *driver) putPromoter(i int) {
	p := d.m.promoters[i]
	status := attribution.StatusActive
	if p.suspended {
		status = attribution.StatusSuspended
	}
	d.must(d.st.PutPromoter(d.ctx, &attribution.Promoter{ID: p.id, Status: status, Tier: p.tier,
		Fingerprints: d.hash(p.fps)}))
	d.sv.Invalidate(store.Invalidation{Kind: store.Promoter, ID: p.id})
}

func (d *driver) newLink(pi, pr int) {
	code := fmt.Sprintf("%sL%d", d.prefix, d.nLinks)
	d.nLinks++
	d.must(d.st.CreateLink(d.ctx, &attribution.Link{Code: code, Program: d.m.programs[pi].id, Promoter: d.m.promoters[pr].id,
		Destination: "https://shop.example.com/"}))
	d.m.links[code] = &mLink{program: pi, promoter: pr}
	d.cur[pi][pr] = code
}

// sign makes a token; it is how the edge makes the cookie.
func (d *driver) sign(pi int, k mClick, visitor string) string {
	b, err := d.signer.AppendToken(nil, &cookie.Token{Program: d.m.programs[pi].id, Promoter: d.m.promoters[k.promoter].id,
		Link: k.link, Click: k.click, Visitor: visitor, Issued: k.issued, Expires: k.expires})
	d.must(err)
	return string(b)
}

func (d *driver) newClickID() string {
	d.nClicks++
	return fmt.Sprintf("%sclick%d", d.prefix, d.nClicks)
}

func (d *driver) visitor(v int) string { return fmt.Sprintf("%sv%d", d.prefix, v) }

// logLens is how many decisions the model has logged, per customer and
// program.
func (d *driver) logLens() [][]int {
	out := make([][]int, len(d.m.customers))
	for ci, c := range d.m.customers {
		for pi := range d.m.programs {
			out[ci] = append(out[ci], len(c.log[pi]))
		}
	}
	return out
}

func added(before, after [][]int) int {
	n := 0
	for ci := range before {
		for pi := range before[ci] {
			n += after[ci][pi] - before[ci][pi]
		}
	}
	return n
}

// fresh checks the events of a call that decided anew: one per decision the
// model made, none seen before.
func (d *driver) fresh(what string, ids []string, decisions int) []string {
	d.rt.Helper()
	if len(ids) != decisions {
		d.fatalf("%s emitted %d events, the model made %d decisions", what, len(ids), decisions)
	}
	for _, id := range ids {
		if id == "" || d.seen[id] {
			d.fatalf("%s emitted event id %q, empty or seen before", what, id)
		}
		d.seen[id], d.stepIDs[id] = true, true
	}
	return ids
}

// replayed checks the events of a call answered from an earlier decision:
// the same ids again, nothing new.
func (d *driver) replayed(what string, ids, first []string) {
	d.rt.Helper()
	if !slices.Equal(ids, first) {
		d.fatalf("%s replayed events %v, the first call emitted %v", what, ids, first)
	}
}

func (d *driver) count(dec mDecision) {
	d.stats.reasons[dec.event+"/"+dec.outcome+"/"+dec.reason]++
}

func runModel(rt *rapid.T, st store.Store, prefix string, stats *modelStats) int {
	signer, err := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	if err != nil {
		rt.Fatal(err)
	}
	m := &model{now: time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC), links: map[string]*mLink{}, visits: map[[2]int]*mClick{},
		uses: map[string]map[int]bool{}, orders: map[string]*mOrder{}}
	rec := &recorder{}
	d := &driver{rt: rt, ctx: context.Background(), st: st, signer: signer, rec: rec, m: m, stats: stats, prefix: prefix,
		hasher: attribution.NewFingerprintHasher([]byte("0123456789abcdef")),
		seen:   map[string]bool{}, evIDs: map[string][]string{}, ledger: newMLedger()}
	d.sv = &Service{Store: st, Signer: signer, Hasher: d.hasher, Now: func() time.Time { return m.now }, Events: rec}

	// Two programs with drawn policies, three promoters, four customers,
	// three visitors; one link per program and promoter.
	for _, id := range []string{"pa", "pb"} {
		m.programs = append(m.programs, &mProgram{id: prefix + id, mPolicy: drawPolicy(rt)})
		d.putProgram(len(m.programs) - 1)
	}
	for i := 0; i < 3; i++ {
		m.promoters = append(m.promoters, &mPromoter{id: fmt.Sprintf("%sp%d", prefix, i), tier: rapid.IntRange(0, 3).Draw(rt, "tier"),
			suspended: rapid.IntRange(0, 11).Draw(rt, "suspended") == 0, fps: drawFPs(rt, "promoterFP", 1)})
		d.putPromoter(i)
	}
	d.cur = make([][]string, len(m.programs))
	for pi := range m.programs {
		d.cur[pi] = make([]string, len(m.promoters))
		for pr := range m.promoters {
			d.newLink(pi, pr)
		}
	}
	for i := 0; i < 4; i++ {
		c := &mCustomer{id: fmt.Sprintf("%sc%d", prefix, i), fps: map[string]bool{}}
		for range m.programs {
			c.states = append(c.states, &mState{paidProducts: map[string]bool{}})
			c.log = append(c.log, nil)
		}
		m.customers = append(m.customers, c)
	}

	actions := []struct {
		weight int
		do     func()
	}{
		{3, func() { d.doClick() }}, {1, d.doForgedToken}, {4, d.doBind}, {3, d.doClickAndBind}, {2, d.doBindAgain},
		{4, d.doConvert}, {2, d.doConvertAgain},
		{3, d.doRefund}, {1, d.doPutCustomer}, {1, d.doEditProgram}, {1, d.doEditPromoter}, {1, d.doDeleteLink},
		{2, d.doAdvance}, {1, d.doErase}, {1, d.doAdjust}, {1, d.doSettle}, {1, d.doMarkPaid},
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	for d.step = 0; d.step < modelSteps; d.step++ {
		d.stepIDs, d.unlogged = map[string]bool{}, 0
		before := d.logLens()
		n := rapid.IntRange(0, total-1).Draw(rt, "action")
		for _, a := range actions {
			if n < a.weight {
				a.do()
				break
			}
			n -= a.weight
		}
		if ids := rec.take(); len(ids) != 0 {
			d.fatalf("events %v emitted outside the calls that were checked", ids)
		}
		d.checkAttributions()
		d.checkHolders()
		d.checkLogs(before, d.step%10 == 9 || d.step == modelSteps-1)
		d.checkLedger()
	}
	return modelSteps
}

// checkAttributions compares every customer's attribution in every program
// with the model's.
func (d *driver) checkAttributions() {
	d.rt.Helper()
	for ci, c := range d.m.customers {
		for pi, p := range d.m.programs {
			got, err := d.sv.Attribution(d.ctx, p.id, c.id)
			d.must(err)
			want := d.m.attribution(ci, pi)
			if got.Attributed != want.Attributed || got.Promoter != want.Promoter || got.Reason != want.Reason ||
				got.Kind != want.Kind || got.Link != want.Link || got.Click != want.Click ||
				!eqTime(got.Since, want.Since) || !eqTime(got.ExpiresAt, want.ExpiresAt) {
				d.fatalf("attribution of %s in %s:\n got %+v since %s expires %s\nwant %+v since %s expires %s", c.id, p.id,
					*got, fmtTime(got.Since), fmtTime(got.ExpiresAt), want, fmtTime(want.Since), fmtTime(want.ExpiresAt))
			}
		}
	}
}

// checkHolders compares every promoter's customers in every program, as
// the promoter's view lists them (store.Holders), with the customers the
// model says they hold, newest first.
func (d *driver) checkHolders() {
	d.rt.Helper()
	for pi, p := range d.m.programs {
		for _, pr := range d.m.promoters {
			type held struct {
				id    string
				since time.Time
			}
			var want []held
			for ci, c := range d.m.customers {
				if a := d.m.attribution(ci, pi); a.Attributed && a.Promoter == pr.id {
					want = append(want, held{c.id, *a.Since})
				}
			}
			slices.SortFunc(want, func(a, b held) int {
				if c := b.since.Compare(a.since); c != 0 {
					return c
				}
				return strings.Compare(b.id, a.id)
			})
			hs, next, err := d.st.Holders(d.ctx, p.id, pr.id, d.m.now, "", store.MaxPage)
			d.must(err)
			got := make([]held, len(hs))
			for i, h := range hs {
				got[i] = held{h.Customer, h.Assoc.Since}
			}
			if next != "" || !slices.EqualFunc(got, want, func(a, b held) bool { return a.id == b.id && a.since.Equal(b.since) }) {
				d.fatalf("holders of %s in %s:\n got %v (next %q)\nwant %v", pr.id, p.id, got, next, want)
			}
		}
	}
}

// checkLogs compares the explain log of every customer and program that got
// decisions this step (all of them if full) with the model's: the latest
// 100, newest first; the new entries carry the ids of the events just
// emitted.
func (d *driver) checkLogs(before [][]int, full bool) {
	d.rt.Helper()
	after := d.logLens()
	newIDs := 0
	for ci, c := range d.m.customers {
		for pi, p := range d.m.programs {
			fresh := max(after[ci][pi]-before[ci][pi], 0) // fewer: erased
			newIDs += fresh
			if fresh == 0 && !full {
				continue
			}
			ds, err := d.st.Decisions(d.ctx, p.id, c.id)
			d.must(err)
			want := c.log[pi]
			if n := min(len(want), mMaxDecision); len(ds) != n {
				d.fatalf("explain log of %s in %s has %d entries, the model %d", c.id, p.id, len(ds), n)
			}
			for i, got := range ds {
				w := want[len(want)-1-i]
				if got.Program != p.id || !got.At.Equal(w.at) || got.Event != w.event || got.Outcome != w.outcome ||
					got.Reason != w.reason || got.Promoter != w.promoter || got.Click != w.click || got.Order != w.order ||
					got.Refund != w.refund || got.ID == "" {
					d.fatalf("explain log of %s in %s, entry %d (newest 0):\n got %+v\nwant %+v", c.id, p.id, i, got, w)
				}
				if i < fresh && !d.stepIDs[got.ID] {
					d.fatalf("explain log of %s in %s: new entry %+v has an id no event of this step carried", c.id, p.id, got)
				}
			}
		}
	}
	if newIDs+d.unlogged != len(d.stepIDs) {
		d.fatalf("%d new decisions (%d not logged), %d new event ids", newIDs, d.unlogged, len(d.stepIDs))
	}
}

// doClick: a visitor clicks a promoter's link; the edge sets the cookie
// (the token) and records the click for the visitor.
func (d *driver) doClick() (pi, v int) {
	pi = rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	pr := rapid.IntRange(0, len(d.m.promoters)-1).Draw(d.rt, "promoter")
	v = rapid.IntRange(0, 2).Draw(d.rt, "visitor")
	p := d.m.programs[pi]
	k := mClick{promoter: pr, link: d.cur[pi][pr], click: d.newClickID(), issued: d.m.now,
		expires: d.m.now.Add(time.Duration(p.cookieDays) * day)}
	model := attribution.LastClick
	if p.firstClick {
		model = attribution.FirstClick
	}
	d.must(d.st.RecordClicks(d.ctx, "b-"+k.click, []attribution.Click{{ID: k.click, Program: p.id, Promoter: d.m.promoters[pr].id, Link: k.link,
		Visitor: d.visitor(v), At: k.issued, ExpiresAt: k.expires, Model: model, Outcome: attribution.OutcomeAttributed}}))
	d.m.click(pi, v, k)
	d.tracef("click by %s on %s of %s in %s: click %s expires %s", d.visitor(v), k.link, d.m.promoters[pr].id, p.id, k.click,
		k.expires.Format("2006-01-02T15:04"))
	d.tokens = append(d.tokens, &mToken{program: pi, mClick: k, token: d.sign(pi, k, d.visitor(v))})
	return pi, v
}

// doForgedToken: a token that must not bind: a link of another promoter or
// program, an unknown or deleted link, a lifetime no program gives, a bad
// signature.
func (d *driver) doForgedToken() {
	pi := rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	pr := rapid.IntRange(0, len(d.m.promoters)-1).Draw(d.rt, "promoter")
	k := mClick{promoter: pr, link: d.cur[pi][pr], click: d.newClickID(), issued: d.m.now, expires: d.m.now.Add(30 * day)}
	tampered := false
	switch rapid.IntRange(0, 5).Draw(d.rt, "forgery") {
	case 0:
		k.link = d.cur[pi][(pr+1)%len(d.m.promoters)]
	case 1:
		k.link = d.cur[1-pi][pr]
	case 2:
		k.link = d.prefix + "nolink"
	case 3:
		if len(d.deleted) > 0 {
			k.link = d.deleted[rapid.IntRange(0, len(d.deleted)-1).Draw(d.rt, "deletedLink")]
		}
	case 4:
		k.expires = k.issued.Add(mMaxLife + time.Second)
	case 5:
		tampered = true
	}
	tok := d.sign(pi, k, "")
	if tampered {
		i := strings.LastIndexByte(tok, '.') + 1
		c := byte('A')
		if tok[i] == 'A' {
			c = 'B'
		}
		tok = tok[:i] + string(c) + tok[i+1:]
	}
	d.tokens = append(d.tokens, &mToken{program: pi, mClick: k, token: tok, tampered: tampered})
	d.tracef("forged token %s", d.describeToken(d.tokens[len(d.tokens)-1]))
}

func (d *driver) drawInfo(label string) mInfo {
	var in mInfo
	switch rapid.IntRange(0, 59).Draw(d.rt, label) {
	case 0, 1, 2:
		in.paid = true
	case 3:
		in.agent = true
	case 4, 5, 6, 7, 8:
		in.fps = drawFPs(d.rt, label+"FP", 2)
	}
	return in
}

func (d *driver) customerInfo(in mInfo) attribution.CustomerInfo {
	out := attribution.CustomerInfo{Paid: in.paid, AgentServed: in.agent}
	if len(in.fps) > 0 {
		out.Fingerprints = d.hash(in.fps)
	}
	return out
}

// bindReq is a bind request as the driver sent it, to send again later.
type bindReq struct {
	ci, pi, visitor int
	tok             *mToken
	info            mInfo
	in              BindInput
}

// doBind: register or login with a token, a visitor record or nothing.
func (d *driver) doBind() {
	ci := rapid.IntRange(0, len(d.m.customers)-1).Draw(d.rt, "customer")
	pi := rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	var tok *mToken
	visitor := -1
	switch src := rapid.IntRange(0, 9).Draw(d.rt, "source"); {
	case src < 5 && len(d.tokens) > 0:
		// Mostly one of the latest tokens, sometimes an old one; mostly
		// in its own program.
		lo := max(len(d.tokens)-4, 0)
		if rapid.IntRange(0, 3).Draw(d.rt, "oldToken") == 0 {
			lo = 0
		}
		tok = d.tokens[rapid.IntRange(lo, len(d.tokens)-1).Draw(d.rt, "token")]
		if rapid.IntRange(0, 5).Draw(d.rt, "otherProgram") != 0 {
			pi = tok.program
		}
	case src < 9:
		visitor = rapid.IntRange(0, 2).Draw(d.rt, "visitor")
	}
	d.sendBind(ci, pi, tok, visitor)
}

// doClickAndBind: a visitor clicks, then registers or logs in.
func (d *driver) doClickAndBind() {
	pi, v := d.doClick()
	ci := rapid.IntRange(0, len(d.m.customers)-1).Draw(d.rt, "customer")
	if rapid.Bool().Draw(d.rt, "byToken") {
		d.sendBind(ci, pi, d.tokens[len(d.tokens)-1], -1)
	} else {
		d.sendBind(ci, pi, nil, v)
	}
}

// doBindAgain: an earlier bind request sent again, as a customer logging
// in again with the same cookie does (a replay within the replay window).
func (d *driver) doBindAgain() {
	if len(d.binds) == 0 {
		d.doBind()
		return
	}
	d.bind(d.binds[rapid.IntRange(0, len(d.binds)-1).Draw(d.rt, "earlierBind")])
}

func (d *driver) sendBind(ci, pi int, tok *mToken, visitor int) {
	event := rapid.SampledFrom([]string{"register", "login"}).Draw(d.rt, "event")
	r := bindReq{ci: ci, pi: pi, tok: tok, visitor: visitor, info: d.drawInfo("bindInfo"),
		in: BindInput{Program: d.m.programs[pi].id, Customer: d.m.customers[ci].id, Event: event}}
	if tok != nil {
		r.in.Token = tok.token
	}
	if visitor >= 0 {
		r.in.Visitor = d.visitor(visitor)
	}
	r.in.Info = d.customerInfo(r.info)
	d.binds = append(d.binds, r)
	d.bind(r)
	if rapid.IntRange(0, 3).Draw(d.rt, "retryBind") == 0 {
		d.bind(r) // a retry after a lost reply
	}
}

func (d *driver) bind(r bindReq) {
	d.rt.Helper()
	ci, pi, in, tok, visitor, info := r.ci, r.pi, r.in, r.tok, r.visitor, r.info
	lens := d.logLens()
	got, err := d.sv.Bind(d.ctx, in)
	d.must(err)
	ap, replay := d.m.bind(ci, pi, in.Event, tok, visitor, info)
	want := ap.ans
	d.tracef("bind %s %s in %s, token %s, visitor %d, info %+v: %+v expires %s (replay %v)", in.Event, in.Customer, in.Program,
		d.describeToken(tok), visitor, info, *got, fmtTime(got.ExpiresAt), replay)
	if got.Associated != want.Associated || got.Promoter != want.Promoter || got.Kind != want.Kind ||
		got.Reason != want.Reason || !eqTime(got.ExpiresAt, want.ExpiresAt) {
		d.fatalf("bind %s of %s in %s (token %v, visitor %d, info %+v, replay %v):\n got %+v expires %s\nwant %+v expires %s",
			in.Event, in.Customer, in.Program, tok != nil, visitor, info, replay, *got, fmtTime(got.ExpiresAt), want, fmtTime(want.ExpiresAt))
	}
	if replay {
		d.stats.reasons["bind/replayed"]++
		d.replayed("bind replayed", d.rec.take(), ap.ids)
		return
	}
	c := d.m.customers[ci]
	d.count(c.log[pi][len(c.log[pi])-1])
	ap.ids = d.fresh("bind", d.rec.take(), added(lens, d.logLens()))
}

func (d *driver) conversionInput(c mConv) ConversionInput {
	in := ConversionInput{Program: d.m.programs[c.program].id, Order: c.order, Customer: d.m.customers[c.customer].id,
		Amount: c.amount, Currency: c.currency, Product: c.product, Prepaid: c.prepaid}
	if len(c.fps) > 0 {
		in.Info.Fingerprints = d.hash(c.fps)
	}
	return in
}

// convert sends a conversion and checks the answer or error against the
// model's; it returns the events emitted.
func (d *driver) convert(c mConv) (code string, ids []string) {
	d.rt.Helper()
	got, err := d.sv.Convert(d.ctx, d.conversionInput(c))
	want, wantCode := d.m.convert(c)
	ids = d.rec.take()
	d.tracef("conversion %+v: %+v, error %v", c, got, err)
	if code = errCode(err); code != wantCode {
		d.fatalf("conversion %+v: error %v (code %q), the model says code %q", c, err, code, wantCode)
	}
	if code == "conflict" {
		var de *attribution.Error
		if !errors.As(err, &de) {
			d.fatalf("conversion %+v: conflict %T, want an *attribution.Error", c, err)
		}
	}
	if code != "" {
		if len(ids) != 0 {
			d.fatalf("conversion %+v failed with %v but emitted %v", c, err, ids)
		}
		return code, nil
	}
	if *got != want {
		d.fatalf("conversion %+v:\n got %+v\nwant %+v", c, *got, want)
	}
	return "", ids
}

// doConvert: a new order.
func (d *driver) doConvert() {
	c := mConv{
		order:    fmt.Sprintf("%so%d", d.prefix, len(d.orderIDs)),
		program:  rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program"),
		customer: rapid.IntRange(0, len(d.m.customers)-1).Draw(d.rt, "customer"),
		currency: rapid.SampledFrom([]string{"CNY", "CNY", "RUB"}).Draw(d.rt, "currency"),
		product:  rapid.SampledFrom(mProducts).Draw(d.rt, "product"),
		prepaid:  rapid.IntRange(0, 4).Draw(d.rt, "prepaid") != 0,
	}
	switch k := rapid.IntRange(0, 19).Draw(d.rt, "amountKind"); {
	case k == 0:
		c.amount = rapid.SampledFrom([]int64{-1, mMaxAmount + 1}).Draw(d.rt, "badAmount")
	case k < 6:
		c.amount = rapid.Int64Range(1, mMaxAmount).Draw(d.rt, "amount")
	default:
		c.amount = rapid.SampledFrom(mAmounts).Draw(d.rt, "amount")
	}
	// Mostly a customer someone holds: those are the orders with a chance
	// of earning.
	var held [][2]int
	for ci := range d.m.customers {
		for pi := range d.m.programs {
			if d.m.active(d.m.customers[ci].states[pi]) != nil {
				held = append(held, [2]int{ci, pi})
			}
		}
	}
	if len(held) > 0 && rapid.IntRange(0, 2).Draw(d.rt, "heldCustomer") != 0 {
		h := rapid.SampledFrom(held).Draw(d.rt, "held")
		c.customer, c.program = h[0], h[1]
	}
	if rapid.IntRange(0, 9).Draw(d.rt, "conversionFP") == 0 {
		c.fps = drawFPs(d.rt, "conversionFP", 1)
	}
	lens := d.logLens()
	code, ids := d.convert(c)
	if code != "" {
		return
	}
	cu := d.m.customers[c.customer]
	d.count(cu.log[c.program][len(cu.log[c.program])-1])
	d.orderIDs = append(d.orderIDs, c.order)
	d.evIDs[c.order] = d.fresh("conversion", ids, added(lens, d.logLens()))
	if rapid.IntRange(0, 4).Draw(d.rt, "retryConversion") == 0 {
		_, ids := d.convert(c)
		d.replayed("conversion retried", ids, d.evIDs[c.order])
	}
}

// doConvertAgain: an order reported again, later, with the same values (the
// same answer) or other ones (a conflict).
func (d *driver) doConvertAgain() {
	if len(d.orderIDs) == 0 {
		d.doConvert()
		return
	}
	o := d.m.orders[d.orderIDs[rapid.IntRange(0, len(d.orderIDs)-1).Draw(d.rt, "order")]]
	c := mConv{order: o.id, program: o.program, customer: o.customer, amount: o.amount, currency: o.currency,
		product: o.product, prepaid: o.prepaid}
	switch rapid.IntRange(0, 11).Draw(d.rt, "change") {
	case 0:
		c.amount = (o.amount + 1) % (mMaxAmount + 1)
	case 1:
		c.currency = "USD"
	case 2:
		c.product = mProducts[(slices.Index(mProducts, o.product)+1)%len(mProducts)]
	case 3:
		c.prepaid = !o.prepaid
	case 4:
		c.customer = (o.customer + 1) % len(d.m.customers)
	case 5:
		c.program = 1 - o.program
	}
	if rapid.Bool().Draw(d.rt, "againFP") {
		c.fps = drawFPs(d.rt, "againFP", 1) // ignored by a replay
	}
	code, ids := d.convert(c)
	if code == "" {
		d.replayed("conversion again", ids, d.evIDs[o.id])
	}
}

// doRefund: a refund with a new id, an id used before (same amount: the
// same answer; another: a conflict), too much, or on an unknown order.
func (d *driver) doRefund() {
	if len(d.orderIDs) == 0 || rapid.IntRange(0, 29).Draw(d.rt, "unknownOrder") == 0 {
		order := d.prefix + "nosuchorder"
		_, err := d.sv.Refund(d.ctx, order, "r0", 1)
		d.tracef("refund of unknown order: %v", err)
		if _, want := d.m.refund(order, "r0", 1); errCode(err) != want {
			d.fatalf("refund of unknown order: %v, want code %q", err, want)
		}
		return
	}
	o := d.m.orders[d.orderIDs[rapid.IntRange(0, len(d.orderIDs)-1).Draw(d.rt, "order")]]
	var id string
	var amount int64
	left := o.amount - o.refunded
	used := make([]string, 0, len(o.refunds))
	for k := range o.refunds {
		used = append(used, k)
	}
	sort.Strings(used)
	if len(used) > 0 && rapid.IntRange(0, 2).Draw(d.rt, "reuseRefund") == 0 {
		id = rapid.SampledFrom(used).Draw(d.rt, "refundID")
		amount = o.refunds[id].amount
		if rapid.IntRange(0, 2).Draw(d.rt, "otherAmount") == 0 {
			amount = rapid.SampledFrom([]int64{amount + 1, amount - 1, left, 1}).Draw(d.rt, "refundAmount")
		}
	} else {
		id = fmt.Sprintf("r%d", rapid.IntRange(0, 5).Draw(d.rt, "refundN"))
		amount = rapid.SampledFrom([]int64{1, left, left + 1, (left + 1) / 2, o.amount, 0, -1, mMaxAmount + 1,
			rapid.Int64Range(1, max(left, 1)).Draw(d.rt, "someAmount")}).Draw(d.rt, "refundAmount")
	}
	lens := d.logLens()
	got, err := d.sv.Refund(d.ctx, o.id, id, amount)
	_, replay := o.refunds[id]
	replay = replay && o.refunds[id].amount == amount
	want, wantCode := d.m.refund(o.id, id, amount)
	ids := d.rec.take()
	d.tracef("refund %s of %d on %s: %+v, error %v", id, amount, o.id, got, err)
	if code := errCode(err); code != wantCode {
		d.fatalf("refund %s of %d on %s (amount %d, %d refunded): error %v (code %q), the model says code %q",
			id, amount, o.id, o.amount, o.refunded, err, code, wantCode)
	}
	if wantCode == "conflict" || (wantCode == "invalid" && amount >= 1 && amount <= mMaxAmount) {
		var de *attribution.Error
		if !errors.As(err, &de) {
			d.fatalf("refund %s of %d on %s: %T %v, want an *attribution.Error", id, amount, o.id, err, err)
		}
	}
	if wantCode != "" {
		if len(ids) != 0 {
			d.fatalf("refund %s failed with %v but emitted %v", id, err, ids)
		}
		return
	}
	if *got != want {
		d.fatalf("refund %s of %d on %s (amount %d, granted %d):\n got %+v\nwant %+v", id, amount, o.id, o.amount, o.granted, *got, want)
	}
	key := o.id + "/" + id
	if replay {
		d.replayed("refund "+key+" again", ids, d.evIDs[key])
		return
	}
	d.count(mDecision{event: "refund", outcome: "refunded"})
	logged := added(lens, d.logLens())
	if o.erased {
		d.stats.reasons["refund/erased"]++
		logged, d.unlogged = 1, d.unlogged+1 // its event, no log entry
	}
	d.evIDs[key] = d.fresh("refund "+key, ids, logged)
}

// doErase: the storefront erases a customer; sometimes again at once (a
// retry), which changes nothing more.
func (d *driver) doErase() {
	ci := rapid.IntRange(0, len(d.m.customers)-1).Draw(d.rt, "customer")
	id := d.m.customers[ci].id
	for range rapid.IntRange(1, 2).Draw(d.rt, "erasures") {
		d.must(d.sv.EraseCustomer(d.ctx, id))
		if ids := d.rec.take(); len(ids) != 0 {
			d.fatalf("erasing %s emitted %v", id, ids)
		}
	}
	d.m.erase(ci)
	d.stats.reasons["customer/erased"]++
	d.tracef("erase %s", id)
	if _, err := d.st.Customer(d.ctx, id); !errors.Is(err, store.ErrNotFound) {
		d.fatalf("customer %s after its erasure: %v", id, err)
	}
}

// doPutCustomer: the storefront reports what it knows of a customer.
func (d *driver) doPutCustomer() {
	ci := rapid.IntRange(0, len(d.m.customers)-1).Draw(d.rt, "customer")
	var in mInfo
	switch rapid.IntRange(0, 11).Draw(d.rt, "fact") {
	case 0, 1, 2:
		in.paid = true
	case 3:
		in.agent = true
	default:
		in.fps = drawFPs(d.rt, "customerFP", 2)
	}
	lens := d.logLens()
	_, err := d.sv.PutCustomer(d.ctx, d.m.customers[ci].id, d.customerInfo(in))
	d.must(err)
	ap, replay := d.m.putCustomer(ci, in)
	d.tracef("put customer %s %+v (replay %v)", d.m.customers[ci].id, in, replay)
	if replay {
		d.replayed("customer update replayed", d.rec.take(), ap.ids)
		return
	}
	n := added(lens, d.logLens())
	for i := 0; i < n; i++ {
		d.count(mDecision{event: "customer", outcome: "ended", reason: "agent_served"})
	}
	ap.ids = d.fresh("customer update", d.rec.take(), n)
}

// doEditProgram: the program's policy changes; existing associations and
// orders keep what they were given.
func (d *driver) doEditProgram() {
	pi := rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	d.m.programs[pi].mPolicy = drawPolicy(d.rt)
	d.putProgram(pi)
	d.tracef("program %s now %+v", d.m.programs[pi].id, d.m.programs[pi].mPolicy)
}

// doEditPromoter: a tier update, a suspension or its end, new fingerprints.
func (d *driver) doEditPromoter() {
	i := rapid.IntRange(0, len(d.m.promoters)-1).Draw(d.rt, "promoter")
	p := d.m.promoters[i]
	switch rapid.IntRange(0, 2).Draw(d.rt, "promoterEdit") {
	case 0:
		p.tier = rapid.IntRange(0, 3).Draw(d.rt, "tier")
	case 1:
		p.suspended = !p.suspended
	case 2:
		p.fps = drawFPs(d.rt, "promoterFP", 2)
	}
	d.putPromoter(i)
	d.tracef("promoter %+v", *p)
}

// doDeleteLink: a link is deleted (its clicks stop binding); the promoter
// gets a new one.
func (d *driver) doDeleteLink() {
	pi := rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	pr := rapid.IntRange(0, len(d.m.promoters)-1).Draw(d.rt, "promoter")
	code := d.cur[pi][pr]
	d.must(d.st.DeleteLink(d.ctx, code))
	d.sv.Invalidate(store.Invalidation{Kind: store.Link, ID: code})
	d.m.links[code].deleted = true
	d.deleted = append(d.deleted, code)
	d.newLink(pi, pr)
	d.tracef("link %s deleted; %s now has %s", code, d.m.promoters[pr].id, d.cur[pi][pr])
}

func (d *driver) doAdvance() {
	adv := rapid.SampledFrom(mAdvance).Draw(d.rt, "advance")
	d.m.now = d.m.now.Add(adv)
	d.tracef("time +%v", adv)
}

// TestReplayEmitsSameEventIDs: a conversion or a refund sent again emits
// the events of its decision again under the same ids, and nothing new, so
// that consumers deduplicating on the id see each decision exactly once.
func TestReplayEmitsSameEventIDs(t *testing.T) {
	for name, newStore := range backends(t) {
		if name == "Cluster" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			sv := newService(t, st)
			now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
			sv.Now = func() time.Time { return now } // the retries come at once
			rec := &recorder{}
			sv.Events = rec
			ctx := context.Background()
			if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "bob", Status: "active"}); err != nil {
				t.Fatal(err)
			}
			bind := BindInput{Program: "shop", Customer: "c1", Event: "register", Token: sv.tokenFor(t, "bob")}
			twice := func(what string, call func() error) {
				t.Helper()
				if err := call(); err != nil {
					t.Fatal(err)
				}
				first := rec.take()
				if len(first) == 0 {
					t.Fatalf("%s emitted no event", what)
				}
				if err := call(); err != nil {
					t.Fatal(err)
				}
				if again := rec.take(); !slices.Equal(again, first) {
					t.Errorf("%s again emitted %v; the first time %v", what, again, first)
				}
			}
			twice("bind", func() error { _, err := sv.Bind(ctx, bind); return err })
			conv := ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm"}
			twice("conversion", func() error { _, err := sv.Convert(ctx, conv); return err })
			twice("refund", func() error { _, err := sv.Refund(ctx, "o1", "r1", 2500); return err })
			twice("second refund", func() error { _, err := sv.Refund(ctx, "o1", "r2", 2500); return err })
			// The first refund again, after the second: still its own event.
			var first string
			ds, err := st.Decisions(ctx, "shop", "c1")
			if err != nil {
				t.Fatal(err)
			}
			for _, dd := range ds {
				if dd.Refund == "r1" {
					first = dd.ID
				}
			}
			if _, err := sv.Refund(ctx, "o1", "r1", 2500); err != nil {
				t.Fatal(err)
			}
			if again := rec.take(); len(again) != 1 || again[0] != first {
				t.Errorf("refund r1 after r2 emitted %v, want [%s]", again, first)
			}
			// Conflicts emit nothing.
			conv.Amount++
			if _, err := sv.Convert(ctx, conv); errCode(err) != "conflict" {
				t.Errorf("changed order: %v, want a conflict", err)
			}
			if _, err := sv.Refund(ctx, "o1", "r1", 2600); errCode(err) != "conflict" {
				t.Errorf("changed refund: %v, want a conflict", err)
			}
			if evs := rec.take(); len(evs) != 0 {
				t.Errorf("conflicts emitted %v", evs)
			}
		})
	}
}

// TestModelClickUseSurvivesRebind is the smallest case the model found of a
// click binding more customers than binds_per_click: a customer bound by a
// click logs in again with the same cookie later (the same request, past
// the replay window) and is rejected; that must not give the click's use
// back, since the click did bind them (DESIGN: "a click binds at most
// binds_per_click distinct customers (... the same customer again is not a
// new use; a rejected bind uses nothing)").
func TestModelClickUseSurvivesRebind(t *testing.T) {
	for name, newStore := range backends(t) {
		if name == "Cluster" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			sv := newService(t, st) // program shop: binds_per_click 1
			now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
			sv.Now = func() time.Time { return now }
			ctx := context.Background()
			if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
				t.Fatal(err)
			}
			tok := sv.tokenFor(t, "alice")
			login := func(customer string) *BindAnswer {
				t.Helper()
				a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: customer, Event: "login", Token: tok})
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			if a := login("c1"); !a.Associated {
				t.Fatalf("c1 login: %+v", *a)
			}
			if _, err := sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 100,
				Currency: "CNY", Product: "cvm"}); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Hour)
			if a := login("c1"); a.Reason != "old_customer" {
				t.Fatalf("c1 login again after paying: %+v, want old_customer", *a)
			}
			if a := login("c2"); a.Associated || a.Reason != "click_used" {
				t.Errorf("c2 login with the click that bound c1: %+v, want click_used (binds_per_click 1)", *a)
			}
		})
	}
}
