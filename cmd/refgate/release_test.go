package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersionStamped builds the binary with the ldflags of the Makefile
// (and of .ci/release and the Dockerfile: -X main.version, main.revision,
// main.buildDate) and checks what `refgate version` prints.
func TestVersionStamped(t *testing.T) {
	mk := mustRead(t, "../../Makefile")
	rel := mustRead(t, "../../.ci/release")
	if !strings.Contains(mk, "-X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(DATE)") ||
		!strings.Contains(rel, "-X main.version=$version -X main.revision=$revision -X main.buildDate=$date") {
		t.Fatal("the Makefile and .ci/release must stamp main.version, main.revision and main.buildDate")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "refgate")
	// The test binary's build settings otherwise, so that only the link
	// is new work.
	cmd := exec.Command("go", "build", "-ldflags",
		"-s -w -X main.version=v0.15.0 -X main.revision=1a2b3c4d5e6f -X main.buildDate=2026-12-01T10:00:00Z", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := fmt.Sprintf("refgate v0.15.0 (revision 1a2b3c4d5e6f, built 2026-12-01T10:00:00Z, %s %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, arg := range []string{"version", "--version"} {
		if out, err := exec.Command(bin, arg).Output(); err != nil || string(out) != want {
			t.Errorf("%s: %q %v, want %q", arg, out, err, want)
		}
	}
}

// TestReleaseRefuses: .ci/release builds only a tagged commit of a clean
// tree unless VERSION is given, and refuses a version that cannot name a
// file or an image tag; it refuses before building anything.
func TestReleaseRefuses(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, ".ci"), 0o755)
	if err := os.WriteFile(filepath.Join(repo, ".ci", "release"), []byte(mustRead(t, "../../.ci/release")), 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", ".ci")
	git("commit", "-q", "-m", "first")
	f := func(name, version, want string) {
		t.Helper()
		cmd := exec.Command("bash", ".ci/release")
		cmd.Dir = repo
		// GO fails the test if the script ever gets as far as building.
		cmd.Env = append(os.Environ(), "VERSION="+version, "GO=false", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) || strings.Contains(string(out), "build dist") {
			t.Errorf("%s: %v\n%s\nwant a refusal with %q", name, err, out, want)
		}
	}
	f("NoTag", "", "has no tag: tag it")
	git("tag", "v0.0.1")
	os.WriteFile(filepath.Join(repo, "new.go"), []byte("package x\n"), 0o644)
	f("Dirty", "", "the work tree has changes")
	f("BadVersion", "v1/../x", `version "v1/../x": use letters`)
}
