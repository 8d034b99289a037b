package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// consoleCSP is the policy every /ui response must carry: the console's
// own files and the API, nothing else, nothing inline.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleBrowser is a headless Chromium on the console of one server. It
// watches every request the page makes and every response it gets: a
// request to anything but the server's origin (data: and blob: URLs
// aside), a /ui response without the CSP, a CSP violation or an uncaught
// exception fails the test at its end.
type consoleBrowser struct {
	t      *testing.T
	ctx    context.Context
	origin string // http://127.0.0.1:PORT, the API listener
	shots  string // where screenshots go
	n      int    // screenshots taken

	mu         sync.Mutex
	offsite    []string
	noCSP      []string
	problems   []string
	uiAnswered int
}

// artifactsDir is where the console tests write screenshots:
// $REFGATE_ARTIFACTS (a path relative to this package's directory, when
// relative; .ci/run sets an absolute one) or a temporary directory.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("REFGATE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

func newConsoleBrowser(t *testing.T, api string) *consoleBrowser {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("this test drives a real browser: install Debian's chromium (apt-get install chromium): %v", err)
	}
	b := &consoleBrowser{t: t, origin: "http://" + api, shots: artifactsDir(t)}
	t.Logf("console screenshots: %s", b.shots)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b.ctx = ctx
	// The first Do starts the browser under a context without a deadline:
	// a deadline there would be the browser's.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A listener the page cannot see or remove, for policy violations the
	// console log might word differently in another Chromium.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__violations = []; document.addEventListener('securitypolicyviolation',
			e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));`,
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// listen runs in the browser's event loop: it only records.
func (b *consoleBrowser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.RedirectResponse != nil {
			b.response(e.RedirectResponse)
		}
		b.request(e.Request.URL)
	case *network.EventResponseReceived:
		b.response(e.Response)
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.problems = append(b.problems, "uncaught exception: "+msg)
	case *cdplog.EventEntryAdded:
		if strings.Contains(e.Entry.Text, "Content Security Policy") || strings.Contains(e.Entry.Text, "Content-Security-Policy") {
			b.problems = append(b.problems, "console: "+e.Entry.Text)
		}
	}
}

func (b *consoleBrowser) request(raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		b.offsite = append(b.offsite, raw)
	case u.Scheme == "data":
	case u.Scheme == "blob" && strings.HasPrefix(u.Opaque, b.origin+"/"):
	case u.Scheme+"://"+u.Host == b.origin:
	default:
		b.offsite = append(b.offsite, raw)
	}
}

func (b *consoleBrowser) response(r *network.Response) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme+"://"+u.Host != b.origin || (u.Path != "/ui" && !strings.HasPrefix(u.Path, "/ui/")) {
		return
	}
	b.uiAnswered++
	var csp string
	for k, v := range r.Headers {
		if strings.EqualFold(k, "Content-Security-Policy") {
			csp, _ = v.(string)
		}
	}
	if csp != consoleCSP {
		b.noCSP = append(b.noCSP, fmt.Sprintf("%s (%d): Content-Security-Policy %q", r.URL, r.Status, csp))
	}
}

// check fails the test for what the listener saw.
func (b *consoleBrowser) check() {
	b.t.Helper()
	violations, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`window.__violations || []`))
	if err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.offsite {
		b.t.Errorf("the console loaded %s, from outside refgate", u)
	}
	for _, s := range b.noCSP {
		b.t.Errorf("a /ui response without the console's CSP: %s", s)
	}
	for _, p := range append(b.problems, violations...) {
		b.t.Errorf("%s", p)
	}
	if b.uiAnswered < 5 {
		b.t.Errorf("saw %d /ui responses; the listener missed the page's loads", b.uiAnswered)
	}
}

// do runs actions, failing with a screenshot and the page's text when they
// do not finish within 15 seconds.
func (b *consoleBrowser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

func (b *consoleBrowser) fail(what string, err error) {
	b.t.Helper()
	b.shot("failed")
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	b.t.Fatalf("%s: %v\nthe page says:\n%s", what, err, text)
}

// eval evaluates a JavaScript expression into T.
func eval[T any](b *consoleBrowser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(expr, err)
	}
	return v
}

func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// waitText waits until an element that sel matches contains text.
func (b *consoleBrowser) waitText(sel, text string) {
	b.t.Helper()
	b.do(fmt.Sprintf("wait for %q in %s", text, sel), chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%s)).some(e => e.textContent.includes(%s))`, js(sel), js(text))))
}

// waitRow waits until a table row under sel reads want, cell by cell.
func (b *consoleBrowser) waitRow(sel string, want ...string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%s)).some(tr => Array.from(tr.children).map(c => c.textContent).join('|') === %s)`,
		js(sel+" tbody tr"), js(strings.Join(want, "|")))))
	if err != nil {
		b.fail(fmt.Sprintf("want a row %q, have %q", want, b.cells(sel)), err)
	}
}

// page opens a page through the navigation bar and waits until it has
// rendered (the router marks #view with the page it finished).
func (b *consoleBrowser) page(hash string) {
	b.t.Helper()
	b.do("open "+hash, chromedp.Click(chromedp.CSS(`#nav a[href="#`+hash+`"]`)))
	b.ready(hash)
}

func (b *consoleBrowser) ready(hash string) {
	b.t.Helper()
	b.do("render "+hash, chromedp.Poll[chromedp.Void](`document.getElementById('view').dataset.ready === `+js(hash)))
}

// fill sets the named fields of the form sel as typing would (with input
// and change events), then submits it with its submit button.
func (b *consoleBrowser) fill(sel string, fields ...string) {
	b.t.Helper()
	for i := 0; i+1 < len(fields); i += 2 {
		b.set(sel+` [name="`+fields[i]+`"]`, fields[i+1])
	}
	b.click(sel + ` button[type=submit]`)
}

// set gives the control sel the value v.
func (b *consoleBrowser) set(sel, v string) {
	b.t.Helper()
	got := eval[string](b, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		if (!el) return 'no element';
		el.value = %s;
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
		return el.value;
	})()`, js(sel), js(v)))
	if got != v {
		b.fail("set "+sel, fmt.Errorf("value %q, want %q", got, v))
	}
}

func (b *consoleBrowser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// shot writes a full-page PNG, numbered in order.
func (b *consoleBrowser) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name)), buf, 0o644); err != nil {
		b.t.Error(err)
	}
}

// cells reads the rows of the tables sel matches, as text.
func (b *consoleBrowser) cells(sel string) [][]string {
	b.t.Helper()
	return eval[[][]string](b, fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).map(tr => Array.from(tr.children).map(c => c.textContent))`, js(sel+" tbody tr")))
}

func row(rows [][]string, first string) []string {
	for _, r := range rows {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	return nil
}

// download clicks sel, which downloads a file, and returns its name and
// content.
func (b *consoleBrowser) download(sel, dir string) (name, content string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	// Subscribed before the click, so that no event is missed.
	begins := chromedp.BrowserEvents(ctx, browser.DownloadWillBegin)
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	on := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &on}); err != nil {
		b.fail("allow downloads", err)
	}
	b.click(sel)
	var guid string
	for ev, err := range begins {
		if err != nil {
			b.fail("download of "+sel, err)
		}
		guid, name = ev.GUID, ev.SuggestedFilename
		break
	}
	for ev, err := range progress {
		if err != nil {
			b.fail("download of "+sel, err)
		}
		if ev.GUID == guid && ev.State == browser.DownloadProgressStateCompleted {
			break
		}
		if ev.GUID == guid && ev.State == browser.DownloadProgressStateCanceled {
			b.fail("download of "+sel, fmt.Errorf("canceled"))
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, guid))
	if err != nil {
		b.t.Fatal(err)
	}
	return name, string(raw)
}

// TestConsole drives the console in a real headless Chromium, as an
// operator and then as a promoter: every page, with the numbers the API
// holds, and nothing loaded from outside refgate.
func TestConsole(t *testing.T) {
	m, _ := MustRunMain(t, t.TempDir(), func(c *Config) { c.TestClock = true })
	api := m.APIAddr()
	b := newConsoleBrowser(t, api)
	today := time.Now().UTC().Format("2006-01-02")

	// Bob, another promoter of the same program, with a link, a customer
	// and a commission of his own: none of it may reach alice's pages.
	bobData := func() {
		if s, body := callAPI(t, m, "PUT", "/v1/admin/promoters/bob", `{"status":"active"}`); s != 200 {
			t.Fatalf("bob: %d %v", s, body)
		}
		if s, body := callAPI(t, m, "POST", "/v1/admin/links", `{"program":"shop","promoter":"bob","destination":"https://shop.example.com/bob","code":"bob-deal"}`); s != 201 {
			t.Fatalf("bob's link: %d %v", s, body)
		}
		convert(t, m, "bob-deal", "bob-customer-77", "o-bob-1")
	}

	// The operator signs in.
	b.do("open the console", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(b.origin+"/ui"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.shot("sign-in")
	// From the keyboard: the token, then Enter.
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), adminTok+"\n"))
	b.ready("/programs")

	// A program: the API's 422 shows next to the form, then it is saved.
	b.fill("#program-form", "id", "shop", "cookie_days", "30", "allowed_hosts", "", "protected", "0.3", "standard", "0.25", "hold_days", "30")
	b.waitText("#program-form .error", "422 invalid")
	// Customers stay protected 90 days: alice still holds hers after the
	// month the test clock moves on below.
	b.fill("#program-form", "id", "shop", "allowed_hosts", "shop.example.com", "protected", "0.3", "standard", "0.25", "protect_days", "90")
	b.waitText("#view table", "shop.example.com")
	b.shot("programs")

	// A promoter, and a token for her.
	b.page("/promoters")
	b.fill("#promoter-form", "id", "alice", "status", "active", "tier", "0")
	b.waitText("#view table", "alice")
	// Valid for a year: the test clock moves a month on below.
	b.set(`input[name="ttl"]`, "8760h")
	b.click("#issue-token")
	b.do("issued token", chromedp.WaitVisible(chromedp.CSS(`input[name="issued-token"]`)))
	aliceTok := eval[string](b, `document.querySelector('input[name="issued-token"]').value`)
	if !strings.HasPrefix(aliceTok, "p1.") {
		t.Fatalf("issued token %q", aliceTok)
	}
	b.shot("promoters")
	bobData()

	// A link: the allow-list is checked before anything is sent, then the
	// link is created, its QR code drawn, paused and resumed; bob's link
	// is expired.
	b.page("/links")
	b.fill("#link-form", "program", "shop", "promoter", "alice", "destination", "https://elsewhere.example.net/x", "code", "alice-deal")
	b.waitText("#link-form .error", "not among program shop's allowed hosts")
	b.fill("#link-form", "destination", "https://shop.example.com/deal")
	b.waitText("#created-url", "/r/alice-deal")
	b.click(`#link-form button[aria-label="QR code of alice-deal"]`)
	b.do("QR code", chromedp.WaitVisible(chromedp.CSS("#link-form .qr img")))
	if src := eval[string](b, `document.querySelector('#link-form .qr img').src`); !strings.HasPrefix(src, "data:image/gif;base64,") {
		t.Errorf("QR code image %.40q, want a data: URL", src)
	}
	b.click(`button[aria-label="Pause alice-deal"]`)
	b.do("paused", chromedp.WaitVisible(chromedp.CSS(`button[aria-label="Resume alice-deal"]`)))
	b.click(`button[aria-label="Resume alice-deal"]`)
	b.do("resumed", chromedp.WaitVisible(chromedp.CSS(`button[aria-label="Pause alice-deal"]`)))
	b.click(`button[aria-label="Expire bob-deal now"]`)
	b.waitText("#view tbody tr", "expired")
	b.shot("links")

	// A visitor clicks alice's link, registers and pays, through the API.
	convert(t, m, "alice-deal", "cust-4242", "o-4242")
	waitReport(t, m, "alice", today)

	// The numbers in the report: alice's, by day.
	b.page("/reports")
	b.fill("form.filters", "scope", "promoter", "id", "alice")
	// Day, attributed clicks, all clicks, visitors, binds, conversions,
	// cash, commission, refunded: alice's, not the program's (bob has the
	// same again).
	b.waitRow(".report", today, "1", "1", "1", "1", "1", "100000", "30000", "0")
	b.do("charts", chromedp.WaitVisible(chromedp.CSS(".report .chart canvas")))
	if n := eval[int](b, `document.querySelectorAll('.report .chart canvas').length`); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
	b.shot("reports")

	// The ledger entry.
	b.page("/ledger")
	b.fill("form.filters", "program", "shop", "promoter", "alice")
	b.waitText("#view tbody", "acc:o-4242")
	if r := row(b.cells("#view"), "acc:o-4242"); len(r) < 9 || r[1] != "accrual" || r[2] != "300.00 CNY" || r[8] != "pending" {
		t.Errorf("ledger row %q", r)
	}
	b.shot("ledger")

	// A customer, in one screen: who holds them, why, and the commission.
	b.page("/customer")
	b.fill("#customer-form", "customer", "cust-4242")
	b.waitText("#view table", "o-4242")
	b.waitText("#view table", "acc:o-4242")
	b.waitText("#view dl", "alice")
	b.shot("customer")

	// A month later the hold is over: settle, download, mark paid.
	if s, body := callAPI(t, m, "POST", "/v1/admin/test-clock", `{"advance":"744h"}`); s != 200 {
		t.Fatalf("test clock: %d %v", s, body)
	}
	b.page("/statements")
	b.fill("#settle-form")
	b.waitText("#settlement-result", "alice 300.00 CNY")
	_, sts := callAPI(t, m, "GET", "/v1/admin/statements?program=shop&promoter=alice", "")
	items, _ := sts["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("alice's statements: %v", sts)
	}
	st := items[0].(map[string]any)["id"].(string)
	b.waitText("#view tbody", st)
	name, csv := b.download(`button[aria-label="Download CSV of `+st+`"]`, t.TempDir())
	if name != st+".csv" || !strings.HasPrefix(csv, "statement,program,promoter,currency,entry,") || !strings.Contains(csv, ",acc:o-4242,accrual,30000,o-4242,cust-4242,") {
		t.Errorf("downloaded %s:\n%s", name, csv)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name), []byte(csv), 0o644); err != nil {
		t.Error(err)
	}
	b.set(`input[aria-label="Payment reference for `+st+`"]`, "bank-0042")
	b.click(`button[aria-label="Mark ` + st + ` paid"]`)
	b.waitText("#view tbody", "paid (bank-0042)")
	b.shot("statements")

	// Alice, on her phone, with her token: her data and nobody else's.
	b.click("#signout")
	b.do("signed out", chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.EmulateViewport(360, 780, chromedp.EmulateMobile))
	b.do("promoter signs in", chromedp.SendKeys(chromedp.CSS("#token"), aliceTok), chromedp.Click(chromedp.CSS("#signin-form button[type=submit]")))
	b.ready("/my/links")
	b.waitText("#view", "alice-deal")
	b.click(`button[aria-label="QR code of alice-deal"]`)
	b.do("promoter's QR code", chromedp.WaitVisible(chromedp.CSS("#view .qr img")))
	if !eval[bool](b, `document.documentElement.scrollWidth <= window.innerWidth`) {
		t.Errorf("the promoter's links page is wider than 360 px: %d", eval[int](b, `document.documentElement.scrollWidth`))
	}
	b.shot("promoter-links")
	notBobs := func(page string) {
		t.Helper()
		if text := eval[string](b, `document.getElementById('view').textContent`); strings.Contains(text, "bob") {
			t.Errorf("alice's %s shows bob's data:\n%s", page, text)
		}
	}
	notBobs("links")

	b.page("/my/numbers")
	b.waitRow(".report", today, "1", "1", "1", "1", "1", "100000", "30000", "0")
	b.shot("promoter-numbers")

	b.page("/my/customers")
	b.waitText("#view tbody", "cu***42")
	if rows := b.cells("#view"); len(rows) != 1 {
		t.Errorf("alice's customers: %q", rows)
	}
	notBobs("customers")
	b.shot("promoter-customers")

	b.page("/my/ledger")
	b.waitText("#view tbody", "acc:o-4242")
	b.waitText("#view table", "300.00 CNY")
	notBobs("ledger")
	b.shot("promoter-ledger")

	b.page("/my/statements")
	b.waitText("#view tbody", "paid (bank-0042)")
	if rows := b.cells("#view"); len(rows) != 1 {
		t.Errorf("alice's statements: %q", rows)
	}
	b.shot("promoter-statements")

	// An operator's page opened with her token: refused, and no data.
	b.do("admin page", chromedp.Evaluate[chromedp.Void](`location.hash = '#/programs'`))
	b.ready("/programs")
	b.waitText("#refused", "This page needs the admin token")
	if n := eval[int](b, `document.querySelectorAll('#view table, #view form').length`); n != 0 {
		t.Errorf("the refused page shows %d tables or forms", n)
	}
	b.shot("promoter-refused")

	b.check()
}

// convert clicks code as a browser would, binds the visitor as customer
// at registration and reports a paid order of 1000.00 CNY for them.
func convert(t *testing.T, m *Main, code, customer, order string) {
	t.Helper()
	resp := click(t, m.EdgeAddr(), code)
	var tok string
	for _, c := range resp.Cookies() {
		if c.Name == "rg_shop" {
			tok = c.Value
		}
	}
	if resp.StatusCode != http.StatusFound || tok == "" {
		t.Fatalf("click %s: %d, no rg_shop cookie", code, resp.StatusCode)
	}
	if s, body := send(t, m.APIAddr(), sfTok, "/v1/bind", fmt.Sprintf(`{"program":"shop","customer":%q,"event":"register","token":%q}`, customer, tok)); s != 200 || body["associated"] != true {
		t.Fatalf("bind %s: %d %v", customer, s, body)
	}
	if s, body := send(t, m.APIAddr(), sfTok, "/v1/conversions", fmt.Sprintf(`{"program":"shop","order":%q,"customer":%q,"amount":100000,"currency":"CNY","product":"cvm","prepaid":true}`, order, customer)); s != 200 || body["commission"] != 30000.0 {
		t.Fatalf("conversion %s: %d %v", order, s, body)
	}
}

// waitReport waits until the promoter's click of the day is counted: the
// edge writes clicks in batches, after the redirect.
func waitReport(t *testing.T, m *Main, promoter, day string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, r := callAPI(t, m, "GET", "/v1/admin/reports?program=shop&promoter="+promoter+"&from="+day+"&to="+day, "")
		if series, _ := r["series"].([]any); len(series) == 1 {
			if clicks, _ := series[0].(map[string]any)["clicks"].(map[string]any); count(clicks, "attributed") == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's click of %s not counted: %v", promoter, day, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsoleWatch: what the console test's listener counts as loaded from
// outside refgate, and as a /ui answer without the CSP.
func TestConsoleWatch(t *testing.T) {
	b := &consoleBrowser{origin: "http://127.0.0.1:8081"}
	for _, u := range []string{"http://127.0.0.1:8081/ui/", "http://127.0.0.1:8081/v1/admin/programs?limit=1",
		"data:image/gif;base64,R0lGOD", "blob:http://127.0.0.1:8081/0b6f5c2e-1d1a-4b7e-9a55-2f0e1a6c9d10"} {
		b.request(u)
	}
	if len(b.offsite) != 0 {
		t.Errorf("counted as outside: %q", b.offsite)
	}
	outside := []string{"https://cdn.jsdelivr.net/npm/uplot@1.6.32/dist/uPlot.iife.min.js", "http://127.0.0.1:9999/ui/",
		"https://127.0.0.1:8081/ui/", "http://localhost:8081/ui/", "blob:https://evil.example/0b6f", "ws://127.0.0.1:8081/"}
	for _, u := range outside {
		b.request(u)
	}
	if !slices.Equal(b.offsite, outside) {
		t.Errorf("counted as outside %q, want %q", b.offsite, outside)
	}

	b.response(&network.Response{URL: "http://127.0.0.1:8081/ui/app.js", Status: 200,
		Headers: network.Headers{"content-security-policy": consoleCSP}})
	b.response(&network.Response{URL: "http://127.0.0.1:8081/v1/admin/programs", Status: 200}) // not the console's
	if b.uiAnswered != 1 || len(b.noCSP) != 0 {
		t.Errorf("with the CSP: %d /ui answers, %q", b.uiAnswered, b.noCSP)
	}
	b.response(&network.Response{URL: "http://127.0.0.1:8081/ui/", Status: 200, Headers: network.Headers{}})
	b.response(&network.Response{URL: "http://127.0.0.1:8081/ui", Status: 301,
		Headers: network.Headers{"Content-Security-Policy": "default-src *"}})
	if len(b.noCSP) != 2 {
		t.Errorf("without the CSP or with another: %q, want both", b.noCSP)
	}
}
