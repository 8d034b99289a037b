package deploy

import (
	"debug/elf"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfileLine returns the one line of the Dockerfile that starts with
// prefix, failing the test unless there is exactly one.
func dockerfileLine(t *testing.T, df, prefix string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(df, "\n") {
		if strings.HasPrefix(line, prefix) {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the Dockerfile has %d lines starting with %q, want 1", len(found), prefix)
	}
	return found[0]
}

// TestDockerfile checks the image recipe by its lines (no Docker daemon
// here): multi-stage, both base images pinned by digest, static, stamped
// with version, revision and date, a data dir the non-root user owns (else
// refgate cannot keep its generated keys), both ports; and runs its build
// command to prove the binary it makes is static and carries the version.
func TestDockerfile(t *testing.T) {
	df := mustRead(t, "Dockerfile")
	for _, want := range []string{
		"AS build", "ENV GOTOOLCHAIN=", "CGO_ENABLED=0", "-trimpath",
		`-ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION} -X main.buildDate=${DATE}"`,
		"\nARG VERSION=devel\n", "\nARG REVISION=\n", "\nARG DATE=\n",
		"distroless/static", "\nUSER 65532:65532\n", "EXPOSE 8080 8081", "REFGATE_LISTEN=:8080",
		"\nRUN mkdir -p /out/data\n", "\nCOPY --from=build --chown=65532:65532 /out/data /data\n", "\nVOLUME /data\n",
		"REFGATE_DATA_DIR=/data",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	// The Deployment runs as the same user the image's /data belongs to.
	if !strings.Contains(mustRead(t, "k8s/base/deployment.yaml"), "runAsUser: 65532") {
		t.Error("the Deployment does not run as 65532, the owner of the image's /data")
	}

	// Every FROM names an image by digest, directly or through a build arg
	// declared before the first FROM.
	args := map[string]string{}
	froms := 0
	for _, line := range strings.Split(df, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "ARG" && froms == 0:
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		case len(f) >= 2 && f[0] == "FROM":
			froms++
			image := os.Expand(f[1], func(k string) string { return args[k] })
			if !regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9_.-]+@sha256:[0-9a-f]{64}$`).MatchString(image) {
				t.Errorf("%s: %q is not pinned by digest (name:tag@sha256:...)", line, image)
			}
		}
	}
	if froms < 2 {
		t.Error("want a multi-stage build")
	}
	if testing.Short() {
		return
	}

	build := strings.TrimPrefix(dockerfileLine(t, df, "RUN CGO_ENABLED=0 go build"), "RUN ")
	bin := filepath.Join(t.TempDir(), "refgate")
	const version, revision, date = "v9.9.9-test", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T10:00:00Z"
	build = strings.NewReplacer("${VERSION}", version, "${REVISION}", revision, "${DATE}", date, "/out/refgate", bin).Replace(build)
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), version) {
		t.Errorf("version: %q %v", out, err)
	}
	// The revision and date, once main has the variables the ldflags set.
	src, _ := filepath.Glob(filepath.Join(root, "cmd/refgate/*.go"))
	for _, v := range []struct{ name, value string }{{"revision", revision}, {"buildDate", date}} {
		for _, file := range src {
			if strings.HasSuffix(file, "_test.go") || !regexp.MustCompile(`(?m)^\s*(var\s+)?`+v.name+`\s+=`).MatchString(mustRead(t, file)) {
				continue
			}
			if !strings.Contains(string(out), v.value) {
				t.Errorf("refgate version does not show main.%s (%s): %q", v.name, v.value, out)
			}
		}
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

// TestDockerignore: the build context leaves out the repository's history,
// local data and builds, and the secret files wherever an operator filled
// them in, as Docker reads .dockerignore (moby/patternmatcher, which
// BuildKit uses); the sources and the examples stay in.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	f2 := func(path string, excluded bool) {
		t.Helper()
		got, err := pm.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != excluded {
			t.Errorf("%s excluded from the build context: %v, want %v", path, got, excluded)
		}
	}
	for _, p := range []string{".git/config", "data/refgate.db", "bin/refgate",
		"secrets.env", "deploy/k8s/base/secrets.env", "deploy/k8s/overlays/prod/secrets.env",
		"users.acl", "deploy/redis/users.acl", "elsewhere/users.acl",
		"redis-admin.env", "deploy/redis/redis-admin.env", "deploy/systemd/refgate.env"} {
		f2(p, true)
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/refgate/main.go", "store/redisstore/redis.go",
		"deploy/k8s/base/secrets.env.example", "deploy/redis/users.acl.example",
		"deploy/redis/redis-admin.env.example", "deploy/k8s/base/config.env"} {
		f2(p, false)
	}
}

// TestDockerHealthcheck runs the Dockerfile's HEALTHCHECK command against a
// running refgate: it must say healthy (exit 0) for a 2xx answer, and
// unhealthy (exit 1) for a 503 (an instance draining), a closed port and a
// server that accepts and never answers (within its 2 s timeout, inside the
// HEALTHCHECK's own --timeout). The image has no shell or curl, so the
// command is refgate's probe subcommand.
func TestDockerHealthcheck(t *testing.T) {
	df := mustRead(t, "Dockerfile")
	i := strings.Index(df, "\nHEALTHCHECK ")
	if i < 0 {
		t.Fatal("the Dockerfile has no HEALTHCHECK")
	}
	hc := df[i+1:]
	hc = hc[:strings.Index(hc, "]")+1]
	hc = strings.ReplaceAll(hc, "\\\n", " ")
	if m := regexp.MustCompile(`--timeout=(\d+)s`).FindStringSubmatch(hc); m == nil || atoi(m[1]) < 3 {
		t.Errorf("%s: want a --timeout above the probe's own 2 s", hc)
	}
	var argv []string
	if err := json.Unmarshal([]byte(hc[strings.Index(hc, "CMD ")+4:]), &argv); err != nil || len(argv) != 3 || argv[0] != "/refgate" {
		t.Fatalf("HEALTHCHECK %q: want CMD [\"/refgate\", \"probe\", URL] (exec form: the image has no shell): %v", hc, err)
	}
	if argv[2] != "http://127.0.0.1:8080/healthz" {
		t.Errorf("the HEALTHCHECK probes %s, want the edge's /healthz on the image's REFGATE_LISTEN port", argv[2])
	}
	bin := refgateBinary(t)
	probe := func(url string) (string, int, time.Duration) {
		start := time.Now()
		out, code := runTimeout(exec.Command(bin, argv[1], url), 10*time.Second)
		return out, code, time.Since(start)
	}

	s := startRefgate(t)
	healthz := strings.Replace(argv[2], "127.0.0.1:8080", s.edge, 1)
	out, code, _ := probe(healthz)
	if strings.Contains(out, "unknown command") {
		t.Fatalf("the HEALTHCHECK runs `refgate %s`, which this refgate lacks: want exit 0 on a 2xx answer, 1 otherwise, 2 s timeout\n%s", argv[1], out)
	}
	if code != 0 {
		t.Errorf("probe %s of a running refgate: exit %d, want 0\n%s", healthz, code, out)
	}

	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer draining.Close()
	if out, code, _ := probe(draining.URL + "/healthz"); code != 1 {
		t.Errorf("probe of a 503: exit %d, want 1\n%s", code, out)
	}
	if out, code, _ := probe("http://" + freeAddr(t) + "/healthz"); code != 1 {
		t.Errorf("probe of a closed port: exit %d, want 1\n%s", code, out)
	}
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close() // accepted by the kernel, never read nor answered
	out, code, took := probe("http://" + stalled.Addr().String() + "/healthz")
	if code != 1 || took > 3*time.Second {
		t.Errorf("probe of a server that never answers: exit %d after %v, want 1 within its 2 s timeout\n%s", code, took.Round(time.Millisecond), out)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
