package api

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// pageOf follows next_cursor from path (which has a query) to the end and
// returns the items' values of field.
func (e *env) pageOf(path, field string) []string {
	e.t.Helper()
	var out []string
	cursor := ""
	for range 1000 {
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.call("GET", p, adminTok, "")
		if r.status != 200 {
			e.t.Fatalf("GET %s: %d %s", p, r.status, r.raw)
		}
		items, ok := r.body["items"].([]any)
		if !ok {
			e.t.Fatalf("GET %s: no items: %s", p, r.raw)
		}
		for _, it := range items {
			out = append(out, fmt.Sprint(it.(map[string]any)[field]))
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			if _, has := r.body["next_cursor"]; has {
				e.t.Fatalf("GET %s: an empty next_cursor is left out, not sent: %s", p, r.raw)
			}
			return out
		}
		cursor = next
	}
	e.t.Fatal("the cursors never end")
	return nil
}

func TestListPrograms(t *testing.T) {
	e := newEnv(t, false)
	if r := e.call("GET", "/v1/admin/programs", adminTok, ""); r.status != 200 || r.raw != "{\"items\":[]}\n" {
		t.Errorf("empty: %d %s", r.status, r.raw)
	}
	for _, id := range []string{"zeta", "alpha", "mid"} {
		if r := e.call("PUT", "/v1/admin/programs/"+id, adminTok, programBody); r.status != 200 {
			t.Fatal(r.raw)
		}
	}
	if got := e.pageOf("/v1/admin/programs?limit=2", "id"); fmt.Sprint(got) != "[alpha mid zeta]" {
		t.Errorf("programs: %v", got)
	}
	r := e.call("GET", "/v1/admin/programs?limit=1", adminTok, "")
	if r.body["next_cursor"] == nil || !strings.Contains(r.raw, `"cookie_days":30`) {
		t.Errorf("a page holds whole programs and a cursor: %s", r.raw)
	}
}

func TestListPromotersNoFingerprints(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	if r := e.call("PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"suspended"}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	r := e.call("GET", "/v1/admin/promoters", adminTok, "")
	want := `{"items":[{"id":"alice","status":"active","tier":1,"fingerprints":2},{"id":"bob","status":"suspended","tier":0,"fingerprints":0}]}` + "\n"
	if r.status != 200 || r.raw != want {
		t.Errorf("promoters: %d %s, want %s", r.status, r.raw, want)
	}
}

func TestListLinks(t *testing.T) {
	e := newEnv(t, true)
	e.seed()
	e.call("PUT", "/v1/admin/programs/other", adminTok, programBody)
	e.call("PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"active"}`)
	mk := func(code, program, promoter string) {
		t.Helper()
		r := e.call("POST", "/v1/admin/links", adminTok, fmt.Sprintf(`{"program":%q,"promoter":%q,"destination":"https://shop.example.com/","code":%q}`, program, promoter, code))
		if r.status != 201 {
			t.Fatalf("create %s: %d %s", code, r.status, r.raw)
		}
		e.advance("1s")
	}
	mk("lk1", "shop", "alice")
	mk("lk2", "shop", "bob")
	mk("lk3", "other", "alice")
	mk("lk4", "shop", "alice")
	mk("lk5", "other", "bob")
	if r := e.call("DELETE", "/v1/admin/links/lk5", adminTok, ""); r.status != 204 {
		t.Fatal(r.raw)
	}
	f := func(query, want string) {
		t.Helper()
		for _, limit := range []string{"1", "2", "100"} {
			if got := fmt.Sprint(e.pageOf("/v1/admin/links?limit="+limit+query, "code")); got != want {
				t.Errorf("links?%s limit %s: %s, want %s", query, limit, got, want)
			}
		}
	}
	f("", "[lk4 lk3 lk2 lk1]")
	f("&program=shop", "[lk4 lk2 lk1]")
	f("&promoter=alice", "[lk4 lk3 lk1]")
	f("&program=shop&promoter=alice", "[lk4 lk1]")
	f("&program=nothing", "[]")
	r := e.call("GET", "/v1/admin/links?program=shop&limit=1", adminTok, "")
	it := r.body["items"].([]any)[0].(map[string]any)
	if it["url"] != "http://go.example.com/r/lk4" && !strings.HasSuffix(fmt.Sprint(it["url"]), "/r/lk4") || it["status"] != "active" ||
		it["destination"] != "https://shop.example.com/" || it["created_at"] == nil {
		t.Errorf("a listed link: %s", r.raw)
	}
	if _, has := it["expires_at"]; !has {
		t.Errorf("a listed link has expires_at (null): %s", r.raw)
	}
}

func TestListErrors(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	f := func(path string, status int, code string) {
		t.Helper()
		r := e.call("GET", path, adminTok, "")
		if r.status != status || r.errCode() != code {
			t.Errorf("GET %s: %d %s, want %d %s", path, r.status, r.raw, status, code)
		}
	}
	for _, p := range []string{"/v1/admin/programs", "/v1/admin/promoters", "/v1/admin/links"} {
		f(p+"?limit=0", 422, "invalid")
		f(p+"?limit=1001", 422, "invalid")
		f(p+"?limit=x", 422, "invalid")
		f(p+"?cursor=%7Bnope%7D", 400, "malformed")
	}
	f("/v1/admin/links?cursor=abc", 400, "malformed")
	f("/v1/admin/links?program=a.b", 422, "invalid")
	f("/v1/admin/links?promoter=a%20b", 422, "invalid")
	if r := e.call("GET", "/v1/admin/links", sfTok, ""); r.status != 403 {
		t.Errorf("storefront token: %d", r.status)
	}
	if r := e.call("GET", "/v1/admin/programs?limit=1000", adminTok, ""); r.status != 200 {
		t.Errorf("limit 1000: %d %s", r.status, r.raw)
	}
}

func TestPatchLink(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	if r := e.call("POST", "/v1/admin/links", adminTok, `{"program":"shop","promoter":"alice","destination":"https://shop.example.com/a","code":"pl1"}`); r.status != 201 {
		t.Fatal(r.raw)
	}
	const path = "/v1/admin/links/pl1"
	get := e.call("GET", path, adminTok, "")
	if r := e.call("PATCH", path, adminTok, `{}`); r.status != 200 || r.raw != get.raw {
		t.Errorf("empty patch: %d %s, want %s", r.status, r.raw, get.raw)
	}
	r := e.call("PATCH", path, adminTok, `{"status":"paused","expires_at":"2026-12-31T23:59:59+08:00","expired_url":"https://www.example.org/ended","destination":"https://shop.example.com/b"}`)
	if r.status != 200 || r.body["status"] != "paused" || r.body["expires_at"] != "2026-12-31T15:59:59Z" ||
		r.body["expired_url"] != "https://www.example.org/ended" || r.body["destination"] != "https://shop.example.com/b" {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	if g := e.call("GET", path, adminTok, ""); g.raw != r.raw {
		t.Errorf("GET after PATCH: %s, want %s", g.raw, r.raw)
	}
	// Only what is given changes; null clears the expiry, "" the expired URL.
	r = e.call("PATCH", path, adminTok, `{"expires_at":null}`)
	if r.status != 200 || r.body["expires_at"] != nil || r.body["status"] != "paused" || r.body["expired_url"] != "https://www.example.org/ended" {
		t.Errorf("clear expiry: %d %s", r.status, r.raw)
	}
	r = e.call("PATCH", path, adminTok, `{"expired_url":"","status":"active"}`)
	if r.status != 200 || r.body["expired_url"] != "" || r.body["status"] != "active" || r.body["destination"] != "https://shop.example.com/b" {
		t.Errorf("clear expired_url: %d %s", r.status, r.raw)
	}

	f := func(name, body string, status int, code, inMessage string) {
		t.Helper()
		r := e.call("PATCH", path, adminTok, body)
		msg := fmt.Sprint(r.body["error"])
		if r.status != status || r.errCode() != code || !strings.Contains(msg, inMessage) {
			t.Errorf("%s: %d %s, want %d %s naming %q", name, r.status, r.raw, status, code, inMessage)
		}
	}
	f("ErrStatus", `{"status":"gone"}`, 422, "invalid", "status")
	f("ErrDestinationHost", `{"destination":"https://evil.com/"}`, 422, "invalid", "destination")
	f("ErrDestination", `{"destination":"javascript:alert(1)"}`, 422, "invalid", "destination")
	f("ErrExpiredURLHost", `{"expired_url":"https://evil.com/"}`, 422, "invalid", "expired_url")
	f("ErrExpiredURL", `{"expired_url":"ftp://shop.example.com/"}`, 422, "invalid", "expired_url")
	f("ErrExpiresAt", `{"expires_at":"tomorrow"}`, 422, "invalid", "expires_at")
	f("ErrExpiresAtNumber", `{"expires_at":1767225599}`, 422, "invalid", "expires_at")
	f("ErrStatusNull", `{"status":null}`, 422, "invalid", "status")
	f("ErrExpiredURLNull", `{"expired_url":null}`, 422, "invalid", "expired_url")
	f("ErrDestinationNullUpperCase", `{"Destination":null}`, 422, "invalid", "destination")
	f("ErrUnknownField", `{"code":"other"}`, 400, "malformed", "unknown field")
	f("ErrMalformed", `{"status":`, 400, "malformed", "")
	f("ErrEmptyBody", ``, 400, "malformed", "")
	if g := e.call("GET", path, adminTok, ""); g.raw != r.raw {
		t.Errorf("a refused PATCH changed the link: %s, want %s", g.raw, r.raw)
	}
	if r := e.call("PATCH", "/v1/admin/links/nope", adminTok, `{"status":"paused"}`); r.status != 404 || r.errCode() != "not_found" {
		t.Errorf("unknown: %d %s", r.status, r.raw)
	}
	if r := e.call("PATCH", "/v1/admin/links/nope", adminTok, `{}`); r.status != 404 {
		t.Errorf("unknown, empty patch: %d %s", r.status, r.raw)
	}
	e.call("DELETE", path, adminTok, "")
	if r := e.call("PATCH", path, adminTok, `{"status":"paused"}`); r.status != 404 {
		t.Errorf("deleted: %d %s", r.status, r.raw)
	}
	if r := e.call("PATCH", path, sfTok, `{"status":"paused"}`); r.status != 403 {
		t.Errorf("storefront token: %d %s", r.status, r.raw)
	}
}
