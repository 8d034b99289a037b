package api

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
	"github.com/refgate/refgate/store/storetest"
)

// backends returns a fresh store of each kind: embedded, a real single
// redis-server, a real 3-master Redis Cluster.
func backends(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"Embedded": func(t *testing.T) store.Store {
			s, err := embedded.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"Redis": func(t *testing.T) store.Store {
			srv := redistest.Start(t)
			s, err := redisstore.New(redisstore.Config{URL: srv.URL(), PoolSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"Cluster": func(t *testing.T) store.Store {
			cl := redistest.StartCluster(t, 3, 0)
			s, err := redisstore.New(redisstore.Config{Addrs: cl.Addrs(), Cluster: true, PoolSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func newService(t testing.TB, st store.Store) *Service {
	signer, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	c := new(clock.Clock)
	sv := &Service{Store: st, Signer: signer, Hasher: attribution.NewFingerprintHasher([]byte("0123456789abcdef")), Now: c.Now}
	ctx := context.Background()
	p := storetest.Program("shop")
	if err := st.PutProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	return sv
}

// tokenFor signs a click on promoter's link for customer.
func (sv *Service) tokenFor(t testing.TB, promoter string) string {
	now := sv.Now()
	storetest.Link(t, sv.Store, "shop", promoter, "l-"+promoter)
	tok := cookie.Token{Program: "shop", Promoter: promoter, Link: "l-" + promoter, Click: "c-" + promoter + "-" + events.NewID(),
		Issued: now, Expires: now.Add(24 * time.Hour)}
	b, err := sv.Signer.AppendToken(nil, &tok)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConcurrentBindsOneWinner(t *testing.T) {
	for name, newStore := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			sv := newService(t, st)
			ctx := context.Background()
			const n = 50
			toks := make([]string, n)
			for i := range toks {
				id := fmt.Sprint("p", i)
				if err := st.PutPromoter(ctx, &attribution.Promoter{ID: id, Status: "active"}); err != nil {
					t.Fatal(err)
				}
				toks[i] = sv.tokenFor(t, id)
			}
			answers := make([]*BindAnswer, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: "hot", Event: "register", Token: toks[i]})
					if err != nil {
						t.Error(err)
						return
					}
					answers[i] = a
				}()
			}
			wg.Wait()
			winners := map[string]bool{}
			for _, a := range answers {
				if a != nil && a.Associated {
					winners[a.Promoter] = true
				}
			}
			holder, err := sv.Attribution(ctx, "shop", "hot")
			if err != nil {
				t.Fatal(err)
			}
			if len(winners) != 1 || !winners[holder.Promoter] {
				t.Fatalf("winners %v, holder %+v: exactly one promoter must hold the customer", winners, holder)
			}
			for _, a := range answers {
				if a != nil && !a.Associated && (a.Reason != "protected_by_other" || a.Promoter != holder.Promoter) {
					t.Errorf("a loser must see the winner's protection: %+v", a)
				}
			}
			ds, _ := st.Decisions(ctx, "shop", "hot")
			created := 0
			for _, d := range ds {
				if d.Outcome == attribution.DecisionCreated {
					created++
					if d.Promoter != holder.Promoter {
						t.Errorf("the created decision names %s, the holder is %s", d.Promoter, holder.Promoter)
					}
				} else if d.Reason != "protected_by_other" {
					t.Errorf("unexpected decision %+v", d)
				}
			}
			if len(ds) != n || created != 1 {
				t.Errorf("decision log: %d entries, %d created; want %d and 1", len(ds), created, n)
			}
		})
	}
}

func TestConcurrentSameOrderOneCommission(t *testing.T) {
	for name, newStore := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			sv := newService(t, st)
			ctx := context.Background()
			st.PutPromoter(ctx, &attribution.Promoter{ID: "bob", Status: "active"})
			if a, err := sv.Bind(ctx, BindInput{Program: "shop", Customer: "c1", Event: "register", Token: sv.tokenFor(t, "bob")}); err != nil || !a.Associated {
				t.Fatalf("%+v %v", a, err)
			}
			const n = 20
			answers := make([]*ConversionAnswer, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a, err := sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: 10000, Currency: "CNY", Product: "cvm"})
					if err != nil {
						t.Error(err)
						return
					}
					answers[i] = a
				}()
			}
			wg.Wait()
			for _, a := range answers {
				if a == nil || *a != *answers[0] {
					t.Fatalf("answers differ: %+v vs %+v", a, answers[0])
				}
			}
			if !answers[0].Eligible || answers[0].Commission != 3000 {
				t.Errorf("answer %+v", answers[0])
			}
			ds, _ := st.Decisions(ctx, "shop", "c1")
			conversions := 0
			for _, d := range ds {
				if d.Event == attribution.EventConversion {
					conversions++
				}
			}
			c, _ := st.Customer(ctx, "c1")
			if conversions != 1 || c.Programs["shop"].CapUsed != 3000 {
				t.Errorf("%d conversion decisions, cap used %d: want one decision, one commission", conversions, c.Programs["shop"].CapUsed)
			}
		})
	}
}
