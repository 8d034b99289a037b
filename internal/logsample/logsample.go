// Package logsample keeps a flood of failures from becoming a flood of log
// lines: a Sampler lets one line per interval through.
package logsample

import (
	"sync/atomic"
	"time"
)

// Sampler lets one event per interval through. The zero value is ready;
// it is safe for concurrent use.
type Sampler struct{ last atomic.Int64 }

// Allow reports whether at least every has passed since the last event it
// let through, and if so takes this one.
func (s *Sampler) Allow(every time.Duration) bool {
	now := time.Now().UnixNano()
	last := s.last.Load()
	return now-last >= int64(every) && s.last.CompareAndSwap(last, now)
}
