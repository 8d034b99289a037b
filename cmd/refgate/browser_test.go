package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// chromium is the browser the tests drive: Debian's package, which .ci/run
// installs.
const chromium = "/usr/bin/chromium"

// runChromium loads url in a headless Chromium with a fresh profile, lets
// its page's timers and navigations run for a few seconds, and returns.
func runChromium(t *testing.T, url string) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("this test drives a real browser: install Debian's chromium (apt-get install chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The flags keep Chromium off the network it cannot reach here, and
	// --virtual-time-budget waits for the page's refreshes and scripts.
	// The User-Agent is a desktop Chrome's: headless Chromium's own says
	// HeadlessChrome, which the bot list catches before any other rule.
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=3000", "--dump-dom", url)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, out)
	}
}

// TestBrowserAutoNavigation: a page on another site that navigates
// to a link without a user's gesture (a meta refresh, a script setting
// location, a form it submits itself, window.open) gets no cookie, and is
// counted suspect; the same link typed into the address bar is attributed.
// Chromium's own Sec-Fetch-* headers decide, not headers a test wrote.
func TestBrowserAutoNavigation(t *testing.T) {
	k := newKillable(t, []string{"--data-dir", t.TempDir()})
	api := remoteAPI(k.api)
	setup(t, api, "nav001")
	link := "http://" + k.edge + "/r/nav001"

	// The stuffing pages, served as http://localhost:PORT: another site
	// than the edge's 127.0.0.1.
	pages := map[string]string{
		"/meta":   `<meta http-equiv="refresh" content="0;url=` + link + `">`,
		"/script": `<script>location.href = "` + link + `"</script>`,
		"/form":   `<form id="f" method="get" action="` + link + `"></form><script>document.getElementById("f").submit()</script>`,
		"/open":   `<script>window.open("` + link + `")</script>`,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>deal</title>%s", pages[r.URL.Path])
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for path := range pages {
		runChromium(t, "http://localhost:"+port+path)
	}
	// window.open without a gesture is usually blocked outright: no click
	// at all. The others arrive, and must not be attributed.
	clicks := linkClicks(t, api, "nav001", func(c map[string]any) bool { return count(c, "suspect") >= 3 })
	if count(clicks, "attributed") != 0 {
		t.Fatalf("pages navigating without a gesture: clicks %v, want none attributed", clicks)
	}
	t.Logf("4 pages navigating without a gesture: %v", clicks)

	runChromium(t, link) // typed into the address bar: Sec-Fetch-Site none
	clicks = linkClicks(t, api, "nav001", func(c map[string]any) bool { return count(c, "attributed") == 1 })
	t.Logf("then the link opened directly: %v", clicks)
}

func count(clicks map[string]any, outcome string) float64 {
	n, _ := clicks[outcome].(float64)
	return n
}

// linkClicks polls a link's click counts until done says they are there.
func linkClicks(t *testing.T, api apiServer, code string, done func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, link := callAPI(t, api, "GET", "/v1/admin/links/"+code, "")
		clicks, _ := link["clicks"].(map[string]any)
		if done(clicks) {
			return clicks
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s clicks %v", code, clicks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
