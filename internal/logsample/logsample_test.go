package logsample

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Of many concurrent callers within one interval, exactly one is let
// through; after the interval, one more.
func TestOnePerInterval(t *testing.T) {
	var s Sampler
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if s.Allow(time.Hour) {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Fatalf("%d let through within one interval", n.Load())
	}
	s.last.Store(time.Now().Add(-2 * time.Hour).UnixNano())
	if !s.Allow(time.Hour) || s.Allow(time.Hour) {
		t.Fatal("after the interval exactly one more is let through")
	}
}
