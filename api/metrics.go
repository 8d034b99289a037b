package api

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/refgate/refgate/attribution"
)

// DecisionMetrics counts attribution decisions in
// refgate_decisions_total{event,outcome,reason}. All three labels come from
// fixed sets (attribution's events, outcomes and reason codes); every valid
// combination is created up front so that dashboards see zeros, not gaps.
type DecisionMetrics struct {
	vec     *prometheus.CounterVec
	replays *prometheus.CounterVec
}

// NewDecisionMetrics registers the decision counter on reg.
func NewDecisionMetrics(reg prometheus.Registerer) *DecisionMetrics {
	vec := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_decisions_total",
		Help: "Attribution decisions by event (register, login, conversion, refund, customer), outcome and reason.",
	}, []string{"event", "outcome", "reason"})
	bindReasons := []string{attribution.ReasonTokenInvalid, attribution.ReasonTokenExpired, attribution.ReasonNoClick,
		attribution.ReasonAgentServed, attribution.ReasonPromoterSuspended, attribution.ReasonSamePerson,
		attribution.ReasonOldCustomer, attribution.ReasonProtectedByOther, attribution.ReasonClickUsed}
	convReasons := []string{attribution.ReasonZeroAmount, attribution.ReasonAgentServed, attribution.ReasonNoAssociation,
		attribution.ReasonSamePerson, attribution.ReasonPromoterSuspended, attribution.ReasonRepeatPurchase,
		attribution.ReasonNotPrepaid, attribution.ReasonProductIneligible}
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin} {
		for _, o := range []string{attribution.DecisionCreated, attribution.DecisionRenewed, attribution.DecisionOverridden, attribution.DecisionKept} {
			vec.WithLabelValues(ev, o, "")
		}
		for _, r := range bindReasons {
			vec.WithLabelValues(ev, attribution.DecisionRejected, r)
		}
	}
	vec.WithLabelValues(attribution.EventConversion, attribution.DecisionAttributed, "")
	for _, r := range convReasons {
		vec.WithLabelValues(attribution.EventConversion, attribution.DecisionRejected, r)
	}
	vec.WithLabelValues(attribution.EventRefund, attribution.DecisionRefunded, "")
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion, attribution.EventCustomer} {
		vec.WithLabelValues(ev, attribution.DecisionEnded, attribution.ReasonAgentServed)
	}
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion} {
		vec.WithLabelValues(ev, attribution.DecisionEnded, attribution.ReasonSamePerson)
	}
	replays := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "refgate_decision_replays_total",
		Help: "Requests answered from a decision already stored (a retried order, refund, bind or customer update), by event; their events are emitted again under the same ids.",
	}, []string{"event"})
	for _, ev := range []string{attribution.EventRegister, attribution.EventLogin, attribution.EventConversion, attribution.EventRefund, attribution.EventCustomer} {
		replays.WithLabelValues(ev)
	}
	return &DecisionMetrics{vec: vec, replays: replays}
}

func (m *DecisionMetrics) replayed(event string) {
	if m != nil {
		m.replays.WithLabelValues(event).Inc()
	}
}

func (m *DecisionMetrics) count(d *attribution.Decision) {
	if m != nil {
		m.vec.WithLabelValues(d.Event, d.Outcome, d.Reason).Inc()
	}
}
