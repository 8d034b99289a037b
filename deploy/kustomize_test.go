package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
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
)

// render renders a kustomization with the kustomize Go module (no kubectl).
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

// builtIn are the API groups a cluster has without any CRD: all that
// kubectl apply -k of an overlay may need.
var builtIn = map[string]bool{"v1": true, "apps/v1": true, "batch/v1": true, "policy/v1": true,
	"autoscaling/v2": true, "networking.k8s.io/v1": true}

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
	case "batch/v1/CronJob":
		obj = &batchv1.CronJob{}
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

// rendering is one rendered overlay, decoded.
type rendering struct {
	kinds      map[string]int
	raw        []map[string]any
	dep        *appsv1.Deployment
	sts        []*appsv1.StatefulSet
	jobs       []*batchv1.Job
	cronJobs   []*batchv1.CronJob
	services   []*corev1.Service
	pdbs       []*policyv1.PodDisruptionBudget
	netpols    []*networkingv1.NetworkPolicy
	monitors   []*monitoringv1.ServiceMonitor
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	apiGroups  map[string]bool
}

func decodeAll(t *testing.T, objs [][]byte) *rendering {
	t.Helper()
	r := &rendering{kinds: map[string]int{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, apiGroups: map[string]bool{}}
	for _, b := range objs {
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		r.raw = append(r.raw, raw)
		r.apiGroups[raw["apiVersion"].(string)] = true
		o := decodeStrict(t, b)
		r.kinds[strings.TrimPrefix(fmt.Sprintf("%T", o), "*")]++
		switch o := o.(type) {
		case *appsv1.Deployment:
			r.dep = o
		case *appsv1.StatefulSet:
			r.sts = append(r.sts, o)
		case *batchv1.Job:
			r.jobs = append(r.jobs, o)
		case *batchv1.CronJob:
			r.cronJobs = append(r.cronJobs, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *networkingv1.NetworkPolicy:
			r.netpols = append(r.netpols, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *monitoringv1.ServiceMonitor:
			r.monitors = append(r.monitors, o)
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		}
	}
	return r
}

// TestKustomizeOverlays renders each overlay as kubectl apply -k would:
// plain (only built-in kinds, so it applies on a cluster without the
// Prometheus Operator's CRDs) and with the monitoring and settlement
// components (both ways deploy/README.md gives: uncommented in the overlay,
// and in an overlay of one's own, which sets the program to settle). Every
// object decodes strictly into its Kubernetes type, every
// Secret and ConfigMap any object names exists in the same rendering (under
// the name kustomize gave it, hash and all), the image is a release's, and
// the settings agree with the binary's flags.
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
		ovDir := filepath.Join(dir, "k8s/overlays", overlay)
		t.Run(overlay, func(t *testing.T) {
			r := decodeAll(t, render(t, ovDir))
			for g := range r.apiGroups {
				if !builtIn[g] {
					t.Errorf("renders %s objects: kubectl apply -k fails on a cluster without their CRDs; move them to a component", g)
				}
			}
			if r.kinds["v1.ServiceMonitor"] != 0 || len(r.cronJobs) != 0 {
				t.Errorf("the plain overlay renders an optional component's objects: %v", r.kinds)
			}
			for _, k := range []string{"v1.Deployment", "v1.StatefulSet", "v1.ConfigMap", "v1.PodDisruptionBudget",
				"v2.HorizontalPodAutoscaler", "v1.NetworkPolicy", "v1.Secret", "v1.Service"} {
				if r.kinds[k] == 0 {
					t.Errorf("no %s rendered (%v)", k, r.kinds)
				}
			}
			checkReferences(t, r)
			checkImages(t, r)
			for _, s := range r.services {
				checkService(t, s)
			}
			checkDeployment(t, r, flagEnv, secretKeys, overlay)
			var redisConf string
			for _, cm := range r.configMaps {
				redisConf += cm.Data["redis.conf"]
			}
			for _, want := range []string{"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction", "protected-mode yes", "aclfile /etc/redis/users.acl"} {
				if !strings.Contains(redisConf, want) {
					t.Errorf("redis.conf lacks %q", want)
				}
			}
			if overlay == "redis-cluster" {
				if len(r.jobs) != 1 || len(r.sts) != 1 || *r.sts[0].Spec.Replicas != 6 || !strings.Contains(strings.Join(r.sts[0].Spec.Template.Spec.Containers[0].Args, " "), "--cluster-enabled yes") {
					t.Errorf("the cluster overlay wants a 6-node cluster StatefulSet and a forming Job: %v", r.kinds)
				}
			}
		})

		// With the components, as the overlay's own comment says...
		inOverlay := filepath.Join(dir, "k8s/overlays", overlay+"-uncommented")
		copyDir(t, ovDir, inOverlay)
		kfile := filepath.Join(inOverlay, "kustomization.yaml")
		k := mustRead(t, kfile)
		const commented = "# components:\n#   - ../../components/monitoring\n#   - ../../components/settlement\n"
		if !strings.Contains(k, commented) {
			t.Fatalf("%s/kustomization.yaml does not offer the optional components as\n%s", overlay, commented)
		}
		writeFile(t, kfile, strings.Replace(k, commented, "components:\n  - ../../components/monitoring\n  - ../../components/settlement\n", 1))
		// ...and in an overlay of one's own on top of it, deploy/README.md's.
		own := filepath.Join(dir, "k8s/overlays", overlay+"-own")
		writeFile(t, filepath.Join(own, "kustomization.yaml"), ownOverlay(t, overlay))
		for _, m := range []string{inOverlay, own} {
			t.Run(filepath.Base(m), func(t *testing.T) {
				r := decodeAll(t, render(t, m))
				if len(r.monitors) != 1 {
					t.Fatalf("%d ServiceMonitors rendered, want 1", len(r.monitors))
				}
				checkReferences(t, r)
				if m != own { // whose tag is no release's
					checkImages(t, r)
				}
				checkServiceMonitor(t, r)
				// The program is CHANGE-ME until set, as in the
				// overlay; the own overlay sets it.
				program := ""
				if m == own {
					program = "shop"
				}
				checkSettlement(t, r, program)
				if m != own {
					return
				}
				// Its namespace, public URL and release are the ones it says.
				c := r.dep.Spec.Template.Spec.Containers[0]
				if r.dep.Namespace != "refgate" || c.Image != "ghcr.io/refgate/refgate:v0.0.1-test" {
					t.Errorf("the own overlay's Deployment: namespace %q, image %q", r.dep.Namespace, c.Image)
				}
				if cj := r.cronJobs[0]; cj.Namespace != "refgate" {
					t.Errorf("the own overlay's CronJob: namespace %q", cj.Namespace)
				}
				for _, e := range c.EnvFrom {
					if e.ConfigMapRef != nil {
						if u := r.configMaps[e.ConfigMapRef.Name].Data["REFGATE_PUBLIC_URL"]; u != "https://go.mycompany.com" {
							t.Errorf("the own overlay's REFGATE_PUBLIC_URL is %q", u)
						}
					}
				}
			})
		}
	}
}

// ownOverlay is deploy/README.md's overlay of one's own, on top of overlay,
// with its paths as seen from deploy/k8s/overlays/ and a tag of its own.
func ownOverlay(t *testing.T, overlay string) string {
	t.Helper()
	doc := mustRead(t, "README.md")
	i := strings.Index(doc, "# mine/kustomization.yaml\n")
	if i < 0 {
		t.Fatal("deploy/README.md has no overlay of one's own (# mine/kustomization.yaml)")
	}
	k := doc[i:]
	k = k[:strings.Index(k, "```")]
	if !strings.Contains(k, "newTag: v0.15.0") || !strings.Contains(k, "../refgate/deploy/k8s/overlays/redis-cluster\n") ||
		!strings.Contains(k, "- REFGATE_SETTLE_PROGRAM=shop\n") {
		t.Fatalf("the README's overlay changed; teach the test:\n%s", k)
	}
	return strings.NewReplacer("../refgate/deploy/k8s/overlays/redis-cluster", "../"+overlay,
		"../refgate/deploy/k8s/components/", "../../components/", "newTag: v0.15.0", "newTag: v0.0.1-test").Replace(k)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		writeFile(t, filepath.Join(dst, e.Name()), mustRead(t, filepath.Join(src, e.Name())))
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reference is an object's mention of a Secret or ConfigMap by name.
type reference struct{ kind, name, where string }

// references walks a rendered object and lists every Secret and ConfigMap
// it names: pods' envFrom, env valueFrom, volumes (also projected) and
// image pull secrets, and the ServiceMonitor's credentials. It walks the
// JSON rather than the types so that a field added later is not missed.
func references(v any, path string, add func(reference)) {
	name := func(v any) (string, bool) {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		n, ok := m["name"].(string)
		return n, ok
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, p := v[k], path+"."+k
			switch k {
			case "secretName":
				if s, ok := c.(string); ok {
					add(reference{"Secret", s, p})
				}
			case "secretRef", "secretKeyRef", "secret", "credentials", "bearerTokenSecret":
				if n, ok := name(c); ok {
					add(reference{"Secret", n, p})
				}
			case "configMapRef", "configMapKeyRef", "configMap":
				if n, ok := name(c); ok {
					add(reference{"ConfigMap", n, p})
				}
			case "basicAuth":
				if m, ok := c.(map[string]any); ok {
					for _, f := range []string{"username", "password"} {
						if n, ok := name(m[f]); ok {
							add(reference{"Secret", n, p + "." + f})
						}
					}
				}
			case "imagePullSecrets":
				if l, ok := c.([]any); ok {
					for i, e := range l {
						if n, ok := name(e); ok {
							add(reference{"Secret", n, fmt.Sprintf("%s[%d]", p, i)})
						}
					}
				}
			}
			references(c, p, add)
		}
	case []any:
		for i, c := range v {
			references(c, fmt.Sprintf("%s[%d]", path, i), add)
		}
	}
}

// checkReferences: every Secret and ConfigMap named anywhere exists in the
// rendering. The names the kustomization generates carry a hash suffix;
// a reference kustomize did not rewrite still says the bare name.
func checkReferences(t *testing.T, r *rendering) {
	t.Helper()
	hash := regexp.MustCompile(`-[a-z0-9]{10}$`)
	seen := map[string]bool{}
	for _, obj := range r.raw {
		kind := obj["kind"].(string)
		if kind == "Secret" || kind == "ConfigMap" {
			continue // their data are values, not references
		}
		meta := obj["metadata"].(map[string]any)
		where := kind + "/" + meta["name"].(string)
		references(obj, where, func(ref reference) {
			seen[ref.kind+"/"+hash.ReplaceAllString(ref.name, "")] = true
			var ok bool
			switch ref.kind {
			case "Secret":
				_, ok = r.secrets[ref.name]
			case "ConfigMap":
				_, ok = r.configMaps[ref.name]
			}
			if !ok {
				t.Errorf("%s names %s %q, which is not in the rendering (kustomize renames generated ones: refgate becomes refgate-<hash>; a field it does not know needs a nameReference configuration)",
					ref.where, ref.kind, ref.name)
			}
		})
	}
	// The walk finds what we know is there.
	for _, w := range []string{"Secret/refgate", "ConfigMap/refgate-config", "Secret/redis-users", "Secret/redis-admin", "ConfigMap/redis-config"} {
		if !seen[w] {
			t.Errorf("no reference to %s found (found %v): the walk misses a field", w, seen)
		}
	}
	// Generated, so a changed secret or setting rolls the pods.
	for name := range r.secrets {
		if !hash.MatchString(name) {
			t.Errorf("Secret %s has no content hash", name)
		}
	}
	for name := range r.configMaps {
		if !hash.MatchString(name) {
			t.Errorf("ConfigMap %s has no content hash", name)
		}
	}
}

// checkImages: every container runs a tagged image, never latest, and
// refgate's is a release tag.
func checkImages(t *testing.T, r *rendering) {
	t.Helper()
	var specs []corev1.PodSpec
	if r.dep != nil {
		specs = append(specs, r.dep.Spec.Template.Spec)
	}
	for _, s := range r.sts {
		specs = append(specs, s.Spec.Template.Spec)
	}
	for _, j := range r.jobs {
		specs = append(specs, j.Spec.Template.Spec)
	}
	for _, j := range r.cronJobs {
		specs = append(specs, j.Spec.JobTemplate.Spec.Template.Spec)
	}
	release := regexp.MustCompile(`^ghcr\.io/refgate/refgate:v\d+\.\d+\.\d+$`)
	tagged := regexp.MustCompile(`^[^:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[0-9a-f]{64})?$`)
	refgate := 0
	for _, spec := range specs {
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			m := tagged.FindStringSubmatch(c.Image)
			switch {
			case m == nil || (m[1] == "" && m[2] == ""):
				t.Errorf("container %s runs %q: no tag or digest means latest", c.Name, c.Image)
			case m[1] == ":latest":
				t.Errorf("container %s runs %q: a release tag, please", c.Name, c.Image)
			}
			if strings.Contains(c.Image, "refgate/refgate") {
				refgate++
				if !release.MatchString(c.Image) {
					t.Errorf("container %s runs %q, want a release tag (images: newTag in k8s/base/kustomization.yaml)", c.Name, c.Image)
				}
			}
		}
	}
	if refgate == 0 {
		t.Error("no container runs the refgate image")
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

// checkServiceMonitor: it selects the API Service, scrapes a port that
// Service has, on /metrics, with the metrics token of the refgate Secret.
func checkServiceMonitor(t *testing.T, r *rendering) {
	t.Helper()
	sm := r.monitors[0]
	ep := sm.Spec.Endpoints[0]
	if ep.Path != "/metrics" || ep.Authorization == nil || ep.Authorization.Credentials == nil {
		t.Fatalf("ServiceMonitor endpoint %+v", ep)
	}
	cred := ep.Authorization.Credentials
	if s := r.secrets[cred.Name]; s == nil || !strings.HasPrefix(cred.Name, "refgate-") {
		t.Errorf("the ServiceMonitor reads Secret %q, which is not the refgate Secret", cred.Name)
	} else if _, ok := s.Data[cred.Key]; !ok {
		if _, ok := s.StringData[cred.Key]; !ok {
			t.Errorf("Secret %s has no key %s", cred.Name, cred.Key)
		}
	}
	scraped := 0
	for _, svc := range r.services {
		match := true
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == ep.Port {
				scraped++
				if svc.Name != "refgate-api" {
					t.Errorf("the ServiceMonitor scrapes Service %s", svc.Name)
				}
			}
		}
	}
	if scraped != 1 {
		t.Errorf("the ServiceMonitor's selector and port %q match %d Service ports, want refgate-api's", ep.Port, scraped)
	}
}

func checkDeployment(t *testing.T, r *rendering, flagEnv, secretKeys map[string]bool, overlay string) {
	t.Helper()
	d := r.dep
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
	if p := c.ReadinessProbe.HTTPGet; p.Path != "/healthz" || p.Port.StrVal != "edge" {
		t.Errorf("readiness probe %+v", p)
	}
	if g := env["GOMEMLIMIT"]; g.ValueFrom == nil || g.ValueFrom.ResourceFieldRef.Resource != "limits.memory" || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("GOMEMLIMIT must come from the memory limit: %+v", g)
	}
	delay, err := time.ParseDuration(env["REFGATE_SHUTDOWN_DELAY"].Value)
	if err != nil {
		t.Errorf("REFGATE_SHUTDOWN_DELAY: %v", err)
	}
	pre := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pre = c.Lifecycle.PreStop.Sleep.Seconds
	}
	if secs := int64(delay.Seconds()); pre == 0 || secs == 0 || *d.Spec.Template.Spec.TerminationGracePeriodSeconds <= pre+secs+5 {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + shutdown delay %ds + the queue flush",
			*d.Spec.Template.Spec.TerminationGracePeriodSeconds, pre, secs)
	}
	// Secrets from the refgate Secret, settings from the refgate-config
	// ConfigMap: REFGATE_PUBLIC_URL among them.
	var fromSecret, fromConfig bool
	for _, e := range c.EnvFrom {
		switch {
		case e.SecretRef != nil && strings.HasPrefix(e.SecretRef.Name, "refgate-"):
			fromSecret = true
		case e.ConfigMapRef != nil && strings.HasPrefix(e.ConfigMapRef.Name, "refgate-config-"):
			fromConfig = true
			cm := r.configMaps[e.ConfigMapRef.Name]
			if cm == nil {
				continue // checkReferences says so
			}
			for k := range cm.Data {
				if !flagEnv[k] {
					t.Errorf("config.env sets %s, which is no refgate flag", k)
				}
			}
			u, err := url.Parse(cm.Data["REFGATE_PUBLIC_URL"])
			if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
				t.Errorf("REFGATE_PUBLIC_URL %q: want the edge's public https base URL", cm.Data["REFGATE_PUBLIC_URL"])
			}
		}
	}
	if !fromSecret || !fromConfig {
		t.Errorf("the container's environment comes from the refgate Secret and the refgate-config ConfigMap: %+v", c.EnvFrom)
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
