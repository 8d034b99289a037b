package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/faultproxy"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/storetest"
)

var lt0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// TestSettledEntryJSON: settleApply marks an entry settled by appending
// ,"statement":"ID" to its JSON, without decoding it; that must be the
// JSON encoding/json writes for the entry with Statement set, whatever
// else the entry holds.
func TestSettledEntryJSON(t *testing.T) {
	id := attribution.NewStatementID("shop_1")
	for _, e := range []*attribution.Entry{
		storetest.Accrual("alice", "o1", 3000, lt0),
		storetest.Adjustment("bob@x.com", "fix:1", -5, "RUB", lt0.In(time.FixedZone("MSK", 3*3600))),
		storetest.Reversal("a", "o.2", "r-1", -1, lt0.Add(time.Nanosecond)),
		{ID: "adj:x", Program: "p", Promoter: "a", Kind: attribution.Adjustment, Amount: attribution.MaxEntryAmount, Currency: "X"},
	} {
		unsettled, _ := json.Marshal(e)
		settled := *e
		settled.Statement = id
		want, _ := json.Marshal(&settled)
		if got := string(unsettled[:len(unsettled)-1]) + `,"statement":"` + id + `"}`; got != string(want) {
			t.Errorf("appended:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

func openCluster(t *testing.T, cl *redistest.Cluster) *Store {
	t.Helper()
	s, err := New(Config{Addrs: cl.Addrs(), Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLedgerTwoClients: two instances (two clients of one Redis, or of one
// cluster) settling the same promoter at once settle each entry once, and
// posting the same entry at once create it once.
func TestLedgerTwoClients(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		srv := redistest.Start(t)
		a, b := open(t, srv), open(t, srv)
		t.Run("Settle", func(t *testing.T) { storetest.ConcurrentSettle(t, a, b) })
		t.Run("Post", func(t *testing.T) { storetest.ConcurrentPost(t, a, b) })
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3, 0)
		a, b := openCluster(t, cl), openCluster(t, cl)
		t.Run("Settle", func(t *testing.T) { storetest.ConcurrentSettle(t, a, b) })
		t.Run("Post", func(t *testing.T) { storetest.ConcurrentPost(t, a, b) })
	})
}

// ledgerScenario writes a bit of everything of program shop's ledger.
func ledgerScenario(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.MarkLedger(ctx, "shop", "o:o9", lt0); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"alice", "bob", "carol"} {
		storetest.Post(t, s, storetest.Accrual(p, fmt.Sprint("o", i), 1000, lt0))
		storetest.Post(t, s, storetest.Accrual(p, fmt.Sprint("later", i), 1000, lt0.Add(48*time.Hour)))
	}
	through := lt0.Add(31 * 24 * time.Hour)
	for _, p := range []string{"alice", "bob"} {
		sts, err := s.Settle(ctx, "shop", p, through, 0, through)
		if err != nil || len(sts) != 1 {
			t.Fatal(sts, err)
		}
		if _, err := s.MarkPaid(ctx, sts[0].ID, "wire-"+p, through); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Balance(ctx, "shop", "alice", through); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerKeys: every ledger key of a program is in one slot of the
// cluster (so each ledger call runs on one node), and none has a TTL but
// the report days of its commission. KEYS
// is for this test only: refgate never lists keys.
func TestLedgerKeys(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, keys []string, slot func(string) int64, ttl func(string) time.Duration) {
		t.Helper()
		kinds := map[string]bool{}
		for _, k := range keys {
			rest, ok := strings.CutPrefix(k, "refgate:{lg:shop}:")
			if !ok {
				t.Errorf("key %s: want the prefix refgate:{lg:shop}:", k)
				continue
			}
			kind, _, _ := strings.Cut(rest, ":")
			kinds[kind] = true
			if kind == "rp" || kind == "rv" {
				// The report's days, which share the slot: kept for the
				// retention, not for ever (TestReportKeys).
				if d := ttl(k); d <= 0 {
					t.Errorf("report day %s has no TTL", k)
				}
			} else if d := ttl(k); d != -1 {
				t.Errorf("%s has a TTL (%v): ledger keys are money records", k, d)
			}
			if slot != nil && slot(k) != slot(keys[0]) {
				t.Errorf("%s is in slot %d, %s in %d", k, slot(k), keys[0], slot(keys[0]))
			}
		}
		for _, kind := range []string{"e", "a", "u", "p", "m", "s", "sl", "se"} {
			if !kinds[kind] {
				t.Errorf("no %s key among %q", kind, keys)
			}
		}
	}
	t.Run("Single", func(t *testing.T) {
		srv := redistest.Start(t)
		ledgerScenario(t, open(t, srv))
		admin := srv.Client()
		keys, err := admin.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		check(t, keys, nil, func(k string) time.Duration { return admin.TTL(ctx, k).Val() })
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3, 0)
		s := openCluster(t, cl)
		ledgerScenario(t, s)
		cc := s.rdb.(*redis.ClusterClient)
		var mu sync.Mutex // ForEachMaster calls at once
		var keys []string
		masters := 0
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			ks, err := m.Keys(ctx, "*").Result()
			mu.Lock()
			defer mu.Unlock()
			if len(ks) > 0 {
				masters++
			}
			keys = append(keys, ks...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if masters != 1 {
			t.Errorf("the ledger of one program is on %d masters", masters)
		}
		check(t, keys, func(k string) int64 { return cc.ClusterKeySlot(ctx, k).Val() },
			func(k string) time.Duration { return cc.TTL(ctx, k).Val() })
	})
}

// TestLedgerRefused: ledger writes Redis refuses while full come back as a
// RefusedError and write nothing.
func TestLedgerRefused(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	s := open(t, srv)
	due := storetest.Accrual("alice", "o1", 1000, lt0)
	storetest.Post(t, s, due)
	admin := srv.Client()
	junk := strings.Repeat("x", 64<<10)
	for i := 0; admin.Set(ctx, fmt.Sprint("junk:", i), junk, 0).Err() == nil; i++ {
	}
	oom := func(what string, err error) {
		t.Helper()
		var re *store.RefusedError
		if !errors.As(err, &re) || re.Reason != "oom" {
			t.Errorf("%s with Redis full: %v, want a RefusedError oom", what, err)
		}
	}
	_, _, err := s.PostEntry(ctx, storetest.Accrual("alice", "o2", 1000, lt0), "")
	oom("PostEntry", err)
	oom("MarkLedger", s.MarkLedger(ctx, "shop", "o:o3", lt0))
	_, err = s.Settle(ctx, "shop", "alice", lt0.Add(60*24*time.Hour), 0, lt0.Add(60*24*time.Hour))
	oom("Settle", err)
	if e, err := s.Entry(ctx, "shop", attribution.AccrualID("o2")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused post wrote %+v %v", e, err)
	}
	if e, err := s.Entry(ctx, "shop", due.ID); err != nil || e.Statement != "" {
		t.Errorf("a refused settlement settled %+v %v", e, err)
	}
	if sts, _, err := s.Statements(ctx, "shop", "", "", 10); err != nil || len(sts) != 0 {
		t.Errorf("a refused settlement made %+v %v", sts, err)
	}
	if b, err := s.Balance(ctx, "shop", "alice", lt0); err != nil || b["CNY"].Pending != 1000 {
		t.Errorf("reads with Redis full: %+v %v", b, err)
	}
}

// The lost-reply tests: the store behind faultproxy, which holds back or
// drops the reply to one script call while the script itself runs. A
// PostEntry, Settle or MarkPaid whose reply was lost, tried again by the
// store, by go-redis, and by the caller, is applied once.

// retriedCall is the caller: it calls again after an error, with a fresh
// deadline each time, until a call succeeds.
func retriedCall[T any](t *testing.T, call func(context.Context) (T, error)) T {
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
		if errors.Is(err, store.ErrEntryConflict) || errors.Is(err, store.ErrPaidConflict) {
			t.Fatalf("attempt %d: a conflict with the call's own lost write: %v", attempt, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %d attempts: %v", attempt, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type posted struct {
	e       *attribution.Entry
	created bool
}

func TestLedgerLostReplyAppliedOnce(t *testing.T) {
	faults := []struct {
		name string
		arm  func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault
	}{
		// Past the 500ms read timeout.
		{"Delay", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Delay(m, 2*time.Second) }},
		{"Drop", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Drop(m, 0) }},
		{"DropLater", func(p *faultproxy.Proxy, m faultproxy.Match) *faultproxy.Fault { return p.Drop(m, 2*time.Second) }},
	}
	through := lt0.Add(31 * 24 * time.Hour)
	entries := []*attribution.Entry{storetest.Accrual("alice", "o1", 3000, lt0), storetest.Accrual("alice", "o2", 2000, lt0),
		storetest.Reversal("alice", "o1", "r1", -700, lt0.Add(time.Hour))}
	ops := []struct {
		name   string
		script *redis.Script
		setup  func(t *testing.T, s *Store) // through the proxy, before the fault is armed
		call   func(t *testing.T, s *Store) func(context.Context) (any, error)
		// check sees the answers of the first call that succeeded and of
		// the caller asking again; lost says the caller's first call
		// failed (its write applied, its reply lost) and first is the
		// answer to the caller's retry.
		check func(t *testing.T, s *Store, first, again any, lost bool)
	}{
		{
			name:   "PostEntry",
			script: postEntry,
			setup:  func(t *testing.T, s *Store) { storetest.Post(t, s, storetest.Accrual("warm", "w1", 1, lt0)) },
			call: func(t *testing.T, s *Store) func(context.Context) (any, error) {
				return func(ctx context.Context) (any, error) {
					e, created, err := s.PostEntry(ctx, entries[0], "o:o1")
					return posted{e, created}, err
				}
			},
			check: func(t *testing.T, s *Store, first, again any, lost bool) {
				f, a := first.(posted), again.(posted)
				if f.created == lost {
					t.Errorf("created %v: the call whose reply was lost created the entry, and only it says so", f.created)
				}
				if a.created {
					t.Error("the caller's retry says it created the entry again")
				}
				if d := cmp.Diff(entries[0], f.e); d != "" {
					t.Errorf("stored (-want +got):\n%s", d)
				}
				ctx := context.Background()
				es, _, err := s.Entries(ctx, "shop", "alice", store.EntryQuery{Limit: 10})
				if err != nil || len(es) != 1 {
					t.Errorf("%d entries, %v; want one", len(es), err)
				}
				if b, err := s.Balance(ctx, "shop", "alice", lt0); err != nil || b["CNY"].Pending != 3000 {
					t.Errorf("balance %+v %v; want 3000 pending, once", b, err)
				}
				if marks, _ := s.LedgerMarks(ctx, "shop", through, 10); len(marks) != 0 {
					t.Errorf("marks left: %q", marks)
				}
			},
		},
		{
			name:   "Settle",
			script: settleApply,
			setup: func(t *testing.T, s *Store) {
				storetest.Post(t, s, storetest.Accrual("warm", "w1", 1, lt0))
				if sts, err := s.Settle(context.Background(), "shop", "warm", through, 0, through); err != nil || len(sts) != 1 {
					t.Fatal(sts, err)
				}
				for _, e := range entries {
					storetest.Post(t, s, e)
				}
			},
			call: func(t *testing.T, s *Store) func(context.Context) (any, error) {
				return func(ctx context.Context) (any, error) {
					return s.Settle(ctx, "shop", "alice", through, 0, through)
				}
			},
			check: func(t *testing.T, s *Store, first, again any, lost bool) {
				sts, more := first.([]attribution.Statement), again.([]attribution.Statement)
				if len(more) != 0 {
					t.Errorf("the caller's retry settled again: %+v", more)
				}
				ctx := context.Background()
				list, _, err := s.Statements(ctx, "shop", "alice", "", 10)
				if err != nil || len(list) != 1 || list[0].Amount != 4300 || list[0].Entries != 3 {
					t.Fatalf("statements of alice %+v, %v; want one of 4300, 3 entries", list, err)
				}
				switch {
				case lost && len(sts) != 0:
					t.Errorf("the caller's retry after a lost reply made %+v; the lost call settled everything", sts)
				case !lost && (len(sts) != 1 || cmp.Diff(list[0], sts[0]) != ""):
					t.Errorf("the call returned %+v, the store holds %+v", sts, list[0])
				}
				es, err := s.StatementEntries(ctx, list[0].ID)
				if err != nil || len(es) != 3 {
					t.Errorf("%d entries on the statement, %v; want 3, each once", len(es), err)
				}
				if b, err := s.Balance(ctx, "shop", "alice", through); err != nil || cmp.Diff(attribution.Balance{Settled: 4300}, b["CNY"]) != "" {
					t.Errorf("balance %+v %v; want 4300 settled, once", b, err)
				}
				if ps, _ := s.LedgerPromoters(ctx, "shop"); len(ps) != 0 {
					t.Errorf("promoters with unsettled entries: %q", ps)
				}
			},
		},
		{
			name:   "MarkPaid",
			script: markPaid,
			setup: func(t *testing.T, s *Store) {
				storetest.Post(t, s, storetest.Accrual("warm", "w1", 1, lt0))
				storetest.Post(t, s, entries[0])
				ctx := context.Background()
				for _, p := range []string{"warm", "alice"} {
					sts, err := s.Settle(ctx, "shop", p, through, 0, through)
					if err != nil || len(sts) != 1 {
						t.Fatal(sts, err)
					}
					if p == "warm" {
						if _, err := s.MarkPaid(ctx, sts[0].ID, "warm", through); err != nil {
							t.Fatal(err)
						}
					}
				}
			},
			call: func(t *testing.T, s *Store) func(context.Context) (any, error) {
				return func(ctx context.Context) (any, error) {
					sts, _, err := s.Statements(ctx, "shop", "alice", "", 1)
					if err != nil || len(sts) != 1 {
						return nil, fmt.Errorf("alice's statement: %v %v", sts, err)
					}
					return s.MarkPaid(ctx, sts[0].ID, "wire-1", through.Add(time.Hour))
				}
			},
			check: func(t *testing.T, s *Store, first, again any, _ bool) {
				st := first.(*attribution.Statement)
				if st.Status != attribution.StatementPaid || st.Reference != "wire-1" {
					t.Errorf("paid: %+v", st)
				}
				if d := cmp.Diff(st, again.(*attribution.Statement)); d != "" {
					t.Errorf("paid again (-first +again):\n%s", d)
				}
			},
		},
	}
	for _, mode := range []struct {
		name    string
		retries int           // go-redis's MaxRetries
		first   time.Duration // the deadline of the caller's first call; 0: the retried call's
	}{
		{"GoRedisRetries", 0, 0},
		{"NoGoRedisRetries", -1, 0},
		// The caller's first call gives up before the reply comes, and the
		// caller calls again: another call, which cannot tell the write
		// was its own.
		{"CallerRetries", -1, 300 * time.Millisecond},
	} {
		t.Run(mode.name, func(t *testing.T) {
			for _, op := range ops {
				t.Run(op.name, func(t *testing.T) {
					for _, fault := range faults {
						if mode.first > 0 && fault.name == "Drop" {
							continue // a dropped connection fails at once: the store's own retry takes it
						}
						t.Run(fault.name, func(t *testing.T) {
							t.Parallel()
							srv := redistest.Start(t)
							p, err := faultproxy.Start(faultproxy.Config{Network: "unix", Target: srv.Addr})
							if err != nil {
								t.Fatal(err)
							}
							t.Cleanup(func() { p.Close() })
							s, err := New(Config{Addrs: []string{p.Addr()}, MaxRetries: mode.retries})
							if err != nil {
								t.Fatal(err)
							}
							t.Cleanup(func() { s.Close() })
							// The warm-up loads the scripts, so that the fault hits
							// a script that runs, not a NOSCRIPT.
							op.setup(t, s)
							if op.name == "PostEntry" {
								if err := s.MarkLedger(context.Background(), "shop", "o:o1", lt0); err != nil {
									t.Fatal(err)
								}
							}
							f := fault.arm(p, faultproxy.Command("EVALSHA", op.script.Hash()))
							lost := mode.first > 0
							if lost {
								ctx, cancel := context.WithTimeout(context.Background(), mode.first)
								a, err := op.call(t, s)(ctx)
								cancel()
								if err == nil {
									t.Fatalf("the first call succeeded (%+v) with its reply held back", a)
								}
								t.Logf("the first call: %v", err)
							}
							first := retriedCall(t, op.call(t, s))
							select {
							case <-f.Hit():
							case <-time.After(10 * time.Second):
								t.Fatal("the fault never hit: the call did not run the script")
							}
							if r := f.Reply(); len(r) == 0 || r[0] == '-' || r[0] == '!' {
								t.Fatalf("the fault took an error reply %q: the script did not run", r)
							}
							again := retriedCall(t, op.call(t, s))
							op.check(t, open(t, srv), first, again, lost)
						})
					}
				})
			}
		})
	}
}
