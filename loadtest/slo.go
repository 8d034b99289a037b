package loadtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SLO is a set of thresholds a run must meet: latency percentiles, the
// share of failed requests, and invariant violations.
type SLO struct {
	Latency []LatencyLimit
	// MaxErrorRate is the largest share of failed requests (0.001 = 0.1 %);
	// negative means not checked.
	MaxErrorRate float64
	// MaxViolations is the largest count of invariant violations found by a
	// verification (always 0 unless set otherwise); negative means not
	// checked.
	MaxViolations int64
}

// LatencyLimit is "percentile Q at most Max".
type LatencyLimit struct {
	Name string // "p99"
	Q    float64
	Max  time.Duration
}

// ParseSLO reads "p99=5ms,p99.9=20ms,errors=0.1%,violations=0". Latency
// keys are p50, p90, p99, p99.9, p99.99 or max; errors is a percentage or
// a fraction. An empty string is no SLO.
func ParseSLO(s string) (*SLO, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	slo := &SLO{MaxErrorRate: -1, MaxViolations: -1}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("bad SLO %q: want key=value", part)
		}
		switch {
		case k == "errors":
			f, err := parseShare(v)
			if err != nil {
				return nil, fmt.Errorf("bad SLO %q: %w", part, err)
			}
			slo.MaxErrorRate = f
		case k == "violations":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad SLO %q: want a count", part)
			}
			slo.MaxViolations = n
		case k == "max" || strings.HasPrefix(k, "p"):
			q := 100.0
			if k != "max" {
				f, err := strconv.ParseFloat(k[1:], 64)
				if err != nil || f <= 0 || f >= 100 {
					return nil, fmt.Errorf("bad SLO %q: unknown percentile", part)
				}
				q = f
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("bad SLO %q: want a duration", part)
			}
			slo.Latency = append(slo.Latency, LatencyLimit{Name: k, Q: q, Max: d})
		default:
			return nil, fmt.Errorf("bad SLO %q: unknown key %q", part, k)
		}
	}
	return slo, nil
}

func parseShare(v string) (float64, error) {
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("want a share such as 0.1%% or 0.001")
	}
	if pct {
		f /= 100
	}
	if f > 1 {
		return 0, fmt.Errorf("share above 100%%")
	}
	return f, nil
}

// SLOCheck is one threshold's verdict.
type SLOCheck struct {
	Name   string `json:"name"`
	Limit  string `json:"limit"`
	Actual string `json:"actual"`
	Met    bool   `json:"met"`
}

// Check compares r with the SLO; the checks are also stored in r.SLO.
// It reports whether every one is met.
func (slo *SLO) Check(r *Result) bool {
	if slo == nil {
		return true
	}
	r.SLO = r.SLO[:0]
	ok := true
	add := func(c SLOCheck) {
		r.SLO = append(r.SLO, c)
		ok = ok && c.Met
	}
	for _, l := range slo.Latency {
		v := r.Stats.Percentile(l.Q)
		add(SLOCheck{Name: l.Name, Limit: "≤ " + l.Max.String(), Actual: v.String(), Met: v <= l.Max})
	}
	if slo.MaxErrorRate >= 0 {
		rate := r.Stats.ErrorRate()
		add(SLOCheck{Name: "errors", Limit: fmt.Sprintf("≤ %.3g%%", slo.MaxErrorRate*100),
			Actual: fmt.Sprintf("%.3g%%", rate*100), Met: rate <= slo.MaxErrorRate})
	}
	if slo.MaxViolations >= 0 && r.Verification != nil {
		n := r.Verification.Total()
		add(SLOCheck{Name: "violations", Limit: fmt.Sprintf("≤ %d", slo.MaxViolations),
			Actual: strconv.FormatInt(n, 10), Met: n <= slo.MaxViolations})
	}
	return ok
}

// ErrorRate is the share of measured requests that failed.
func (s *Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Failed) / float64(s.Requests)
}
