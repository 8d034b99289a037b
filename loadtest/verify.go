package loadtest

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/refgate/refgate/client"
)

// Verification is what reading attribution back after a funnel run found.
// Each field of Violations counts customers or orders breaking one
// invariant; all zero is a pass.
type Verification struct {
	Customers  int        `json:"customers"` // customers checked
	Orders     int        `json:"orders"`    // distinct orders checked
	Binds      int        `json:"binds"`     // bind answers checked
	Violations Violations `json:"violations"`
	// Unverifiable counts customers whose decision log was longer than the
	// 100 entries refgate keeps, so the log checks were skipped for them.
	Unverifiable int      `json:"unverifiable"`
	Examples     []string `json:"examples,omitempty"` // the first few violations, described
	Errors       int      `json:"errors"`             // customers that could not be read back
}

// Violations are the invariants a funnel run checks.
type Violations struct {
	// Holder: the promoter refgate answers for the customer is not the one
	// its own decision log says holds it (or it answers one where the log
	// has none): two holders, or a lost association.
	Holder int64 `json:"holder"`
	// Protection: a protected association was overridden, or a bind or
	// order sent after the generator had been told the customer is
	// protected by B was credited to another promoter.
	Protection int64 `json:"protection"`
	// LostDecision: fewer decisions in the log than distinct requests
	// answered (refgate answers the same bind request again from its
	// first decision, as it does a retried order).
	LostDecision int64 `json:"lost_decision"`
	// OrderDecisions: one order id with different answers, or with more
	// than one decision in the log.
	OrderDecisions int64 `json:"order_decisions"`
	// FirstPurchase: more than one commission for one customer.
	FirstPurchase int64 `json:"first_purchase"`
}

// Total is the sum of all violations.
func (v *Verification) Total() int64 {
	x := v.Violations
	return x.Holder + x.Protection + x.LostDecision + x.OrderDecisions + x.FirstPurchase
}

type explainAnswer struct {
	Decisions []client.Decision `json:"decisions"` // newest first
}

// Verify reads back every customer the run touched (attribution and the
// decision log) with up to conc requests at a time and checks the
// invariants against the log and against the answers the run received.
func (f *Funnel) Verify(ctx context.Context, conc int) *Verification {
	if conc <= 0 {
		conc = 16
	}
	v := &Verification{}
	var mu sync.Mutex
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, c := range f.custs {
		c.mu.Lock()
		obs := append([]observation(nil), c.obs...)
		c.mu.Unlock()
		if len(obs) == 0 {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var a client.Attribution
			var e explainAnswer
			q := "?program=" + url.QueryEscape(f.fx.Program) + "&customer=" + url.QueryEscape(c.id)
			err := callJSON(f.api, f.o.StorefrontToken, "GET", "/v1/attribution"+q, nil, &a)
			if err == nil {
				err = callJSON(f.api, f.o.StorefrontToken, "GET", "/v1/attribution/explain"+q, nil, &e)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				v.Errors++
				v.example("customer %s: %v", c.id, err)
				return
			}
			v.check(c.id, obs, &a, e.Decisions)
		}()
	}
	wg.Wait()
	return v
}

func (v *Verification) example(format string, args ...any) {
	if len(v.Examples) < 20 {
		v.Examples = append(v.Examples, fmt.Sprintf(format, args...))
	}
}

// check applies the invariants to one customer. Nothing expires during a
// run (windows are 30 days), so the log alone determines the holder.
func (v *Verification) check(id string, obs []observation, a *client.Attribution, decisions []client.Decision) {
	v.Customers++
	// What the run was told.
	bindReqs := map[string]bool{}
	orders := map[string][]client.ConversionAnswer{}
	for _, o := range obs {
		switch {
		case o.event == "conversion" && o.status == 200:
			orders[o.order] = append(orders[o.order], o.conv)
		case o.event != "conversion" && o.status == 200:
			bindReqs[o.event+" "+o.token] = true
		}
	}
	binds := len(bindReqs)
	v.Binds += binds
	v.Orders += len(orders)
	eligible := 0
	for order, answers := range orders {
		for _, x := range answers[1:] {
			if x != answers[0] {
				v.Violations.OrderDecisions++
				v.example("order %s answered %+v and %+v", order, answers[0], x)
				break
			}
		}
		if answers[0].Eligible {
			eligible++
		}
	}
	if eligible > 1 {
		v.Violations.FirstPurchase++
		v.example("customer %s: %d orders earned commission", id, eligible)
	}

	// Protection as observed from outside: once an answer said "protected
	// by B", nothing sent afterwards may be credited to another promoter.
	sorted := append([]observation(nil), obs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].done.Before(sorted[j].done) })
	var protectedBy string
	var protectedAt time.Time
	for _, o := range sorted {
		if o.status != 200 {
			continue
		}
		if protectedBy != "" && o.sent.After(protectedAt) {
			if o.event != "conversion" && o.bind.Associated && o.bind.Promoter != protectedBy {
				v.Violations.Protection++
				v.example("customer %s: protected by %s, then bound to %s", id, protectedBy, o.bind.Promoter)
			}
			if o.event == "conversion" && o.conv.Eligible && o.conv.Promoter != protectedBy {
				v.Violations.Protection++
				v.example("customer %s: protected by %s, order %s credited to %s", id, protectedBy, o.order, o.conv.Promoter)
			}
		}
		if protectedBy == "" && o.event != "conversion" && o.bind.Associated && o.bind.Kind == "protected" {
			protectedBy, protectedAt = o.bind.Promoter, o.done
		}
	}

	// The decision log (newest first).
	if len(decisions) >= 100 {
		v.Unverifiable++
	} else {
		logBinds := 0
		seen := map[string]bool{}
		holder, kind := "", ""
		for i := len(decisions) - 1; i >= 0; i-- {
			d := decisions[i]
			switch d.Event {
			case "register", "login":
				logBinds++
				switch d.Outcome {
				case "created":
					if holder != "" {
						v.Violations.Holder++
						v.example("customer %s: created for %s while %s held it", id, d.Promoter, holder)
					}
					holder, kind = d.Promoter, map[bool]string{true: "protected", false: "standard"}[d.Event == "register"]
				case "overridden":
					if kind == "protected" {
						v.Violations.Protection++
						v.example("customer %s: protected association of %s overridden by %s", id, holder, d.Promoter)
					}
					holder, kind = d.Promoter, map[bool]string{true: "protected", false: "standard"}[d.Event == "register"]
				case "renewed", "kept":
					if d.Promoter != holder {
						v.Violations.Holder++
						v.example("customer %s: %s for %s while %s held it", id, d.Outcome, d.Promoter, holder)
					}
				}
			case "conversion":
				if seen[d.Order] {
					v.Violations.OrderDecisions++
					v.example("order %s decided twice", d.Order)
				}
				seen[d.Order] = true
			}
		}
		if logBinds < binds {
			v.Violations.LostDecision++
			v.example("customer %s: %d bind answers, %d in the log", id, binds, logBinds)
		}
		for order := range orders {
			if !seen[order] {
				v.Violations.LostDecision++
				v.example("order %s answered but not in the log", order)
			}
		}
		if a.Attributed != (holder != "") || a.Promoter != holder {
			v.Violations.Holder++
			v.example("customer %s: attribution says %q (attributed %v), the log says %q", id, a.Promoter, a.Attributed, holder)
		}
	}
}
