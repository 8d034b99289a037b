package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/redistest"
)

// edgeHealth is GET /healthz on the edge: its status and body.
func edgeHealth(t *testing.T, edge string) (int, string) {
	t.Helper()
	resp, err := noRedirect.Get("http://" + edge + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond every 100 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadinessThroughRedisOutage: the edge's /healthz (the readiness
// probe of the deploy kit) stays 200 while Redis is dead, since the link
// cache keeps answering clicks; /readyz and refgate_store_up report the
// outage, and both recover when Redis is back.
func TestReadinessThroughRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.RedisURL = srv.URL() })
	setup(t, m, "ready001")
	if resp := click(t, m.EdgeAddr(), "ready001"); resp.StatusCode != 302 {
		t.Fatalf("click: %d", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "refgate_store_up 1", func() bool { return metricValue(t, m.APIAddr(), "refgate_store_up") == 1 })

	srv.Kill()
	waitFor(t, 10*time.Second, "refgate_store_up 0 with Redis dead", func() bool { return metricValue(t, m.APIAddr(), "refgate_store_up") == 0 })
	// Longer than the shipped probe's 2 failures 2 s apart.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if s, body := edgeHealth(t, m.EdgeAddr()); s != 200 {
			t.Fatalf("/healthz with Redis dead: %d %q; the pod would leave the edge Service", s, body)
		}
		if resp := click(t, m.EdgeAddr(), "ready001"); resp.StatusCode != 302 {
			t.Fatalf("click with Redis dead: %d", resp.StatusCode)
		}
	}
	if s, body := callAPI(t, m, "GET", "/readyz", ""); s != 503 || body["store"] != "unavailable" {
		t.Errorf("/readyz with Redis dead: %d %v", s, body)
	}

	srv.Restart()
	waitFor(t, 10*time.Second, "refgate_store_up 1 after the restart", func() bool { return metricValue(t, m.APIAddr(), "refgate_store_up") == 1 })
	if s, body := callAPI(t, m, "GET", "/readyz", ""); s != 200 {
		t.Errorf("/readyz after the restart: %d %v", s, body)
	}
}

// TestStartingWithRedisDown: an instance whose store has never answered has
// no links to serve, so /healthz says starting (503) until Redis answers.
// go-redis's own log lines come out as JSON like the rest.
func TestStartingWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	m, logs := MustRunMain(t, t.TempDir(), func(c *Config) { c.RedisURL = srv.URL(); c.LogFormat = "json" })
	if s, body := edgeHealth(t, m.EdgeAddr()); s != 503 || !strings.HasPrefix(body, "starting") {
		t.Errorf("/healthz before Redis ever answered: %d %q", s, body)
	}
	if !strings.Contains(logs.String(), "the store does not answer yet") {
		t.Errorf("no log line says the store does not answer:\n%s", logs)
	}
	// go-redis's own lines (dial failures here) are JSON lines too.
	waitFor(t, 5*time.Second, "a go-redis line in the log", func() bool { return strings.Contains(logs.String(), `"component":"redis"`) })
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not a JSON line in --log-format json: %q", line)
		}
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "/healthz 200 once Redis answers", func() bool {
		s, _ := edgeHealth(t, m.EdgeAddr())
		return s == http.StatusOK
	})
}

// TestPublicURLWarning: an edge listening beyond loopback without
// --public-url would hand out http://localhost links; refgate says so at
// start. On loopback (a run on one machine) localhost is right.
func TestPublicURLWarning(t *testing.T) {
	const warning = "--public-url is not set"
	_, logs := MustRunMain(t, t.TempDir(), nil)
	if strings.Contains(logs.String(), warning) {
		t.Errorf("warned on loopback:\n%s", logs)
	}
	_, logs = MustRunMain(t, t.TempDir(), func(c *Config) { c.Listen = ":0" })
	if !strings.Contains(logs.String(), warning) || !strings.Contains(logs.String(), "REFGATE_PUBLIC_URL") {
		t.Errorf("no warning with the edge on every interface and no public URL:\n%s", logs)
	}
	_, logs = MustRunMain(t, t.TempDir(), func(c *Config) { c.Listen = ":0"; c.PublicURL = "https://go.example.com" })
	if strings.Contains(logs.String(), warning) {
		t.Errorf("warned with --public-url set:\n%s", logs)
	}
}
