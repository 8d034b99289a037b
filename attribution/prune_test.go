package attribution

import (
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	grace := 7 * day
	assoc := func(exp time.Time) *Association {
		return &Association{Promoter: "alice", Kind: Protected, Since: exp.Add(-30 * day), ExpiresAt: exp}
	}
	f := func(name string, c Customer, now time.Time, changed, empty bool, check func(*Customer) bool) {
		t.Helper()
		if got := c.Prune(now, grace); got != changed {
			t.Errorf("%s: changed %v, want %v: %+v", name, got, changed, c)
		}
		if got := c.Empty(); got != empty {
			t.Errorf("%s: empty %v, want %v: %+v", name, got, empty, c)
		}
		if check != nil && !check(&c) {
			t.Errorf("%s: %+v", name, c)
		}
	}
	f("Unexpired", Customer{ID: "c", Programs: map[string]*ProgramState{"p": {Assoc: assoc(t0)}}}, t0.Add(-day), false, false, nil)
	f("WithinGrace", Customer{ID: "c", Programs: map[string]*ProgramState{"p": {Assoc: assoc(t0)}}}, t0.Add(grace), false, false, nil)
	f("ExpiredPastGrace", Customer{ID: "c", Programs: map[string]*ProgramState{"p": {Assoc: assoc(t0)}}}, t0.Add(grace+time.Second), true, true, nil)
	f("EndedStays", Customer{ID: "c", Programs: map[string]*ProgramState{"p": {Assoc: &Association{Promoter: "a", ExpiresAt: t0, Ended: ReasonSamePerson}}}},
		t0.Add(100*day), false, false, nil)
	f("PaidKept", Customer{ID: "c", Paid: true, Programs: map[string]*ProgramState{"p": {Assoc: assoc(t0), PaidProducts: []string{"cvm"}, CapUsed: 5}}},
		t0.Add(100*day), true, false, func(c *Customer) bool {
			st := c.Programs["p"]
			return st != nil && st.Assoc == nil && st.CapUsed == 5 && len(st.PaidProducts) == 1
		})
	f("FingerprintsKept", Customer{ID: "c", Fingerprints: FingerprintSet{"e:x"}, Programs: map[string]*ProgramState{"p": {Assoc: assoc(t0)}}},
		t0.Add(100*day), true, false, func(c *Customer) bool { return c.Programs == nil && len(c.Fingerprints) == 1 })
	f("AgentServedKept", Customer{ID: "c", AgentServed: true}, t0, false, false, nil)
	f("EmptyStateGoes", Customer{ID: "c", Programs: map[string]*ProgramState{"p": {}}}, t0, true, true, nil)
	f("RecentWriteKept", Customer{ID: "c", Applied: []Applied{{Op: "a", At: t0}}}, t0.Add(ReplayWindow), false, false, nil)
	f("OldWriteGoes", Customer{ID: "c", Applied: []Applied{{Op: "a", At: t0}, {Op: "b", At: t0.Add(grace)}}}, t0.Add(ReplayWindow+grace+time.Second),
		true, false, func(c *Customer) bool { return len(c.Applied) == 1 && c.Applied[0].Op == "b" })
}

func TestCustomerAlias(t *testing.T) {
	a := hasher.CustomerAlias("cust-1001")
	if a != hasher.CustomerAlias("cust-1001") || a == hasher.CustomerAlias("cust-1002") || !ValidID(a) ||
		len(a) != len(AliasPrefix)+22 || a[:len(AliasPrefix)] != AliasPrefix {
		t.Errorf("alias %q", a)
	}
	if other := NewFingerprintHasher([]byte("another-key-0123")); other.CustomerAlias("cust-1001") == a {
		t.Error("the alias does not depend on the key")
	}
	// Not a fingerprint of the same value: another kind.
	if fp, _ := hasher.Hash(Fingerprints{Devices: []string{"cust-1001"}}); fp[0][len(FPDevice)+1:] == a[len(AliasPrefix):] {
		t.Error("alias and fingerprint share a hash")
	}
}
