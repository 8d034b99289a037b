package deploy

import (
	"path/filepath"
	"regexp"
	"testing"
)

// TestModuleGraph: the deployment tests' dependencies stay in this module,
// out of refgate's go.mod, which every program importing refgate's client
// reads; and this module builds with the same Go as refgate's.
func TestModuleGraph(t *testing.T) {
	main := mustRead(t, filepath.Join(root, "go.mod"))
	for _, dep := range []string{"k8s.io/", "sigs.k8s.io/kustomize", "github.com/prometheus-operator/", "github.com/moby/patternmatcher"} {
		if regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(dep)).MatchString(main) {
			t.Errorf("refgate's go.mod lists %s: only the deployment tests need it, and they are in deploy/go.mod", dep)
		}
	}
	ours := mustRead(t, "go.mod")
	for _, re := range []string{`(?m)^go \S+$`, `(?m)^toolchain \S+$`} {
		want := regexp.MustCompile(re).FindString(main)
		if got := regexp.MustCompile(re).FindString(ours); want == "" || got != want {
			t.Errorf("deploy/go.mod says %q, refgate's go.mod %q", got, want)
		}
	}
}
