package cookie

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func mustSigner(t testing.TB, keys ...string) *Signer {
	t.Helper()
	ks, err := ParseKeys(strings.Join(keys, ","))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(ks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample() Token {
	return Token{Program: "tencent", Promoter: "p-1", Link: "Ab3xYz90Qw", Click: "AZqS7k0AAAB3n1Kc2q9l8A",
		Visitor: "vQ1x2v3b4n5m6k7j8h9g0f", Issued: t0, Expires: t0.Add(30 * 24 * time.Hour)}
}

func TestRoundTrip(t *testing.T) {
	s := mustSigner(t, "k1:0123456789abcdef0123")
	in := sample()
	tok, err := s.AppendToken(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > 160 {
		t.Errorf("token is %d bytes, want a compact one: %s", len(tok), tok)
	}
	for _, c := range tok {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			t.Fatalf("token %s holds %q, not URL-safe", tok, c)
		}
	}
	var out Token
	if err := s.Verify(tok, t0.Add(time.Hour), &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("got %+v, want %+v", out, in)
	}
}

func TestExpiry(t *testing.T) {
	s := mustSigner(t, "k1:0123456789abcdef0123")
	in := sample()
	tok, _ := s.AppendToken(nil, &in)
	var out Token
	f := func(now time.Time, want error) {
		t.Helper()
		if err := s.Verify(tok, now, &out); !errors.Is(err, want) {
			t.Errorf("at %v: got %v, want %v", now, err, want)
		}
	}
	f(in.Expires.Add(-time.Second), nil)
	f(in.Expires, ErrExpired)
	f(in.Expires.Add(time.Hour), ErrExpired)
}

func TestTamperAnyByte(t *testing.T) {
	s := mustSigner(t, "k1:0123456789abcdef0123")
	in := sample()
	tok, _ := s.AppendToken(nil, &in)
	var out Token
	for i := range tok {
		for _, c := range []byte("019AZaz-_.") {
			if c == tok[i] {
				continue
			}
			bad := append([]byte(nil), tok...)
			bad[i] = c
			if err := s.Verify(bad, t0, &out); err == nil {
				t.Fatalf("changing byte %d to %q still verifies: %s", i, c, bad)
			}
		}
	}
	for n := 0; n < len(tok); n++ {
		if err := s.Verify(tok[:n], t0, &out); err == nil {
			t.Fatalf("truncated to %d bytes still verifies", n)
		}
	}
	if err := s.Verify(append(append([]byte(nil), tok...), 'A'), t0, &out); err == nil {
		t.Fatal("appended byte still verifies")
	}
}

func TestRotation(t *testing.T) {
	old := mustSigner(t, "old:0123456789abcdef0123")
	rotated := mustSigner(t, "new:fedcba9876543210fedc", "old:0123456789abcdef0123")
	retired := mustSigner(t, "new:fedcba9876543210fedc")
	in := sample()
	oldTok, _ := old.AppendToken(nil, &in)
	newTok, _ := rotated.AppendToken(nil, &in)
	var out Token
	if err := rotated.Verify(oldTok, t0, &out); err != nil {
		t.Errorf("ValidOld: a token of the second key must verify: %v", err)
	}
	if !strings.HasPrefix(string(newTok), "1.new.") {
		t.Errorf("SignsWithFirst: got %s", newTok)
	}
	if err := retired.Verify(oldTok, t0, &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("ErrInvalid: a retired key's token must fail, got %v", err)
	}
	if err := old.Verify(newTok, t0, &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("ErrInvalid: unknown kid, got %v", err)
	}
	// The same kid with another secret is a different key.
	forged := mustSigner(t, "old:xxxxxxxxxxxxxxxxxxxxxx")
	fTok, _ := forged.AppendToken(nil, &in)
	if err := old.Verify(fTok, t0, &out); !errors.Is(err, ErrInvalid) {
		t.Errorf("ErrInvalid: forged secret, got %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	for _, bad := range []string{"", "k1", "k1:short", "k 1:0123456789abcdef", "toolongkeyid12345:0123456789abcdef", ","} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
	if _, err := NewSigner([]Key{{"a", []byte("0123456789abcdef")}, {"a", []byte("0123456789abcdef")}}); err == nil {
		t.Error("duplicate kid accepted")
	}
	ks, err := ParseKeys(" a:0123456789abcdef , b:0123456789abcdeX:with-colon")
	if err != nil || len(ks) != 2 || string(ks[1].Secret) != "0123456789abcdeX:with-colon" {
		t.Errorf("got %v %v", ks, err)
	}
}

func TestIDs(t *testing.T) {
	v := AppendVisitorID(nil)
	if !ValidVisitorID(v) || len(v) != VisitorIDLen {
		t.Fatalf("visitor id %q", v)
	}
	if string(AppendVisitorID(nil)) == string(v) {
		t.Fatal("visitor ids repeat")
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 21) + "B", strings.Repeat("!", 22), strings.Repeat("A", 23)} {
		if ValidVisitorID([]byte(bad)) {
			t.Errorf("ValidVisitorID(%q)", bad)
		}
	}
	a, b := AppendClickID(nil, t0), AppendClickID(nil, t0)
	if len(a) != 22 || string(a) == string(b) {
		t.Fatalf("click ids %s %s", a, b)
	}
}

// FuzzVerify feeds arbitrary bytes to the decoder: it must never panic, and
// whatever verifies must re-encode to exactly the same bytes (so no two
// spellings of one token exist).
func FuzzVerify(f *testing.F) {
	s := mustSigner(f, "k1:0123456789abcdef0123", "k2:0123456789abcdef0124")
	in := sample()
	tok, _ := s.AppendToken(nil, &in)
	f.Add(tok)
	f.Add([]byte("1.k1.AAAA.AAAA"))
	f.Add([]byte("1..."))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out Token
		err := s.Verify(b, t0, &out)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		again, err := s.AppendToken(nil, &out)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(b) {
			t.Fatalf("verified %q but re-encodes as %q", b, again)
		}
	})
}
