package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refgate/refgate/internal/buildtest"
	"github.com/refgate/refgate/store/embedded"
)

// runCmd runs the command line args in this process.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelp: every way of asking for help prints it on stdout (so that
// `refgate serve --help | less` works) and exits 0, with nothing on stderr.
func TestHelp(t *testing.T) {
	f := func(args string, want ...string) {
		t.Helper()
		code, out, errOut := runCmd(strings.Fields(args)...)
		if code != 0 || out == "" || errOut != "" {
			t.Errorf("%s: exit %d, %d bytes on stdout, stderr %q; want 0, help on stdout, nothing on stderr", args, code, len(out), errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the help lacks %q:\n%s", args, w, out)
			}
		}
	}
	f("--help", "refgate serve", "refgate probe", "refgate settle")
	f("-h", "refgate validate")
	f("help", "refgate events tail")
	f("serve --help", "Usage: refgate serve", "REFGATE_", "-listen", "-redis-pool-size")
	f("serve -h", "-api-listen")
	f("help serve", "Usage: refgate serve", "-listen")
	f("validate -h", "Usage: refgate validate", "-config", "-listen")
	f("validate --help", "-api-listen")
	f("events --help", "tail")
	f("events -h", "tail")
	f("help events tail", "Usage: refgate events tail", "-from")
	f("events tail -h", "Usage: refgate events tail", "-from", "-group", "-redis-url", "-data-dir", "-config")
	f("probe --help", "Usage: refgate probe", "-timeout")
	f("settle --help", "Usage: refgate settle", "-program", "-through", "-api-url", "-admin-token-file", "-timeout", "REFGATE_ADMIN_TOKEN", "REFGATE_API_URL")
	f("help settle", "Usage: refgate settle")
	f("settle --program shop -h", "Usage: refgate settle")
	f("version --help", "Usage: refgate version")
	f("--help", "refgate links", "refgate promoters list")
	f("links --help", "Usage: refgate links", "create", "list", "pause", "resume")
	f("links -h", "refgate links create")
	f("help links", "Usage: refgate links")
	f("help links list", "Usage: refgate links list", "-limit")
	f("links create -h", "Usage: refgate links create", "-program", "-promoter", "-destination", "-code", "-api-url", "-admin-token-file", "-json", "-timeout", "REFGATE_ADMIN_TOKEN", "REFGATE_API_URL")
	f("links list --help", "Usage: refgate links list", "-program", "-promoter", "-limit", "-json", "-api-url", "-admin-token-file")
	f("links pause -h", "Usage: refgate links pause CODE", "inactive", "-json", "-api-url")
	f("links resume -h", "Usage: refgate links resume CODE", "-api-url")
	f("links pause abc -h", "Usage: refgate links pause CODE")
	f("promoters --help", "Usage: refgate promoters list")
	f("promoters list -h", "Usage: refgate promoters list", "-limit", "-json", "-api-url", "-admin-token-file", "REFGATE_ADMIN_TOKEN")
	f("help promoters list", "Usage: refgate promoters list")

	// tail lists the flags it reads, not serve's others.
	_, out, _ := runCmd("events", "tail", "-h")
	for _, serveOnly := range []string{"-listen", "-queue-size", "-admin-token", "-cookie-keys", "-log-format"} {
		if strings.Contains(out, "  "+serveOnly+" ") || strings.Contains(out, "  "+serveOnly+"\n") {
			t.Errorf("events tail -h lists serve's %s:\n%s", serveOnly, out)
		}
	}
}

// TestUsageErrors: a command line refgate cannot read gets the error and
// one hint on stderr, exit 2; no usage dump.
func TestUsageErrors(t *testing.T) {
	f := func(args, wantErr, wantHint string) {
		t.Helper()
		code, out, errOut := runCmd(strings.Fields(args)...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !strings.Contains(lines[0], wantErr) || lines[1] != wantHint {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, nothing, %q and %q", args, code, out, errOut, wantErr, wantHint)
		}
	}
	f("serve --nope", "refgate serve: flag provided but not defined: -nope", "run 'refgate serve --help' for the flags")
	f("serve --redis-pool-size many", "refgate serve: invalid value \"many\" for flag -redis-pool-size", "run 'refgate serve --help' for the flags")
	f("serve extra", "refgate serve: unexpected arguments: [extra]", "run 'refgate serve --help' for the flags")
	f("validate --nope", "refgate validate: flag provided but not defined: -nope", "run 'refgate validate --help' for the flags")
	f("events tail --nope", "refgate events tail: flag provided but not defined: -nope", "run 'refgate events tail --help' for the flags")
	f("events tail --listen :1", "refgate events tail: flag provided but not defined: -listen", "run 'refgate events tail --help' for the flags")
	f("probe --nope", "refgate probe: flag provided but not defined: -nope", "run 'refgate probe --help' for the flags")
	f("probe", "refgate probe: want one URL", "run 'refgate probe --help' for the flags")
	f("probe ftp://127.0.0.1/", "want an http(s) URL", "run 'refgate probe --help' for the flags")
	f("probe --timeout 0s http://127.0.0.1/", "--timeout must be positive", "run 'refgate probe --help' for the flags")
	f("version --short", "refgate version: unexpected arguments: [--short]", "run 'refgate version --help' for the flags")
	f("nope", `refgate: unknown command "nope"`, "run 'refgate help' for the commands")
	f("links nope", `refgate links: unknown subcommand "nope"`, "run 'refgate links --help' for the subcommands")
	f("promoters nope", `refgate promoters: unknown subcommand "nope"`, "run 'refgate promoters --help' for the subcommands")
	f("links list --nope", "refgate links list: flag provided but not defined: -nope", "run 'refgate links list --help' for the flags")
	f("links list --limit -1", "refgate links list: --limit must be 0 (all) or more", "run 'refgate links list --help' for the flags")
	f("links list extra", "refgate links list: unexpected arguments: [extra]", "run 'refgate links list --help' for the flags")
	f("links list --timeout 0s", "refgate links list: --timeout must be positive", "run 'refgate links list --help' for the flags")
	f("links list --api-url ftp://x", "refgate links list: --api-url", "run 'refgate links list --help' for the flags")
	f("links create --promoter a --destination https://x/", "refgate links create: --program is required", "run 'refgate links create --help' for the flags")
	f("links create --program p --promoter a --destination https://x/ --code a/b", "refgate links create: --code", "run 'refgate links create --help' for the flags")
	f("links pause", "refgate links pause: want one link code", "run 'refgate links pause --help' for the flags")
	f("links pause a/b", "refgate links pause: \"a/b\" is not a link code", "run 'refgate links pause --help' for the flags")
	f("links resume abc def", "refgate links resume: unexpected arguments: [def]", "run 'refgate links resume --help' for the flags")
	f("promoters list --limit x", "refgate promoters list: invalid value", "run 'refgate promoters list --help' for the flags")
	f("events nope", `refgate events: unknown subcommand "nope"`, "run 'refgate events --help' for the subcommands")
	f("help nope", `refgate: unknown command "nope"`, "run 'refgate help' for the commands")
}

// TestHelpBinary: the real binary's help is on stdout, as
// `refgate serve --help | wc -l` sees it, and a bad flag is two lines.
func TestHelpBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate")
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"validate", "-h"}, {"events", "--help"}, {"events", "tail", "-h"}, {"probe", "-h"}, {"settle", "-h"}, {"links", "-h"}, {"links", "list", "-h"}, {"promoters", "list", "-h"}, {"report", "-h"}} {
		var out, errOut bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil || strings.Count(out.String(), "\n") < 3 || errOut.Len() > 0 {
			t.Errorf("%v: %v, %d lines on stdout, stderr %q", args, err, strings.Count(out.String(), "\n"), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "serve", "--nope")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 || out.Len() > 0 || strings.Count(errOut.String(), "\n") != 2 {
		t.Errorf("serve --nope: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
}

// TestValidateRejects: values the flag types accept but serve cannot use,
// from a YAML or JSON config file or the command line, fail validate
// (exit 1) with an error naming the setting, and fail serve's parsing.
func TestValidateRejects(t *testing.T) {
	dir := t.TempDir()
	n := 0
	f := func(name, file string, args []string, want string) {
		t.Helper()
		if file != "" {
			n++
			ext := ".yaml"
			if strings.HasPrefix(file, "{") {
				ext = ".json"
			}
			p := filepath.Join(dir, fmt.Sprint(n, ext))
			if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--config", p)
		}
		code, out, errOut := runCmd(append([]string{"validate"}, args...)...)
		var c Config
		perr := c.ParseFlags("refgate serve", args, io.Discard)
		switch {
		case want == "" && (code != 0 || perr != nil):
			t.Errorf("%s: exit %d %s%s, serve: %v; want it accepted", name, code, out, errOut, perr)
		case want != "" && (code != 1 || !strings.Contains(errOut, want)):
			t.Errorf("%s: exit %d %s%s; want 1 and %q", name, code, out, errOut, want)
		case want != "" && (perr == nil || !strings.Contains(perr.Error(), want)):
			t.Errorf("%s: serve's parsing: %v; want %q", name, perr, want)
		}
	}
	same := "are the same address"
	f("SamePort", "listen: \":8080\"\napi-listen: \"0.0.0.0:8080\"\n", nil, same)
	f("SamePortFlags", "", []string{"--listen", "127.0.0.1:9000", "--api-listen", "127.0.0.1:9000"}, same)
	f("LocalhostIsLoopback", "", []string{"--listen", "localhost:9000", "--api-listen", "127.0.0.1:9000"}, same)
	f("WildcardV6", "", []string{"--listen", "[::]:9000", "--api-listen", "10.0.0.5:9000"}, same)
	f("MappedV4", "", []string{"--listen", "[::ffff:10.0.0.5]:9000", "--api-listen", "10.0.0.5:9000"}, same)
	f("ServiceName", "", []string{"--listen", ":http", "--api-listen", "127.0.0.1:80"}, same)
	f("SamePortOtherHosts", "", []string{"--listen", "10.0.0.5:9000", "--api-listen", "127.0.0.1:9000"}, "")
	f("OtherPorts", "listen: \":8080\"\napi-listen: \"0.0.0.0:8081\"\n", nil, "")
	f("BothPortZero", "", []string{"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"}, "")
	f("PortRange", "", []string{"--listen", ":99999"}, `--listen ":99999": the port must be a number 0..65535`)
	f("PoolSizeZero", "redis-pool-size: 0\n", nil, "--redis-pool-size must be at least 1")
	f("PoolSizeNegative", "", []string{"--redis-pool-size", "-3"}, "--redis-pool-size must be at least 1")
	f("RedisTimeoutZero", "redis-timeout: 0s\n", nil, "--redis-timeout must be positive")
	f("AttributionRateNaN", "", []string{"--attribution-rate", "NaN"}, "--attribution-rate must be a number")
	f("AttributionRateInf", "attribution-rate: +Inf\n", nil, "--attribution-rate must be a number")
	f("AttributionRateOff", "attribution-rate: 0\nauth-failure-limit: 0\nedge-max-conns-per-ip: 0\nsweep-interval: 0s\nevents-stream-maxlen: 0\n", nil, "")
	f("List", "listen: [1,2]\n", nil, `key "listen": a list, where the flag takes one value`)
	f("ProxyList", "trusted-proxies: [\"10.0.0.0/8\", \"fd00::/8\"]\n", nil, "")
	f("ProxyListMapElement", "trusted-proxies: [\"10.0.0.0/8\", {a: 1}]\n", nil, `key "trusted-proxies": element 2: a map`)
	f("ProxyListNested", "trusted-proxies: [[\"10.0.0.0/8\"]]\n", nil, `key "trusted-proxies": element 1: a list`)
	f("RedisAddrsList", "redis-addrs:\n  - 10.0.0.1:6379\n  - 10.0.0.2:6379\n", nil, "")
	f("Map", "api-listen:\n  host: 127.0.0.1\n  port: 8081\n", nil, `key "api-listen": a map`)
	f("Twice", "listen: \":1\"\nlisten: \":2\"\n", nil, `key "listen" is given twice`)
	f("JSON", `{"listen": ":8080", "api-listen": "127.0.0.1:8081", "redis-pool-size": 8, "cookie-secure": false}`, nil, "")
	f("JSONList", `{"listen": [":1", ":2"]}`, nil, `key "listen": a list`)
	f("JSONMap", `{"redis-pool-size": {"n": 1}}`, nil, `key "redis-pool-size": a map`)
	f("WrongScalar", "redis-pool-size: many\n", nil, `"redis-pool-size"`)
	f("MissingFile", "", []string{"--config", filepath.Join(dir, "missing.yaml")}, "no such file")
	os.WriteFile(filepath.Join(dir, "comment.yaml"), []byte("# nothing yet\n"), 0o600)
	f("OnlyComment", "", []string{"--config", filepath.Join(dir, "comment.yaml")}, "")
}

func TestSameListenAddr(t *testing.T) {
	f := func(a, b string, want bool) {
		t.Helper()
		if got := sameListenAddr(a, b); got != want {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", a, b, got, want)
		}
	}
	f(":8080", "0.0.0.0:8080", true)
	f(":8080", "127.0.0.1:8080", true)
	f("0.0.0.0:8080", "[::1]:8080", true)
	f("127.0.0.1:8080", "127.0.0.1:8080", true)
	f("LOCALHOST:8080", "127.0.0.1:8080", true)
	f("[::1]:8080", "[0:0:0:0:0:0:0:1]:8080", true)
	f("refgate.internal:8080", "Refgate.Internal:8080", true)
	f("127.0.0.1:8080", "127.0.0.1:8081", false)
	f("10.0.0.1:8080", "10.0.0.2:8080", false)
	f(":0", ":0", false)
	f("8080", "8080", false) // not an address: Check says so
}

// TestTailConfig: tail reads serve's config file and environment,
// ignoring what it does not use, even values serve would refuse.
func TestTailConfig(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "refgate.yaml")
	os.WriteFile(cfg, []byte("listen: \":8080\"\napi-listen: \":8080\"\nqueue-size: 0\ndata-dir: "+data+"\n"), 0o600)
	t.Setenv("REFGATE_LOG_FORMAT", "xml")
	if code, out, errOut := runCmd("events", "tail", "--config", cfg, "--from", "start", "--follow=false"); code != 0 || out != "" {
		t.Errorf("tail with serve's config: exit %d %q %q", code, out, errOut)
	}
	os.WriteFile(cfg, []byte("data-dir: ["+data+"]\n"), 0o600)
	if code, _, errOut := runCmd("events", "tail", "--config", cfg, "--follow=false"); code != 2 || !strings.Contains(errOut, `key "data-dir": a list`) {
		t.Errorf("tail with a list for data-dir: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("events", "tail", "--events-streams", "0", "--follow=false"); code != 2 || !strings.Contains(errOut, "--events-streams") {
		t.Errorf("tail --events-streams 0: exit %d %q", code, errOut)
	}
}

// TestDataDirLocked: a second server on a data dir another one holds stops
// with an error that says so, in this process and as a second process.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	MustRunMain(t, dir, nil)
	m := NewMain()
	m.Config.Listen, m.Config.APIListen, m.Config.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	m.LogOutput = io.Discard
	err := m.Run(context.Background())
	m.Close()
	want := "data dir " + dir + " is locked by another process (another refgate serve?)"
	if !errors.Is(err, embedded.ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Run on %s: %v, want %q", dir, err, want)
	}
	if testing.Short() {
		return
	}
	startBinary(t, "--data-dir", dir+"2")
	code, out := runBinary(t, nil, "serve", "--data-dir", dir+"2", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, "refgate: data dir "+dir+"2 is locked by another process (another refgate serve?)\n") {
		t.Errorf("a second refgate serve on the data dir: exit %d\n%s", code, out)
	}
}
