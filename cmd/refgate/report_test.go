package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/redistest"
)

// TestReportsFromTheEdge: clicks answered by the real edge reach the
// reports through the click batches, on the embedded store and on Redis:
// 200 cookie-less browser clicks (200 visitors) and one crawler's.
func TestReportsFromTheEdge(t *testing.T) {
	t.Run("Embedded", func(t *testing.T) {
		m, _ := MustRunMain(t, t.TempDir(), nil)
		reportsFromTheEdge(t, m)
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.RedisURL = srv.URL() })
		reportsFromTheEdge(t, m)
	})
}

func reportsFromTheEdge(t *testing.T, m *Main) {
	setup(t, m, "rep00001")
	const n = 200
	if got := floodClicks(t, m.EdgeAddr(), "rep00001", n, 4); got != n {
		t.Fatalf("%d of %d clicks answered 302", got, n)
	}
	req, _ := http.NewRequest("GET", "http://"+m.EdgeAddr()+"/r/rep00001", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The server's clock is the wall clock: the clicks are on today's
	// date, or yesterday's if midnight passed in between.
	now := time.Now().UTC()
	q := "/v1/admin/reports?program=shop&link=rep00001&from=" + now.Add(-time.Hour).Format(time.DateOnly) +
		"&to=" + now.Add(time.Hour).Format(time.DateOnly) + "&interval=month"
	var attributed, bot, visitors float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		status, body := callAPI(t, m, "GET", q, "")
		if status != 200 {
			t.Fatalf("report: %d %v", status, body)
		}
		attributed, bot, visitors = 0, 0, 0
		series, _ := body["series"].([]any)
		for _, p := range series {
			p, _ := p.(map[string]any)
			clicks, _ := p["clicks"].(map[string]any)
			a, _ := clicks["attributed"].(float64)
			b, _ := clicks["bot"].(float64)
			v, _ := p["visitors"].(float64)
			attributed, bot, visitors = attributed+a, bot+b, visitors+v
		}
		if attributed == n && bot == 1 || time.Now().After(deadline) {
			break
		}
	}
	if attributed != n || bot != 1 || visitors < n*0.98 || visitors > n*1.02 {
		t.Errorf("the link's report: %v attributed, %v bot clicks, %v visitors; want %d, 1, %d ± 2 %%", attributed, bot, visitors, n, n)
	}
}

// TestReportCommand: refgate report prints a link's days as a table with a
// total row, or the API's JSON, and refuses what it cannot ask.
func TestReportCommand(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), nil)
	setup(t, m, "rep00002")
	const n = 20
	if got := floodClicks(t, m.EdgeAddr(), "rep00002", n, 2); got != n {
		t.Fatalf("%d of %d clicks answered 302", got, n)
	}
	now := time.Now().UTC()
	from, to := now.AddDate(0, 0, -1).Format(time.DateOnly), now.AddDate(0, 0, 1).Format(time.DateOnly)
	t.Setenv("REFGATE_ADMIN_TOKEN", adminTok)
	t.Setenv("REFGATE_API_URL", "http://"+m.APIAddr())
	var out, errOut string
	code := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, out, errOut = runCmd("report", "--program", "shop", "--link", "rep00002", "--from", from, "--to", to, "--json")
		if code != 0 || strings.Contains(out, `"attributed":20`) || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.HasPrefix(out, `{"series":[`) || !strings.Contains(out, `"attributed":20`) {
		t.Fatalf("report --json: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd("report", "--program", "shop", "--link", "rep00002", "--from", from, "--to", to)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errOut != "" || len(lines) != 5 || strings.Fields(lines[0])[0] != "DATE" ||
		strings.Fields(lines[4])[0] != "TOTAL" || strings.Fields(lines[4])[1] != "20" || strings.Fields(lines[4])[3] != "-" {
		t.Fatalf("report: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("refgate report:\n%s", out)
	if f := strings.Fields(lines[2]); f[0] != now.Format(time.DateOnly) || f[1] != "20" || f[3] != "20" {
		t.Errorf("today's row: %q", lines[2])
	}

	f := func(want string, exit int, args ...string) {
		t.Helper()
		code, out, errOut := runCmd(args...)
		if code != exit || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", args, code, out, errOut, exit, want)
		}
	}
	f("--program is required", 2, "report")
	f("give one of them", 2, "report", "--program", "shop", "--promoter", "alice", "--link", "rep00002")
	f("--interval", 2, "report", "--program", "shop", "--interval", "week")
	f("--from", 2, "report", "--program", "shop", "--from", "yesterday")
	f("refgate report: 404 not_found", 1, "report", "--program", "nope")
	f("refgate report: 422 invalid", 1, "report", "--program", "shop", "--from", "2026-12-02", "--to", "2026-12-01")
}
