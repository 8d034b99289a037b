package gencache

import (
	"testing"
	"time"
)

func TestStates(t *testing.T) {
	c := New[string](0)
	p, m := c.Group("p:shop"), c.Group("m:alice")
	if c.Group("p:shop") != p {
		t.Fatal("the same id gave two groups")
	}
	put := func(key string) {
		c.Put(key, key, time.Now(), c.Begin(), p, m)
	}
	f := func(key string, want State) {
		t.Helper()
		e, st := c.Get([]byte(key))
		if e == nil || e.V != key || st != want {
			t.Fatalf("%s: %v %v, want state %v", key, e, st, want)
		}
	}
	put("a")
	put("b")
	c.Put("c", "c", time.Now(), c.Begin()) // depends on nothing
	f("a", Fresh)

	m.Touch()
	f("a", Stale)
	f("c", Fresh)
	put("a")
	f("a", Fresh)
	f("b", Stale)

	p.Expire()
	f("a", Recheck)
	f("c", Fresh)
	put("a")
	f("a", Fresh)

	c.Invalidate("a")
	f("a", Recheck)
	f("b", Recheck) // still Expired from before
	put("b")
	f("b", Fresh)

	c.InvalidateAll()
	f("b", Recheck)
	f("c", Recheck)
	if c.Len() != 3 {
		t.Fatalf("%d entries: nothing is dropped", c.Len())
	}
}

// TestOvertakenLoad: a load that a change overtook (the change came after
// the load started) comes out Recheck, whatever the kind of change; one
// started after it is Fresh.
func TestOvertakenLoad(t *testing.T) {
	c := New[int](0)
	p := c.Group("p:shop")
	other := c.Group("p:other")
	for name, change := range map[string]func(){
		"Touch":         p.Touch,
		"Expire":        p.Expire,
		"Invalidate":    func() { c.Invalidate("elsewhere") },
		"InvalidateAll": c.InvalidateAll,
	} {
		start := c.Begin()
		change()
		if e := c.Put("k", 1, time.Now(), start, p); !e.recheck.Load() {
			t.Errorf("%s: an overtaken load is not rechecked", name)
		}
		c.Put("k", 2, time.Now(), c.Begin(), p)
		if _, st := c.Get([]byte("k")); st != Fresh {
			t.Errorf("%s: a load after the change is %v", name, st)
		}
	}
	start := c.Begin()
	other.Touch()
	if c.Put("k", 3, time.Now(), start, p); c.entries["k"].recheck.Load() {
		t.Error("a change to a group the load does not depend on overtook it")
	}
}

func TestKeep(t *testing.T) {
	c := New[int](0)
	e := c.Put("k", 1, time.Now(), c.Begin())
	c.Invalidate("k")
	start := c.Begin()
	c.Keep("k", e, time.Now(), start)
	got, st := c.Get([]byte("k"))
	if got == e || got.V != 1 || st != Fresh {
		t.Fatalf("Keep: %v %v", got, st)
	}
	// Keep does not replace an entry someone else replaced.
	c.Put("k", 2, time.Now(), c.Begin())
	c.Keep("k", got, time.Now(), c.Begin())
	if e, _ := c.Get([]byte("k")); e.V != 2 {
		t.Fatalf("Keep replaced a newer entry: %d", e.V)
	}
	// A change after the failed read started wins over Keep.
	start = c.Begin()
	c.Invalidate("k")
	old, _ := c.Get([]byte("k"))
	c.Keep("k", old, time.Now(), start)
	if _, st := c.Get([]byte("k")); st != Recheck {
		t.Fatalf("Keep hid a later invalidation: %v", st)
	}
}

func TestBound(t *testing.T) {
	c := New[int](2)
	for i, k := range []string{"a", "b", "c", "c"} {
		c.Put(k, i, time.Now(), c.Begin())
	}
	if c.Len() != 2 {
		t.Fatalf("%d entries, bound 2", c.Len())
	}
}
