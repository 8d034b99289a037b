package api

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/faultproxy"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
)

// The lost-reply tests: a real redis-server behind faultproxy, which holds
// back or drops the reply to one chosen Redis command while the command
// itself runs. docs/design.md: a write whose answer was lost and is tried again
// is applied once, and a retried write's events reuse the same ids.

// recorder is an Emitter keeping every event it is given.
type recorder struct {
	mu     sync.Mutex
	evs    []events.Event
	ledger []events.Event // ledger and statement events, since the last takeLedger
}

func (r *recorder) Emit(e *events.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, *e)
	switch e.Type {
	case events.TypeLedgerEntry, events.TypeStatementCreated, events.TypeStatementPaid:
		r.ledger = append(r.ledger, *e)
	}
	return true
}

// takeLedger returns the ledger and statement events since the last call.
func (r *recorder) takeLedger() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ledger
	r.ledger = nil
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = nil
}

// take returns the ids of the decision events emitted since the last
// take, in order, and forgets them; ledger and statement events are
// takeLedger's.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := []string{}
	for i := range r.evs {
		switch r.evs[i].Type {
		case events.TypeLedgerEntry, events.TypeStatementCreated, events.TypeStatementPaid:
			continue
		}
		ids = append(ids, r.evs[i].ID)
	}
	r.evs = nil
	return ids
}

func (r *recorder) all() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// faultEnv is a Service on Redis through a fault proxy.
type faultEnv struct {
	sv  *Service
	p   *faultproxy.Proxy
	rec *recorder
	tok string // bob's click, for c1
}

// newFaultEnv mirrors backends' Redis store, with the proxy's address and
// go-redis's own retries as maxRetries says (0: the default, one retry).
func newFaultEnv(t *testing.T, maxRetries int) *faultEnv {
	t.Helper()
	srv := redistest.Start(t)
	network := "tcp"
	if srv.Unix {
		network = "unix"
	}
	p, err := faultproxy.Start(faultproxy.Config{Network: network, Target: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	st, err := redisstore.New(redisstore.Config{Addrs: []string{p.Addr()}, PoolSize: 64, MaxRetries: maxRetries})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &faultEnv{sv: newService(t, st), p: p, rec: new(recorder)}
	e.sv.Events = e.rec
	ctx := context.Background()
	for _, id := range []string{"bob", "amy"} {
		if err := st.PutPromoter(ctx, &attribution.Promoter{ID: id, Status: "active"}); err != nil {
			t.Fatal(err)
		}
	}
	e.tok = e.sv.tokenFor(t, "bob")
	return e
}

func (e *faultEnv) bind(ctx context.Context) (*BindAnswer, error) {
	return e.sv.Bind(ctx, BindInput{Program: "shop", Customer: "c1", Event: "register", Token: e.tok})
}

func (e *faultEnv) convert(ctx context.Context) (*ConversionAnswer, error) {
	return e.sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm"})
}

func (e *faultEnv) refund(ctx context.Context) (*RefundAnswer, error) {
	return e.sv.Refund(ctx, "o1", "r1", 1000)
}

// retried is the storefront: it sends the same request until it succeeds.
// Only a "store unavailable" (503) is worth retrying; any other error is an
// answer, and a wrong one for a request that was fine.
func retried[T any](t *testing.T, call func(context.Context) (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a, err := call(ctx)
		cancel()
		if err == nil {
			return a
		}
		t.Logf("attempt %d: %v", attempt, err)
		if code := toError(err).Code; code != attribution.EUnavailable {
			t.Fatalf("attempt %d: a %s error for a request whose reply was lost: %v", attempt, code, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %d attempts: %v", attempt, err)
		}
		time.Sleep(50 * time.Millisecond) // the storefront's backoff
	}
}

// appliedOnce checks the events of the decisions ds (all the decisions the
// request made): each present at least once, every copy under the
// decision's id, and no event for anything else; typ's events have exactly
// one distinct id.
func appliedOnce(t *testing.T, rec *recorder, ds []attribution.Decision, typ string) []events.Event {
	t.Helper()
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.ID] = true
	}
	byID := map[string][]events.Event{}
	typed := map[string]bool{}
	entries := map[string]bool{}
	for _, e := range rec.all() {
		if e.Type == events.TypeLedgerEntry {
			// The decision's ledger entry: one entry, reported again under
			// its id by every retry.
			entries[e.ID] = true
			continue
		}
		if !ids[e.ID] {
			t.Errorf("event %s %s (%s) is of no decision the request made", e.Type, e.ID, e.Subject)
		}
		byID[e.ID] = append(byID[e.ID], e)
		if e.Type == typ {
			typed[e.ID] = true
		}
	}
	for _, d := range ds {
		copies := byID[d.ID]
		if len(copies) == 0 {
			t.Errorf("decision %+v has no event", d)
		}
		for _, c := range copies {
			if c.Type != copies[0].Type || c.Data.Outcome != d.Outcome {
				t.Errorf("copies of event %s differ: %s/%s and %s/%s", d.ID, copies[0].Type, copies[0].Data.Outcome, c.Type, c.Data.Outcome)
			}
		}
	}
	if len(typed) != 1 {
		t.Errorf("%d distinct %s event ids, want 1: %v", len(typed), typ, typed)
	}
	if len(entries) > 1 {
		t.Errorf("%d distinct ledger entry event ids, want at most 1: %v", len(entries), entries)
	}
	var out []events.Event
	for id := range typed {
		out = byID[id]
	}
	return out
}

// ledgerHas checks that bob's ledger holds exactly the entries want (id to
// amount): a retried decision wrote its entry once.
func ledgerHas(t *testing.T, e *faultEnv, want map[string]int64) {
	t.Helper()
	es, _, err := e.sv.Store.Entries(context.Background(), "shop", "bob", store.EntryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, en := range es {
		got[en.ID] += en.Amount
	}
	if len(es) != len(want) || !maps.Equal(got, want) {
		t.Errorf("ledger %v; want %v", got, want)
	}
}

// only returns the decisions of ds that keep says are the request's.
func only(ds []attribution.Decision, keep func(*attribution.Decision) bool) []attribution.Decision {
	var out []attribution.Decision
	for i := range ds {
		if keep(&ds[i]) {
			out = append(out, ds[i])
		}
	}
	return out
}

func TestFaultLostReplyAppliedOnce(t *testing.T) {
	// Where the fault hits: the customer's compare-and-set script, and the
	// claims before it.
	cas := faultproxy.Command("EVALSHA", "refgate:customer:{c1}")
	claimOrder := faultproxy.Command("SET", "refgate:order:{o1}")
	claimClick := faultproxy.Command("EVALSHA", "refgate:clickuse:")
	faults := []struct {
		name string
		arm  func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault
	}{
		// Past redisstore's 500ms read timeout.
		{"Delay", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Delay(m, 2*time.Second) }},
		{"Drop", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Drop(m, 0) }},
		{"DropLater", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Drop(m, 2*time.Second) }},
	}
	type place struct {
		name  string
		match faultproxy.Match
	}
	ops := []struct {
		name   string
		places []place
		setup  func(t *testing.T, e *faultEnv)
		call   func(e *faultEnv) func(context.Context) (any, error)
		check  func(t *testing.T, e *faultEnv, answer any)
	}{
		{
			name:   "Conversion",
			places: []place{{"CAS", cas}, {"ClaimOrder", claimOrder}},
			setup:  func(t *testing.T, e *faultEnv) { retried(t, e.bind) },
			call:   func(e *faultEnv) func(context.Context) (any, error) { return anyOf(e.convert) },
			check: func(t *testing.T, e *faultEnv, answer any) {
				if a := answer.(*ConversionAnswer); !a.Eligible || a.Commission != 3000 || a.Promoter != "bob" {
					t.Errorf("answer %+v; want eligible, 3000 for bob", a)
				}
				ctx := context.Background()
				c, err := e.sv.Store.Customer(ctx, "c1")
				if err != nil {
					t.Fatal(err)
				}
				if used := c.Programs["shop"].CapUsed; used != 3000 {
					t.Errorf("customer cap used %d; want 3000, one commission", used)
				}
				all, err := e.sv.Store.Decisions(ctx, "shop", "c1")
				if err != nil {
					t.Fatal(err)
				}
				ds := only(all, func(d *attribution.Decision) bool { return d.Event == attribution.EventConversion })
				if len(ds) != 1 || ds[0].Outcome != attribution.DecisionAttributed || ds[0].Order != "o1" {
					t.Fatalf("conversion decisions %+v; want one, attributed", ds)
				}
				for _, ev := range appliedOnce(t, e.rec, ds, events.TypeConversionAttributed) {
					if ev.Data.Commission == nil || *ev.Data.Commission != 3000 {
						t.Errorf("event commission %v; want 3000", ev.Data.Commission)
					}
				}
				ledgerHas(t, e, map[string]int64{"acc:o1": 3000})
			},
		},
		{
			name:   "Refund",
			places: []place{{"CAS", cas}},
			setup: func(t *testing.T, e *faultEnv) {
				retried(t, e.bind)
				if a := retried(t, e.convert); a.Commission != 3000 {
					t.Fatalf("conversion %+v", a)
				}
			},
			call: func(e *faultEnv) func(context.Context) (any, error) { return anyOf(e.refund) },
			check: func(t *testing.T, e *faultEnv, answer any) {
				if a := answer.(*RefundAnswer); a.Refunded != 1000 || a.Commission != 2700 {
					t.Errorf("answer %+v; want refunded 1000, commission 2700", a)
				}
				ctx := context.Background()
				c, err := e.sv.Store.Customer(ctx, "c1")
				if err != nil {
					t.Fatal(err)
				}
				if used := c.Programs["shop"].CapUsed; used != 2700 {
					t.Errorf("customer cap used %d; want 2700, the refund applied once", used)
				}
				all, err := e.sv.Store.Decisions(ctx, "shop", "c1")
				if err != nil {
					t.Fatal(err)
				}
				if n := len(only(all, func(d *attribution.Decision) bool { return d.Event == attribution.EventConversion })); n != 1 {
					t.Errorf("%d conversion decisions; want 1", n)
				}
				ds := only(all, func(d *attribution.Decision) bool { return d.Event == attribution.EventRefund })
				if len(ds) != 1 || ds[0].Outcome != attribution.DecisionRefunded {
					t.Fatalf("refund decisions %+v; want one", ds)
				}
				ledgerHas(t, e, map[string]int64{"acc:o1": 3000, "rev:o1:r1": -300})
				for _, ev := range appliedOnce(t, e.rec, ds, events.TypeConversionRefunded) {
					if ev.Data.RefundID != "r1" || ev.Data.Refunded == nil || *ev.Data.Refunded != 1000 ||
						ev.Data.Commission == nil || *ev.Data.Commission != 2700 {
						t.Errorf("refund event %+v; want r1, refunded 1000, commission 2700", ev.Data)
					}
				}
			},
		},
		{
			name:   "Bind",
			places: []place{{"CAS", cas}, {"ClaimClick", claimClick}},
			setup: func(t *testing.T, e *faultEnv) {
				// Another customer's bind loads both scripts, so that the
				// fault hits a script that runs, not a NOSCRIPT.
				retried(t, func(ctx context.Context) (*BindAnswer, error) {
					return e.sv.Bind(ctx, BindInput{Program: "shop", Customer: "warm", Event: "register", Token: e.sv.tokenFor(t, "amy")})
				})
			},
			call: func(e *faultEnv) func(context.Context) (any, error) { return anyOf(e.bind) },
			check: func(t *testing.T, e *faultEnv, answer any) {
				if a := answer.(*BindAnswer); !a.Associated || a.Promoter != "bob" || a.Kind != string(attribution.Protected) {
					t.Errorf("answer %+v; want associated, protected, to bob", a)
				}
				ctx := context.Background()
				at, err := e.sv.Attribution(ctx, "shop", "c1")
				if err != nil {
					t.Fatal(err)
				}
				if !at.Attributed || at.Promoter != "bob" {
					t.Errorf("attribution %+v; want bob", at)
				}
				ds, err := e.sv.Store.Decisions(ctx, "shop", "c1")
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) != 1 || ds[0].Outcome != attribution.DecisionCreated {
					t.Fatalf("decisions %+v; want one, created", ds)
				}
				appliedOnce(t, e.rec, ds, events.TypeAssociationCreated)
			},
		},
	}
	for _, retries := range []struct {
		name string
		n    int
	}{{"GoRedisRetries", 0}, {"NoGoRedisRetries", -1}} {
		t.Run(retries.name, func(t *testing.T) {
			for _, op := range ops {
				t.Run(op.name, func(t *testing.T) {
					for _, pl := range op.places {
						t.Run(pl.name, func(t *testing.T) {
							for _, fault := range faults {
								t.Run(fault.name, func(t *testing.T) {
									t.Parallel()
									e := newFaultEnv(t, retries.n)
									op.setup(t, e)
									e.rec.reset()
									f := fault.arm(e.p, pl.match)
									first := retried(t, op.call(e))
									select {
									case <-f.Hit():
									case <-time.After(10 * time.Second):
										t.Fatal("the fault never hit: the request did not send the command")
									}
									if r := f.Reply(); len(r) == 0 || r[0] == '-' || r[0] == '!' {
										t.Fatalf("the fault took an error reply %q: the command did not run", r)
									}
									// The storefront lost even the success, and asks
									// once more: the same answer, nothing new.
									if again := retried(t, op.call(e)); !reflect.DeepEqual(again, first) {
										t.Errorf("asked again: %+v; first %+v", again, first)
									}
									op.check(t, e, first)
								})
							}
						})
					}
				})
			}
		})
	}
}

// anyOf makes call's answer an any, for a table of different requests.
func anyOf[T any](call func(context.Context) (T, error)) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		a, err := call(ctx)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}
