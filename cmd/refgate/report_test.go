package main

import (
	"net/http"
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
