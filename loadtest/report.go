package loadtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// WriteText writes the human summary of r.
func WriteText(w io.Writer, r *Result) {
	s := r.Stats
	mode := fmt.Sprintf("%.0f req/s intended", r.Rate)
	if r.Rate == 0 {
		mode = "closed loop (latency is service time)"
	}
	fmt.Fprintf(w, "scenario %s against %s: %s, %d workers, %s measured after %s warm-up\n",
		r.Scenario, r.Target, mode, r.Workers, r.Duration, r.Warmup)
	fmt.Fprintf(w, "  achieved   %.0f req/s (%d requests, %d failed, %.3f%%)\n", r.Achieved, s.Requests, s.Failed, s.ErrorRate()*100)
	percentiles := func(name string, l Latency, what string) {
		fmt.Fprintf(w, "  %-10s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s%s\n", name,
			round(l.P50), round(l.P90), round(l.P99), round(l.P999), round(l.Max), round(l.Mean), what)
	}
	if r.Rate == 0 {
		percentiles("latency", s.Latency, "")
	} else {
		percentiles("latency", s.Latency, "  (from the intended send time)")
		percentiles("service", s.Service, "  (from the actual send)")
		percentiles("send lag", s.SendLag, "  (intended to actual send)")
		if lag := time.Duration(s.SendLag.P99); lag > time.Millisecond && lag > time.Duration(s.Service.P99) {
			fmt.Fprintf(w, "  note       most of the p99 is send lag: requests left late because every worker was busy\n"+
				"             (raise --workers) or the generator's own CPU fell behind (docs/loadtest.md#send-lag)\n")
		}
	}
	ops := make([]string, 0, len(s.Status))
	for op := range s.Status {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		codes := make([]int, 0, len(s.Status[op]))
		for c := range s.Status[op] {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", c, s.Status[op][c]))
		}
		fmt.Fprintf(w, "  %-18s %s\n", op, strings.Join(parts, " "))
	}
	if len(s.Errors) > 0 {
		kinds := make([]string, 0, len(s.Errors))
		for k := range s.Errors {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.Errors[k]))
		}
		fmt.Fprintf(w, "  errors     %s\n", strings.Join(parts, ", "))
	}
	for _, p := range []struct {
		name string
		u    *Usage
	}{{"server", r.Usage}, {"store", r.Store}} {
		if u := p.u; u != nil {
			fmt.Fprintf(w, "  %-10s pid %d: CPU %s, %.1f µs per request, max RSS %.1f MiB\n",
				p.name, u.PID, u.CPU, u.CPUPerRequest, float64(u.MaxRSS)/(1<<20))
		}
	}
	if v := r.Verification; v != nil {
		x := v.Violations
		fmt.Fprintf(w, "  verified   %d customers, %d binds, %d orders: %d violations (holder %d, protection %d, lost decision %d, order decisions %d, first purchase %d)",
			v.Customers, v.Binds, v.Orders, v.Total(), x.Holder, x.Protection, x.LostDecision, x.OrderDecisions, x.FirstPurchase)
		if v.Unverifiable > 0 || v.Errors > 0 {
			fmt.Fprintf(w, "; %d logs too long to check, %d customers unreadable", v.Unverifiable, v.Errors)
		}
		fmt.Fprintln(w)
		for _, e := range v.Examples {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	for _, c := range r.SLO {
		verdict := "met"
		if !c.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "  slo        %-10s %-12s actual %-12s %s\n", c.Name, c.Limit, c.Actual, verdict)
	}
}

func round(d Duration) time.Duration {
	v := time.Duration(d)
	switch {
	case v >= time.Second:
		return v.Round(time.Millisecond)
	case v >= time.Millisecond:
		return v.Round(10 * time.Microsecond)
	}
	return v.Round(time.Microsecond)
}

// WriteJSON writes r as indented JSON, with the percentile distribution.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Result
		Distribution []Point `json:"distribution"`
	}{r, r.Stats.Distribution()})
}

// WriteHTML writes a self-contained HTML report (inline SVG, no scripts or
// outside resources): the summary, latency over time and the latency
// percentile distribution.
func WriteHTML(w io.Writer, r *Result) error {
	var text strings.Builder
	WriteText(&text, r)
	return reportTemplate.Execute(w, map[string]any{
		"R":       r,
		"Summary": text.String(),
		"Time":    timePlot(r.Stats.Seconds),
		"Pct":     percentilePlot(r.Stats.Distribution()),
	})
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>refgate-load: {{.R.Scenario}} at {{printf "%.0f" .R.Rate}} req/s</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
pre{background:#f6f6f6;padding:1em;overflow:auto}
svg{background:#fff;border:1px solid #ddd}
.l50{stroke:#2b6cb0}.l99{stroke:#c05621}.lmax{stroke:#999;stroke-dasharray:3 3}
.lq{stroke:#2b6cb0}
text{font-size:11px;fill:#444}
</style></head><body>
<h1>refgate-load report</h1>
<p>{{.R.Scenario}} against {{.R.Target}}, started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}</p>
<pre>{{.Summary}}</pre>
<h2>Latency over time</h2>
<p>Per second of intended send time: <span style="color:#2b6cb0">p50</span>, <span style="color:#c05621">p99</span>, <span style="color:#999">max</span> (log scale).</p>
{{.Time}}
<h2>Latency by percentile</h2>
<p>Latency at each percentile, from the median to the maximum (x: 1/(1−q) on a log scale).</p>
{{.Pct}}
</body></html>
`))

const (
	plotW, plotH = 900, 320
	padL, padB   = 70, 30
)

// logY maps a latency to a y coordinate on a log scale between lo and hi.
func logY(v, lo, hi float64) float64 {
	v = math.Max(v, lo)
	return float64(plotH-padB) - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*float64(plotH-padB-10)
}

func yAxis(b *strings.Builder, lo, hi float64) {
	for v := lo; v <= hi*1.0001; v *= 10 {
		y := logY(v, lo, hi)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="4" y="%.1f">%s</text>`,
			padL, plotW, y, y, y+4, time.Duration(v)*time.Microsecond)
	}
}

func bounds(vals []float64) (lo, hi float64) {
	lo, hi = 1e18, 1
	for _, v := range vals {
		if v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 1))))
	hi = math.Pow(10, math.Ceil(math.Log10(math.Max(hi, lo*10))))
	return lo, hi
}

func timePlot(secs []Second) template.HTML {
	if len(secs) == 0 {
		return "<p>No data.</p>"
	}
	var vals []float64
	for _, s := range secs {
		vals = append(vals, micros(s.P50), micros(s.Max))
	}
	lo, hi := bounds(vals)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`, plotW, plotH, plotW, plotH)
	yAxis(&b, lo, hi)
	n := secs[len(secs)-1].At + 1
	x := func(at int64) float64 { return padL + float64(at)/float64(max(n-1, 1))*float64(plotW-padL-10) }
	for _, l := range []struct {
		class string
		get   func(Second) Duration
	}{{"lmax", func(s Second) Duration { return s.Max }}, {"l99", func(s Second) Duration { return s.P99 }}, {"l50", func(s Second) Duration { return s.P50 }}} {
		fmt.Fprintf(&b, `<polyline class="%s" fill="none" stroke-width="1.5" points="`, l.class)
		for _, s := range secs {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(s.At), logY(micros(l.get(s)), lo, hi))
		}
		b.WriteString(`"/>`)
	}
	for _, at := range []int64{0, n / 4, n / 2, 3 * n / 4, n - 1} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%ds</text>`, x(at)-6, plotH-8, at)
	}
	b.WriteString("</svg>")
	return template.HTML(b.String())
}

func percentilePlot(pts []Point) template.HTML {
	if len(pts) == 0 {
		return "<p>No data.</p>"
	}
	var vals []float64
	for _, p := range pts {
		vals = append(vals, micros(p.Latency))
	}
	lo, hi := bounds(vals)
	const maxNines = 5.0 // up to 1/(1-0.99999)
	x := func(q float64) float64 {
		inv := 1 / math.Max(1-q/100, 1e-5)
		return padL + math.Log10(inv)/maxNines*float64(plotW-padL-10)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">`, plotW, plotH, plotW, plotH)
	yAxis(&b, lo, hi)
	b.WriteString(`<polyline class="lq" fill="none" stroke-width="2" points="`)
	for _, p := range pts {
		fmt.Fprintf(&b, "%.1f,%.1f ", x(p.Q), logY(micros(p.Latency), lo, hi))
	}
	b.WriteString(`"/>`)
	for _, q := range []struct {
		q    float64
		name string
	}{{0, "p0"}, {90, "p90"}, {99, "p99"}, {99.9, "p99.9"}, {99.99, "p99.99"}, {99.999, "p99.999"}} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, x(q.q)-8, plotH-8, q.name)
	}
	b.WriteString("</svg>")
	return template.HTML(b.String())
}

func micros(d Duration) float64 { return float64(time.Duration(d)) / float64(time.Microsecond) }
