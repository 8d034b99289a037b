package client

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := DefaultRetry
	f := func(attempt int, lo, hi time.Duration) {
		t.Helper()
		for range 100 {
			if d := r.backoff(attempt); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want %v..%v", attempt, d, lo, hi)
			}
		}
	}
	f(1, 50*time.Millisecond, 100*time.Millisecond)
	f(2, 100*time.Millisecond, 200*time.Millisecond)
	f(5, 800*time.Millisecond, 1600*time.Millisecond)
	f(6, time.Second, 2*time.Second) // capped
	f(100, time.Second, 2*time.Second)
	r = Retry{Attempts: 3}
	f(1, 0, 0)
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := func(v string, want time.Duration) {
		t.Helper()
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	f("", 0)
	f("0", 0)
	f("3", 3*time.Second)
	f("-3", 0)
	f("soon", 0)
	f("99999999999", 0) // does not fit: ignored, not a wait of centuries
	f(now.Add(90*time.Second).Format(http.TimeFormat), 90*time.Second)
	f(now.Add(-time.Hour).Format(http.TimeFormat), 0)
}
