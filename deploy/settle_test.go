package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// settleCall is what the stand-in API got from one refgate settle.
type settleCall struct {
	Program string `json:"program"`
	Through string `json:"through"`
	auth    string
}

// runSettle runs the refgate binary with args and env, with the API at a
// stand-in that answers POST /v1/admin/statements with no statements
// (REFGATE_API_URL) and the test admin token (REFGATE_ADMIN_TOKEN): the
// example files' tokens are placeholders. It returns the exit status, the
// output and what the stand-in got.
func runSettle(t *testing.T, args []string, env map[string]string) (code int, out string, calls []settleCall) {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c settleCall
		if r.Method != "POST" || r.URL.Path != "/v1/admin/statements" || json.NewDecoder(r.Body).Decode(&c) != nil {
			t.Errorf("refgate settle sent %s %s", r.Method, r.URL)
		}
		c.auth = r.Header.Get("Authorization")
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"statements":[]}`)
	}))
	defer srv.Close()
	var extra []string
	for k, v := range env {
		extra = append(extra, k+"="+v)
	}
	extra = append(extra, "REFGATE_API_URL="+srv.URL, "REFGATE_ADMIN_TOKEN="+adminTok)
	cmd := exec.Command(refgateBinary(t), args...)
	cmd.Env = binaryEnv(extra...)
	out, code = runTimeout(cmd, 20*time.Second)
	mu.Lock()
	defer mu.Unlock()
	return code, out, calls
}

// checkSettleRun: the command line runs as a refgate settle of program,
// sending the admin token; with program "" it is the CHANGE-ME of the
// example, which refgate settle refuses (exit 2) without sending anything.
func checkSettleRun(t *testing.T, where string, args []string, env map[string]string, program string) {
	t.Helper()
	code, out, calls := runSettle(t, args, env)
	switch {
	case program == "":
		if code != 2 || len(calls) != 0 || !strings.Contains(out, "--program CHANGE-ME is a placeholder") {
			t.Errorf("%s: %q with the example's program: exit %d, %d requests, output %q; want refgate settle to refuse the placeholder",
				where, args, code, len(calls), out)
		}
	case code != 0 || len(calls) != 1 || calls[0].Program != program || calls[0].auth != "Bearer "+adminTok || calls[0].Through != "":
		t.Errorf("%s: %q: exit %d, requests %+v, output %q; want one settlement of %s and exit 0", where, args, code, calls, out, program)
	}
}

var (
	settleHelpOnce sync.Once
	settleHelp     string
)

// settleEnvNames are the REFGATE_* variables refgate settle reads, as its
// help lists them.
func settleEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	settleHelpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, refgateBinary(t), "settle", "--help")
		cmd.Env = binaryEnv()
		out, _ := cmd.Output()
		settleHelp = string(out)
	})
	names := map[string]bool{}
	for _, n := range regexp.MustCompile(`REFGATE_[A-Z_]+`).FindAllString(settleHelp, -1) {
		names[n] = true
	}
	if !names["REFGATE_ADMIN_TOKEN"] || !names["REFGATE_API_URL"] {
		t.Fatalf("refgate settle --help names neither REFGATE_ADMIN_TOKEN nor REFGATE_API_URL:\n%s", settleHelp)
	}
	return names
}

// k8sVar is a $(VAR) reference in a container's args, or the $$ escape.
var k8sVar = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expandArgs expands args as the kubelet does: $(VAR) of a variable the
// container defines is its value, $$ is $, anything else stays.
func expandArgs(args []string, env map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = k8sVar.ReplaceAllStringFunc(a, func(m string) string {
			if m == "$$" {
				return "$"
			}
			if v, ok := env[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
	}
	return out
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(podLabels))
}

// admits reports whether an ingress rule of np lets pods with podLabels,
// in np's namespace, connect to port (named portName) of the pods np
// selects.
func admits(np *networkingv1.NetworkPolicy, podLabels map[string]string, port int32, portName string) bool {
	for _, rule := range np.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			tcp := p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP
			if tcp && (p.Port == nil || (p.Port.Type == intstr.Int && p.Port.IntVal == port) || (p.Port.Type == intstr.String && p.Port.StrVal == portName)) {
				portOK = true
			}
		}
		fromOK := len(rule.From) == 0
		for _, peer := range rule.From {
			if peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil && selects(peer.PodSelector, podLabels) {
				fromOK = true
			}
		}
		if portOK && fromOK {
			return true
		}
	}
	return false
}

// checkSettlement checks the settlement component's CronJob in a
// rendering: monthly, one run at a time, the Deployment's image and
// container security, every Secret and ConfigMap key it reads there, the
// API Service at the URL it calls, the NetworkPolicy letting it in, none of
// the fleet's selectors taking its pods, and its args a refgate settle of
// program ("" for the example's CHANGE-ME).
func checkSettlement(t *testing.T, r *rendering, program string) {
	t.Helper()
	if len(r.cronJobs) != 1 || r.cronJobs[0].Name != "refgate-settle" {
		t.Fatalf("want the CronJob refgate-settle, got %d CronJobs", len(r.cronJobs))
	}
	cj := r.cronJobs[0]
	spec := cj.Spec.JobTemplate.Spec
	pod := spec.Template
	if cj.Spec.Schedule != "0 3 6 * *" || cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Etc/UTC" ||
		cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("CronJob schedule %q, time zone %v, concurrency %q; want 0 3 6 * * in Etc/UTC, Forbid",
			cj.Spec.Schedule, cj.Spec.TimeZone, cj.Spec.ConcurrencyPolicy)
	}
	if spec.BackoffLimit == nil || *spec.BackoffLimit != 3 || pod.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("Job backoffLimit %v, restartPolicy %q; want 3 and OnFailure", spec.BackoffLimit, pod.Spec.RestartPolicy)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	depPod := r.dep.Spec.Template.Spec
	dc := depPod.Containers[0]
	if c.Image != dc.Image || len(c.Command) != 0 {
		t.Errorf("the CronJob runs image %q command %q, want the Deployment's %q and its entrypoint", c.Image, c.Command, dc.Image)
	}
	// Non-root, read-only, as the Deployment's.
	ps, dps := pod.Spec.SecurityContext, depPod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || !reflect.DeepEqual(ps.RunAsUser, dps.RunAsUser) ||
		!reflect.DeepEqual(ps.SeccompProfile, dps.SeccompProfile) || !reflect.DeepEqual(c.SecurityContext, dc.SecurityContext) {
		t.Errorf("the CronJob's security context %+v / %+v differs from the Deployment's %+v / %+v", ps, c.SecurityContext, dps, dc.SecurityContext)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("the CronJob's container wants requests and limits: %+v", c.Resources)
	}

	// Its environment, resolved as the kubelet would.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			var s corev1.Secret // checkReferences says when it is missing
			if p := r.secrets[ref.Name]; p != nil {
				s = *p
			}
			if v, ok := s.Data[ref.Key]; ok {
				env[e.Name] = string(v)
			} else if v, ok := s.StringData[ref.Key]; ok {
				env[e.Name] = v
			} else {
				t.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			var cm corev1.ConfigMap
			if p := r.configMaps[ref.Name]; p != nil {
				cm = *p
			}
			if v, ok := cm.Data[ref.Key]; ok {
				env[e.Name] = v
			} else {
				t.Errorf("env %s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
			}
		default:
			t.Errorf("env %s: a source the test does not know", e.Name)
		}
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("the CronJob takes whole Secrets or ConfigMaps (%+v): name the keys it needs", c.EnvFrom)
	}
	read := settleEnvNames(t)
	for name := range env {
		if strings.HasPrefix(name, "REFGATE_") && !read[name] && !strings.Contains(strings.Join(c.Args, " "), "$("+name+")") {
			t.Errorf("the CronJob sets %s, which refgate settle does not read and its args do not use", name)
		}
	}
	var tokenFromSecret bool
	for _, e := range c.Env {
		if e.Name == "REFGATE_ADMIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && strings.HasPrefix(e.ValueFrom.SecretKeyRef.Name, "refgate-") &&
			e.ValueFrom.SecretKeyRef.Key == "REFGATE_ADMIN_TOKEN" {
			tokenFromSecret = true
		}
	}
	if !tokenFromSecret {
		t.Error("the CronJob must read REFGATE_ADMIN_TOKEN from the refgate Secret's REFGATE_ADMIN_TOKEN")
	}

	// The API it calls is refgate-api's port, which leads to the
	// Deployment's API port.
	var apiPort int32
	for _, p := range dc.Ports {
		if p.Name == "api" {
			apiPort = p.ContainerPort
		}
	}
	u, err := url.Parse(env["REFGATE_API_URL"])
	if err != nil || u.Scheme != "http" || u.Path != "" {
		t.Errorf("REFGATE_API_URL %q", env["REFGATE_API_URL"])
	} else {
		found := false
		for _, s := range r.services {
			for _, p := range s.Spec.Ports {
				if s.Name == u.Hostname() && strconv.Itoa(int(p.Port)) == u.Port() && p.TargetPort.StrVal == "api" {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("REFGATE_API_URL %s is no Service port leading to the API", u)
		}
	}

	// The NetworkPolicy that isolates the fleet lets these pods reach the
	// API port; the fleet's selectors do not take them.
	podLabels := pod.Labels
	isolating, admitted := 0, false
	for _, np := range r.netpols {
		if !selects(&np.Spec.PodSelector, r.dep.Spec.Template.Labels) {
			continue
		}
		isolating++
		admitted = admitted || admits(np, podLabels, apiPort, "api")
	}
	if isolating == 0 || !admitted {
		t.Errorf("no NetworkPolicy that selects the refgate pods (%d do) lets the CronJob's pods %v reach port %d", isolating, podLabels, apiPort)
	}
	if selects(r.dep.Spec.Selector, podLabels) {
		t.Errorf("the Deployment's selector takes the CronJob's pods %v", podLabels)
	}
	for _, s := range r.services {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
			t.Errorf("Service %s selects the CronJob's pods %v", s.Name, podLabels)
		}
	}
	for _, p := range r.pdbs {
		if selects(p.Spec.Selector, podLabels) {
			t.Errorf("PodDisruptionBudget %s counts the CronJob's pods %v", p.Name, podLabels)
		}
	}

	// The args are a refgate settle command line that settles the program.
	if len(c.Args) == 0 || c.Args[0] != "settle" {
		t.Fatalf("the CronJob's args %q are no refgate settle", c.Args)
	}
	checkSettleRun(t, "the CronJob", expandArgs(c.Args, env), env, program)
}

// unitValues are the values of key= lines in a unit file, in order.
func unitValues(unit, key string) []string {
	var vs []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// execArgs splits an ExecStart= command line as systemd does for this one's
// forms: words, ${VAR} as one word and $VAR split at white space.
func execArgs(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			out = append(out, env[w[2:len(w)-1]])
		case strings.HasPrefix(w, "$"):
			out = append(out, strings.Fields(env[w[1:]])...)
		case strings.ContainsAny(w, "$\"'\\%"):
			t.Fatalf("ExecStart word %q: teach the test systemd's quoting", w)
		default:
			out = append(out, w)
		}
	}
	return out
}

// TestSystemdSettle checks the VM's settlement timer and service: monthly
// on the 6th at 03:00 UTC, a run missed while the machine was off made up
// at boot, the token from refgate.service's environment file, the API
// refgate.service listens on, hardened, accepted by systemd-analyze
// verify, and its ExecStart a refgate settle of the program the unit (or
// a drop-in) sets.
func TestSystemdSettle(t *testing.T) {
	svc := mustRead(t, "systemd/refgate-settle.service")
	timer := mustRead(t, "systemd/refgate-settle.timer")
	main := mustRead(t, "systemd/refgate.service")
	for _, want := range []string{"Type=oneshot\n", "DynamicUser=yes\n", "ProtectSystem=strict\n", "NoNewPrivileges=yes\n",
		"CapabilityBoundingSet=\n", "After=network-online.target refgate.service\n",
		"install -m 0644 deploy/systemd/refgate-settle.service deploy/systemd/refgate-settle.timer /etc/systemd/system/\n",
		"systemctl enable --now refgate-settle.timer\n"} {
		if !strings.Contains(svc, want) {
			t.Errorf("refgate-settle.service lacks %q", strings.TrimSpace(want))
		}
	}
	for _, want := range []string{"OnCalendar=*-*-06 03:00:00 UTC\n", "Persistent=true\n", "WantedBy=timers.target\n"} {
		if !strings.Contains(timer, want) {
			t.Errorf("refgate-settle.timer lacks %q", strings.TrimSpace(want))
		}
	}
	if u := unitValues(timer, "Unit"); len(u) > 0 {
		t.Errorf("refgate-settle.timer starts %v; it starts refgate-settle.service by its name", u)
	}
	if ef, mainEF := unitValues(svc, "EnvironmentFile"), unitValues(main, "EnvironmentFile"); len(ef) != 1 || len(mainEF) != 1 || ef[0] != mainEF[0] {
		t.Errorf("refgate-settle.service reads EnvironmentFile %q, want refgate.service's %q (REFGATE_ADMIN_TOKEN)", ef, mainEF)
	}
	env := map[string]string{}
	for _, kv := range append(unitValues(main, "Environment"), unitValues(svc, "Environment")...) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if want := "http://" + env["REFGATE_API_LISTEN"]; env["REFGATE_API_URL"] != want {
		t.Errorf("refgate-settle.service calls REFGATE_API_URL %q, but refgate.service listens on %s", env["REFGATE_API_URL"], want)
	}
	read := settleEnvNames(t)
	for _, kv := range unitValues(svc, "Environment") {
		k, _, _ := strings.Cut(kv, "=")
		if !read[k] && !strings.Contains(strings.Join(unitValues(svc, "ExecStart"), " "), "${"+k+"}") {
			t.Errorf("refgate-settle.service sets %s, which refgate settle does not read and ExecStart does not use", k)
		}
	}
	execStart := unitValues(svc, "ExecStart")
	if len(execStart) != 1 {
		t.Fatalf("refgate-settle.service has %d ExecStart lines, want 1", len(execStart))
	}
	args := execArgs(t, execStart[0], env)
	if len(args) < 2 || args[0] != "/usr/local/bin/refgate" || args[1] != "settle" {
		t.Fatalf("ExecStart %q is no /usr/local/bin/refgate settle", args)
	}
	// As installed, the program is the placeholder; with the drop-in the
	// unit's comment shows, the program it sets.
	svcEnv := map[string]string{}
	for _, kv := range unitValues(svc, "Environment") {
		k, v, _ := strings.Cut(kv, "=")
		svcEnv[k] = v
	}
	checkSettleRun(t, "refgate-settle.service", args[1:], svcEnv, "")
	if !strings.Contains(svc, "systemctl edit refgate-settle.service     # [Service] Environment=REFGATE_SETTLE_PROGRAM=your-program\n") {
		t.Error("refgate-settle.service does not say how to set REFGATE_SETTLE_PROGRAM")
	}
	env["REFGATE_SETTLE_PROGRAM"], svcEnv["REFGATE_SETTLE_PROGRAM"] = "shop", "shop"
	checkSettleRun(t, "refgate-settle.service with its drop-in", execArgs(t, execStart[0], env)[1:], svcEnv, "shop")

	// systemd reads the units as written: the timer's calendar, and every
	// directive (verify warns of an unknown one) with the built binary in
	// place of /usr/local/bin/refgate.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is needed to check the systemd units (apt-get install -y systemd): ", err)
	}
	cal := unitValues(timer, "OnCalendar")
	if len(cal) != 1 {
		t.Fatalf("refgate-settle.timer has %d OnCalendar lines, want 1", len(cal))
	}
	out, err := exec.Command(sa, "calendar", "--iterations=3", cal[0]).CombinedOutput()
	if n := len(regexp.MustCompile(`(?m)^\s*(Next elapse|Iter\. #\d): \w+ \d{4}-\d\d-06 03:00:00 UTC$`).FindAll(out, -1)); err != nil || n != 3 {
		t.Errorf("systemd-analyze calendar %q: %v; want the next 3 runs on a 6th at 03:00 UTC:\n%s", cal[0], err, out)
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "refgate.env")
	writeFile(t, envFile, "REFGATE_ADMIN_TOKEN="+adminTok+"\n")
	fix := strings.NewReplacer("/usr/local/bin/refgate", refgateBinary(t), "/etc/refgate/refgate.env", envFile)
	var units []string
	for _, name := range []string{"refgate.service", "refgate-settle.service", "refgate-settle.timer"} {
		p := filepath.Join(dir, name)
		writeFile(t, p, fix.Replace(mustRead(t, filepath.Join("systemd", name))))
		units = append(units, p)
	}
	if out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify of the units: %v\n%s", err, out)
	}
}
