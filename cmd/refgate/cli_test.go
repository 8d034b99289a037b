package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refgate/refgate/internal/buildtest"
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
	f("--help", "refgate serve", "refgate version")
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
	f("version --help", "Usage: refgate version")

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
	f("version --short", "refgate version: unexpected arguments: [--short]", "run 'refgate version --help' for the flags")
	f("nope", `refgate: unknown command "nope"`, "run 'refgate help' for the commands")
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
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"validate", "-h"}, {"events", "--help"}, {"events", "tail", "-h"}} {
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
	if code, _, errOut := runCmd("events", "tail", "--events-streams", "0", "--follow=false"); code != 2 || !strings.Contains(errOut, "--events-streams") {
		t.Errorf("tail --events-streams 0: exit %d %q", code, errOut)
	}
}
