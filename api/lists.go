package api

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/store"
)

// The lists of programs, promoters and links, and PATCH of a link
// (docs/design.md "Reports and lists").

// Programs lists the programs by id, a page at a time.
func (sv *Service) Programs(ctx context.Context, cursor string, limit int) (*Page[attribution.Program], error) {
	ps, next, err := sv.Store.Programs(ctx, cursor, limit)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		ps = []attribution.Program{}
	}
	return &Page[attribution.Program]{Items: ps, NextCursor: next}, nil
}

// Promoters lists the promoters by id, a page at a time, as GET shows
// them: fingerprints are never echoed, only how many are kept.
func (sv *Service) Promoters(ctx context.Context, cursor string, limit int) (*Page[PromoterAnswer], error) {
	ps, next, err := sv.Store.Promoters(ctx, cursor, limit)
	if err != nil {
		return nil, err
	}
	out := &Page[PromoterAnswer]{Items: make([]PromoterAnswer, len(ps)), NextCursor: next}
	for i := range ps {
		out.Items[i] = *promoterAnswer(&ps[i])
	}
	return out, nil
}

// Links lists links, of one program and one promoter when given, newest
// first, without their clicks (GET of one link has them). A program or
// promoter that is not an id is an EInvalid error; one that has no links
// lists none.
func (sv *Service) Links(ctx context.Context, q store.LinkQuery) (*Page[LinkAnswer], error) {
	if q.Program != "" && !attribution.ValidProgramID(q.Program) {
		return nil, attribution.Errorf(attribution.EInvalid, "program %q is not a program id", q.Program)
	}
	if q.Promoter != "" && !attribution.ValidID(q.Promoter) {
		return nil, attribution.Errorf(attribution.EInvalid, "promoter %q is not a promoter id", q.Promoter)
	}
	ls, next, err := sv.Store.Links(ctx, q)
	if err != nil {
		return nil, err
	}
	out := &Page[LinkAnswer]{Items: make([]LinkAnswer, len(ls)), NextCursor: next}
	for i := range ls {
		out.Items[i] = *sv.linkAnswer(&ls[i])
	}
	return out, nil
}

// LinkPatch is the PATCH body of a link: each field given changes, each
// absent stays.
type LinkPatch struct {
	Destination *string `json:"destination"`
	// Status is "active" or "paused".
	Status *string `json:"status"`
	// ExpiresAt is an RFC 3339 time; null clears it.
	ExpiresAt OptionalTime `json:"expires_at"`
	// ExpiredURL is where an inactive link sends clicks; "" clears it.
	ExpiredURL *string `json:"expired_url"`
}

// OptionalTime is a JSON time that tells null (Set, nil Time) from absent
// (not Set).
type OptionalTime struct {
	Set  bool
	Time *time.Time
}

// UnmarshalJSON reads null or an RFC 3339 string; anything else is an
// EInvalid error naming the field.
func (o *OptionalTime) UnmarshalJSON(b []byte) error {
	o.Set, o.Time = true, nil
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return attribution.Errorf(attribution.EInvalid, "expires_at must be an RFC 3339 time such as 2026-12-31T23:59:59Z, or null")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return attribution.Errorf(attribution.EInvalid, "expires_at must be an RFC 3339 time such as 2026-12-31T23:59:59Z, or null")
	}
	t = t.UTC()
	o.Time = &t
	return nil
}

func (p *LinkPatch) empty() bool {
	return p.Destination == nil && p.Status == nil && !p.ExpiresAt.Set && p.ExpiredURL == nil
}

// checkURL is a destination or expired URL, normalised, if it parses as
// a browser would and the program allows its host; else an EInvalid error
// naming field.
func checkURL(p *attribution.Program, field, raw string) (string, error) {
	u, host, err := attribution.ParseDestination(raw)
	if err != nil {
		if field == "destination" {
			return "", err
		}
		return "", attribution.Errorf(attribution.EInvalid, "%s: %s", field, toError(err).Message)
	}
	if !p.AllowsHost(host) {
		return "", attribution.Errorf(attribution.EInvalid, "%s host %s is not allowed by program %s", field, host, p.ID)
	}
	return u.String(), nil
}

// PatchLink changes what the patch gives of a link and returns it as GET
// does. A destination or expired_url is checked as CreateLink checks a
// destination, against the link's program as it is now; a status other
// than active or paused is an EInvalid error naming the field; an unknown
// or deleted code is ENotFound. An empty patch changes nothing. The edge
// honours the change within a second on every instance: the store
// publishes its invalidation before it answers.
func (sv *Service) PatchLink(ctx context.Context, code string, in LinkPatch) (*LinkAnswer, error) {
	if in.Status != nil && *in.Status != string(attribution.LinkActive) && *in.Status != string(attribution.LinkPaused) {
		return nil, attribution.Errorf(attribution.EInvalid, "status must be active or paused")
	}
	if in.empty() {
		return sv.GetLink(ctx, code)
	}
	l, err := sv.Store.Link(ctx, code)
	if err != nil {
		return nil, orNotFound(err, "no link "+code)
	}
	dest, expired := "", ""
	if in.Destination != nil || in.ExpiredURL != nil && *in.ExpiredURL != "" {
		p, err := sv.Store.Program(ctx, l.Program)
		if err != nil {
			return nil, orNotFound(err, "the link's program "+l.Program+" is gone")
		}
		if in.Destination != nil {
			if dest, err = checkURL(p, "destination", *in.Destination); err != nil {
				return nil, err
			}
		}
		if in.ExpiredURL != nil && *in.ExpiredURL != "" {
			if expired, err = checkURL(p, "expired_url", *in.ExpiredURL); err != nil {
				return nil, err
			}
		}
	}
	l, err = sv.Store.UpdateLink(ctx, code, func(l *attribution.Link) error {
		if in.Destination != nil {
			l.Destination = dest
		}
		if in.Status != nil {
			l.Status = attribution.LinkStatus(*in.Status)
		}
		if in.ExpiresAt.Set {
			l.ExpiresAt = in.ExpiresAt.Time
		}
		if in.ExpiredURL != nil {
			l.ExpiredURL = expired
		}
		return nil
	})
	if err != nil {
		return nil, orNotFound(err, "no link "+code)
	}
	a := sv.linkAnswer(l)
	if a.Clicks, err = sv.Store.LinkStats(ctx, code); err != nil {
		return nil, err
	}
	return a, nil
}

// The HTTP side of the lists.

// servePage answers a paged list: it reads ?limit= and ?cursor= and
// answers the page list gives for them.
func servePage[T any](s *Server, ctx *fasthttp.RequestCtx, list func(c context.Context, cursor string, limit int) (*Page[T], error)) {
	cursor, limit, err := pageParams(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	page, err := list(c, cursor, limit)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, page)
}

func (s *Server) getPrograms(ctx *fasthttp.RequestCtx) { servePage(s, ctx, s.svc.Programs) }

func (s *Server) getPromoters(ctx *fasthttp.RequestCtx) { servePage(s, ctx, s.svc.Promoters) }

func (s *Server) getLinks(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	s.serveLinks(ctx, string(args.Peek("program")), string(args.Peek("promoter")))
}

// serveLinks answers a page of links, of program and promoter when not
// empty.
func (s *Server) serveLinks(ctx *fasthttp.RequestCtx, program, promoter string) {
	servePage(s, ctx, func(c context.Context, cursor string, limit int) (*Page[LinkAnswer], error) {
		return s.svc.Links(c, store.LinkQuery{Program: program, Promoter: promoter, Cursor: cursor, Limit: limit})
	})
}

func (s *Server) patchLink(ctx *fasthttp.RequestCtx, code string) {
	var in LinkPatch
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	// null clears expires_at; for the others, which a JSON null would
	// leave as if absent, it is a mistake to say so rather than a no-op.
	var raw map[string]json.RawMessage
	json.Unmarshal(ctx.PostBody(), &raw) // decode took it: an object
	for k, v := range raw {
		// Any case: encoding/json matches field names ignoring it.
		switch k = strings.ToLower(k); k {
		case "destination", "status", "expired_url":
			if bytes.Equal(v, []byte("null")) {
				s.fail(ctx, attribution.Errorf(attribution.EInvalid, "%s must be a string, not null (leave it out to keep it)", k))
				return
			}
		}
	}
	c, cancel := s.storeCtx()
	defer cancel()
	l, err := s.svc.PatchLink(c, code, in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, l)
}
