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
	a := hashed(Fingerprints{Emails: []string{" Bob@Example.com "}, Phones: []string{"+86 138-0000-0000"},
		IPs: []string{"::ffff:203.0.113.9"}, IDNumbers: []string{"11010519491231002x"}, Devices: []string{" dev-1 "}})
	b := hashed(Fingerprints{Emails: []string{"bob@example.com"}, Phones: []string{"13800000000"},
		IPs: []string{"203.0.113.9"}, IDNumbers: []string{"11010519491231002X"}, Devices: []string{"dev-1"}})
	if len(a) != 5 || strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("normalised fingerprints differ:\n%v\n%v", a, b)
	}
	for _, kind := range []Fingerprints{{Emails: []string{"BOB@example.com"}}, {Phones: []string{"86 138 0000 0000"}},
		{Phones: []string{"008613800000000"}}, {IPs: []string{"203.0.113.9"}}, {IDNumbers: []string{"110105 19491231 002X"}},
		{Devices: []string{"dev-1"}}} {
		if !hashed(kind).Shares(a) {
			t.Errorf("%+v not found in %v", kind, a)
		}
	}
	if hashed(Fingerprints{Emails: []string{"other@example.com"}, Phones: []string{"13800000001"}, IPs: []string{"203.0.113.10"}}).Shares(a) {
		t.Error("unrelated fingerprints share")
	}
	other := NewFingerprintHasher([]byte("another-key-0123"))
	if o, _ := other.Hash(Fingerprints{Emails: []string{"bob@example.com"}}); o.Shares(a) {
		t.Error("hashes must depend on the key")
	}
	if !a.Has(h.IP("203.0.113.9")) || h.IP("not an ip") != "" {
		t.Error("IP helper")
	}
}

func TestNormalize(t *testing.T) {
	f := func(norm func(string) string, in, want string) {
		t.Helper()
		if got := norm(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
		if want != "" && norm(want) != want {
			t.Errorf("%q is not a fixed point: %q", want, norm(want))
		}
	}
	cn := func(s string) string { return NormalizePhone(s, "CN") }
	us := func(s string) string { return NormalizePhone(s, "US") }
	f(cn, "+86 138-0000-0001", "+8613800000001")
	f(cn, "008613800000001", "+8613800000001")
	f(cn, "13800000001", "+8613800000001")
	f(cn, " (+86) 138 0000 0001 ", "+8613800000001")
	f(cn, "010 1234 5678", "+861012345678") // a Beijing landline, trunk prefix dropped
	f(cn, "+1 650-253-0000", "+16502530000")
	f(us, "(650) 253-0000", "+16502530000")
	f(us, "0044 20 7946 0000", "+442079460000") // "00" is international in every region
	f(us, "13800000001", "+13800000001")        // read as +1: only the length is checked, not the prefix
	f(cn, "", "")
	f(cn, "  ", "")
	f(cn, "phone", "")
	f(cn, "+-", "")
	f(cn, "1", "")
	f(cn, "+999 1234 5678", "") // no such country code

	f(NormalizeEmail, " Bob@Example.COM ", "bob@example.com")
	f(NormalizeEmail, "a+tag@b.c", "a+tag@b.c")
	f(NormalizeEmail, "bob", "")
	f(NormalizeEmail, "@example.com", "")
	f(NormalizeEmail, "bob@", "")
	f(NormalizeEmail, "a@b@c", "")
	f(NormalizeEmail, "bob smith@example.com", "")
	f(NormalizeEmail, "bob@exa\tmple.com", "")

	f(NormalizeIP, " 203.0.113.9 ", "203.0.113.9")
	f(NormalizeIP, "::ffff:203.0.113.9", "203.0.113.9")
	f(NormalizeIP, "2001:DB8::0:1", "2001:db8::1")
	f(NormalizeIP, "fe80::1%eth0", "fe80::1")
	f(NormalizeIP, "999.1.1.1", "")
	f(NormalizeIP, "203.0.113.9/24", "")
	f(NormalizeIP, "", "")

	f(NormalizeIDNumber, " 110105 19491231 002x ", "11010519491231002X")
	f(NormalizeIDNumber, " \t", "")
	f(NormalizeDevice, " dev-1 ", "dev-1")
	f(NormalizeDevice, "  ", "")
}

func TestPhoneRegion(t *testing.T) {
	key := []byte("0123456789abcdef")
	us, err := NewFingerprintHasherWithRegion(key, "us")
	if err != nil {
		t.Fatal(err)
	}
	cn, _ := NewFingerprintHasherWithRegion(key, "")
	n := Fingerprints{Phones: []string{"650 253 0000"}}
	if a, b := hashed(Fingerprints{Phones: []string{"+1 650 253 0000"}}), must(us.Hash(n)); !a.Shares(b) {
		t.Error("a national number must be read as the hasher's region's")
	}
	if a, b := must(us.Hash(n)), must(cn.Hash(n)); a.Shares(b) {
		t.Error(`"650 253 0000" in CN is another number`)
	}
	for _, r := range []string{"XX", "ZZ", "China", "001"} {
		if ValidPhoneRegion(r) {
			t.Errorf("%q is valid", r)
		}
		if _, err := NewFingerprintHasherWithRegion(key, r); err == nil {
			t.Errorf("%q accepted", r)
		}
	}
	for _, r := range []string{"CN", "cn", "US", "GB", "HK"} {
		if !ValidPhoneRegion(r) {
			t.Errorf("%q is not valid", r)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestHashInvalid(t *testing.T) {
	f := func(fp Fingerprints, want string) {
		t.Helper()
		set, err := hasher.Hash(fp)
		e, _ := err.(*Error)
		if e == nil || e.Code != EInvalid || e.Message != want || set != nil {
			t.Errorf("%+v: %v %v, want EInvalid %s", fp, set, err, want)
		}
	}
	f(Fingerprints{IPs: []string{"203.0.113.9", "999.1.1.1"}}, `fingerprints.ips[1]: "999.1.1.1" is not an IP address`)
	f(Fingerprints{IPs: []string{""}}, `fingerprints.ips[0]: "" is not an IP address`)
	f(Fingerprints{Phones: []string{"13800000001", "call me"}}, `fingerprints.phones[1]: "call me" is not a phone number`)
	f(Fingerprints{Phones: []string{"1"}}, `fingerprints.phones[0]: "1" is not a phone number`)
	f(Fingerprints{Emails: []string{"bob"}}, `fingerprints.emails[0]: "bob" is not an e-mail address`)
	f(Fingerprints{IDNumbers: []string{" "}}, `fingerprints.id_numbers[0]: " " is empty`)
	f(Fingerprints{Devices: []string{"d", ""}}, `fingerprints.devices[1]: "" is empty`)
	if set, err := hasher.Hash(Fingerprints{}); err != nil || set != nil {
		t.Errorf("no fingerprints: %v %v", set, err)
	}
}

// FuzzFingerprints: whatever a normaliser accepts normalises to itself again
// and hashes without error; nothing panics.
func FuzzFingerprints(f *testing.F) {
	for _, s := range []string{"+86 138-0000-0001", "008613800000001", "13800000001", "tel:+1-650-253-0000;ext=12",
		"1-800-FLOWERS", "+", "00", "+44 (0) 20 7946 0000", "Bob@Example.com", "a@b@c", "::ffff:1.2.3.4", "fe80::1%eth0",
		" 1101 05x ", "１３８００００００01"} {
		f.Add(s, "CN")
	}
	f.Add("(650) 253-0000", "US")
	f.Fuzz(func(t *testing.T, s, region string) {
		if !ValidPhoneRegion(region) {
			region = DefaultPhoneRegion
		}
		h, err := NewFingerprintHasherWithRegion([]byte("0123456789abcdef"), region)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []struct {
			norm func(string) string
			fp   func(string) Fingerprints
		}{
			{NormalizeIP, func(s string) Fingerprints { return Fingerprints{IPs: []string{s}} }},
			{func(s string) string { return NormalizePhone(s, region) }, func(s string) Fingerprints { return Fingerprints{Phones: []string{s}} }},
			{NormalizeEmail, func(s string) Fingerprints { return Fingerprints{Emails: []string{s}} }},
			{NormalizeIDNumber, func(s string) Fingerprints { return Fingerprints{IDNumbers: []string{s}} }},
			{NormalizeDevice, func(s string) Fingerprints { return Fingerprints{Devices: []string{s}} }},
		} {
			n := k.norm(s)
			set, err := h.Hash(k.fp(s))
			if (n == "") != (err != nil) {
				t.Fatalf("%q normalises to %q but Hash says %v", s, n, err)
			}
			if n == "" {
				continue
			}
			if again := k.norm(n); again != n {
				t.Fatalf("%q → %q → %q", s, n, again)
			}
			if same, err := h.Hash(k.fp(n)); err != nil || len(set) != 1 || !same.Shares(set) {
				t.Fatalf("%q and its normal form %q hash apart: %v %v %v", s, n, set, same, err)
			}
		}
	})
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

func TestKeepUntil(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	f := func(name string, c Customer, want time.Time, wantForever bool) {
		t.Run(name, func(t *testing.T) {
			got, forever := c.KeepUntil(now)
			if forever != wantForever || !got.Equal(want) {
				t.Errorf("KeepUntil = %v, %v; want %v, %v", got, forever, want, wantForever)
			}
		})
	}
	assoc := func(d time.Duration) *ProgramState {
		return &ProgramState{Assoc: &Association{Promoter: "a", Kind: Protected, Since: now, ExpiresAt: now.Add(d)}}
	}
	f("Forever/Paid", Customer{Paid: true}, time.Time{}, true)
	f("Forever/AgentServed", Customer{AgentServed: true}, time.Time{}, true)
	f("Forever/CapUsed", Customer{Programs: map[string]*ProgramState{"p": {CapUsed: 1}}}, time.Time{}, true)
	f("FingerprintsOnly", Customer{Fingerprints: FingerprintSet{"x"}}, now, false)
	f("LatestAssociation", Customer{Programs: map[string]*ProgramState{"p": assoc(30 * day), "q": assoc(90 * day)}}, now.Add(90*day), false)
	f("ExpiredAssociation", Customer{Programs: map[string]*ProgramState{"p": assoc(-day)}}, now, false)
	f("RememberedWrite", Customer{Applied: []Applied{{Op: "x", At: now}}}, now.Add(ReplayWindow), false)
}
