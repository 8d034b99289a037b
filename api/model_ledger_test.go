package api

import (
	"fmt"
	"time"

	"pgregory.net/rapid"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/store"
)

// The model's view of the ledger: what adjustments were made and which
// statement settled each entry. The entries of orders and refunds follow
// from the model's orders; checkLedger compares the store's ledger with
// both after every step.

type mAdjustment struct {
	id, promoter, currency string
	program                int
	amount                 int64
}

type mLedger struct {
	adjustments []mAdjustment
	settledBy   map[string]string // program/entry → the statement that settled it: set once, never changed
	statements  []string          // statement ids, for doMarkPaid
	paid        map[string]string // statement → its reference
}

func newMLedger() mLedger {
	return mLedger{settledBy: map[string]string{}, paid: map[string]string{}}
}

// doAdjust: an operator's adjustment, sometimes sent again (the same entry)
// or reused with another amount (a conflict).
func (d *driver) doAdjust() {
	a := mAdjustment{id: fmt.Sprintf("%sadj%d", d.prefix, len(d.ledger.adjustments)),
		program:  rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program"),
		promoter: d.m.promoters[rapid.IntRange(0, len(d.m.promoters)-1).Draw(d.rt, "promoter")].id,
		currency: rapid.SampledFrom([]string{"CNY", "RUB"}).Draw(d.rt, "currency"),
		amount:   rapid.SampledFrom([]int64{-700, -1, 1, 500, 123457, mMaxAmount}).Draw(d.rt, "adjustment")}
	in := AdjustmentInput{ID: a.id, Program: d.m.programs[a.program].id, Promoter: a.promoter, Amount: a.amount,
		Currency: a.currency, Reason: "model"}
	e, created, err := d.sv.Adjust(d.ctx, in)
	d.must(err)
	if !created || e.Amount != a.amount || e.ID != attribution.AdjustmentID(a.id) {
		d.fatalf("adjustment %+v: created %v, entry %+v", in, created, e)
	}
	d.ledger.adjustments = append(d.ledger.adjustments, a)
	d.tracef("adjustment %s of %d %s to %s in %s", a.id, a.amount, a.currency, a.promoter, in.Program)
	switch rapid.IntRange(0, 3).Draw(d.rt, "adjustAgain") {
	case 0:
		again, created, err := d.sv.Adjust(d.ctx, in)
		d.must(err)
		if created || again.Entry != e.Entry {
			d.fatalf("adjustment %s again: created %v, %+v; want the first entry %+v", a.id, created, again.Entry, e.Entry)
		}
	case 1:
		in.Amount += 7 // never 0: no drawn amount is -7
		if _, _, err := d.sv.Adjust(d.ctx, in); errCode(err) != attribution.EConflict {
			d.fatalf("adjustment %s again with another amount: %v, want a conflict", a.id, err)
		}
	}
}

// doSettle: a settlement run of one program, at the model's now, sometimes
// run again at once (it settles nothing twice).
func (d *driver) doSettle() {
	pi := rapid.IntRange(0, len(d.m.programs)-1).Draw(d.rt, "program")
	p := d.m.programs[pi]
	sts, err := d.sv.Settle(d.ctx, p.id, time.Time{})
	d.must(err)
	d.tracef("settle %s: %d statements", p.id, len(sts))
	for _, st := range sts {
		if st.Amount <= 0 || st.Amount < p.minPayout || st.Status != attribution.StatementOpen || st.Program != p.id {
			d.fatalf("statement %+v of a program with min_payout %d", st, p.minPayout)
		}
		_, es, err := d.sv.StatementEntries(d.ctx, st.ID)
		d.must(err)
		var sum int64
		for _, e := range es {
			sum += e.Amount
			if e.Statement != st.ID || e.Promoter != st.Promoter || e.Currency != st.Currency || e.AvailableAt.After(st.Through) {
				d.fatalf("entry %+v on statement %+v", e.Entry, st)
			}
		}
		if sum != st.Amount || len(es) != st.Entries {
			d.fatalf("statement %+v: its %d entries sum to %d", st, len(es), sum)
		}
		d.ledger.statements = append(d.ledger.statements, st.ID)
		d.stats.reasons["statement/created"]++
	}
	if rapid.IntRange(0, 2).Draw(d.rt, "settleAgain") == 0 {
		again, err := d.sv.Settle(d.ctx, p.id, time.Time{})
		d.must(err)
		if len(again) != 0 {
			d.fatalf("settling %s again at once made %d statements", p.id, len(again))
		}
	}
}

// doMarkPaid: a statement paid, then reported again (unchanged) or with
// another reference (a conflict).
func (d *driver) doMarkPaid() {
	if len(d.ledger.statements) == 0 {
		d.doSettle()
		return
	}
	id := d.ledger.statements[rapid.IntRange(0, len(d.ledger.statements)-1).Draw(d.rt, "statement")]
	ref, paid := d.ledger.paid[id]
	if !paid {
		ref = "ref-" + id
	}
	st, err := d.sv.MarkPaid(d.ctx, id, ref)
	d.must(err)
	if st.Status != attribution.StatementPaid || st.Reference != ref || st.PaidAt == nil {
		d.fatalf("statement %s paid: %+v", id, st)
	}
	d.ledger.paid[id] = ref
	d.tracef("statement %s paid (%s)", id, ref)
	if _, err := d.sv.MarkPaid(d.ctx, id, ref+"-other"); errCode(err) != attribution.EConflict {
		d.fatalf("statement %s paid with another reference: %v, want a conflict", id, err)
	}
}

// checkLedger: each decision that moved money has exactly one entry, with
// its amount (an order's entries sum to its commission after refunds), each
// adjustment one, nothing else is in the ledger, and no entry ever moves
// from one statement to another. Every ledger event names a stored entry or
// statement.
func (d *driver) checkLedger() {
	d.rt.Helper()
	entries := map[string]bool{} // program/entry
	for pi, p := range d.m.programs {
		byOrder := map[string][]attribution.Entry{}
		adjusted := map[string]attribution.Entry{}
		for _, pr := range d.m.promoters {
			cursor := ""
			for {
				es, next, err := d.st.Entries(d.ctx, p.id, pr.id, store.EntryQuery{Cursor: cursor, Limit: store.MaxPage})
				d.must(err)
				for _, e := range es {
					key := p.id + "/" + e.ID
					if entries[key] {
						d.fatalf("entry %s listed twice", key)
					}
					entries[key] = true
					if e.Promoter != pr.id || e.Program != p.id {
						d.fatalf("entry %+v in the ledger of %s in %s", e, pr.id, p.id)
					}
					if e.Statement != "" {
						if prev, ok := d.ledger.settledBy[key]; ok && prev != e.Statement {
							d.fatalf("entry %s moved from statement %s to %s", key, prev, e.Statement)
						}
						d.ledger.settledBy[key] = e.Statement
					} else if prev, ok := d.ledger.settledBy[key]; ok {
						d.fatalf("entry %s left statement %s", key, prev)
					}
					if e.Kind == attribution.Adjustment {
						adjusted[e.ID] = e
					} else {
						byOrder[e.Order] = append(byOrder[e.Order], e)
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
		}
		for _, o := range d.m.orders {
			if o.program != pi {
				continue
			}
			es := byOrder[o.id]
			delete(byOrder, o.id)
			if !o.ans.Eligible || o.granted <= 0 {
				if len(es) > 0 {
					d.fatalf("order %s (eligible %v, granted %d) has entries %+v", o.id, o.ans.Eligible, o.granted, es)
				}
				continue
			}
			var sum int64
			accruals := 0
			for _, e := range es {
				sum += e.Amount
				switch {
				case e.Promoter != o.ans.Promoter || e.Currency != o.currency:
					d.fatalf("entry %+v of order %s decided for %s in %s", e, o.id, o.ans.Promoter, o.currency)
				case e.Kind == attribution.Accrual:
					accruals++
					if e.Amount != o.granted || e.ID != attribution.AccrualID(o.id) {
						d.fatalf("accrual %+v of order %s granted %d", e, o.id, o.granted)
					}
				case e.Kind == attribution.Reversal:
					if _, ok := o.refunds[e.Refund]; !ok || e.ID != attribution.ReversalID(o.id, e.Refund) || e.Amount >= 0 {
						d.fatalf("reversal %+v of order %s, whose refunds are %v", e, o.id, o.refunds)
					}
				}
			}
			if accruals != 1 || sum != o.commission {
				d.fatalf("order %s: %d accruals, entries sum to %d, want 1 and its commission %d: %+v", o.id, accruals, sum, o.commission, es)
			}
		}
		if len(byOrder) > 0 {
			d.fatalf("entries of orders the model has not decided: %+v", byOrder)
		}
		for _, a := range d.ledger.adjustments {
			if a.program != pi {
				continue
			}
			e, ok := adjusted[attribution.AdjustmentID(a.id)]
			delete(adjusted, attribution.AdjustmentID(a.id))
			if !ok || e.Amount != a.amount || e.Currency != a.currency || e.Promoter != a.promoter {
				d.fatalf("adjustment %+v: entry %+v (found %v)", a, e, ok)
			}
		}
		if len(adjusted) > 0 {
			d.fatalf("adjustments no one made: %+v", adjusted)
		}
	}
	for _, ev := range d.rec.takeLedger() {
		if ev.Type == events.TypeLedgerEntry && !entries[ev.Data.Program+"/"+ev.Data.Entry] {
			d.fatalf("ledger event %s names entry %s/%s, which is not in the ledger", ev.ID, ev.Data.Program, ev.Data.Entry)
		}
	}
}
