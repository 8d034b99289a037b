package secrets

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

func TestPlaceholder(t *testing.T) {
	f := func(v string, want bool) {
		t.Helper()
		if got := Placeholder(v); got != want {
			t.Errorf("Placeholder(%q) = %v, want %v", v, got, want)
		}
	}
	for _, p := range Placeholders {
		f(p, true)
	}
	f("change-me", true)
	f(" CHANGE-ME ", true)
	f("CHANGE_ME_0123456789abcdef", true)
	f("ChangeMe", true)
	f("my-CHANGE-ME-token-2026-prod", true)
	f("k1:CHANGE-ME-AT-LEAST-16-BYTES", true)
	f("REPLACE-ME-with-a-token", true)
	f("Wq3pZ0cX-8fN2rLk9aTbY7vUe1sHd4gJ", false)
	f("test-admin-token-0123", false)
	f("", false)
}

func TestCheck(t *testing.T) {
	f := func(v, wantErr string) {
		t.Helper()
		err := Check(v)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("Check(%q): %v", v, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("Check(%q) = %v, want an error saying %q", v, err, wantErr)
		case err != nil && v != "" && strings.Contains(err.Error(), v):
			t.Errorf("Check's error holds the value: %v", err)
		}
	}
	f("0123456789abcdef", "")
	f("0123456789abcde", "shorter than 16 bytes")
	f("dev-admin-token", "shorter than 16 bytes")
	f("CHANGE-ME", "placeholder")
	f("CHANGE-ME-AT-LEAST-16-BYTES", "placeholder")
}

// TestExampleFilesHoldOnlyPlaceholders reads every *.example file of the
// repository and checks that each secret in it is recognised as a
// placeholder and listed in Placeholders: a new example file, or a new
// placeholder in one, cannot slip past the start-up check.
func TestExampleFilesHoldOnlyPlaceholders(t *testing.T) {
	root := "../.."
	secretKey := regexp.MustCompile(`TOKEN|KEY|PASSWORD|SECRET|AUTH`)
	listed := map[string]bool{}
	for _, p := range Placeholders {
		listed[p] = true
	}
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".example") {
			return nil
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var values []string
		switch {
		case strings.HasSuffix(d.Name(), ".env.example"):
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
				if !ok || strings.HasPrefix(k, "#") || !secretKey.MatchString(k) {
					continue
				}
				if k == "REFGATE_COOKIE_KEYS" { // kid:secret,...
					for _, kv := range strings.Split(v, ",") {
						_, secret, _ := strings.Cut(kv, ":")
						values = append(values, secret)
					}
					continue
				}
				values = append(values, v)
			}
		case strings.HasSuffix(d.Name(), ".acl.example"):
			for _, field := range strings.Fields(string(b)) {
				if pw, ok := strings.CutPrefix(field, ">"); ok {
					values = append(values, pw)
				}
			}
		default:
			t.Errorf("%s: an example file this test cannot read; teach it where the file's secrets are", path)
			return nil
		}
		if len(values) == 0 {
			t.Errorf("%s: no secret found in it", path)
		}
		for _, v := range values {
			if !Placeholder(v) {
				t.Errorf("%s holds %q, which Placeholder does not recognise: refgate would start with it", path, v)
			}
			if !listed[v] {
				t.Errorf("%s holds %q: add it to Placeholders", path, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Errorf("found %d example files, want the 3 under deploy/ at least", files)
	}
}
