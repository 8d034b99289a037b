//go:build !linux

package loadtest

import "time"

// timer waits for the pacer's next intended send time. Elsewhere than on
// Linux it is time.Sleep, which may wake up to a millisecond late: the
// send lag in the report shows by how much.
type timer struct{}

func newTimer() (*timer, error) { return &timer{}, nil }

func (*timer) sleep(d time.Duration) error {
	time.Sleep(d)
	return nil
}

func (*timer) close() {}
