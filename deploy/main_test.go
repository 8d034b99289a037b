package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository, whose module builds the binary.
const root = ".."

// Tokens for the binary the tests run: long enough, and no placeholders.
const (
	adminTok   = "test-admin-token-0123"
	sfTok      = "test-storefront-token"
	metricsTok = "test-metrics-token-0123"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    string // the refgate binary, once built
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// refgateBinary builds cmd/refgate once per test binary, in the repository's
// own module (its go.mod, not this one's, says what it links).
func refgateBinary(t *testing.T) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if built != "" {
		return built
	}
	dir, err := os.MkdirTemp("", "refgate-deploy")
	if err != nil {
		t.Fatal(err)
	}
	buildDir = dir
	bin := filepath.Join(dir, "refgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/refgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/refgate: %v\n%s", err, out)
	}
	built = bin
	return bin
}

// syncBuffer is a log sink that tests read while the process writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is a real refgate serve process.
type server struct {
	edge, api string // host:port
	logs      *syncBuffer
}

// freeAddr returns a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startRefgate runs refgate serve on two free loopback ports with a fresh
// data dir and the test tokens, plus args, and waits until /livez answers.
// The process is killed at the end of the test.
func startRefgate(t *testing.T, args ...string) *server {
	t.Helper()
	bin := refgateBinary(t)
	s := &server{edge: freeAddr(t), api: freeAddr(t), logs: new(syncBuffer)}
	cmd := exec.Command(bin, append([]string{"serve", "--listen", s.edge, "--api-listen", s.api,
		"--data-dir", t.TempDir(), "--admin-token", adminTok, "--storefront-token", sfTok,
		"--metrics-token", metricsTok, "--cookie-secure=false"}, args...)...)
	cmd.Env = binaryEnv()
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + s.api + "/livez"); err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("refgate did not start:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// binaryEnv is this process's environment without REFGATE_* settings, so
// that the binary runs with the tests' settings only.
func binaryEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REFGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// envNames lists the REFGATE_* variables the binary reads, one per flag of
// refgate serve, as its help lists them (on stdout or stderr).
func envNames(t *testing.T) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, refgateBinary(t), "serve", "-h")
	cmd.Env = binaryEnv()
	out, _ := cmd.CombinedOutput() // the exit status of -h is not the point
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--?([a-z][a-z0-9-]+)\b`).FindAllStringSubmatch(string(out), -1) {
		names["REFGATE_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
	}
	for _, want := range []string{"REFGATE_LISTEN", "REFGATE_PUBLIC_URL", "REFGATE_REDIS_URL"} {
		if !names[want] {
			t.Fatalf("refgate serve -h does not list the flag of %s; the help read:\n%s", want, out)
		}
	}
	return names
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deployCopy copies deploy/ to a temporary directory and fills in the
// secret files from their examples, as an operator would.
func deployCopy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return err
		}
		if strings.HasSuffix(target, ".example") {
			return os.WriteFile(strings.TrimSuffix(target, ".example"), b, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// runTimeout runs cmd, killing it after d; it returns the combined output
// and the exit code (-1 when it was killed).
func runTimeout(cmd *exec.Cmd, d time.Duration) (string, int) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err.Error(), -1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Sprintf("%s\n(killed after %s)", out.String(), d), -1
	}
}
