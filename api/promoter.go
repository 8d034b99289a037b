package api

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/store"
)

// The promoter's own view (docs/design.md): an administrator issues a
// promoter a token (cookie.PromoterToken, signed with the cookie keys under
// a purpose of its own), and with it the promoter reads their own data on
// /v1/promoter/*, the same reads as the admin routes with the promoter
// fixed to the token's. A token is refused (401) once expired by the
// server's clock, once the promoter's tokens are revoked
// (attribution.Promoter.TokensRevokedAt: a token issued at or before it),
// and when the promoter is unknown. A suspended promoter's tokens still
// work: suspension stops new binds and commissions, and the promoter may
// still see what they earned and are owed.

// MaxPromoterTokenTTL is the longest lifetime a promoter token may be
// issued for.
const MaxPromoterTokenTTL = 8760 * time.Hour

// PromoterTokenInput is the body of POST /v1/admin/promoters/{id}/tokens.
type PromoterTokenInput struct {
	TTL string `json:"ttl"` // a Go duration, such as 720h
}

// PromoterTokenAnswer is a new promoter token.
type PromoterTokenAnswer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssuePromoterToken signs a token that reads promoter id's own data for
// ttl. An unknown promoter is ENotFound; a ttl that is not a duration
// above 0 and at most MaxPromoterTokenTTL is EInvalid. The token is issued
// after the promoter's latest revocation even if the clock says otherwise
// (a test clock set back, another instance's clock ahead), so a token
// issued once the revocation is answered always works.
func (sv *Service) IssuePromoterToken(ctx context.Context, id, ttl string) (*PromoterTokenAnswer, error) {
	d, err := time.ParseDuration(ttl)
	if err != nil || d <= 0 || d > MaxPromoterTokenTTL {
		return nil, attribution.Errorf(attribution.EInvalid, "ttl must be a duration above 0 and at most %v, such as 720h", MaxPromoterTokenTTL)
	}
	if sv.Signer == nil {
		return nil, attribution.Errorf(attribution.EInternal, "no cookie keys to sign promoter tokens with")
	}
	p, err := sv.Store.Promoter(ctx, id)
	if err != nil {
		return nil, orNotFound(err, "no promoter "+id)
	}
	issued := sv.Now().Truncate(time.Microsecond)
	if r := p.TokensRevokedAt; r != nil && !issued.After(*r) {
		issued = r.Truncate(time.Microsecond).Add(time.Microsecond)
	}
	t := cookie.PromoterToken{Promoter: id, Issued: issued, Expires: issued.Add(d)}
	tok, err := sv.Signer.SignPromoter(&t)
	if err != nil {
		return nil, attribution.Errorf(attribution.EInvalid, "cannot issue a token for promoter %s: %v", id, err)
	}
	return &PromoterTokenAnswer{Token: tok, ExpiresAt: t.Expires}, nil
}

// RevokePromoterTokens revokes every token of promoter id issued until now:
// it stores the time on the promoter (atomically: a concurrent PUT of the
// promoter keeps it), whose invalidation takes every instance's cached
// copy out at once. An unknown promoter is ENotFound.
func (sv *Service) RevokePromoterTokens(ctx context.Context, id string) error {
	now := sv.Now()
	err := sv.Store.UpdatePromoter(ctx, id, func(old *attribution.Promoter) (*attribution.Promoter, error) {
		if old == nil {
			return nil, attribution.Errorf(attribution.ENotFound, "no promoter %s", id)
		}
		p := *old
		at := now
		if r := p.TokensRevokedAt; r != nil && r.After(at) {
			at = *r // a clock behind the latest revocation must not undo it
		}
		p.TokensRevokedAt = &at
		return &p, nil
	})
	if err != nil {
		return err
	}
	sv.Invalidate(store.Invalidation{Kind: store.Promoter, ID: id})
	return nil
}

// errPromoterToken is any reason a promoter token is refused: expired,
// revoked, not ours, or its promoter unknown. The caller learns no more
// than that (401), as for any unknown token.
var errPromoterToken = errors.New("promoter token refused")

// VerifyPromoterToken returns the promoter tok reads for, at the server's
// now: errPromoterToken for a token refused, or the store's error when it
// cannot say (the caller answers 503, not 401).
func (sv *Service) VerifyPromoterToken(ctx context.Context, tok []byte) (string, error) {
	if sv.Signer == nil {
		return "", errPromoterToken
	}
	var t cookie.PromoterToken
	if err := sv.Signer.VerifyPromoter(tok, sv.Now(), &t); err != nil {
		return "", errPromoterToken
	}
	p, err := sv.promoter(ctx, t.Promoter)
	if err != nil {
		return "", err
	}
	if p == nil || (p.TokensRevokedAt != nil && !t.Issued.After(*p.TokensRevokedAt)) {
		return "", errPromoterToken
	}
	return p.ID, nil
}

// promoterKey is the request's user value that holds the promoter a
// promoter token authenticated.
const promoterKey = "refgate.promoter"

// promoterFrom returns the promoter whose token authenticated the request,
// "" when none did. Every /v1/promoter/* handler reads only this
// promoter's data; the router (rolePromoter) lets no request in without
// it.
func promoterFrom(ctx *fasthttp.RequestCtx) string {
	p, _ := ctx.UserValue(promoterKey).(string)
	return p
}

// promoterProgram reads ?program= of a promoter route, refusing a
// ?promoter= that names another promoter: the token says whose data it is.
func promoterProgram(ctx *fasthttp.RequestCtx) (program string, err error) {
	args := ctx.QueryArgs()
	if p := args.Peek("promoter"); p != nil && string(p) != promoterFrom(ctx) {
		return "", attribution.Errorf(attribution.EInvalid, "promoter is the token's; leave it out")
	}
	return string(args.Peek("program")), nil
}

// PromoterCustomer is a customer as its promoter sees it: the id masked
// (attribution.MaskCustomer).
type PromoterCustomer struct {
	Customer  string           `json:"customer"`
	Kind      attribution.Kind `json:"kind"`
	Since     time.Time        `json:"since"`
	ExpiresAt time.Time        `json:"expires_at"`
}

// holdersCursor is the purpose cursors of PromoterCustomers are sealed
// under: a store cursor names a customer in full.
const holdersCursor = "refgate promoter customers cursor"

// PromoterCustomers lists the customers promoter holds in program at the
// server's now (store.Holders), newest first, each id masked. The cursor
// is the store's, sealed (cookie.Signer.Seal), since it holds a whole
// customer id; one that does not open is EMalformed.
func (sv *Service) PromoterCustomers(ctx context.Context, program, promoter, cursor string, limit int) (*Page[PromoterCustomer], error) {
	if _, err := sv.program(ctx, program); err != nil {
		return nil, err
	}
	if sv.Signer == nil {
		return nil, attribution.Errorf(attribution.EInternal, "no cookie keys to seal cursors with")
	}
	var raw string
	if cursor != "" {
		b, err := sv.Signer.Open(holdersCursor, cursor)
		if err != nil {
			return nil, attribution.Errorf(attribution.EMalformed, "bad cursor: pass the next_cursor of an earlier page, unchanged")
		}
		raw = string(b)
	}
	hs, next, err := sv.Store.Holders(ctx, program, promoter, sv.Now(), raw, limit)
	if err != nil {
		return nil, err
	}
	out := &Page[PromoterCustomer]{Items: make([]PromoterCustomer, len(hs))}
	for i, h := range hs {
		out.Items[i] = PromoterCustomer{Customer: attribution.MaskCustomer(h.Customer), Kind: h.Assoc.Kind,
			Since: h.Assoc.Since, ExpiresAt: h.Assoc.ExpiresAt}
	}
	if next != "" {
		out.NextCursor = sv.Signer.Seal(holdersCursor, []byte(next))
	}
	return out, nil
}

// maskEntries masks the customer of each entry: a promoter sees their
// ledger, not the storefront's account names.
func maskEntries(es []EntryAnswer) {
	for i := range es {
		if es[i].Customer != "" {
			es[i].Customer = attribution.MaskCustomer(es[i].Customer)
		}
	}
}

// The HTTP side: each handler is the admin route's read with the promoter
// fixed to the token's.

func (s *Server) postPromoterToken(ctx *fasthttp.RequestCtx, id string) {
	var in PromoterTokenInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.IssuePromoterToken(c, id, in.TTL)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 201, a)
}

func (s *Server) deletePromoterTokens(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	if err := s.svc.RevokePromoterTokens(c, id); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) getPromoterLedger(ctx *fasthttp.RequestCtx) {
	program, err := promoterProgram(ctx)
	args := ctx.QueryArgs()
	q := LedgerQuery{Program: program, Promoter: promoterFrom(ctx), Status: attribution.EntryStatus(args.Peek("status"))}
	if err == nil {
		if q.Cursor, q.Limit, err = pageParams(ctx); err == nil {
			if q.From, err = timeParam(ctx, "from"); err == nil {
				q.To, err = timeParam(ctx, "to")
			}
		}
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	page, err := s.svc.Ledger(c, q)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	maskEntries(page.Items)
	s.reply(ctx, 200, page)
}

func (s *Server) getPromoterStatements(ctx *fasthttp.RequestCtx) {
	program, err := promoterProgram(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.serveStatements(ctx, program, promoterFrom(ctx))
}

// getPromoterStatement answers another promoter's statement as it answers
// an unknown one, 404: a promoter learns nothing of others' statements,
// not even that an id is taken.
func (s *Server) getPromoterStatement(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	st, err := s.svc.Statement(c, id)
	if err == nil && st.Promoter != promoterFrom(ctx) {
		st, err = nil, attribution.Errorf(attribution.ENotFound, "no statement %s", id)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, st)
}

func (s *Server) getPromoterBalance(ctx *fasthttp.RequestCtx) {
	program, err := promoterProgram(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	b, err := s.svc.Balance(c, program, promoterFrom(ctx))
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, b)
}

func (s *Server) getPromoterCustomers(ctx *fasthttp.RequestCtx) {
	program, err := promoterProgram(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	servePage(s, ctx, func(c context.Context, cursor string, limit int) (*Page[PromoterCustomer], error) {
		return s.svc.PromoterCustomers(c, program, promoterFrom(ctx), cursor, limit)
	})
}

// getPromoterReport is the admin report with the promoter fixed to the
// token's: their series in the program, or one of their links' with
// ?link=. Another promoter's link is a 404, as an unknown one.
func (s *Server) getPromoterReport(ctx *fasthttp.RequestCtx) {
	if _, err := promoterProgram(ctx); err != nil {
		s.fail(ctx, err)
		return
	}
	q := reportQuery(ctx)
	q.Promoter = promoterFrom(ctx)
	if q.Link != "" {
		c, cancel := s.storeCtx()
		l, err := s.svc.Store.Link(c, q.Link)
		cancel()
		switch {
		case errors.Is(err, store.ErrNotFound) || err == nil && (l.Promoter != q.Promoter || l.Program != q.Program):
			s.fail(ctx, attribution.Errorf(attribution.ENotFound, "no link %s of yours in program %s", q.Link, q.Program))
			return
		case err != nil:
			s.fail(ctx, err)
			return
		}
		q.Promoter = ""
	}
	s.serveReport(ctx, q)
}

// getPromoterLinks lists the token's promoter's links (in one program with
// ?program=), newest first, as the admin's list does.
func (s *Server) getPromoterLinks(ctx *fasthttp.RequestCtx) {
	program, err := promoterProgram(ctx)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.serveLinks(ctx, program, promoterFrom(ctx))
}
