package loadtest

import (
	"context"
	"errors"
)

// RampOptions shape a ramp: runs of Options.Duration each at From, From ×
// Factor, ... until a step misses the SLO or Max is passed, then Refine
// bisections between the last rate that met it and the first that did not.
type RampOptions struct {
	From, Factor, Max float64
	Refine            int
}

// Ramp finds the highest rate meeting slo. A step meets it when every
// threshold is met and the achieved rate is at least 98 % of the intended
// one (a server that falls behind is not keeping up, whatever the latency
// of what it did answer). step, if set, is told each step's result. best
// is nil when even From missed.
func Ramp(ctx context.Context, o Options, ro RampOptions, slo *SLO, sc Scenario, step func(*Result, bool)) (best *Result, steps []*Result, err error) {
	if slo == nil {
		return nil, nil, errors.New("a ramp needs an SLO to meet")
	}
	if ro.From <= 0 {
		ro.From = 1000
	}
	if ro.Factor <= 1 {
		ro.Factor = 1.5
	}
	if ro.Max <= 0 {
		ro.Max = 1e6
	}
	try := func(rate float64) (*Result, bool, error) {
		o.Rate = rate
		r, err := Run(ctx, o, sc)
		if err != nil {
			return r, false, err
		}
		ok := slo.Check(r) && r.Achieved >= 0.98*rate
		steps = append(steps, r)
		if step != nil {
			step(r, ok)
		}
		return r, ok, nil
	}
	failed := 0.0
	for rate := ro.From; rate <= ro.Max; rate *= ro.Factor {
		r, ok, err := try(rate)
		if err != nil {
			return best, steps, err
		}
		if !ok {
			failed = rate
			break
		}
		best = r
	}
	if best == nil || failed == 0 {
		return best, steps, nil
	}
	lo, hi := best.Rate, failed
	for range ro.Refine {
		mid := (lo + hi) / 2
		r, ok, err := try(mid)
		if err != nil {
			return best, steps, err
		}
		if ok {
			best, lo = r, mid
		} else {
			hi = mid
		}
	}
	return best, steps, nil
}
