package api

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
)

func (s *Server) putProgram(ctx *fasthttp.RequestCtx, id string) {
	var p attribution.Program
	if err := decode(ctx, &p); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	out, err := s.svc.PutProgram(c, id, p)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, out)
}

func (s *Server) getProgram(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.svc.GetProgram(c, id)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, p)
}

func (s *Server) putPromoter(ctx *fasthttp.RequestCtx, id string) {
	var in PromoterInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.svc.PutPromoter(c, id, in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, p)
}

func (s *Server) getPromoter(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	p, err := s.svc.GetPromoter(c, id)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, p)
}

func (s *Server) createLink(ctx *fasthttp.RequestCtx) {
	var in LinkInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	l, err := s.svc.CreateLink(c, in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 201, l)
}

func (s *Server) getLink(ctx *fasthttp.RequestCtx, code string) {
	c, cancel := s.storeCtx()
	defer cancel()
	l, err := s.svc.GetLink(c, code)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, l)
}

func (s *Server) deleteLink(ctx *fasthttp.RequestCtx, code string) {
	c, cancel := s.storeCtx()
	defer cancel()
	if err := s.svc.DeleteLink(c, code); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) testClock(ctx *fasthttp.RequestCtx) {
	var in ClockInput
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	now, err := s.svc.MoveClock(in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.cfg.Logger.Warn("test clock moved", "now", now)
	s.reply(ctx, 200, map[string]time.Time{"now": now})
}
