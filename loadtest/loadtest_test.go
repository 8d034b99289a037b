package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve runs h on a loopback port until the end of the test.
func serve(t *testing.T, srv *fasthttp.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

func fixture() *Fixture {
	return &Fixture{Program: "load", Destination: "https://shop.example.com/landing",
		Links: []Link{{"a1", "p0"}, {"a2", "p1"}, {"a3", "p2"}}}
}

func clicksOn(t *testing.T, base string) *Clicks {
	t.Helper()
	tg, err := NewTarget(base, 256, false)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewClicks(tg, fixture(), ClickOptions{New: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// near checks a histogram figure against want within its 3 significant
// digits (±0.5 %).
func near(t *testing.T, name string, got Duration, want time.Duration) {
	t.Helper()
	if d := time.Duration(got) - want; d < -want/200 || d > want/200 {
		t.Errorf("%s = %s, want %s", name, got, want)
	}
}

func TestRecorderPercentiles(t *testing.T) {
	start := time.Now()
	r := NewRecorder(start)
	if r.Record(0, "x", start.Add(-time.Millisecond), start, start, 200, "") {
		t.Fatal("a warm-up request was recorded")
	}
	// 1..10000 µs, once each, spread over 10 s of intended time.
	for i := 1; i <= 10000; i++ {
		at := start.Add(time.Duration(i) * time.Millisecond)
		r.Record(i, "x", at, at, at.Add(time.Duration(i)*time.Microsecond), 200, "")
	}
	s := r.Snapshot()
	near(t, "p50", s.Latency.P50, 5000*time.Microsecond)
	near(t, "p90", s.Latency.P90, 9000*time.Microsecond)
	near(t, "p99", s.Latency.P99, 9900*time.Microsecond)
	near(t, "p99.9", s.Latency.P999, 9990*time.Microsecond)
	near(t, "max", s.Latency.Max, 10000*time.Microsecond)
	if s.Requests != 10000 || s.Status["x"][200] != 10000 || s.Failed != 0 {
		t.Errorf("counts %d %v %d", s.Requests, s.Status, s.Failed)
	}
	if len(s.Seconds) != 11 || s.Seconds[0].Requests != 999 || s.Seconds[5].Requests != 1000 {
		t.Errorf("seconds %+v", s.Seconds[:2])
	}
}

func TestCheckLoopback(t *testing.T) {
	f := func(host string, allow, ok bool) {
		t.Helper()
		err := CheckLoopback(host, allow)
		if (err == nil) != ok {
			t.Errorf("CheckLoopback(%q, %v) = %v", host, allow, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--allow-remote") && !strings.Contains(err.Error(), "resolve") {
			t.Errorf("error does not say how to proceed: %v", err)
		}
	}
	f("127.0.0.1", false, true)
	f("127.3.4.5", false, true)
	f("::1", false, true)
	f("[::1]", false, true)
	f("localhost", false, true)
	f("10.0.0.1", false, false)
	f("192.0.2.7", false, false)
	f("2001:db8::1", false, false)
	f("0.0.0.0", false, false)
	f("10.0.0.1", true, true)
	if _, err := NewTarget("http://192.0.2.7:8080", 1, false); err == nil {
		t.Error("NewTarget accepted a remote target")
	}
	for _, bad := range []string{"ftp://127.0.0.1", "http://127.0.0.1:8080/r/x", "127.0.0.1:8080", "http://u:p@127.0.0.1"} {
		if _, err := NewTarget(bad, 1, false); err == nil {
			t.Errorf("NewTarget(%q) accepted", bad)
		}
	}
}

func TestParseSLO(t *testing.T) {
	slo, err := ParseSLO("p99=5ms, p99.9=20ms,max=1s,errors=0.1%,violations=0")
	if err != nil {
		t.Fatal(err)
	}
	if len(slo.Latency) != 3 || slo.Latency[1].Q != 99.9 || slo.Latency[2].Q != 100 || slo.MaxErrorRate != 0.001 || slo.MaxViolations != 0 {
		t.Fatalf("%+v", slo)
	}
	for _, bad := range []string{"p99", "p99=fast", "p100=1ms", "q99=1ms", "errors=150%", "violations=-1", "p99=-1ms"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("ParseSLO(%q) accepted", bad)
		}
	}
	if slo, err := ParseSLO(""); slo != nil || err != nil {
		t.Error("empty SLO")
	}
	// Check.
	r := NewRecorder(time.Now())
	at := r.Start.Add(time.Millisecond)
	for i := range 100 {
		r.Record(i, "x", at, at, at.Add(time.Millisecond), 302, "")
	}
	r.Record(0, "x", at, at, at.Add(time.Second), 0, "timeout")
	res := &Result{Stats: r.Snapshot()}
	slo, _ = ParseSLO("p50=2ms,errors=2%")
	if !slo.Check(res) || len(res.SLO) != 2 {
		t.Errorf("met SLO reported missed: %+v", res.SLO)
	}
	slo, _ = ParseSLO("p50=2ms,errors=0.5%")
	if slo.Check(res) || res.SLO[1].Met {
		t.Errorf("missed SLO reported met: %+v", res.SLO)
	}
}

func TestReports(t *testing.T) {
	base := serve(t, NewCeiling())
	res, err := Run(context.Background(), Options{Rate: 500, Duration: 2 * time.Second}, clicksOn(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Failed != 0 || res.Stats.Status["click_new"][302] == 0 || res.Stats.Status["click_returning"][302] == 0 {
		t.Fatalf("%+v %+v", res.Stats.Status, res.Stats.Errors)
	}
	var text, js, html bytes.Buffer
	WriteText(&text, res)
	if !strings.Contains(text.String(), "achieved") || !strings.Contains(text.String(), "p99.9") {
		t.Errorf("text:\n%s", text.String())
	}
	if err := WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Stats        Stats
		Distribution []Point
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Stats.Requests != res.Stats.Requests || len(back.Distribution) == 0 {
		t.Errorf("JSON round trip: %v %+v", err, back.Stats)
	}
	if err := WriteHTML(&html, res); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	if strings.Count(h, "<svg") != 2 || strings.Contains(h, "<script") || strings.Contains(h, "src=") || strings.Contains(h, "NaN") {
		t.Errorf("HTML report not self-contained with two plots")
	}
}

// TestClickChecks points the clicks scenario at a server that gets things
// wrong and checks each mistake is reported.
func TestClickChecks(t *testing.T) {
	base := serve(t, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		// A cookie for everyone, crawlers and unknown codes included, and
		// a redirect to the wrong place for returning visitors.
		ctx.Response.Header.Set("Set-Cookie", "rg_load=x; Path=/")
		ctx.Response.Header.Set("Location", "https://shop.example.com/landing")
		if len(ctx.Request.Header.Peek("Cookie")) > 0 {
			ctx.Response.Header.Set("Location", "https://evil.example.net/")
		}
		ctx.SetStatusCode(302)
	}})
	tg, _ := NewTarget(base, 64, false)
	sc, err := NewClicks(tg, fixture(), ClickOptions{New: 0.3, Bots: 0.1, Prefetches: 0.1, Unknown: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Rate: 1000, Duration: time.Second}, sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"cookie_on_bot", "unexpected_status", "bad_location"} {
		if res.Stats.Errors[kind] == 0 {
			t.Errorf("no %s reported: %v", kind, res.Stats.Errors)
		}
	}
}

// The latency from the intended time splits into the send lag and the
// service time, request by request.
func TestRecorderSendLag(t *testing.T) {
	r := NewRecorder(time.Now())
	for i := 1; i <= 1000; i++ {
		at := r.Start.Add(time.Duration(i) * time.Millisecond)
		sent := at.Add(time.Duration(i) * time.Microsecond)     // lag 1..1000 µs
		done := sent.Add(time.Duration(2*i) * time.Microsecond) // service 2..2000 µs
		r.Record(i, "x", at, sent, done, 302, "")
	}
	r.Record(0, "", r.Start, r.Start, r.Start, 0, "not_sent")
	s := r.Snapshot()
	near(t, "latency p50", s.Latency.P50, 1500*time.Microsecond)
	near(t, "send lag p50", s.SendLag.P50, 500*time.Microsecond)
	near(t, "service p50", s.Service.P50, 1000*time.Microsecond)
	near(t, "send lag max", s.SendLag.Max, 1000*time.Microsecond)
	near(t, "service max", s.Service.Max, 2000*time.Microsecond)
	if s.Latency.Count != 1000 || s.SendLag.Count != 1000 || s.Service.Count != 1000 || s.Requests != 1001 {
		t.Errorf("counts: latency %d, send lag %d, service %d, requests %d (a request never sent has no latency)",
			s.Latency.Count, s.SendLag.Count, s.Service.Count, s.Requests)
	}
	mean := time.Duration(s.SendLag.Mean) + time.Duration(s.Service.Mean)
	near(t, "send lag + service, mean", Duration(mean), time.Duration(s.Latency.Mean))
}

// The pacer's timer never wakes before the time asked for.
func TestTimerNotEarly(t *testing.T) {
	tm, err := newTimer()
	if err != nil {
		t.Fatal(err)
	}
	defer tm.close()
	for _, d := range []time.Duration{0, -time.Millisecond, time.Microsecond, 300 * time.Microsecond, 2 * time.Millisecond} {
		start := time.Now()
		if err := tm.sleep(d); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got < d {
			t.Errorf("sleep(%s) returned after %s", d, got)
		}
	}
}
