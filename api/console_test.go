package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refgate/refgate/console"
)

// consoleGet asks for path without following redirects, with the headers
// given as name, value pairs.
func (e *env) consoleGet(path string, headers ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", "http://api"+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{Transport: e.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestConsoleFiles: the console is served without a token, every file
// with its type, cache rule, ETag and the security headers (a 404 and a
// 405 under /ui too); /ui goes to /ui/; and the request metrics know the
// routes by template, never by file.
func TestConsoleFiles(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newAuthEnv(t, func(c *Config) { c.Gatherer, c.Registerer = reg, reg })
	secure := func(where string, h http.Header) {
		t.Helper()
		for _, kv := range console.Headers {
			if got := h.Get(kv[0]); got != kv[1] {
				t.Errorf("%s: %s = %q, want %q", where, kv[0], got, kv[1])
			}
		}
	}

	resp, _ := e.consoleGet("/ui")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/ui: %d Location %q, want 301 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	secure("/ui", resp.Header)

	resp, page := e.consoleGet("/ui/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		resp.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(page, `<script type="module" src="app.js">`) {
		t.Fatalf("/ui/: %d %v\n%s", resp.StatusCode, resp.Header, page)
	}
	secure("/ui/", resp.Header)
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || strings.Contains(page, "<style") {
		t.Errorf("/ui/ has an inline script or style, which the CSP refuses:\n%s", page)
	}
	etag := resp.Header.Get("ETag")
	if resp, body := e.consoleGet("/ui/", "If-None-Match", etag); resp.StatusCode != 304 || body != "" {
		t.Errorf("/ui/ with If-None-Match %s: %d %q, want 304 and no body", etag, resp.StatusCode, body)
	}

	types := map[string]string{".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8",
		".md": "text/plain; charset=utf-8"}
	for _, name := range console.Names() {
		resp, body := e.consoleGet("/ui/" + name)
		a, _ := console.Lookup(name)
		if resp.StatusCode != 200 || body != string(a.Body) {
			t.Errorf("/ui/%s: %d, %d bytes, want 200 and %d", name, resp.StatusCode, len(body), len(a.Body))
			continue
		}
		secure("/ui/"+name, resp.Header)
		ext := name[strings.LastIndex(name, "."):]
		if want := types[ext]; resp.Header.Get("Content-Type") != want {
			t.Errorf("/ui/%s: Content-Type %q, want %q", name, resp.Header.Get("Content-Type"), want)
		}
		want := "no-cache"
		if strings.HasPrefix(name, "vendor/") {
			want = "public, max-age=31536000, immutable"
		}
		if got := resp.Header.Get("Cache-Control"); got != want {
			t.Errorf("/ui/%s: Cache-Control %q, want %q", name, got, want)
		}
	}
	for _, path := range []string{"/ui/nothing.js", "/ui/vendor/nothing.js", "/ui/vendor", "/ui/a/b/c"} {
		resp, body := e.consoleGet(path)
		if resp.StatusCode != 404 || !strings.Contains(body, `"not_found"`) {
			t.Errorf("%s: %d %s, want 404", path, resp.StatusCode, body)
		}
		secure(path, resp.Header)
	}
	if r := e.call("POST", "/ui/app.js", "", ""); r.status != 405 || r.header.Get("Content-Security-Policy") != console.CSP {
		t.Errorf("POST /ui/app.js: %d %v, want 405 with the CSP", r.status, r.header)
	}

	for _, c := range []struct {
		route, status string
		want          float64
	}{
		{"/ui", "3xx", 1}, {"/ui", "2xx", 1}, {"/ui/{asset}", "4xx", 1}, {"/ui/vendor/{asset}", "4xx", 1},
	} {
		if got := sample(t, reg, "refgate_api_requests_total", map[string]string{"route": c.route, "method": "GET", "status": c.status}); got < c.want {
			t.Errorf("requests{%s GET %s} = %v, want at least %v", c.route, c.status, got, c.want)
		}
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && strings.HasPrefix(l.GetValue(), "/ui/") && strings.Contains(l.GetValue(), ".") {
					t.Errorf("%s has the route label %q: a file's name, not the route's", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}
