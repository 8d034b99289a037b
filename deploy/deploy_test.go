package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
	"github.com/refgate/refgate/store/storetest"
)

// render renders an overlay with the kustomize Go module (no kubectl).
func render(t *testing.T, dir string) [][]byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	var out [][]byte
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// decodeStrict decodes one object into its k8s.io/api (or Prometheus
// Operator) type, refusing unknown fields.
func decodeStrict(t *testing.T, b []byte) any {
	t.Helper()
	var meta struct{ Kind, APIVersion string }
	json.Unmarshal(b, &meta)
	var obj any
	switch meta.APIVersion + "/" + meta.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/Secret":
		obj = &corev1.Secret{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1/PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1/NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	case "batch/v1/Job":
		obj = &batchv1.Job{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	default:
		t.Fatalf("unexpected object %s %s", meta.APIVersion, meta.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		t.Fatalf("%s does not decode strictly: %v\n%s", meta.Kind, err, b)
	}
	return obj
}

func TestKustomizeOverlays(t *testing.T) {
	dir := deployCopy(t)
	flagEnv := envNames(t)
	secretKeys := map[string]bool{}
	for _, line := range strings.Split(mustRead(t, filepath.Join(dir, "k8s/base/secrets.env")), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			secretKeys[k] = true
			if !flagEnv[k] {
				t.Errorf("secrets.env sets %s, which is no refgate flag", k)
			}
		}
	}
	for _, overlay := range []string{"redis-single", "redis-cluster"} {
		t.Run(overlay, func(t *testing.T) {
			kinds := map[string]int{}
			var dep *appsv1.Deployment
			var redisConf string
			var sts []*appsv1.StatefulSet
			for _, b := range render(t, filepath.Join(dir, "k8s/overlays", overlay)) {
				switch o := decodeStrict(t, b).(type) {
				case *appsv1.Deployment:
					kinds["Deployment"]++
					dep = o
				case *appsv1.StatefulSet:
					kinds["StatefulSet"]++
					sts = append(sts, o)
				case *corev1.ConfigMap:
					kinds["ConfigMap"]++
					redisConf += o.Data["redis.conf"]
				case *corev1.Service:
					kinds["Service"]++
					checkService(t, o)
				case *monitoringv1.ServiceMonitor:
					kinds["ServiceMonitor"]++
					if ep := o.Spec.Endpoints[0]; ep.Port != "api" || ep.Path != "/metrics" || ep.Authorization == nil {
						t.Errorf("ServiceMonitor endpoint %+v", ep)
					}
				case *batchv1.Job:
					kinds["Job"]++
				default:
					kinds[fmt.Sprintf("%T", o)]++
				}
			}
			for _, k := range []string{"Deployment", "ServiceMonitor", "StatefulSet", "ConfigMap", "*v1.PodDisruptionBudget", "*v2.HorizontalPodAutoscaler", "*v1.NetworkPolicy", "*v1.Secret"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered (%v)", k, kinds)
				}
			}
			checkDeployment(t, dep, flagEnv, secretKeys, overlay)
			for _, want := range []string{"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction", "protected-mode yes", "aclfile /etc/redis/users.acl"} {
				if !strings.Contains(redisConf, want) {
					t.Errorf("redis.conf lacks %q", want)
				}
			}
			if overlay == "redis-cluster" {
				if kinds["Job"] != 1 || len(sts) != 1 || *sts[0].Spec.Replicas != 6 || !strings.Contains(strings.Join(sts[0].Spec.Template.Spec.Containers[0].Args, " "), "--cluster-enabled yes") {
					t.Errorf("the cluster overlay wants a 6-node cluster StatefulSet and a forming Job: %v", kinds)
				}
			}
		})
	}
}

func checkService(t *testing.T, s *corev1.Service) {
	t.Helper()
	switch s.Name {
	case "refgate-edge":
		if s.Spec.Ports[0].TargetPort.StrVal != "edge" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Errorf("edge service %+v", s.Spec)
		}
	case "refgate-api":
		if s.Spec.Ports[0].TargetPort.StrVal != "api" || s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("api service %+v", s.Spec)
		}
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, flagEnv, secretKeys map[string]bool, overlay string) {
	t.Helper()
	if d == nil {
		t.Fatal("no Deployment")
	}
	c := d.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		if strings.HasPrefix(e.Name, "REFGATE_") && !flagEnv[e.Name] {
			t.Errorf("env %s is no refgate flag", e.Name)
		}
	}
	if env["REFGATE_LISTEN"].Value != fmt.Sprintf(":%d", ports["edge"]) || env["REFGATE_API_LISTEN"].Value != fmt.Sprintf(":%d", ports["api"]) {
		t.Errorf("listen addresses %q %q do not match the container ports %v", env["REFGATE_LISTEN"].Value, env["REFGATE_API_LISTEN"].Value, ports)
	}
	if p := c.LivenessProbe.HTTPGet; p.Path != "/livez" || p.Port.StrVal != "api" {
		t.Errorf("liveness probe %+v", p)
	}
	if p := c.ReadinessProbe.HTTPGet; p.Path != "/readyz" || p.Port.StrVal != "api" {
		t.Errorf("readiness probe %+v", p)
	}
	if g := env["GOMEMLIMIT"]; g.ValueFrom == nil || g.ValueFrom.ResourceFieldRef.Resource != "limits.memory" || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("GOMEMLIMIT must come from the memory limit: %+v", g)
	}
	d0, err := time.ParseDuration(env["REFGATE_SHUTDOWN_DELAY"].Value)
	if err != nil {
		t.Errorf("REFGATE_SHUTDOWN_DELAY: %v", err)
	}
	delay := int64(d0.Seconds())
	pre := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pre = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if pre == 0 || delay == 0 || *d.Spec.Template.Spec.TerminationGracePeriodSeconds <= pre+delay+5 {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + shutdown delay %ds + the queue flush",
			*d.Spec.Template.Spec.TerminationGracePeriodSeconds, pre, delay)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || !strings.HasPrefix(c.EnvFrom[0].SecretRef.Name, "refgate") {
		t.Errorf("secrets come from the refgate Secret: %+v", c.EnvFrom)
	}
	switch overlay {
	case "redis-single":
		if env["REFGATE_REDIS_URL"].Value != "redis://redis:6379/0" {
			t.Errorf("redis url %q", env["REFGATE_REDIS_URL"].Value)
		}
	case "redis-cluster":
		if n := len(strings.Split(env["REFGATE_REDIS_ADDRS"].Value, ",")); n != 6 || env["REFGATE_REDIS_CLUSTER"].Value != "true" {
			t.Errorf("cluster addresses %q", env["REFGATE_REDIS_ADDRS"].Value)
		}
	}
	if !secretKeys["REFGATE_COOKIE_KEYS"] || !secretKeys["REFGATE_REDIS_PASSWORD"] || env["REFGATE_REDIS_USERNAME"].Value != "refgate" {
		t.Error("every instance must share cookie keys and authenticate to Redis as the refgate user")
	}
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

// TestDockerfile checks the image recipe: multi-stage, static, version
// stamped, non-root, both ports, no HEALTHCHECK; and runs its build command
// here to prove the binary it makes is static and carries the version.
func TestDockerfile(t *testing.T) {
	df := mustRead(t, "Dockerfile")
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "distroless/static", "USER nonroot", "EXPOSE 8080 8081"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(df, "FROM ") < 2 || strings.Contains(df, "HEALTHCHECK") {
		t.Error("want a multi-stage build without HEALTHCHECK (orchestrators probe)")
	}
	if testing.Short() {
		return
	}
	var build string
	for _, line := range strings.Split(df, "\n") {
		if strings.HasPrefix(line, "RUN CGO_ENABLED=0 go build") {
			build = strings.TrimPrefix(line, "RUN ")
		}
	}
	bin := filepath.Join(t.TempDir(), "refgate")
	build = strings.ReplaceAll(build, "${VERSION}", "v9.9.9-test")
	build = strings.ReplaceAll(build, "/out/refgate", bin)
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "refgate v9.9.9-test" {
		t.Errorf("version: %q %v", out, err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked")
		}
	}
}

// TestSystemdUnit checks the VM unit: hardened, a state directory for the
// data dir, and only real REFGATE_* settings.
func TestSystemdUnit(t *testing.T) {
	unit := mustRead(t, "systemd/refgate.service")
	for _, want := range []string{"ExecStart=/usr/local/bin/refgate serve", "DynamicUser=yes", "StateDirectory=refgate",
		"Environment=REFGATE_DATA_DIR=/var/lib/refgate", "ProtectSystem=strict", "NoNewPrivileges=yes", "KillSignal=SIGTERM"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	flags := envNames(t)
	for _, m := range regexp.MustCompile(`Environment=(REFGATE_[A-Z_]+)=`).FindAllStringSubmatch(unit, -1) {
		if !flags[m[1]] {
			t.Errorf("unit sets %s, which is no refgate flag", m[1])
		}
	}
	nginx := mustRead(t, "nginx/refgate.conf")
	if !strings.Contains(nginx, "proxy_set_header X-Forwarded-For $remote_addr;") || !strings.Contains(unit, "REFGATE_TRUSTED_PROXIES=127.0.0.1/32") {
		t.Error("nginx must replace X-Forwarded-For with the peer, and refgate trust only the local nginx")
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
