package api

import (
	"encoding/json"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
)

// The events of decisions. Each is built once the decision is stored, and
// only for a decision just made: a replayed order emits nothing again.

func (sv *Service) emit(e *events.Event) {
	if sv.Events != nil && e != nil {
		sv.Events.Emit(e)
	}
}

func decisionEvent(typ, program, customer string, d *attribution.Decision) *events.Event {
	return &events.Event{Type: typ, Subject: "customer/" + customer, Time: d.At,
		Data: events.Data{Program: program, Customer: customer, Promoter: d.Promoter, ClickID: d.Click,
			Event: d.Event, Outcome: d.Outcome, Reason: d.Reason, Order: d.Order}}
}

// bindEvent maps a bind decision to its event type. "kept" (the same
// promoter binding again while its protected association stands) is
// reported as renewed with outcome "kept" and the unchanged expiry: the
// promoter's claim was confirmed, nothing moved.
func bindEvent(program string, in BindInput, ref *attribution.ClickRef, res *attribution.BindResult, prev *attribution.Association) *events.Event {
	d := &res.Decision
	var typ string
	switch d.Outcome {
	case attribution.DecisionCreated:
		typ = events.TypeAssociationCreated
	case attribution.DecisionRenewed, attribution.DecisionKept:
		typ = events.TypeAssociationRenewed
	case attribution.DecisionOverridden:
		typ = events.TypeAssociationOverridden
	default:
		typ = events.TypeAssociationRejected
	}
	e := decisionEvent(typ, program, in.Customer, d)
	e.Data.Visitor = in.Visitor
	if ref != nil {
		e.Data.Link = ref.Link
		if e.Data.Promoter == "" {
			e.Data.Promoter = ref.Promoter
		}
	}
	switch {
	case res.Associated && res.Assoc != nil:
		e.Data.Kind = string(res.Assoc.Kind)
		exp := res.Assoc.ExpiresAt.UTC()
		e.Data.ExpiresAt = &exp
		e.Data.Link = res.Assoc.Link
		if d.Outcome == attribution.DecisionOverridden {
			e.Data.PreviousPromoter = prev.Promoter
		}
	case prev.Promoter != "":
		e.Data.Holder = prev.Promoter // the customer stays with its holder
	}
	return e
}

func conversionEvent(o *attribution.Order, d *attribution.Decision) *events.Event {
	typ := events.TypeConversionRejected
	if o.Eligible {
		typ = events.TypeConversionAttributed
	}
	e := decisionEvent(typ, o.Program, o.Customer, d)
	e.Data.Promoter, e.Data.Kind = o.Promoter, string(o.Kind)
	e.Data.Amount, e.Data.Currency, e.Data.Product = events.Int64(o.Amount), o.Currency, o.Product
	if o.Eligible {
		e.Data.Commission = events.Int64(o.Granted)
		e.Data.CommissionDelta = events.Int64(o.Granted)
		if rate, err := json.Marshal(o.Rate); err == nil {
			e.Data.Rate = rate
		}
	}
	return e
}

func refundEvent(o *attribution.Order, d *attribution.Decision, customer string, amount, delta int64) *events.Event {
	e := decisionEvent(events.TypeConversionRefunded, o.Program, customer, d)
	e.Data.Kind, e.Data.Currency, e.Data.Product = string(o.Kind), o.Currency, o.Product
	e.Data.Amount = events.Int64(o.Amount)
	e.Data.Refund, e.Data.Refunded = events.Int64(amount), events.Int64(o.Refunded)
	e.Data.Commission, e.Data.CommissionDelta = events.Int64(o.Commission), events.Int64(delta)
	return e
}
