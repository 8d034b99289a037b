package attribution

import (
	"strings"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	f := func(s string, want Rate) {
		t.Helper()
		got, err := ParseRate(s)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", s, got, err, want)
		}
		if back, _ := ParseRate(got.String()); back != got {
			t.Errorf("%q does not round-trip: %s", s, got)
		}
	}
	f("0.29", 290000)
	f("0.3", 300000)
	f("1", 1000000)
	f("0.000001", 1)
	f("0.025", 25000)
	f("0", 0)
	for _, bad := range []string{"", ".5", "1.", "0.1234567", "1e-2", "abc", "0.2.1", "+0.1", "1234567"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	if got := Rate(290000).Apply(10000); got != 2900 {
		t.Errorf("10000 × 0.29 = %d, want 2900", got)
	}
	if got := Rate(250000).Apply(3); got != 1 { // 0.75 rounds half up to 1
		t.Errorf("3 × 0.25 = %d, want 1", got)
	}
	if got := Rate(500000).Apply(1); got != 1 { // 0.5 rounds up
		t.Errorf("1 × 0.5 = %d, want 1", got)
	}
	if got := Rate(300000).Apply(1); got != 0 { // 0.3 rounds down
		t.Errorf("1 × 0.3 = %d, want 0", got)
	}
}

func TestProgramValidate(t *testing.T) {
	base := func() Program {
		return Program{ID: "tencent", CookieDays: 30, AllowedHosts: []string{"cloud.example.com"}}
	}
	ok := base()
	ok.Normalize()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.ClickModel != LastClick || ok.ProtectDays != 30 || ok.AssociateDays != 30 || ok.FirstPurchaseScope != ScopeAccount {
		t.Errorf("defaults: %+v", ok)
	}
	f := func(name string, mod func(*Program)) {
		t.Helper()
		p := base()
		mod(&p)
		p.Normalize()
		if err := p.Validate(); err == nil {
			t.Errorf("%s accepted", name)
		} else if e, _ := err.(*Error); e == nil || e.Code != EInvalid {
			t.Errorf("%s: error %v is not EInvalid", name, err)
		}
	}
	f("ErrCookieDays0", func(p *Program) { p.CookieDays = 0 })
	f("ErrCookieDays366", func(p *Program) { p.CookieDays = 366 })
	f("ErrClickModel", func(p *Program) { p.ClickModel = "random" })
	f("ErrScope", func(p *Program) { p.FirstPurchaseScope = "lifetime" })
	f("ErrNoHosts", func(p *Program) { p.AllowedHosts = nil })
	f("ErrHost", func(p *Program) { p.AllowedHosts = []string{"a/b"} })
	f("ErrDotOnly", func(p *Program) { p.AllowedHosts = []string{"."} })
	f("ErrRate", func(p *Program) { p.Rates.Standard = 2 * RateScale })
	f("ErrTier", func(p *Program) { p.TierBonus = []Rate{-1} })
	f("ErrCap", func(p *Program) { p.CustomerCap = -1 })
	f("ErrID", func(p *Program) { p.ID = "a{b}" })
	f("ErrProtect", func(p *Program) { p.ProtectDays = 400 })
	for _, d := range []int{1, 7, 30, 90, 365} {
		p := base()
		p.CookieDays = d
		p.Normalize()
		if err := p.Validate(); err != nil || p.CookieTTL() != time.Duration(d)*24*time.Hour {
			t.Errorf("cookie_days %d: %v", d, err)
		}
	}
}

func TestAllowsHost(t *testing.T) {
	p := Program{AllowedHosts: []string{"cloud.example.com", ".example.org", "Bücher.example"}}
	p.Normalize()
	f := func(host string, want bool) {
		t.Helper()
		if got := p.AllowsHost(host); got != want {
			t.Errorf("AllowsHost(%q) = %v, want %v", host, got, want)
		}
	}
	f("cloud.example.com", true)
	f("www.cloud.example.com", false)
	f("example.com", false)
	f("example.org", true)
	f("a.b.example.org", true)
	f("evilexample.org", false)
	f("example.org.evil.com", false)
	f("xn--bcher-kva.example", true)
}

func TestParseDestination(t *testing.T) {
	f := func(raw, want, host string) {
		t.Helper()
		u, h, err := ParseDestination(raw)
		if want == "" {
			if err == nil {
				t.Errorf("ParseDestination(%q) = %s, want an error", raw, u)
			}
			return
		}
		if err != nil {
			t.Errorf("ParseDestination(%q): %v", raw, err)
			return
		}
		if u.String() != want || h != host {
			t.Errorf("ParseDestination(%q) = %s %s, want %s %s", raw, u, h, want, host)
		}
	}
	f("https://Cloud.Example.com/a?b=1#c", "https://cloud.example.com/a?b=1#c", "cloud.example.com")
	f("http://example.com:8443/", "http://example.com:8443/", "example.com")
	f("https://bücher.example/", "https://xn--bcher-kva.example/", "xn--bcher-kva.example")
	f("https://[2001:db8::1]:443/x", "https://[2001:db8::1]:443/x", "2001:db8::1")
	f("https://192.0.2.1/", "https://192.0.2.1/", "192.0.2.1")
	f("HTTPS://example.com/", "https://example.com/", "example.com")
	f("", "", "")
	f("javascript:alert(1)", "", "")
	f("data:text/html,x", "", "")
	f("//example.com/", "", "")
	f("/relative", "", "")
	f("https:example.com", "", "")
	f("https:/example.com", "", "")
	f("https://user:pw@example.com/", "", "")
	f("https://example.com@evil.com/", "", "")
	f(`https://example.com\@evil.com/`, "", "")
	f(`https:\\evil.com`, "", "")
	f("https://exa mple.com/", "", "")
	f("https://example.com/\r\nSet-Cookie: a=b", "", "")
	f("https://example.com/\t", "", "")
	f("https://ex%61mple.com/", "", "")
	f("https://example.com./", "", "")
	f("https://example.com:99999/", "", "")
	f("https://example.com:/", "", "")
	f("ftp://example.com/", "", "")
	f("https:///path", "", "")
	f("https://"+strings.Repeat("a", 4100)+".com/", "", "")
}

// FuzzParseDestination: no panic; whatever is accepted is canonical (parsing
// the result again gives the same URL and host), is http(s), has no user
// info, no backslash, no control character, and its host is the one
// AllowsHost is asked about.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"https://cloud.example.com/a?b=1#c", "http://[::1]:80/", "https://bücher.example/",
		`https://a.com\@b.com`, "https://a.com@b.com", "javascript:x", "https://a.com/%0d%0a", "HTTP://A.COM"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, host, err := ParseDestination(raw)
		if err != nil {
			return
		}
		s := u.String()
		if u.User != nil || (u.Scheme != "http" && u.Scheme != "https") || strings.ContainsAny(s, "\\\r\n\t ") {
			t.Fatalf("accepted %q as %q", raw, s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				t.Fatalf("control character in %q", s)
			}
		}
		u2, host2, err := ParseDestination(s)
		if err != nil || u2.String() != s || host2 != host {
			t.Fatalf("%q → %q (%s) → %v %v %s", raw, s, host, u2, err, host2)
		}
		if u.Hostname() != host {
			t.Fatalf("%q: host %q but URL host %q", raw, host, u.Hostname())
		}
	})
}

func FuzzValidCode(f *testing.F) {
	f.Add("abc123")
	f.Add("a/b")
	f.Add("{x}")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidCode(s) {
			return
		}
		if len(s) < MinCodeLen || len(s) > MaxCodeLen || strings.ContainsAny(s, "/?#%{}. \r\n") {
			t.Fatalf("ValidCode(%q)", s)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	f.Add("0.29")
	f.Add("1")
	f.Add("-0.5")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("%q → %d → %q → %d %v", s, r, r.String(), back, err)
		}
	})
}

func TestFingerprints(t *testing.T) {
	h := NewFingerprintHasher([]byte("0123456789abcdef"))
	a := h.Hash(Fingerprints{Emails: []string{" Bob@Example.com "}, Phones: []string{"+86 138-0000-0000"},
		IPs: []string{"::ffff:203.0.113.9"}, IDNumbers: []string{"11010519491231002x"}, Devices: []string{" dev-1 "}})
	b := h.Hash(Fingerprints{Emails: []string{"bob@example.com"}, Phones: []string{"8613800000000"},
		IPs: []string{"203.0.113.9"}, IDNumbers: []string{"11010519491231002X"}, Devices: []string{"dev-1"}})
	if len(a) != 5 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("normalised fingerprints differ:\n%v\n%v", a, b)
	}
	for _, kind := range []Fingerprints{{Emails: []string{"BOB@example.com"}}, {Phones: []string{"86 138 0000 0000"}},
		{IPs: []string{"203.0.113.9"}}, {IDNumbers: []string{"110105 19491231 002X"}}, {Devices: []string{"dev-1"}}} {
		if !h.Hash(kind).Shares(a) {
			t.Errorf("%+v not found in %v", kind, a)
		}
	}
	if h.Hash(Fingerprints{Emails: []string{"other@example.com"}, Phones: []string{"  "}, IPs: []string{"nope"}}).Shares(a) {
		t.Error("unrelated fingerprints share")
	}
	other := NewFingerprintHasher([]byte("another-key-0123"))
	if other.Hash(Fingerprints{Emails: []string{"bob@example.com"}}).Shares(a) {
		t.Error("hashes must depend on the key")
	}
	if !a.Has(h.IP("203.0.113.9")) || h.IP("not an ip") != "" {
		t.Error("IP helper")
	}
}

func TestClickReplaces(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old := &Click{At: t0, ExpiresAt: t0.Add(7 * 24 * time.Hour)}
	f := func(model ClickModel, at time.Time, existing *Click, want bool) {
		t.Helper()
		c := &Click{At: at, Model: model}
		if got := c.Replaces(existing); got != want {
			t.Errorf("%s at %v: got %v, want %v", model, at, got, want)
		}
	}
	f(LastClick, t0.Add(time.Hour), old, true)
	f(FirstClick, t0.Add(time.Hour), old, false)
	f(FirstClick, t0.Add(7*24*time.Hour-time.Second), old, false)
	f(FirstClick, t0.Add(7*24*time.Hour), old, true)
	f(FirstClick, t0, nil, true)
}
