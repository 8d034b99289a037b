package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Process is a server process on this machine whose CPU time and memory a
// run samples (Linux /proc).
type Process struct{ PID int }

// Usage is what the server process used over the measured period.
type Usage struct {
	PID int `json:"pid"`
	// CPU is user+system CPU time (10 ms resolution: the kernel's clock
	// ticks).
	CPU Duration `json:"cpu"`
	// CPUPerRequest is CPU divided by the requests answered, in
	// microseconds: steadier than requests per second on a shared machine.
	CPUPerRequest float64 `json:"cpu_us_per_request"`
	// MaxRSS is the largest resident set seen (sampled every 100 ms).
	MaxRSS int64 `json:"max_rss_bytes"`
}

// clockTick is the unit of utime/stime in /proc/PID/stat (USER_HZ, 100 on
// every Linux platform Go supports).
const clockTick = 10 * time.Millisecond

// CPU returns the process's user+system CPU time so far.
func (p *Process) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cannot parse /proc/%d/stat", p.PID)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cannot parse /proc/%d/stat", p.PID)
	}
	// After ")": state(3) ... utime(14) stime(15) → indexes 11 and 12.
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cannot parse /proc/%d/stat", p.PID)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// RSS returns the process's resident set size in bytes.
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", p.PID)
}

type usageSampler struct {
	p          *Process
	start, end time.Time
	cpu0, cpu1 time.Duration
	maxRSS     int64
	err        error
	done       chan struct{}
}

// sampleUsage starts sampling p from start to end; nil when p is nil.
func sampleUsage(ctx context.Context, p *Process, start, end time.Time) *usageSampler {
	if p == nil {
		return nil
	}
	u := &usageSampler{p: p, start: start, end: end, done: make(chan struct{})}
	go u.run(ctx)
	return u
}

func (u *usageSampler) run(ctx context.Context) {
	defer close(u.done)
	select {
	case <-ctx.Done():
		u.err = ctx.Err()
		return
	case <-time.After(time.Until(u.start)):
	}
	if u.cpu0, u.err = u.p.CPU(); u.err != nil {
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if rss, err := u.p.RSS(); err == nil && rss > u.maxRSS {
			u.maxRSS = rss
		}
		if !time.Now().Before(u.end) {
			break
		}
		select {
		case <-ctx.Done():
			u.err = ctx.Err()
			return
		case <-tick.C:
		}
	}
	u.cpu1, u.err = u.p.CPU()
}

// result waits for the sampler and returns the usage for n requests
// answered, nil if there was no process to sample or it could not be read.
func (u *usageSampler) result(n int64) *Usage {
	if u == nil {
		return nil
	}
	<-u.done
	if u.err != nil {
		return nil
	}
	out := &Usage{PID: u.p.PID, CPU: Duration(u.cpu1 - u.cpu0), MaxRSS: u.maxRSS}
	if n > 0 {
		out.CPUPerRequest = float64(u.cpu1-u.cpu0) / float64(time.Microsecond) / float64(n)
	}
	return out
}
