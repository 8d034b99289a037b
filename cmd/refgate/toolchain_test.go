package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// deployDir holds the deployment files; their own tests are a module of
// their own there (deploy/go.mod).
const deployDir = "../../deploy"

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestToolchainPinned: everything that builds or tests refgate uses the
// toolchain of go.mod's toolchain line, since an installed Go whose
// GOTOOLCHAIN is local would not switch to it by itself; and the deploy
// module names the same go and toolchain lines.
func TestToolchainPinned(t *testing.T) {
	mod := mustRead(t, "../../go.mod")
	m := regexp.MustCompile(`(?m)^toolchain (go\S+)$`).FindStringSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no toolchain line")
	}
	tc := m[1]
	goLine := regexp.MustCompile(`(?m)^go \S+$`).FindString(mod)
	for file, want := range map[string]string{
		"../../Makefile":          "export GOTOOLCHAIN := " + tc + "\n",
		"../../.ci/run":           "export GOTOOLCHAIN=" + tc + "\n",
		deployDir + "/Dockerfile": "ENV GOTOOLCHAIN=" + tc + "\n",
		"../../README.md":         "export GOTOOLCHAIN=" + tc + "\n",
		deployDir + "/go.mod":     "\n" + goLine + "\n\ntoolchain " + tc + "\n",
	} {
		if !strings.Contains(mustRead(t, file), want) {
			t.Errorf("%s lacks %q (go.mod says toolchain %s)", file, strings.TrimSpace(want), tc)
		}
	}
}
