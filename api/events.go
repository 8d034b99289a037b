package api

import (
	"encoding/json"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
)

// The events of decisions. Each is built once the decision is stored, from
// the stored decision: its id is the event's, so the events of a replayed
// decision (a retried order, refund or bind) carry the ids they had, and
// consumers dedupe them.

func (sv *Service) emit(e *events.Event) {
	if sv.Events != nil && e != nil {
		sv.Events.Emit(e)
	}
}

func decisionEvent(typ, customer string, d *attribution.Decision) *events.Event {
	return &events.Event{ID: d.ID, Type: typ, Subject: "customer/" + customer, Time: d.At,
		Data: events.Data{Program: d.Program, Customer: customer, Promoter: d.Promoter, ClickID: d.Click,
			Event: d.Event, Outcome: d.Outcome, Reason: d.Reason, Order: d.Order}}
}

// endedEvent says an association ended before its expiry.
func endedEvent(customer string, d *attribution.Decision) *events.Event {
	return decisionEvent(events.TypeAssociationEnded, customer, d)
}

// bindEvent maps a bind decision to its event type. "kept" (the same
// promoter binding again while its protected association stands) is
// reported as renewed with outcome "kept" and the unchanged expiry: the
// promoter's claim was confirmed, nothing moved.
func bindEvent(in BindInput, ref *attribution.ClickRef, rec *attribution.Applied, d *attribution.Decision) *events.Event {
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
	e := decisionEvent(typ, in.Customer, d)
	e.Data.Visitor = in.Visitor
	if ref != nil {
		e.Data.Link = ref.Link
		if e.Data.Promoter == "" {
			e.Data.Promoter = ref.Promoter
		}
	}
	switch {
	case rec.Associated && rec.Assoc != nil:
		e.Data.Kind = string(rec.Assoc.Kind)
		exp := rec.Assoc.ExpiresAt.UTC()
		e.Data.ExpiresAt = &exp
		e.Data.Link = rec.Assoc.Link
		if d.Outcome == attribution.DecisionOverridden {
			e.Data.PreviousPromoter = rec.Previous
		}
	case rec.Previous != "":
		e.Data.Holder = rec.Previous // the customer stays with its holder
	}
	return e
}

func conversionEvent(o *attribution.Order, d *attribution.Decision) *events.Event {
	typ := events.TypeConversionRejected
	if o.Eligible {
		typ = events.TypeConversionAttributed
	}
	e := decisionEvent(typ, o.Customer, d)
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

func refundEvent(o *attribution.Order, r *attribution.RefundRecord, d *attribution.Decision) *events.Event {
	e := decisionEvent(events.TypeConversionRefunded, o.Customer, d)
	e.Data.Kind, e.Data.Currency, e.Data.Product = string(o.Kind), o.Currency, o.Product
	e.Data.Amount = events.Int64(o.Amount)
	e.Data.RefundID = r.ID
	e.Data.Refund, e.Data.Refunded = events.Int64(r.Amount), events.Int64(r.Refunded)
	e.Data.Commission, e.Data.CommissionDelta = events.Int64(r.Commission), events.Int64(r.Delta)
	return e
}
