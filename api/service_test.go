package api

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/store/embedded"
)

// newAdminService is a Service on a fresh embedded store holding program
// shop and promoter alice, called directly as the handlers call it.
func newAdminService(t *testing.T) *Service {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := new(clock.Clock)
	sv := &Service{Store: st, Hasher: attribution.NewFingerprintHasher([]byte("0123456789abcdef")), Now: c.Now,
		PublicURL: "https://go.example.com", Clock: c}
	ctx := context.Background()
	if _, err := sv.PutProgram(ctx, "shop", attribution.Program{CookieDays: 30, AllowedHosts: []string{"shop.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.PutPromoter(ctx, "alice", PromoterInput{Status: "active"}); err != nil {
		t.Fatal(err)
	}
	return sv
}

func TestServiceAdminErrors(t *testing.T) {
	sv := newAdminService(t)
	ctx := context.Background()
	if _, err := sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/", Code: "mine"}); err != nil {
		t.Fatal(err)
	}
	f := func(name string, err error, want string) {
		t.Helper()
		if got := errCode(err); got != want {
			t.Errorf("%s: %v (code %q), want code %q", name, err, got, want)
		}
	}
	_, err := sv.PutProgram(ctx, "shop", attribution.Program{ID: "other", CookieDays: 30, AllowedHosts: []string{"a.com"}})
	f("ErrProgramIDMismatch", err, attribution.EInvalid)
	_, err = sv.GetProgram(ctx, "none")
	f("ErrProgramNotFound", err, attribution.ENotFound)
	_, err = sv.PutPromoter(ctx, "bob", PromoterInput{Status: "gone"})
	f("ErrPromoterStatus", err, attribution.EInvalid)
	_, err = sv.PutPromoter(ctx, "bob", PromoterInput{Status: "active", Fingerprints: &attribution.Fingerprints{IPs: []string{"not an ip"}}})
	f("ErrPromoterFingerprint", err, attribution.EInvalid)
	_, err = sv.GetPromoter(ctx, "bob")
	f("ErrPromoterNotFound", err, attribution.ENotFound)
	_, err = sv.CreateLink(ctx, LinkInput{Program: "none", Promoter: "alice", Destination: "https://shop.example.com/"})
	f("ErrLinkUnknownProgram", err, attribution.EInvalid)
	_, err = sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "nobody", Destination: "https://shop.example.com/"})
	f("ErrLinkUnknownPromoter", err, attribution.EInvalid)
	_, err = sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "alice", Destination: "https://evil.com/"})
	f("ErrLinkHostNotAllowed", err, attribution.EInvalid)
	_, err = sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/", Code: "a/b"})
	f("ErrLinkBadCode", err, attribution.EInvalid)
	_, err = sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "alice", Destination: "https://shop.example.com/", Code: "mine"})
	f("ErrLinkTaken", err, attribution.EConflict)
	_, err = sv.GetLink(ctx, "nope")
	f("ErrLinkNotFound", err, attribution.ENotFound)
	f("ErrLinkDeleteNotFound", sv.DeleteLink(ctx, "nope"), attribution.ENotFound)
	_, err = sv.MoveClock(ClockInput{})
	f("ErrClockNeither", err, attribution.EInvalid)
	_, err = sv.MoveClock(ClockInput{Set: "2027-01-01T00:00:00Z", Advance: "1h"})
	f("ErrClockBoth", err, attribution.EInvalid)
	_, err = (&Service{}).MoveClock(ClockInput{Advance: "1h"})
	f("ErrNoClock", err, attribution.ENotFound)
	_, err = sv.Refund(ctx, "has{brace}", "r1", 1)
	f("ErrRefundBadOrder", err, attribution.ENotFound)
	_, err = sv.Convert(ctx, ConversionInput{Program: "shop", Order: "o1", Customer: "c1", Amount: -1})
	f("ErrConversionAmount", err, attribution.EInvalid)
	_, err = sv.Bind(ctx, BindInput{Program: "shop", Customer: "c1", Event: "visit"})
	f("ErrBindEvent", err, attribution.EInvalid)
	_, err = sv.PutCustomer(ctx, "has space", attribution.CustomerInfo{})
	f("ErrCustomerID", err, attribution.EInvalid)
}

func TestServiceLinks(t *testing.T) {
	sv := newAdminService(t)
	ctx := context.Background()
	l, err := sv.CreateLink(ctx, LinkInput{Program: "shop", Promoter: "alice", Destination: "https://SHOP.example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if !attribution.ValidCode(l.Code) || len(l.Code) != codeLen || l.URL != "https://go.example.com/r/"+l.Code ||
		l.Destination != "https://shop.example.com/x" {
		t.Errorf("created %+v", l)
	}
	got, err := sv.GetLink(ctx, l.Code)
	if err != nil || got.Code != l.Code || got.Program != "shop" || got.Promoter != "alice" {
		t.Errorf("GetLink: %+v, %v", got, err)
	}
	if err := sv.DeleteLink(ctx, l.Code); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.GetLink(ctx, l.Code); errCode(err) != attribution.ENotFound {
		t.Errorf("GetLink after DeleteLink: %v", err)
	}
}

func TestServicePromoterKeepsFingerprints(t *testing.T) {
	sv := newAdminService(t)
	ctx := context.Background()
	p, err := sv.PutPromoter(ctx, "pat", PromoterInput{Status: "active", Fingerprints: &attribution.Fingerprints{Emails: []string{"pat@example.com"}}})
	if err != nil || p.Fingerprints != 1 {
		t.Fatalf("put with fingerprints: %+v, %v", p, err)
	}
	if p, err = sv.PutPromoter(ctx, "pat", PromoterInput{Status: "active", Tier: 1}); err != nil || p.Fingerprints != 1 || p.Tier != 1 {
		t.Errorf("tier update: %+v, %v", p, err)
	}
	if p, err = sv.PutPromoter(ctx, "pat", PromoterInput{Status: "active", Fingerprints: &attribution.Fingerprints{}}); err != nil || p.Fingerprints != 0 {
		t.Errorf("put with no fingerprints listed: %+v, %v", p, err)
	}
}

func TestServiceExplainEmpty(t *testing.T) {
	sv := newAdminService(t)
	a, err := sv.Explain(context.Background(), "shop", "c1")
	if err != nil || a.Decisions == nil || len(a.Decisions) != 0 {
		t.Errorf("Explain of an unknown customer: %+v, %v", a, err)
	}
}

func TestServiceMoveClock(t *testing.T) {
	sv := newAdminService(t)
	want := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	now, err := sv.MoveClock(ClockInput{Set: want.Format(time.RFC3339)})
	if err != nil || now.Before(want) || now.Sub(want) > time.Minute {
		t.Fatalf("set: %v, %v", now, err)
	}
	if now, err = sv.MoveClock(ClockInput{Advance: "720h"}); err != nil || now.Before(want.Add(720*time.Hour)) {
		t.Errorf("advance: %v, %v", now, err)
	}
	if d := sv.Now().Sub(now); d < 0 || d > time.Minute {
		t.Errorf("Now reads %v after the clock moved to %v", sv.Now(), now)
	}
}

// TestEraseCustomerLogged: an erasure is logged (there is no event type for
// it) with the customer's alias and what went, never the id.
func TestEraseCustomerLogged(t *testing.T) {
	sv := newAdminService(t)
	var logs strings.Builder
	sv.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	if _, err := sv.PutCustomer(ctx, "cust-7", attribution.CustomerInfo{Paid: true}); err != nil {
		t.Fatal(err)
	}
	if err := sv.EraseCustomer(ctx, "cust-7"); err != nil {
		t.Fatal(err)
	}
	line := logs.String()
	if !strings.Contains(line, "customer erased") || !strings.Contains(line, "alias="+sv.Hasher.CustomerAlias("cust-7")) ||
		!strings.Contains(line, "record=true") || strings.Contains(line, "cust-7") {
		t.Errorf("log: %s", line)
	}
	if err := sv.EraseCustomer(ctx, "a b"); errCode(err) != attribution.EInvalid {
		t.Errorf("a bad id: %v", err)
	}
	if err := sv.EraseCustomer(ctx, sv.Hasher.CustomerAlias("cust-7")); errCode(err) != attribution.EInvalid {
		t.Errorf("an alias: %v", err)
	}
}
