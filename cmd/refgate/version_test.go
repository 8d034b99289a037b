package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionString(t *testing.T) {
	platform := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	vcs := func(rev, at, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/refgate/refgate", Version: "(devel)"}}
		for k, v := range map[string]string{"vcs.revision": rev, "vcs.time": at, "vcs.modified": modified} {
			if v != "" {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: k, Value: v})
			}
		}
		return bi
	}
	f := func(name, v, rev, date string, bi *debug.BuildInfo, want string) {
		t.Helper()
		if got := buildFrom(v, rev, date, bi).String(); got != want+platform+")" {
			t.Errorf("%s: %q, want %q", name, got, want+platform+")")
		}
	}
	f("Stamped", "v0.15.0", "1a2b3c4d5e6f", "2026-12-01T10:00:00Z", vcs("ffffffffffffffffffffffffffffffffffffffff", "2020-01-01T00:00:00Z", "true"),
		"v0.15.0 (revision 1a2b3c4d5e6f, built 2026-12-01T10:00:00Z, ")
	f("BuildInfo", "", "", "", vcs("1a2b3c4d5e6f77778888999900001111aaaabbbb", "2026-12-01T10:00:00Z", "false"),
		"devel (revision 1a2b3c4d5e6f, built 2026-12-01T10:00:00Z, ")
	f("BuildInfoDirty", "", "", "", vcs("1a2b3c4d5e6f77778888999900001111aaaabbbb", "2026-12-01T10:00:00Z", "true"),
		"devel (revision 1a2b3c4d5e6f-dirty, built 2026-12-01T10:00:00Z, ")
	modVersion := vcs("1a2b3c4d5e6f77778888999900001111aaaabbbb", "", "")
	modVersion.Main.Version = "v0.14.2"
	f("ModuleVersion", "", "", "", modVersion, "v0.14.2 (revision 1a2b3c4d5e6f, ")
	f("StampedVersionOnly", "v0.15.0", "", "", vcs("1a2b3c4d5e6f77778888999900001111aaaabbbb", "2026-12-01T10:00:00Z", ""),
		"v0.15.0 (revision 1a2b3c4d5e6f, built 2026-12-01T10:00:00Z, ")
	f("Nothing", "", "", "", nil, "devel (")

	var out bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, io.Discard); code != 0 || out.String() != "refgate "+readBuild().String()+"\n" {
		t.Errorf("--version: %d %q", code, out.String())
	}
}

// TestBuildInfoMetric: /metrics carries refgate_build_info with the
// version, revision and Go version `refgate version` prints.
func TestBuildInfoMetric(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), nil)
	req, _ := http.NewRequest("GET", "http://"+m.APIAddr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b := readBuild()
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	want := fmt.Sprintf(`refgate_build_info{goversion=%q,revision=%q,version=%q} 1`, b.Go, rev, b.Version)
	if !strings.Contains(string(body), want+"\n") {
		t.Errorf("/metrics lacks %s:\n%s", want, regexp.MustCompile(`(?m)^refgate_build_info.*$`).FindString(string(body)))
	}
}
