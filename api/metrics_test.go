package api

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sample returns the value of the counter name with exactly labels, or -1.
func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

// TestRequestMetricsAndAccessLog: every API request is counted by route
// template, method and status class, and timed by route; with AccessLog
// each is one log line without the query string.
func TestRequestMetricsAndAccessLog(t *testing.T) {
	reg := prometheus.NewRegistry()
	logs := &lockedBuffer{}
	e := newAuthEnv(t, func(c *Config) {
		c.Gatherer, c.Registerer = reg, reg
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.AccessLog = true
	})
	route := "/v1/admin/programs/{id}"
	if got := sample(t, reg, "refgate_api_requests_total", map[string]string{"route": route, "method": "PUT", "status": "2xx"}); got != 0 {
		t.Errorf("before any request: %v, want a zero series", got)
	}
	if r := e.call("PUT", "/v1/admin/programs/shop", adminTok, programBody); r.status != 200 {
		t.Fatalf("put program: %d %s", r.status, r.raw)
	}
	e.call("PUT", "/v1/admin/programs/shop2", adminTok, programBody)
	e.call("GET", "/v1/admin/programs/nope", adminTok, "")
	e.call("GET", "/v1/admin/programs/shop", "wrong-token-0123456789", "")
	e.call("GET", "/v1/nowhere", adminTok, "")
	e.call("PATCH", "/v1/admin/programs/shop", adminTok, "")
	e.call("GET", "/v1/attribution?program=shop&customer=secret-customer-id", sfTok, "")

	for _, c := range []struct {
		route, method, status string
		want                  float64
	}{
		{route, "PUT", "2xx", 2},
		{route, "GET", "4xx", 2}, // 404 and 401
		{route, "PATCH", "4xx", 1},
		{unmatched, "GET", "4xx", 1},
		{"/v1/attribution", "GET", "2xx", 1},
	} {
		if got := sample(t, reg, "refgate_api_requests_total", map[string]string{"route": c.route, "method": c.method, "status": c.status}); got != c.want {
			t.Errorf("requests{%s %s %s} = %v, want %v", c.route, c.method, c.status, got, c.want)
		}
	}
	if got := sample(t, reg, "refgate_api_request_duration_seconds", map[string]string{"route": route, "method": "PUT"}); got != 2 {
		t.Errorf("duration count of PUT %s = %v, want 2", route, got)
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "api request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 7 {
		t.Fatalf("%d access log lines, want 7:\n%s", len(lines), logs)
	}
	first := lines[0]
	if first["method"] != "PUT" || first["route"] != route || first["path"] != "/v1/admin/programs/shop" || first["status"] != 200.0 || first["client"] == "" {
		t.Errorf("access log line %v", first)
	}
	if strings.Contains(logs.String(), "secret-customer-id") {
		t.Errorf("the access log has the query string, which names customers:\n%s", logs)
	}
}
