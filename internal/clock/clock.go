// Package clock is the time source every rule reads. In production it is the
// system clock; with --test-clock it can be set or advanced (like Stripe's
// test clocks), so a 30-day window can be tested in a second.
package clock

import (
	"sync/atomic"
	"time"
)

// Clock is the server's clock: the system time shifted by an offset that only
// a test clock changes. The zero value is the system clock. It is safe for
// concurrent use.
type Clock struct {
	offset atomic.Int64 // nanoseconds added to time.Now
}

// Now returns the current time in UTC.
func (c *Clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load())).UTC()
}

// Set moves the clock so that it reads t now; it keeps running from there.
func (c *Clock) Set(t time.Time) time.Time {
	c.offset.Store(int64(time.Until(t)))
	return c.Now()
}

// Advance moves the clock forward (or back, for a negative d).
func (c *Clock) Advance(d time.Duration) time.Time {
	c.offset.Add(int64(d))
	return c.Now()
}
