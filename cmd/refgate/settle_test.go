package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refgate/refgate/client"
)

const settleToken = "settle-admin-token-0123"

// statementsAPI is a stand-in for refgate's API: it checks each request
// is refgate settle's (POST /v1/admin/statements, JSON {"program",
// "through"?}, the admin token) and answers the n-th (from 1) with
// answer(n).
type statementsAPI struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
}

func newStatementsAPI(t *testing.T, answer func(n int, w http.ResponseWriter)) *statementsAPI {
	t.Helper()
	a := &statementsAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		err := dec.Decode(&body)
		if r.Method != "POST" || r.URL.Path != "/v1/admin/statements" || r.Header.Get("Authorization") != "Bearer "+settleToken ||
			r.Header.Get("Content-Type") != "application/json" || err != nil {
			t.Errorf("request %s %s, Authorization %q, Content-Type %q, body %v (%v)", r.Method, r.URL, r.Header.Get("Authorization"),
				r.Header.Get("Content-Type"), body, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for k := range body {
			if k != "program" && k != "through" {
				t.Errorf("the body has %q: %v", k, body)
			}
		}
		a.mu.Lock()
		a.bodies = append(a.bodies, body)
		n := len(a.bodies)
		a.mu.Unlock()
		answer(n, w)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *statementsAPI) requests() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.bodies...)
}

const twoStatements = `{"statements":[
	{"id":"st_0123456789abcdef_shop","program":"shop","promoter":"alice","currency":"CNY","through":"2026-12-06T03:00:00Z",
	 "entries":3,"amount":4500,"status":"open","created_at":"2026-12-06T03:00:01Z"},
	{"id":"st_fedcba9876543210_shop","program":"shop","promoter":"bob","currency":"CNY","through":"2026-12-06T03:00:00Z",
	 "entries":1,"amount":1500,"status":"open","created_at":"2026-12-06T03:00:01Z"},
	{"id":"st_00000000ffffffff_shop","program":"shop","promoter":"carol","currency":"RUB","through":"2026-12-06T03:00:00Z",
	 "entries":7,"amount":100000,"status":"open","created_at":"2026-12-06T03:00:01Z"}]}`

func answerJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// fastSettleRetry makes refgate settle's retries quick for the test.
func fastSettleRetry(t *testing.T) {
	old := settleRetry
	settleRetry = client.Retry{Attempts: old.Attempts, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	t.Cleanup(func() { settleRetry = old })
}

// settleEnv sets refgate settle's environment for the test: the token and
// the API's URL ("" unsets them).
func settleEnv(t *testing.T, token, apiURL string) {
	t.Setenv("REFGATE_ADMIN_TOKEN", token)
	t.Setenv("REFGATE_API_URL", apiURL)
}

// TestSettle: refgate settle POSTs the program (and --through) with the
// token from REFGATE_ADMIN_TOKEN, prints a line per statement and a total
// and exits 0, also for no statements; an error answer is one line on
// stderr with its status, code and message and exit 1; a 503 is tried
// again; a closed port or a timeout is exit 1 with one line naming the URL.
func TestSettle(t *testing.T) {
	fastSettleRetry(t)
	api := newStatementsAPI(t, func(n int, w http.ResponseWriter) { answerJSON(w, http.StatusCreated, twoStatements) })
	settleEnv(t, settleToken, api.URL)

	code, out, errOut := runCmd("settle", "--program", "shop", "--through", "2026-12-06T03:00:00Z")
	want := "promoter=alice currency=CNY amount=4500 entries=3 id=st_0123456789abcdef_shop\n" +
		"promoter=bob currency=CNY amount=1500 entries=1 id=st_fedcba9876543210_shop\n" +
		"promoter=carol currency=RUB amount=100000 entries=7 id=st_00000000ffffffff_shop\n" +
		"3 statements (CNY 6000, RUB 100000)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("201: exit %d, stdout %q, stderr %q; want 0 and\n%s", code, out, errOut, want)
	}
	if reqs := api.requests(); len(reqs) != 1 || reqs[0]["program"] != "shop" || reqs[0]["through"] != "2026-12-06T03:00:00Z" {
		t.Errorf("requests %v", reqs)
	}
	// --through keeps the offset it was given.
	runCmd("settle", "--program", "shop", "--through", "2026-12-06T11:00:00+08:00")
	if reqs := api.requests(); reqs[len(reqs)-1]["through"] != "2026-12-06T11:00:00+08:00" {
		t.Errorf("--through with an offset sent %v", reqs[len(reqs)-1])
	}

	// Nothing due: success. No --through: the field is left out.
	api = newStatementsAPI(t, func(n int, w http.ResponseWriter) { answerJSON(w, http.StatusCreated, `{"statements":[]}`) })
	code, out, errOut = runCmd("settle", "--program", "shop", "--api-url", api.URL)
	if code != 0 || out != "0 statements\n" || errOut != "" {
		t.Errorf("no statements: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if reqs := api.requests(); len(reqs) != 1 || len(reqs[0]) != 1 || reqs[0]["program"] != "shop" {
		t.Errorf("without --through the body is %v", reqs)
	}

	// Refused: the API's error, once (a 4xx is not tried again).
	api = newStatementsAPI(t, func(n int, w http.ResponseWriter) {
		answerJSON(w, http.StatusUnprocessableEntity, `{"error":{"code":"invalid","message":"through 2030-01-01T00:00:00Z is later than now"}}`)
	})
	code, out, errOut = runCmd("settle", "--program", "shop", "--api-url", api.URL, "--through", "2030-01-01T00:00:00Z")
	if want := "refgate settle: 422 invalid: through 2030-01-01T00:00:00Z is later than now\n"; code != 1 || out != "" || errOut != want || len(api.requests()) != 1 {
		t.Errorf("422: exit %d, stdout %q, stderr %q, %d requests; want 1, %q, 1 request", code, out, errOut, len(api.requests()), want)
	}
	// An error answer that is not refgate's (a proxy's page) is one line too.
	api = newStatementsAPI(t, func(n int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html>\n<body>Internal\nServer Error</body>\n</html>\n")
	})
	code, _, errOut = runCmd("settle", "--program", "shop", "--api-url", api.URL)
	if want := "refgate settle: 500 unknown: <html> <body>Internal Server Error</body> </html>\n"; code != 1 || errOut != want {
		t.Errorf("500: exit %d, stderr %q; want %q", code, errOut, want)
	}

	// Unavailable, then settled: tried again with the same body.
	api = newStatementsAPI(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			answerJSON(w, http.StatusServiceUnavailable, `{"error":{"code":"unavailable","message":"the store did not answer"}}`)
			return
		}
		answerJSON(w, http.StatusCreated, twoStatements)
	})
	code, out, errOut = runCmd("settle", "--program", "shop", "--api-url", api.URL)
	if reqs := api.requests(); code != 0 || !strings.HasSuffix(out, "\n3 statements (CNY 6000, RUB 100000)\n") || errOut != "" || len(reqs) != 2 {
		t.Errorf("503 then 201: exit %d, stdout %q, stderr %q, %d requests", code, out, errOut, len(reqs))
	}
	// Unavailable every time: the last answer, after every attempt.
	api = newStatementsAPI(t, func(n int, w http.ResponseWriter) {
		answerJSON(w, http.StatusBadGateway, `{"error":{"code":"bad_gateway","message":"no upstream"}}`)
	})
	code, _, errOut = runCmd("settle", "--program", "shop", "--api-url", api.URL)
	if code != 1 || errOut != "refgate settle: 502 bad_gateway: no upstream\n" || len(api.requests()) != settleRetry.Attempts {
		t.Errorf("502s: exit %d, stderr %q, %d requests", code, errOut, len(api.requests()))
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	code, out, errOut = runCmd("settle", "--program", "shop", "--api-url", closed)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "refgate settle: ") ||
		!strings.Contains(errOut, closed) || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, "(5 attempts)") {
		t.Errorf("closed port: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// No answer within --timeout.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server sees the client go
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	start := time.Now()
	code, _, errOut = runCmd("settle", "--program", "shop", "--api-url", slow.URL, "--timeout", "200ms")
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, slow.URL) || !strings.Contains(errOut, "(--timeout 200ms)") ||
		time.Since(start) > 3*time.Second {
		t.Errorf("timeout: exit %d, stderr %q after %v", code, errOut, time.Since(start))
	}
}

// TestSettleToken: the admin token comes from REFGATE_ADMIN_TOKEN or
// --admin-token-file (which wins), never from a flag's value; without one,
// or with a placeholder, nothing is sent (exit 2). The token is never
// printed.
func TestSettleToken(t *testing.T) {
	fastSettleRetry(t)
	api := newStatementsAPI(t, func(n int, w http.ResponseWriter) { answerJSON(w, http.StatusCreated, `{"statements":[]}`) })
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("token", settleToken+"\n")

	f := func(name, envToken string, args []string, wantCode int, wantErr string) {
		t.Helper()
		settleEnv(t, envToken, api.URL)
		before := len(api.requests())
		code, out, errOut := runCmd(append([]string{"settle", "--program", "shop"}, args...)...)
		sent := len(api.requests()) - before
		switch {
		case code != wantCode || !strings.Contains(errOut, wantErr):
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", name, code, errOut, wantCode, wantErr)
		case wantCode == 2 && (sent != 0 || out != "" || strings.Count(errOut, "\n") != 2):
			t.Errorf("%s: %d requests, stdout %q, stderr %q; want none, nothing and two lines", name, sent, out, errOut)
		case wantCode == 0 && sent != 1:
			t.Errorf("%s: %d requests", name, sent)
		}
		for _, secret := range []string{settleToken, "wrong-token-from-the-env"} {
			if strings.Contains(out+errOut, secret) {
				t.Errorf("%s: the output shows the token: %q %q", name, out, errOut)
			}
		}
	}
	f("Env", settleToken, nil, 0, "")
	f("File", "", []string{"--admin-token-file", good}, 0, "")
	// The server checks the token: the file's, not the environment's.
	f("FileWins", "wrong-token-from-the-env", []string{"--admin-token-file", good}, 0, "")
	f("None", "", nil, 2, "refgate settle: no admin token: set REFGATE_ADMIN_TOKEN or give --admin-token-file")
	f("NoFlag", "", []string{"--admin-token", settleToken}, 2, "refgate settle: flag provided but not defined: -admin-token")
	f("MissingFile", settleToken, []string{"--admin-token-file", filepath.Join(dir, "nope")}, 2, "--admin-token-file: open ")
	f("EmptyFile", settleToken, []string{"--admin-token-file", file("empty", "\n")}, 2, "is empty")
	f("TwoLines", "", []string{"--admin-token-file", file("two", settleToken+"\n"+settleToken+"\n")}, 2, "one line")
	f("PlaceholderEnv", "CHANGE-ME", nil, 2, "REFGATE_ADMIN_TOKEN is a placeholder")
	f("PlaceholderFile", settleToken, []string{"--admin-token-file", file("ph", "CHANGE-ME\n")}, 2, "is a placeholder")

	// --api-url wins over REFGATE_API_URL, which wins over the default.
	settleEnv(t, settleToken, "http://127.0.0.1:1")
	if code, _, errOut := runCmd("settle", "--program", "shop", "--api-url", api.URL); code != 0 {
		t.Errorf("--api-url over REFGATE_API_URL: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("settle", "--program", "shop", "--timeout", "100ms"); code != 1 || !strings.Contains(errOut, "http://127.0.0.1:1") {
		t.Errorf("REFGATE_API_URL: exit %d %q", code, errOut)
	}
	settleEnv(t, settleToken, "")
	if code, _, errOut := runCmd("settle", "--program", "shop", "--timeout", "100ms"); code != 1 || !strings.Contains(errOut, "http://127.0.0.1:8081") {
		t.Errorf("the default URL: exit %d %q", code, errOut)
	}
}

// TestSettleUsage: command lines settle cannot run are two lines on
// stderr, exit 2, and send nothing.
func TestSettleUsage(t *testing.T) {
	settleEnv(t, settleToken, "http://127.0.0.1:1")
	f := func(args, wantErr string) {
		t.Helper()
		code, out, errOut := runCmd(append([]string{"settle"}, strings.Fields(args)...)...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], "refgate settle: ") || !strings.Contains(lines[0], wantErr) ||
			lines[1] != "run 'refgate settle --help' for the flags" {
			t.Errorf("settle %s: exit %d, stdout %q, stderr %q; want 2 and %q", args, code, out, errOut, wantErr)
		}
	}
	f("", "--program is required")
	f("--nope", "flag provided but not defined: -nope")
	f("--program shop extra", "unexpected arguments: [extra]")
	f("--program CHANGE-ME", "--program CHANGE-ME is a placeholder")
	f("--program a/b", `--program "a/b": a program id is 1 to 64 characters`)
	// A CronJob's $(VAR) that Kubernetes had no variable for stays as is.
	f("--program $(REFGATE_SETTLE_PROGRAM)", "is the variable it names set")
	f("--program shop --through 2026-12-01", `--through "2026-12-01": want an RFC 3339 time`)
	f("--program shop --timeout 0s", "--timeout must be positive")
	f("--program shop --api-url 127.0.0.1:8081", `--api-url "127.0.0.1:8081": want the API's http(s) base URL`)
	f("--program shop --api-url ftp://127.0.0.1/", "want the API's http(s) base URL")
}

// TestSettleBinary: the real binary's exit status, as cron and a CronJob
// see it.
func TestSettleBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	api := newStatementsAPI(t, func(n int, w http.ResponseWriter) { answerJSON(w, http.StatusCreated, twoStatements) })
	env := []string{"REFGATE_ADMIN_TOKEN=" + settleToken, "REFGATE_API_URL=" + api.URL}
	if code, out := runBinary(t, env, "settle", "--program", "shop"); code != 0 || !strings.HasSuffix(out, "\n3 statements (CNY 6000, RUB 100000)\n") {
		t.Errorf("settled: exit %d %q", code, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	if code, out := runBinary(t, env, "settle", "--program", "shop", "--api-url", closed, "--timeout", "2s"); code != 1 ||
		strings.Count(out, "\n") != 1 || !strings.Contains(out, closed) {
		t.Errorf("a closed port: exit %d %q", code, out)
	}
	if code, out := runBinary(t, env[1:], "settle", "--program", "shop"); code != 2 || !strings.Contains(out, "no admin token") {
		t.Errorf("no token: exit %d %q", code, out)
	}
}

// TestSettleEndToEnd: refgate settle against a real server: due entries
// become statements, printed one line each; a second run settles nothing
// and still exits 0.
func TestSettleEndToEnd(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), nil)
	setup(t, m, "settle01")
	if s, b := callAPI(t, m, "PUT", "/v1/admin/programs/shop", `{"cookie_days":7,"allowed_hosts":["shop.example.com"],"hold_days":0}`); s != 200 {
		t.Fatalf("program: %d %v", s, b)
	}
	for i, amount := range []int{700, 300} {
		body := fmt.Sprintf(`{"id":"e2e-%d","program":"shop","promoter":"alice","amount":%d,"currency":"CNY","reason":"opening balance"}`, i, amount)
		if s, b := callAPI(t, m, "POST", "/v1/admin/ledger/adjustments", body); s != 201 {
			t.Fatalf("adjustment: %d %v", s, b)
		}
	}
	t.Setenv("REFGATE_ADMIN_TOKEN", adminTok)
	code, out, errOut := runCmd("settle", "--program", "shop", "--api-url", "http://"+m.APIAddr())
	if code != 0 || !strings.Contains(out, "promoter=alice currency=CNY amount=1000 entries=2 id=st_") || !strings.Contains(out, "1 statement") {
		t.Fatalf("settle: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd("settle", "--program", "shop", "--api-url", "http://"+m.APIAddr())
	if code != 0 || !strings.Contains(out, "0 statements") {
		t.Errorf("settle again: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCmd("settle", "--program", "nope", "--api-url", "http://"+m.APIAddr())
	if code != 1 || !strings.Contains(errOut, "422") {
		t.Errorf("settle of an unknown program: exit %d %s", code, errOut)
	}
}
