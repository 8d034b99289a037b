package api

import (
	"crypto/rand"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

func (s *Server) putProgram(ctx *fasthttp.RequestCtx, id string) {
	var p attribution.Program
	if err := decode(ctx, &p); err != nil {
		s.fail(ctx, err)
		return
	}
	if p.ID != "" && p.ID != id {
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, "body id %s does not match the path's %s", p.ID, id))
		return
	}
	p.ID = id
	p.Normalize()
	if err := p.Validate(); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	if err := s.cfg.Store.PutProgram(c, &p); err != nil {
		s.fail(ctx, err)
		return
	}
	s.Invalidate(store.Invalidation{Kind: store.Program, ID: p.ID})
	s.reply(ctx, 200, &p)
}

func (s *Server) getProgram(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.cfg.Store.Program(c, id)
	if err != nil {
		s.fail(ctx, orNotFound(err, "no program "+id))
		return
	}
	s.reply(ctx, 200, p)
}

// orNotFound turns store.ErrNotFound into a 404 with msg.
func orNotFound(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return attribution.Errorf(attribution.ENotFound, "%s", msg)
	}
	return err
}

type promoterIn struct {
	Status       string                    `json:"status"`
	Tier         int                       `json:"tier"`
	Fingerprints *attribution.Fingerprints `json:"fingerprints"` // nil: keep the stored ones
}

// promoterOut is a promoter as the API shows it: fingerprints are never
// echoed, only how many are kept.
type promoterOut struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Tier         int    `json:"tier"`
	Fingerprints int    `json:"fingerprints"`
}

func (s *Server) putPromoter(ctx *fasthttp.RequestCtx, id string) {
	var in promoterIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	p := attribution.Promoter{ID: id, Status: in.Status, Tier: in.Tier}
	if err := p.Validate(); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	if in.Fingerprints != nil {
		fp, err := s.cfg.Hasher.Hash(*in.Fingerprints)
		if err != nil {
			s.fail(ctx, err)
			return
		}
		p.Fingerprints = fp
	} else {
		// A PUT without fingerprints (a monthly tier update, say) must not
		// erase the self-referral data.
		old, err := s.cfg.Store.Promoter(c, id)
		switch {
		case err == nil:
			p.Fingerprints = old.Fingerprints
		case !errors.Is(err, store.ErrNotFound):
			s.fail(ctx, err)
			return
		}
	}
	if err := s.cfg.Store.PutPromoter(c, &p); err != nil {
		s.fail(ctx, err)
		return
	}
	s.Invalidate(store.Invalidation{Kind: store.Promoter, ID: p.ID})
	s.reply(ctx, 200, promoterOut{p.ID, p.Status, p.Tier, len(p.Fingerprints)})
}

func (s *Server) getPromoter(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.cfg.Store.Promoter(c, id)
	if err != nil {
		s.fail(ctx, orNotFound(err, "no promoter "+id))
		return
	}
	s.reply(ctx, 200, promoterOut{p.ID, p.Status, p.Tier, len(p.Fingerprints)})
}

type linkIn struct {
	Program     string `json:"program"`
	Promoter    string `json:"promoter"`
	Destination string `json:"destination"`
	Code        string `json:"code"`
}

type linkOut struct {
	Code        string                        `json:"code"`
	URL         string                        `json:"url"`
	Program     string                        `json:"program"`
	Promoter    string                        `json:"promoter"`
	Destination string                        `json:"destination"`
	CreatedAt   time.Time                     `json:"created_at"`
	Clicks      map[attribution.Outcome]int64 `json:"clicks,omitempty"`
}

func (s *Server) linkOut(l *attribution.Link) *linkOut {
	return &linkOut{Code: l.Code, URL: s.cfg.PublicURL + "/r/" + l.Code, Program: l.Program,
		Promoter: l.Promoter, Destination: l.Destination, CreatedAt: l.CreatedAt}
}

// Generated codes: 10 characters of [A-Za-z0-9], about 59.5 random bits,
// so that codes cannot be enumerated.
const (
	codeLen      = 10
	codeAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newCode draws a code from crypto/rand, rejecting bytes that would bias the
// alphabet (256 is not a multiple of 62).
func newCode() string {
	b := make([]byte, 0, codeLen)
	var buf [32]byte
	for len(b) < codeLen {
		rand.Read(buf[:])
		for _, x := range buf {
			if x < 248 && len(b) < codeLen { // 248 = 4 × 62
				b = append(b, codeAlphabet[x%62])
			}
		}
	}
	return string(b)
}

func (s *Server) createLink(ctx *fasthttp.RequestCtx) {
	var in linkIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	if in.Code != "" && !attribution.ValidCode(in.Code) {
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, "code must be 3 to 64 characters of A-Z a-z 0-9 _ -"))
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.cfg.Store.Program(c, in.Program)
	if errors.Is(err, store.ErrNotFound) || in.Program == "" {
		err = attribution.Errorf(attribution.EInvalid, "unknown program %s", in.Program)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	_, err = s.cfg.Store.Promoter(c, in.Promoter)
	if errors.Is(err, store.ErrNotFound) || in.Promoter == "" {
		err = attribution.Errorf(attribution.EInvalid, "unknown promoter %s", in.Promoter)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	u, host, err := attribution.ParseDestination(in.Destination)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	if !p.AllowsHost(host) {
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, "destination host %s is not allowed by program %s", host, p.ID))
		return
	}
	l := attribution.Link{Code: in.Code, Program: p.ID, Promoter: in.Promoter,
		Destination: u.String(), CreatedAt: s.cfg.Clock.Now()}
	for try := 0; ; try++ {
		if in.Code == "" {
			l.Code = newCode()
		}
		err = s.cfg.Store.CreateLink(c, &l)
		if !errors.Is(err, store.ErrExists) || in.Code != "" || try == 4 {
			break
		}
	}
	if errors.Is(err, store.ErrExists) {
		err = attribution.Errorf(attribution.EConflict, "link code %s is taken", l.Code)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 201, s.linkOut(&l))
}

func (s *Server) getLink(ctx *fasthttp.RequestCtx, code string) {
	c, cancel := s.storeCtx()
	defer cancel()
	l, err := s.cfg.Store.Link(c, code)
	if err != nil {
		s.fail(ctx, orNotFound(err, "no link "+code))
		return
	}
	out := s.linkOut(l)
	if out.Clicks, err = s.cfg.Store.LinkStats(c, code); err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, out)
}

func (s *Server) deleteLink(ctx *fasthttp.RequestCtx, code string) {
	c, cancel := s.storeCtx()
	defer cancel()
	if err := s.cfg.Store.DeleteLink(c, code); err != nil {
		s.fail(ctx, orNotFound(err, "no link "+code))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

type testClockIn struct {
	Set     string `json:"set"`
	Advance string `json:"advance"`
}

func (s *Server) testClock(ctx *fasthttp.RequestCtx) {
	var in testClockIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	var now time.Time
	switch {
	case in.Set != "" && in.Advance != "", in.Set == "" && in.Advance == "":
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, `give exactly one of "set" (RFC 3339) or "advance" (a duration such as "720h")`))
		return
	case in.Set != "":
		t, err := time.Parse(time.RFC3339, in.Set)
		if err != nil {
			s.fail(ctx, attribution.Errorf(attribution.EInvalid, "set: %v", err))
			return
		}
		now = s.cfg.Clock.Set(t)
	default:
		d, err := time.ParseDuration(in.Advance)
		if err != nil {
			s.fail(ctx, attribution.Errorf(attribution.EInvalid, "advance: %v", err))
			return
		}
		now = s.cfg.Clock.Advance(d)
	}
	s.cfg.Logger.Warn("test clock moved", "now", now)
	s.reply(ctx, 200, map[string]time.Time{"now": now})
}
