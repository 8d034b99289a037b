package loadtest

import (
	"testing"
	"time"

	"github.com/refgate/refgate/client"
)

// TestVerifyFindsViolations feeds the checks made-up answers and logs, one
// broken invariant each.
func TestVerifyFindsViolations(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	bind := func(sent, done int, event, promoter, kind string, ok bool) observation {
		return observation{sent: at(sent), done: at(done), event: event, status: 200,
			bind: client.BindAnswer{Associated: ok, Promoter: promoter, Kind: kind}}
	}
	conv := func(sent int, order, promoter string, eligible bool) observation {
		return observation{sent: at(sent), done: at(sent + 1), event: "conversion", order: order, status: 200,
			conv: client.ConversionAnswer{Order: order, Eligible: eligible, Promoter: promoter, Commission: 3000}}
	}
	type dec = client.Decision
	logOf := func(ds ...dec) []client.Decision { // given oldest first, kept newest first
		var log []client.Decision
		for i := len(ds) - 1; i >= 0; i-- {
			log = append(log, ds[i])
		}
		return log
	}
	created := dec{Event: "register", Promoter: "A", Outcome: "created"}
	f := func(name string, obs []observation, a client.Attribution, e []client.Decision, want func(Violations) int64) {
		t.Helper()
		v := &Verification{}
		v.check("c1", obs, &a, e)
		if want(v.Violations) != 1 || v.Total() != 1 {
			t.Errorf("%s: %+v %v", name, v.Violations, v.Examples)
		}
	}
	ok := func(obs []observation, a client.Attribution, e []client.Decision) {
		t.Helper()
		v := &Verification{}
		v.check("c1", obs, &a, e)
		if v.Total() != 0 {
			t.Errorf("clean history: %+v %v", v.Violations, v.Examples)
		}
	}
	held := client.Attribution{Attributed: true, Promoter: "A", Kind: "protected"}
	ok([]observation{bind(0, 1, "register", "A", "protected", true), bind(2, 3, "login", "A", "protected", false)}, held,
		logOf(created, dec{Event: "login", Promoter: "B", Outcome: "rejected", Reason: "protected_by_other"}))

	f("Holder", []observation{bind(0, 1, "register", "A", "protected", true)},
		client.Attribution{Attributed: true, Promoter: "B"}, logOf(created), func(x Violations) int64 { return x.Holder })
	f("ProtectionObserved", []observation{bind(0, 1, "register", "A", "protected", true), bind(2, 3, "login", "B", "standard", true)},
		held, logOf(created, dec{Event: "login", Promoter: "B", Outcome: "rejected"}), func(x Violations) int64 { return x.Protection })
	f("ProtectionLog", []observation{bind(0, 5, "register", "A", "protected", true), bind(0, 5, "login", "B", "standard", true)},
		client.Attribution{Attributed: true, Promoter: "B"}, logOf(created, dec{Event: "login", Promoter: "B", Outcome: "overridden"}),
		func(x Violations) int64 { return x.Protection })
	f("LostDecision", []observation{bind(0, 1, "register", "A", "protected", true), bind(2, 3, "login", "A", "protected", true)},
		held, logOf(created), func(x Violations) int64 { return x.LostDecision })
	f("OrderAnswers", []observation{bind(0, 1, "register", "A", "protected", true), conv(2, "o1", "A", true), conv(3, "o1", "A", false)},
		held, logOf(created, dec{Event: "conversion", Order: "o1", Outcome: "attributed"}), func(x Violations) int64 { return x.OrderDecisions })
	f("OrderLoggedTwice", []observation{bind(0, 1, "register", "A", "protected", true), conv(2, "o1", "A", true)},
		held, logOf(created, dec{Event: "conversion", Order: "o1"}, dec{Event: "conversion", Order: "o1"}), func(x Violations) int64 { return x.OrderDecisions })
	f("FirstPurchase", []observation{bind(0, 1, "register", "A", "protected", true), conv(2, "o1", "A", true), conv(3, "o2", "A", true)},
		held, logOf(created, dec{Event: "conversion", Order: "o1"}, dec{Event: "conversion", Order: "o2"}), func(x Violations) int64 { return x.FirstPurchase })
}
