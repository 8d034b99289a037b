package secrets

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key")
	v, created, err := LoadOrCreate(path, func() string { return "first" })
	if err != nil || !created || v != "first" {
		t.Fatalf("%q %v %v", v, created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	v, created, err = LoadOrCreate(path, func() string { return "second" })
	if err != nil || created || v != "first" {
		t.Fatalf("a kept secret must be reused: %q %v %v", v, created, err)
	}
	os.WriteFile(path, []byte("  \n"), 0o600)
	if _, _, err := LoadOrCreate(path, func() string { return "x" }); err == nil {
		t.Error("an empty secret file must be an error, not silently replaced")
	}
	if a, b := Random(32), Random(32); a == b || len(a) != 43 {
		t.Errorf("Random: %q %q", a, b)
	}
}
