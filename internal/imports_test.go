package internal

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// internal/ holds two kinds of package: production helpers, which the
// binaries link, and test harnesses, which only tests may import (they
// start servers, build binaries, inject faults). The lists say which is
// which; this test holds the line.
var (
	production = []string{"clock", "connlimit", "gencache", "logsample", "ratelimit", "secrets", "seglog"}
	harnesses  = []string{"apitest", "buildtest", "faultproxy", "geotest", "redistest"}
)

func TestProductionImportsNoHarness(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../cmd/...", "../examples/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const prefix = "github.com/refgate/refgate/internal/"
	for _, dep := range strings.Fields(string(out)) {
		name, ok := strings.CutPrefix(dep, prefix)
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "/")
		switch {
		case slices.Contains(harnesses, name):
			t.Errorf("a binary links the test harness %s", dep)
		case !slices.Contains(production, name):
			t.Errorf("%s is in neither list: say whether it is a production helper or a test harness", dep)
		}
	}
	ents, err := exec.Command("go", "list", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, ents)
	}
	for _, pkg := range strings.Fields(string(ents)) {
		rest, ok := strings.CutPrefix(pkg, prefix)
		if !ok {
			continue // this package
		}
		name, _, _ := strings.Cut(rest, "/")
		if !slices.Contains(production, name) && !slices.Contains(harnesses, name) {
			t.Errorf("internal/%s is in neither list", name)
		}
	}
}
