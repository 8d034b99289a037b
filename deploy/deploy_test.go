package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
	"github.com/refgate/refgate/store/storetest"
)

// TestDashboardAndAlertsUseRealMetrics: every metric the Grafana dashboard
// and the alert rules query is one the running binary exports.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	exported := map[string]bool{"up": true} // Prometheus's own, per target
	for n := range scrape(t, startRefgate(t)) {
		exported[n] = true
	}
	// On Redis, with a consumer group on the event stream: its metrics and
	// Redis's memory too.
	srv := redistest.Start(t)
	if err := srv.Client().XGroupCreateMkStream(context.Background(), events.StreamKey, "ops", "$").Err(); err != nil {
		t.Fatal(err)
	}
	s := startRefgate(t, "--redis-url", srv.URL())
	want := []string{"refgate_events_group_lag", "refgate_events_group_trimmed_total",
		"refgate_redis_used_memory_bytes", "refgate_redis_maxmemory_bytes"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		names := scrape(t, s)
		missing := 0
		for _, n := range want {
			if !names[n] {
				missing++
			}
		}
		if missing == 0 {
			for n := range names {
				exported[n] = true
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %v are not exported after 10 s", missing, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	name := regexp.MustCompile(`\b((?:refgate|process|go)_[a-z0-9_]+|up)\b`)
	check := func(file, expr string) {
		t.Helper()
		for _, n := range name.FindAllString(expr, -1) {
			base := n
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(n, suf); ok && exported[b] {
					base = b
				}
			}
			if !exported[base] {
				t.Errorf("%s uses %s, which refgate does not export", file, n)
			}
		}
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(mustRead(t, "grafana/refgate.json")), &dash); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			check("grafana/refgate.json", tg.Expr)
			n++
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.UnmarshalStrict([]byte(mustRead(t, "prometheus/alerts.yaml")), &rules, yaml.DisallowUnknownFields); err != nil {
		// annotations and labels are extra fields: decode loosely instead
		if err := yaml.Unmarshal([]byte(mustRead(t, "prometheus/alerts.yaml")), &rules); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			check("prometheus/alerts.yaml "+r.Alert, r.Expr)
			n++
		}
	}
	if n < 10 {
		t.Errorf("only %d queries checked", n)
	}
}

// TestRedisConfigAndACL starts redis-server with deploy/redis/redis.conf and
// the example ACL file, and runs the store conformance suite as the refgate
// user: the command list in the ACL is exactly enough.
func TestRedisConfigAndACL(t *testing.T) {
	dir := deployCopy(t)
	srv := redistest.StartConfig(t, filepath.Join(dir, "redis/redis.conf"), "default", "CHANGE-ME-ADMIN-PASSWORD",
		"--aclfile", filepath.Join(dir, "redis/users.acl"))
	admin := srv.Client()
	ctx := context.Background()
	for k, want := range map[string]string{"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction", "protected-mode": "yes"} {
		if got := admin.ConfigGet(ctx, k).Val()[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		if err := admin.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Username: "refgate", Password: "CHANGE-ME-REFGATE-PASSWORD"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	s, _ := redisstore.New(redisstore.Config{URL: srv.URL(), Username: "refgate", Password: "CHANGE-ME-REFGATE-PASSWORD"})
	defer s.Close()
	rdb := s.Client()
	// A customer's keys expire (PEXPIRE) until it pays, then are kept
	// (PERSIST): the conformance suite's updates say no time, so neither.
	for _, paid := range []bool{false, true} {
		err := s.UpdateCustomer(ctx, "acl-c", "", func(c *attribution.Customer, _ *attribution.Order) (*store.CustomerUpdate, error) {
			c.Paid = paid
			return &store.CustomerUpdate{Customer: c, Now: time.Now(),
				Decisions: []attribution.Decision{{Program: "p", At: time.Now(), Event: "login"}}}, nil
		})
		if err != nil {
			t.Fatalf("customer update (paid %v) as the refgate user: %v", paid, err)
		}
	}
	// The event stream: refgate writes it, and `refgate events tail` (plain
	// and as a consumer group) reads it, as the same user.
	sink := events.NewRedisStream(rdb, []string{events.StreamKey}, 1000)
	if _, err := sink.Write(ctx, []events.Record{{ID: "e1", Subject: "link/x", JSON: []byte(`{"id":"e1","type":"refgate.click"}`)}}); err != nil {
		t.Fatalf("XADD as the refgate user: %v", err)
	}
	for _, o := range []events.TailOptions{{From: "start"}, {From: "start", Group: "ops"}} {
		n := 0
		if err := events.TailRedis(ctx, rdb, []string{events.StreamKey}, o, func([]byte) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("tail %+v as the refgate user: %d events, %v", o, n, err)
		}
	}
	// The consumer groups' lag: XINFO STREAM, XINFO GROUPS and XRANGE.
	mon := events.NewStreamMonitor(events.StreamMonitorConfig{Client: rdb, Keys: sink.Keys(), MaxLen: sink.MaxLen()})
	if err := mon.Poll(ctx); err != nil {
		t.Errorf("XINFO of the event stream as the refgate user: %v", err)
	}
	// The memory check at start reads INFO memory, as the same user.
	if nodes, err := s.Memory(ctx); err != nil || len(nodes) != 1 || nodes[0].MaxMemory != 2<<30 || nodes[0].Policy != "noeviction" {
		t.Errorf("INFO memory as the refgate user: %+v, %v", nodes, err)
	} else if w := redisstore.MemoryWarnings(nodes[0], events.DefaultStreamMaxLen*events.StreamEntryBytes); len(w) > 0 {
		t.Errorf("the shipped redis.conf with the default stream cap warns: %q", w)
	}
	// And nothing more: the refgate user cannot touch other keys or run
	// administrative commands.
	if err := rdb.Set(ctx, "other:key", "x", 0).Err(); err == nil {
		t.Error("the refgate user wrote outside refgate:*")
	}
	if err := rdb.FlushAll(ctx).Err(); err == nil {
		t.Error("the refgate user may FLUSHALL")
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err == nil {
		t.Error("the refgate user may CONFIG SET")
	}
}

// TestAlertRules runs the alerts through Prometheus's own tool: they load
// (`promtool check rules`) and fire as deploy/prometheus/alerts_test.yaml
// says (`promtool test rules`). promtool comes with Debian's prometheus
// package, which .ci/run installs.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed (apt-get install -y prometheus): ", err)
	}
	dir := "prometheus"
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// scrape reads /metrics of a running refgate with the metrics token, as
// Prometheus does, and returns the names of the metric families in it.
func scrape(t *testing.T, s *server) map[string]bool {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+metricsTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics with the metrics token: %d %s", resp.StatusCode, body)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(body), -1) {
		names[m[1]] = true
	}
	return names
}
