package cookie

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPromoterToken(t *testing.T) {
	old := mustSigner(t, "k1:0123456789abcdef0123")
	rotated := mustSigner(t, "k2:fedcba98765432100123", "k1:0123456789abcdef0123")
	issued := t0.Add(123456 * time.Microsecond)
	in := PromoterToken{Promoter: "alice@promo", Issued: issued, Expires: issued.Add(720 * time.Hour)}
	tok, err := old.SignPromoter(&in)
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string, s *Signer, tok string, now time.Time, want error) {
		t.Helper()
		var got PromoterToken
		err := s.VerifyPromoter([]byte(tok), now, &got)
		if !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", name, err, want)
			return
		}
		if err == nil && got != in {
			t.Errorf("%s: got %+v, want %+v", name, got, in)
		}
	}
	f("Valid", old, tok, t0, nil)
	f("ValidAfterRotation", rotated, tok, t0.Add(time.Hour), nil)
	f("Expired", old, tok, in.Expires, ErrExpired)
	f("UnknownKey", mustSigner(t, "k3:0123456789abcdef0123"), tok, t0, ErrInvalid)
	f("SameKeyOtherID", mustSigner(t, "k9:0123456789abcdef0123"), tok, t0, ErrInvalid)
	for i := range len(tok) {
		b := []byte(tok)
		b[i] ^= 1
		f("Changed", old, string(b), t0, ErrInvalid)
	}
	f("Truncated", old, tok[:len(tok)-1], t0, ErrInvalid)
	f("Empty", old, "", t0, ErrInvalid)

	// A token signed by the rotated set's first key verifies there only.
	tok2, err := rotated.SignPromoter(&in)
	if err != nil {
		t.Fatal(err)
	}
	f("NewKey", rotated, tok2, t0, nil)
	f("NewKeyUnknownToOld", old, tok2, t0, ErrInvalid)

	// Domain separation: an attribution token of the same key is no
	// promoter token, and a promoter token no attribution token.
	at := Token{Program: "shop", Promoter: "alice@promo", Issued: t0, Expires: t0.Add(time.Hour)}
	atok, err := old.AppendToken(nil, &at)
	if err != nil {
		t.Fatal(err)
	}
	f("AttributionToken", old, string(atok), t0, ErrInvalid)
	f("AttributionTokenRelabelled", old, "p"+string(atok), t0, ErrInvalid)
	var got Token
	if err := old.Verify([]byte(tok), t0, &got); !errors.Is(err, ErrInvalid) {
		t.Errorf("a promoter token verifies as an attribution token: %v", err)
	}
}

func TestSignPromoterRefuses(t *testing.T) {
	s := mustSigner(t, "k1:0123456789abcdef0123")
	for name, in := range map[string]PromoterToken{
		"NoPromoter":   {Issued: t0, Expires: t0.Add(time.Hour)},
		"LongID":       {Promoter: string(make([]byte, 256)), Issued: t0, Expires: t0.Add(time.Hour)},
		"NoLifetime":   {Promoter: "a", Issued: t0, Expires: t0},
		"ExpiresFirst": {Promoter: "a", Issued: t0, Expires: t0.Add(-time.Hour)},
	} {
		if tok, err := s.SignPromoter(&in); err == nil {
			t.Errorf("%s: signed %s", name, tok)
		}
	}
}

func FuzzVerifyPromoter(f *testing.F) {
	s := mustSigner(f, "k1:0123456789abcdef0123")
	in := PromoterToken{Promoter: "alice", Issued: t0, Expires: t0.Add(time.Hour)}
	tok, err := s.SignPromoter(&in)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("p1.k1..")
	f.Add("p1.k1.AA.AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		var got PromoterToken
		if err := s.VerifyPromoter([]byte(tok), t0, &got); err != nil {
			return
		}
		back, err := s.SignPromoter(&got)
		if err != nil {
			t.Fatalf("verified %+v does not sign again: %v", got, err)
		}
		if back != tok {
			t.Fatalf("round trip: %q became %q", tok, back)
		}
	})
}

func TestSeal(t *testing.T) {
	old := mustSigner(t, "k1:0123456789abcdef0123")
	rotated := mustSigner(t, "k2:fedcba98765432100123", "k1:0123456789abcdef0123")
	sealed := old.Seal("cursor", []byte("00000000001|alice@example.com"))
	if strings.Contains(sealed, "alice") {
		t.Fatalf("sealed text shows what it seals: %s", sealed)
	}
	for name, s := range map[string]*Signer{"SameKeys": old, "Rotated": rotated} {
		got, err := s.Open("cursor", sealed)
		if err != nil || string(got) != "00000000001|alice@example.com" {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	if again := old.Seal("cursor", []byte("00000000001|alice@example.com")); again == sealed {
		t.Error("two seals of one value are alike")
	}
	for name, in := range map[string]string{
		"OtherPurpose": "", "Changed": sealed[:len(sealed)-2] + "AA", "Empty": "", "NoKid": "s1..", "Garbage": "s1.k1.!!",
	} {
		purpose := "cursor"
		if name == "OtherPurpose" {
			purpose, in = "other", sealed
		}
		if got, err := old.Open(purpose, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: opened %q, %v", name, got, err)
		}
	}
	if _, err := mustSigner(t, "k3:0123456789abcdef0123").Open("cursor", sealed); !errors.Is(err, ErrInvalid) {
		t.Errorf("opened with an unknown key: %v", err)
	}
}
