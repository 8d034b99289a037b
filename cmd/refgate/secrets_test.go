package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/buildtest"
)

// binaryEnv is this process's environment without REFGATE_* settings, for
// runs of the binary that set their own.
func binaryEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REFGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runBinary runs the refgate binary with args and env to its end, which
// must come within 10 s: a serve still running then has started.
func runBinary(t *testing.T, env []string, args ...string) (code int, out string) {
	t.Helper()
	bin := buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = binaryEnv(env...)
	b, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return -1, string(b)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(b)
}

// TestSecretRulesBinary: the real binary refuses to serve, and validate
// fails, on each weak secret, whether a flag or an environment variable
// (as Kubernetes passes the Secret) sets it: short, a placeholder from an
// example file (each of deploy/k8s/base/secrets.env.example's values), or
// one token for two roles. The message names the setting, never the value.
func TestSecretRulesBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const fpKey = "fingerprint-key-0123456789"
	f := func(name, wantFlag, value string, env []string, args ...string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			for _, sub := range []string{"serve", "validate"} {
				full := []string{sub, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
				code, out := runBinary(t, env, append(full, args...)...)
				switch {
				case code == -1:
					t.Errorf("%s started:\n%s", sub, out)
				case code == 0:
					t.Errorf("%s accepted it:\n%s", sub, out)
				case !strings.Contains(out, wantFlag):
					t.Errorf("%s: the message does not name %s:\n%s", sub, wantFlag, out)
				case value != "" && strings.Contains(out, value):
					t.Errorf("%s: the message shows the value:\n%s", sub, out)
				}
			}
		})
	}
	f("ErrShortAdminToken", "--admin-token", "dev-admin-token", nil, "--admin-token", "dev-admin-token")
	f("ErrShortStorefrontToken", "--storefront-token", "sf-token-12345", nil, "--storefront-token", "sf-token-12345")
	f("ErrShortMetricsToken", "--metrics-token", "m3tr1cs-t0k", nil, "--metrics-token", "m3tr1cs-t0k")
	f("ErrShortCookieKey", "--cookie-keys", "tiny-key", nil, "--cookie-keys", "k1:0123456789abcdef0123,k0:tiny-key")
	f("ErrShortFingerprintKey", "--fingerprint-key", "tiny-key", nil, "--fingerprint-key", "tiny-key")
	f("ErrShortAdminTokenEnv", "REFGATE_ADMIN_TOKEN", "dev-admin-token", []string{"REFGATE_ADMIN_TOKEN=dev-admin-token"})
	f("ErrAdminIsStorefront", "--storefront-token", adminTok, nil, "--admin-token", adminTok, "--storefront-token", adminTok)
	f("ErrMetricsIsAdmin", "--metrics-token", adminTok, nil, "--admin-token", adminTok, "--metrics-token", adminTok)
	f("ErrEditedPlaceholder", "--admin-token", "CHANGE-ME-prod-2026", nil, "--admin-token", "CHANGE-ME-prod-2026")
	f("ErrPlaceholderCookieKey", "--cookie-keys", "CHANGE-ME-AT-LEAST-16-BYTES", nil, "--cookie-keys", "k1:CHANGE-ME-AT-LEAST-16-BYTES")
	f("ErrPlaceholderRedisURL", "--redis-url", "CHANGE-ME-REFGATE-PASSWORD", nil, "--redis-url", "redis://refgate:CHANGE-ME-REFGATE-PASSWORD@127.0.0.1:1/0")

	// Every value of the example Secret, set as Kubernetes would set it,
	// one at a time with good values for the rest.
	good := map[string]string{"REFGATE_ADMIN_TOKEN": adminTok, "REFGATE_STOREFRONT_TOKEN": sfTok,
		"REFGATE_METRICS_TOKEN": "test-metrics-token-0123", "REFGATE_COOKIE_KEYS": keys, "REFGATE_FINGERPRINT_KEY": fpKey}
	example := mustRead(t, deployDir+"/k8s/base/secrets.env.example")
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^(REFGATE_[A-Z_]+)=(.*)$`).FindAllStringSubmatch(example, -1) {
		key, value := m[1], m[2]
		var env []string
		for k, v := range good {
			if k != key {
				env = append(env, k+"="+v)
			}
		}
		env = append(env, key+"="+value)
		_, secret, isKey := strings.Cut(value, ":")
		if !isKey {
			secret = value
		}
		f("ErrExample"+key, key, secret, env)
		n++
	}
	if n < 5 {
		t.Fatalf("read %d settings from secrets.env.example", n)
	}

	// Good values pass, and empty ones are generated.
	var goodEnv []string
	for k, v := range good {
		goodEnv = append(goodEnv, k+"="+v)
	}
	if code, out := runBinary(t, goodEnv, "validate"); code != 0 {
		t.Errorf("validate with good secrets: %d\n%s", code, out)
	}
	if code, out := runBinary(t, nil, "validate"); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Errorf("validate with every secret generated: %d\n%s", code, out)
	}
	b := startBinary(t, "--data-dir", t.TempDir())
	resp, err := http.Get("http://" + b.api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("serve with every secret generated: readyz %d", resp.StatusCode)
	}
	// The child writes its log before it serves; this process copies it
	// from the pipe a moment later.
	logged := func() bool {
		out := b.logs.String()
		return strings.Contains(out, "admin_token=") && strings.Contains(out, "storefront_token=")
	}
	waitFor(t, 5*time.Second, "the generated tokens logged", logged)
}

// TestDocumentedRunCommands: the serve commands the README and the
// Makefile give to copy pass the secret rules.
func TestDocumentedRunCommands(t *testing.T) {
	re := regexp.MustCompile(`(?:go|\$\(GO\)) run \./cmd/refgate serve ([^\n]*)`)
	for _, file := range []string{"../../README.md", "../../Makefile"} {
		ms := re.FindAllStringSubmatch(mustRead(t, file), -1)
		if len(ms) == 0 {
			t.Errorf("%s: no serve command found", file)
		}
		for _, m := range ms {
			var c Config
			if err := c.ParseFlags("serve", strings.Fields(m[1]), io.Discard); err != nil {
				t.Errorf("%s: refgate serve %s: %v", file, m[1], err)
			}
		}
	}
}
