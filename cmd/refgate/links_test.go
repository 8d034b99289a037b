package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLinksEndToEnd runs the link and promoter commands against a real
// server: create, list (every page, by program and promoter, a limit),
// pause and resume, the promoters; --json; the API's refusals (exit 1, its
// message); no answer (exit 1).
func TestLinksEndToEnd(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), nil)
	setup(t, m, "e2e-first")
	if s, b := callAPI(t, m, "PUT", "/v1/admin/promoters/bob", `{"status":"active","tier":2,"fingerprints":{"ips":["203.0.113.9"]}}`); s != 200 {
		t.Fatalf("promoter: %d %v", s, b)
	}
	api := "http://" + m.APIAddr()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(adminTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REFGATE_ADMIN_TOKEN", "")
	t.Setenv("REFGATE_API_URL", api)
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCmd(append(args, "--admin-token-file", tokenFile)...)
	}

	code, out, errOut := cli("links", "create", "--program", "shop", "--promoter", "bob", "--destination", "https://shop.example.com/b", "--code", "e2e-bob")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "CODE ") || !strings.Contains(out, "e2e-bob") || !strings.Contains(out, "/r/e2e-bob") {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cli("links", "create", "--program", "shop", "--promoter", "alice", "--destination", "https://shop.example.com/", "--json")
	var made struct{ Code, Status string }
	if code != 0 || json.Unmarshal([]byte(out), &made) != nil || len(made.Code) != 10 || made.Status != "active" {
		t.Fatalf("create with a drawn code, --json: exit %d\n%s%s", code, out, errOut)
	}
	for i := range 5 {
		if code, out, errOut := cli("links", "create", "--program", "shop", "--promoter", "alice", "--destination", "https://shop.example.com/", "--code", fmt.Sprintf("e2e-%d", i)); code != 0 {
			t.Fatalf("create %d: exit %d\n%s%s", i, code, out, errOut)
		}
	}

	// Every link, through pages of 1000; by promoter; a limit.
	code, out, errOut = cli("links", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errOut != "" || len(lines) != 9 || !strings.HasPrefix(lines[0], "CODE") || !strings.HasPrefix(lines[1], "e2e-4 ") || !strings.HasPrefix(lines[8], "e2e-first ") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("refgate links list:\n%s", out)
	code, out, _ = cli("links", "list", "--promoter", "bob", "--program", "shop")
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], "e2e-bob ") {
		t.Errorf("list of bob's: exit %d\n%s", code, out)
	}
	code, out, _ = cli("links", "list", "--limit", "3", "--json")
	var page struct {
		Items []struct {
			Code string `json:"code"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Items) != 3 || page.Items[0].Code != "e2e-4" || page.NextCursor == "" {
		t.Errorf("list --limit 3 --json: exit %d\n%s", code, out)
	}
	code, out, _ = cli("links", "list", "--program", "none", "--json")
	if code != 0 || strings.TrimSpace(out) != `{"items":[]}` {
		t.Errorf("list of no links --json: exit %d %q", code, out)
	}

	// Pause and resume.
	code, out, errOut = cli("links", "pause", "e2e-bob")
	if code != 0 || !strings.Contains(out, " paused ") {
		t.Errorf("pause: exit %d\n%s%s", code, out, errOut)
	}
	resp := click(t, m.EdgeAddr(), "e2e-bob")
	if resp.StatusCode != 302 || len(resp.Cookies()) != 0 {
		t.Errorf("a click on the paused link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	code, out, errOut = cli("links", "resume", "e2e-bob", "--json")
	if code != 0 || !strings.Contains(out, `"status":"active"`) {
		t.Errorf("resume --json: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = cli("promoters", "list")
	if code != 0 || errOut != "" || !strings.Contains(out, "ID ") || !strings.Contains(out, "alice") ||
		!strings.Contains(out, "bob    active  2     1") || strings.Contains(out, "203.0.113") {
		t.Errorf("promoters list: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("refgate promoters list:\n%s", out)

	// The API's refusals are exit 1 with its message.
	f := func(want string, args ...string) {
		t.Helper()
		code, out, errOut := cli(args...)
		if code != 1 || out != "" || !strings.Contains(errOut, want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and %q", args, code, out, errOut, want)
		}
	}
	f("refgate links pause: 404 not_found: no link nope01", "links", "pause", "nope01")
	f("refgate links create: 409 conflict", "links", "create", "--program", "shop", "--promoter", "bob", "--destination", "https://shop.example.com/", "--code", "e2e-bob")
	f("refgate links create: 422 invalid: destination host evil.com is not allowed", "links", "create", "--program", "shop", "--promoter", "bob", "--destination", "https://evil.com/")
	f("refgate links list: 422 invalid", "links", "list", "--program", "a.b")
	f("refgate promoters list: ", "promoters", "list", "--api-url", "http://127.0.0.1:1", "--timeout", "3s")
	code, _, errOut = runCmd("links", "list", "--admin-token-file", filepath.Join(t.TempDir(), "none"))
	if code != 2 || !strings.Contains(errOut, "--admin-token-file") {
		t.Errorf("a missing token file: exit %d %s", code, errOut)
	}
	t.Setenv("REFGATE_ADMIN_TOKEN", "wrong-token-0123456789")
	code, _, errOut = runCmd("links", "list")
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("a wrong token: exit %d %s", code, errOut)
	}
}
