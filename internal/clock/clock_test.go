package clock

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	var c Clock
	if d := time.Since(c.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("zero Clock is not the system clock: off by %v", d)
	}
	target := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := c.Set(target); got.Sub(target) > time.Second || got.Before(target) {
		t.Errorf("Set: %v", got)
	}
	got := c.Advance(720 * time.Hour)
	if want := target.Add(720 * time.Hour); got.Before(want) || got.Sub(want) > time.Second {
		t.Errorf("Advance: %v, want about %v", got, want)
	}
	if c.Now().Location() != time.UTC {
		t.Error("Now is not UTC")
	}
}
