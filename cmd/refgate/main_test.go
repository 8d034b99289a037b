package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/buildtest"
	"github.com/refgate/refgate/internal/redistest"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
)

const (
	adminTok = "test-admin-token-0123"
	sfTok    = "test-storefront-token"
	keys     = "k1:0123456789abcdef0123456789"
)

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// binary is a real refgate process started by startBinary.
type binary struct {
	cmd       *exec.Cmd
	logs      *syncBuffer
	edge, api string // host:port
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}

// startBinary runs "refgate serve" from the binary built for the tests
// with args on two free loopback ports, and waits until /livez answers.
// The process is killed at the end of the test if it is still running.
func startBinary(t *testing.T, args ...string) *binary {
	t.Helper()
	bin := buildtest.Binary(t, "github.com/refgate/refgate/cmd/refgate")
	// Find two free ports by binding a throwaway server first.
	probe, _ := MustRunMain(t, t.TempDir(), nil)
	b := &binary{logs: new(syncBuffer), edge: probe.EdgeAddr(), api: probe.APIAddr()}
	probe.Close()
	// Tests click from one loopback address: no attribution rate limit
	// unless they ask for one.
	b.cmd = exec.Command(bin, append([]string{"serve", "--listen", b.edge, "--api-listen", b.api, "--attribution-rate", "0"}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + b.api + "/livez"); err == nil {
			resp.Body.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MustRunMain runs a server on loopback ports with the embedded store in dir
// unless mod says otherwise, and closes it at the end of the test.
func MustRunMain(t *testing.T, dir string, mod func(*Config)) (*Main, *syncBuffer) {
	t.Helper()
	m := NewMain()
	m.Config.Listen = "127.0.0.1:0"
	m.Config.APIListen = "127.0.0.1:0"
	m.Config.DataDir = dir
	m.Config.AdminToken = adminTok
	m.Config.StorefrontToken = sfTok
	m.Config.CookieKeys = keys
	m.Config.FingerprintKey = "fingerprint-key-0123456789"
	m.Config.CookieSecure = false
	m.Config.AttributionRate = 0 // tests click from one address
	if mod != nil {
		mod(&m.Config)
	}
	logs := &syncBuffer{}
	m.LogOutput = logs
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	t.Cleanup(func() { m.Close() })
	return m, logs
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       5 * time.Second,
}

// apiServer is anything with an API address: a Main in this process, or
// remoteAPI for the binary running in another.
type apiServer interface{ APIAddr() string }

type remoteAPI string

func (r remoteAPI) APIAddr() string { return string(r) }

func callAPI(t *testing.T, m apiServer, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.APIAddr()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func setup(t *testing.T, m apiServer, code string) {
	t.Helper()
	if s, b := callAPI(t, m, "PUT", "/v1/admin/programs/shop", `{"cookie_days":7,"allowed_hosts":["shop.example.com"]}`); s != 200 {
		t.Fatalf("program: %d %v", s, b)
	}
	if s, b := callAPI(t, m, "PUT", "/v1/admin/promoters/alice", `{"status":"active"}`); s != 200 {
		t.Fatalf("promoter: %d %v", s, b)
	}
	if s, b := callAPI(t, m, "POST", "/v1/admin/links", `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/","code":"`+code+`"}`); s != 201 {
		t.Fatalf("link: %d %v", s, b)
	}
}

// browserClick is a click on code as a browser sends it.
func browserClick(addr, code string) *http.Request {
	req, _ := http.NewRequest("GET", "http://"+addr+"/r/"+code, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0")
	return req
}

func click(t *testing.T, addr, code string) *http.Response {
	t.Helper()
	req := browserClick(addr, code)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestEndToEndEmbeddedAndRestart(t *testing.T) {
	dir := t.TempDir()
	m, _ := MustRunMain(t, dir, func(c *Config) { c.CookieKeys = "" }) // generated key, kept in dir
	setup(t, m, "e2e001")
	resp := click(t, m.EdgeAddr(), "e2e001")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://shop.example.com/" {
		t.Fatalf("click: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var tok string
	for _, c := range resp.Cookies() {
		if c.Name == "rg_shop" {
			tok = c.Value
			if c.MaxAge != 7*86400 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
				t.Errorf("cookie %+v", c)
			}
		}
	}
	if tok == "" {
		t.Fatal("no rg_shop cookie")
	}
	// Hardening over the real listener: no Server header, an 8 KB cookie
	// header is served (not 431), only GET and HEAD.
	if resp.Header.Get("Server") != "" {
		t.Errorf("Server header %q", resp.Header.Get("Server"))
	}
	req, _ := http.NewRequest("GET", "http://"+m.EdgeAddr()+"/r/e2e001", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0")
	req.Header.Set("Cookie", "big="+strings.Repeat("x", 8*1024))
	if big, err := noRedirect.Do(req); err != nil || big.StatusCode != 302 {
		t.Errorf("8 KB cookie header: %v %v", big, err)
	} else {
		big.Body.Close()
	}
	if post, err := http.Post("http://"+m.EdgeAddr()+"/r/e2e001", "text/plain", nil); err != nil || post.StatusCode != 405 {
		t.Errorf("POST on the edge: %v %v", post, err)
	} else {
		post.Body.Close()
	}
	if s, _ := callAPI(t, m, "GET", "/metrics", ""); s != 200 {
		t.Errorf("metrics: %d", s)
	}
	mreq, _ := http.NewRequest("GET", "http://"+m.APIAddr()+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+adminTok)
	mresp, err := noRedirect.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`refgate_clicks_total{outcome="attributed"} 2`, `refgate_click_duration_seconds_count 2`,
		`refgate_link_cache_requests_total{result="hit"} 1`, `refgate_queue_depth`, `refgate_store_duration_seconds_count{op="create_link"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart on the same data dir: the link, the click record and the
	// generated cookie key are all still there.
	m2, _ := MustRunMain(t, dir, func(c *Config) { c.CookieKeys = "" })
	if resp := click(t, m2.EdgeAddr(), "e2e001"); resp.StatusCode != 302 {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
	// Two clicks before the restart, one after (written within a flush
	// interval).
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, b := callAPI(t, m2, "GET", "/v1/admin/links/e2e001", "")
		if s == 200 && b["clicks"].(map[string]any)["attributed"] == 3.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("link after restart: %d %v", s, b)
		}
	}
	keyFile, err := os.ReadFile(filepath.Join(dir, "cookie-keys"))
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := cookie.ParseKeys(strings.TrimSpace(string(keyFile)))
	signer, _ := cookie.NewSigner(ks)
	var parsed cookie.Token
	if err := signer.Verify([]byte(tok), time.Now(), &parsed); err != nil {
		t.Errorf("a cookie from before the restart must still verify: %v", err)
	}
	c, err := m2.Store.VisitorClick(context.Background(), "shop", parsed.Visitor)
	if err != nil || c.ID != parsed.Click || c.Promoter != "alice" {
		t.Errorf("visitor record: %+v %v", c, err)
	}
}

// TestSweepFollowsTestClock: the embedded store sweeps by the server's
// clock, so advancing the test clock past a click's expiry and the grace
// sweeps its visitor record.
func TestSweepFollowsTestClock(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.TestClock, c.SweepInterval = true, 20*time.Millisecond })
	setup(t, m, "sweep01")
	resp := click(t, m.EdgeAddr(), "sweep01")
	var vid string
	for _, c := range resp.Cookies() {
		if c.Name == "rg_vid" {
			vid = c.Value
		}
	}
	ctx := context.Background()
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 5s", what)
			}
		}
	}
	waitFor("visitor record", func() bool { _, err := m.Store.VisitorClick(ctx, "shop", vid); return err == nil })
	// 7 cookie days and 7 days' grace: a day short of them, the record stays.
	if s, b := callAPI(t, m, "POST", "/v1/admin/test-clock", `{"advance":"312h"}`); s != 200 {
		t.Fatalf("test clock: %d %v", s, b)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := m.Store.VisitorClick(ctx, "shop", vid); err != nil {
		t.Fatalf("swept within the grace: %v", err)
	}
	callAPI(t, m, "POST", "/v1/admin/test-clock", `{"advance":"25h"}`)
	waitFor("sweep", func() bool {
		_, err := m.Store.VisitorClick(ctx, "shop", vid)
		return errors.Is(err, store.ErrNotFound)
	})
}

func TestGeneratedTokensLoggedOnce(t *testing.T) {
	m, logs := MustRunMain(t, t.TempDir(), func(c *Config) { c.AdminToken = ""; c.StorefrontToken = "" })
	_ = m
	out := logs.String()
	for _, k := range []string{"admin_token=", "storefront_token="} {
		if strings.Count(out, k) != 1 {
			t.Errorf("%s logged %d times:\n%s", k, strings.Count(out, k), out)
		}
	}
	if strings.Contains(out, keys) || strings.Contains(out, "fingerprint-key-0123456789") {
		t.Errorf("a secret was logged:\n%s", out)
	}
	if !strings.Contains(out, "cookie-keys=k1:***") {
		t.Errorf("configured cookie keys must show as kid:***:\n%s", out)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "refgate.yaml")
	os.WriteFile(yml, []byte("listen: 127.0.0.1:1111\napi-listen: 127.0.0.1:2222\ndata-dir: /from/yaml\nlog-format: json\ncookie-secure: false\n"), 0o600)
	t.Setenv("REFGATE_API_LISTEN", "127.0.0.1:3333")
	t.Setenv("REFGATE_DATA_DIR", "/from/env")
	t.Setenv("REFGATE_CONFIG", yml)
	var c Config
	if err := c.ParseFlags("serve", []string{"--data-dir", "/from/flag"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := Config{Listen: "127.0.0.1:1111", APIListen: "127.0.0.1:3333", DataDir: "/from/flag", LogFormat: "json", CookieSecure: false}
	if c.Listen != want.Listen || c.APIListen != want.APIListen || c.DataDir != want.DataDir || c.LogFormat != want.LogFormat || c.CookieSecure {
		t.Errorf("got %+v", c)
	}
	if c.TrustedProxies != "127.0.0.0/8,::1/128" || c.ShutdownDelay != 0 || c.RedisURL != "" {
		t.Errorf("defaults: %+v", c)
	}
	// The event files are bounded by default: 30 days, 10 GiB.
	if c.EventsFileMaxAge != 720*time.Hour || c.EventsFileKeepBytes != 10<<30 || c.EventsFileKeep != 0 {
		t.Errorf("event file bounds: %v %d %d", c.EventsFileMaxAge, c.EventsFileKeepBytes, c.EventsFileKeep)
	}
	var bad Config
	for _, args := range [][]string{{"--log-format", "xml"}, {"--no-such-flag"}, {"--redis-url", "redis://a", "--redis-addrs", "b:1"}, {"extra"},
		{"--phone-region", "XX"}, {"--phone-region", ""}, {"--events-file-max-age", "-1h"}, {"--events-file-keep-bytes", "-1"}} {
		if err := bad.ParseFlags("serve", args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestPhoneRegionFlag(t *testing.T) {
	f := func(name, want string, args []string, env, yaml string) {
		t.Helper()
		t.Run(name, func(t *testing.T) { phoneRegion(t, want, args, env, yaml) })
	}
	f("Default", "CN", nil, "", "")
	f("Flag", "US", []string{"--phone-region", "US"}, "", "")
	f("Env", "GB", nil, "GB", "")
	f("YAML", "HK", nil, "", "HK")
	f("ErrUnknownFlag", "", []string{"--phone-region", "China"}, "", "")
	f("ErrUnknownEnv", "", nil, "ZZ", "")
}

// phoneRegion parses args with env as REFGATE_PHONE_REGION and yaml as the
// config file's phone-region (each if not empty); want "" wants an error.
func phoneRegion(t *testing.T, want string, args []string, env, yaml string) {
	t.Helper()
	if env != "" {
		t.Setenv("REFGATE_PHONE_REGION", env)
	}
	if yaml != "" {
		yml := filepath.Join(t.TempDir(), "refgate.yaml")
		os.WriteFile(yml, []byte("phone-region: "+yaml+"\n"), 0o600)
		args = append(args, "--config", yml)
	}
	var c Config
	err := c.ParseFlags("serve", args, io.Discard)
	switch {
	case want == "" && (err == nil || !strings.Contains(err.Error(), "--phone-region")):
		t.Errorf("want a --phone-region error, got %v", err)
	case want != "" && (err != nil || c.PhoneRegion != want):
		t.Errorf("got %q %v, want %q", c.PhoneRegion, err, want)
	}
}

func TestRunCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "refgate ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	if code := run(context.Background(), nil, &out, &errb); code != 2 {
		t.Errorf("no command: %d", code)
	}
	if code := run(context.Background(), []string{"serve", "--log-format", "xml"}, &out, &errb); code != 2 {
		t.Errorf("bad flag: %d", code)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--phone-region", "XX"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--phone-region") {
		t.Errorf("unknown phone region: %d %q", code, errb.String())
	}
}

// TestSIGTERMDrain runs the real binary, queues clicks that cannot have been
// flushed yet (a one-hour flush interval and huge batches), sends SIGTERM and
// checks that every click record reached the store.
func TestSIGTERMDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	data := filepath.Join(t.TempDir(), "data")
	b := startBinary(t, "--data-dir", data, "--admin-token", adminTok, "--cookie-keys", keys,
		"--flush-interval", "1h", "--batch-size", "100000")
	cmd, logs, edge, apiAddr := b.cmd, b.logs, b.edge, b.api
	setup(t, remoteAPI(apiAddr), "drain01")
	const n = 300
	for i := 0; i < n; i++ {
		if resp := click(t, edge, "drain01"); resp.StatusCode != 302 {
			t.Fatalf("click %d: %d", i, resp.StatusCode)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	st, err := embedded.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stats, err := st.LinkStats(context.Background(), "drain01")
	if err != nil || stats[attribution.OutcomeAttributed] != n {
		t.Fatalf("after SIGTERM the store holds %v clicks (%v), want %d\n%s", stats, err, n, logs.String())
	}
	if !strings.Contains(logs.String(), `"pipeline stopped" log_bytes=0`) {
		t.Errorf("the drain is logged, with nothing left in the log:\n%s", logs.String())
	}
}

// TestCrossInstanceInvalidation runs two instances on one Redis (and on a
// Redis Cluster): a link deleted through one stops resolving on the other
// within 1s.
func TestCrossInstanceInvalidation(t *testing.T) {
	t.Run("Single", func(t *testing.T) {
		srv := redistest.Start(t)
		crossInstance(t, func(c *Config) { c.RedisURL = srv.URL() })
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3, 0)
		crossInstance(t, func(c *Config) { c.RedisAddrs = strings.Join(cl.Addrs(), ","); c.RedisCluster = true })
	})
}

func crossInstance(t *testing.T, redis func(*Config)) {
	a, _ := MustRunMain(t, t.TempDir(), redis)
	b, _ := MustRunMain(t, t.TempDir(), redis)
	setup(t, a, "cross01")
	for _, m := range []*Main{a, b} {
		if resp := click(t, m.EdgeAddr(), "cross01"); resp.StatusCode != 302 {
			t.Fatalf("click on %s: %d", m.EdgeAddr(), resp.StatusCode)
		}
	}
	// b now holds the link in its cache.
	if s, _ := callAPI(t, a, "DELETE", "/v1/admin/links/cross01", ""); s != 204 {
		t.Fatalf("delete: %d", s)
	}
	start := time.Now()
	clicked := 2
	for click(t, b.EdgeAddr(), "cross01").StatusCode != 404 {
		clicked++
		if time.Since(start) > time.Second {
			t.Fatal("the other instance still resolves a deleted link after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("deletion reached the other instance in %v", time.Since(start))
	// Clicks recorded by both instances reached the shared store.
	deadline := time.Now().Add(3 * time.Second)
	for {
		stats, err := a.Store.LinkStats(context.Background(), "cross01")
		if err == nil && stats[attribution.OutcomeAttributed] == int64(clicked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %v %v, want %d attributed clicks", stats, err, clicked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprint(len(body), ".yaml"))
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	f := func(body string, want int) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"validate", "--config", write(body)}, &out, &errb); code != want {
			t.Errorf("%q: exit %d, want %d\n%s%s", body, code, want, out.String(), errb.String())
		}
	}
	f("listen: \":8080\"\nredis-addrs: \"a:7000,b:7001\"\ncookie-keys: \"k1:0123456789abcdef0123\"\nshutdown-delay: 10s\n", 0)
	f("listen: \"8080\"\n", 1)
	f("cookie-keys: \"k1:short\"\n", 1)
	f("trusted-proxies: \"10.0.0.0/33\"\n", 1)
	f("redis-url: \"http://nope\"\n", 1)
	f("log-format: xml\n", 1)
	f("no-such-key: 1\n", 1)
}

// --bot-patterns replaces the built-in crawler list at start; a file that
// is not a list stops the start with an error naming the flag and the
// entry.
func TestBotPatternsFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `[{"pattern": "Zorblax\\/", "instances": ["Zorblax/2.0"]}]`)

	t.Run("Good", func(t *testing.T) {
		m, logs := MustRunMain(t, t.TempDir(), func(c *Config) { c.BotPatterns = good })
		setup(t, m, "bots1")
		if !strings.Contains(logs.String(), good) {
			t.Errorf("the start-up log does not name the list:\n%s", logs)
		}
		f := func(name, ua string, wantCookie bool) {
			t.Helper()
			req := browserClick(m.EdgeAddr(), "bots1")
			req.Header.Set("User-Agent", ua)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "rg_shop=")
			if resp.StatusCode != 302 || got != wantCookie {
				t.Errorf("%s: status %d, attribution cookie %v, want %v", name, resp.StatusCode, got, wantCookie)
			}
		}
		firefox := "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0"
		f("Listed", firefox+" Zorblax/2.0", false)
		f("Generic", "python-requests/2.32.3", false)
		f("Browser", firefox, true)
	})
	t.Run("Bad", func(t *testing.T) {
		f := func(name, path, want string) {
			t.Helper()
			m := NewMain()
			m.Config.Listen, m.Config.APIListen, m.Config.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
			m.Config.BotPatterns = path
			m.LogOutput = io.Discard
			err := m.Run(context.Background())
			m.Close()
			if err == nil || !strings.Contains(err.Error(), "--bot-patterns") || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want --bot-patterns and %q", name, err, want)
			}
		}
		f("NotAList", write("object.json", `{"pattern": "x"}`), "want a JSON array")
		f("BadPattern", write("js.json", `[{"pattern": "(?<! cu)bot"}]`), "entry 0")
		f("Missing", filepath.Join(dir, "none.json"), "none.json")
	})
	t.Run("ValidateEnv", func(t *testing.T) {
		for path, want := range map[string]int{good: 0, write("empty.json", `[]`): 1} {
			t.Setenv("REFGATE_BOT_PATTERNS", path)
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{"validate"}, &out, &errb); code != want {
				t.Errorf("validate with REFGATE_BOT_PATTERNS=%s: exit %d, want %d\n%s", path, code, want, errb.String())
			}
		}
	})
}

// TestAuthFailureLimitFlag: --auth-failure-limit reaches the API, with
// --trusted-proxies deciding whose X-Forwarded-For names the client.
func TestAuthFailureLimitFlag(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.AuthFailureLimit = 2 })
	get := func(tok, xff string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+m.APIAddr()+"/v1/admin/programs/shop", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, want := range []int{401, 401, 429} {
		if resp := get("wrong-token-0123456789", "198.51.100.9"); resp.StatusCode != want {
			t.Fatalf("got %d, want %d", resp.StatusCode, want)
		}
	}
	if resp := get("", "198.51.100.10"); resp.StatusCode != 401 {
		t.Errorf("another client behind the trusted loopback proxy: %d, want 401", resp.StatusCode)
	}
	if resp := get(adminTok, "198.51.100.9"); resp.StatusCode != 404 {
		t.Errorf("the admin token from a throttled client: %d, want 404 (no such program)", resp.StatusCode)
	}
	var c Config
	if err := c.ParseFlags("serve", []string{"--auth-failure-limit", "-1"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--auth-failure-limit") {
		t.Errorf("a negative limit: %v", err)
	}
}

// metricValue scrapes the API at api and returns the sample named name
// (with its labels, as the text format writes them).
func metricValue(t *testing.T, api, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestReportRetentionFlag: --report-retention takes whole days or a Go
// duration, from the command line, the environment or the YAML file, and
// refuses less than a day.
func TestReportRetentionFlag(t *testing.T) {
	const day = 24 * time.Hour
	f := func(name string, want time.Duration, args []string, env, yaml string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("REFGATE_DATA_DIR", dir)
			if env != "" {
				t.Setenv("REFGATE_REPORT_RETENTION", env)
			}
			if yaml != "" {
				yml := filepath.Join(dir, "refgate.yaml")
				os.WriteFile(yml, []byte("report-retention: "+yaml+"\n"), 0o600)
				t.Setenv("REFGATE_CONFIG", yml)
			}
			var c Config
			err := c.ParseFlags("serve", args, io.Discard)
			switch {
			case want == 0 && err == nil:
				t.Errorf("accepted: %v", c.ReportRetention)
			case want != 0 && err != nil:
				t.Fatal(err)
			case want != 0 && c.ReportRetention != want:
				t.Errorf("got %v, want %v", c.ReportRetention, want)
			}
		})
	}
	f("Default", 400*day, nil, "", "")
	f("FlagDays", 90*day, []string{"--report-retention", "90d"}, "", "")
	f("FlagDuration", 36*time.Hour, []string{"--report-retention", "36h"}, "", "")
	f("Env", 30*day, nil, "30d", "")
	f("YAML", 731*day, nil, "", "731d")
	f("ErrUnder", 0, []string{"--report-retention", "12h"}, "", "")
	f("ErrNegative", 0, []string{"--report-retention", "-3d"}, "", "")
	f("ErrWords", 0, []string{"--report-retention", "a year"}, "", "")
	var c Config
	c.ParseFlags("serve", []string{"--report-retention", "90d"}, io.Discard)
	if got := fmt.Sprint(c.Redacted()...); !strings.Contains(got, "report-retention90d") {
		t.Errorf("the effective configuration says %s", got)
	}
}
