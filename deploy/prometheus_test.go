package deploy

import (
	"bytes"
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

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
)

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
	for _, r := range alertRules(t) {
		check("prometheus/alerts.yaml "+r.Alert, r.Expr)
		n++
	}
	if n < 10 {
		t.Errorf("only %d queries checked", n)
	}
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	var file struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict([]byte(mustRead(t, "prometheus/alerts.yaml")), &file); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// runbookURL is where an alert's runbook_url points: its section of
// docs/runbook.md (GitHub's anchor for "## Name" is "#name").
func runbookURL(alert string) string {
	return "https://github.com/refgate/refgate/blob/main/docs/runbook.md#" + strings.ToLower(alert)
}

// fleetOnly are the alerts one VM cannot raise: RefgateInstanceDown says
// an instance is down while others serve, and one VM has no other (there
// RefgateNoInstanceUp pages). Its single VM test is that it stays quiet.
var fleetOnly = map[string]bool{"RefgateInstanceDown": true}

// TestAlertRules runs the alerts through Prometheus's own tool: they load
// (`promtool check rules`) and fire as deploy/prometheus/alerts_test.yaml
// says (`promtool test rules`). promtool comes with Debian's prometheus
// package, which .ci/run installs. Every alert says what and where
// (summary, description), has a section in docs/runbook.md that its
// runbook_url points to, and is tested on both deployments, one VM and a
// fleet, firing and quiet.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed (apt-get install -y prometheus): ", err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	runbook := mustRead(t, filepath.Join(root, "docs/runbook.md"))
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(runbook, -1) {
		sections[m[1]] = true
	}
	rules := alertRules(t)
	alerts := map[string]bool{}
	for _, r := range rules {
		alerts[r.Alert] = true
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s has no %s", r.Alert, a)
			}
		}
		if got, want := r.Annotations["runbook_url"], runbookURL(r.Alert); got != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, want)
		}
		if !sections[r.Alert] {
			t.Errorf("docs/runbook.md has no section \"## %s\"", r.Alert)
		}
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("docs/runbook.md has a section for %s, which is no alert", s)
		}
	}

	// Both deployments, both outcomes, for every alert.
	var tests struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				Alertname string            `json:"alertname"`
				ExpAlerts []json.RawMessage `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, "prometheus/alerts_test.yaml")), &tests); err != nil {
		t.Fatal(err)
	}
	type key struct{ alert, deployment, outcome string }
	covered := map[key]bool{}
	deployments := []string{"single VM", "fleet"}
	for _, tc := range tests.Tests {
		dep, _, _ := strings.Cut(tc.Name, ":")
		if dep != deployments[0] && dep != deployments[1] {
			t.Errorf("test %q: its name must begin with \"single VM:\" or \"fleet:\"", tc.Name)
			continue
		}
		for _, a := range tc.AlertRuleTest {
			if !alerts[a.Alertname] {
				t.Errorf("test %q checks %s, which is no alert", tc.Name, a.Alertname)
			}
			outcome := "quiet"
			if len(a.ExpAlerts) > 0 {
				outcome = "fires"
			}
			covered[key{a.Alertname, dep, outcome}] = true
		}
	}
	for _, r := range rules {
		for _, dep := range deployments {
			for _, outcome := range []string{"fires", "quiet"} {
				if outcome == "fires" && dep == "single VM" && fleetOnly[r.Alert] {
					continue
				}
				if !covered[key{r.Alert, dep, outcome}] {
					t.Errorf("alerts_test.yaml has no %s test where %s %s", dep, r.Alert, outcome)
				}
			}
		}
	}
}

// TestPrometheusRule: the alert rules, wrapped in a PrometheusRule the way
// deploy/README.md says (its spec is alerts.yaml indented), decode strictly
// into the Prometheus Operator's type with every rule.
func TestPrometheusRule(t *testing.T) {
	doc := mustRead(t, "README.md")
	if !strings.Contains(doc, `{ printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: refgate\nspec:\n'`+"\n"+`  sed 's/^/  /' deploy/prometheus/alerts.yaml; }`) {
		t.Fatal("deploy/README.md no longer wraps alerts.yaml as this test does")
	}
	var b strings.Builder
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: refgate\nspec:\n")
	for _, line := range strings.SplitAfter(mustRead(t, "prometheus/alerts.yaml"), "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
	}
	j, err := yaml.YAMLToJSON([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var pr monitoringv1.PrometheusRule
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		t.Fatalf("the PrometheusRule does not decode strictly: %v", err)
	}
	n := 0
	for _, g := range pr.Spec.Groups {
		n += len(g.Rules)
	}
	if want := len(alertRules(t)); n != want || n == 0 {
		t.Errorf("the PrometheusRule has %d rules, alerts.yaml %d", n, want)
	}
}
