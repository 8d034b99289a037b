//go:build linux

package loadtest

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timer waits for the pacer's next intended send time. time.Sleep is not
// precise enough for it: when Go's scheduler has nothing else to run it
// waits for timers in epoll_wait, whose timeout is in whole milliseconds,
// so a 250 µs sleep lasts a millisecond. At 2k-4k req/s against the
// ceiling that sent requests with a median send lag of 0.4-0.5 ms, which
// the latency from the intended send time charged to the server. A timerfd
// fires on the kernel's high-resolution timer, and reading it parks the
// goroutine in Go's netpoller like any socket: the median send lag fell to
// 76-87 µs. The price is a wake-up per request, about 30-40 µs more of the
// generator's CPU per request at those rates on a virtual machine.
type timer struct {
	fd  int      // for timerfd_settime: f.Fd() would make f blocking
	f   *os.File // for reads through the netpoller
	buf [8]byte
}

func newTimer() (*timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	return &timer{fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// sleep returns after d. A d of zero or less returns at once.
func (t *timer) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(t.fd, 0, &spec, nil); err != nil {
		return os.NewSyscallError("timerfd_settime", err)
	}
	_, err := t.f.Read(t.buf[:])
	return err
}

func (t *timer) close() { t.f.Close() }
