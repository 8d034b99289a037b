package api

import (
	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/attribution"
)

type bindIn struct {
	Program      string          `json:"program"`
	Customer     string          `json:"customer"`
	Event        string          `json:"event"`
	Token        string          `json:"token"`
	Visitor      string          `json:"visitor"`
	CustomerInfo *customerInfoIn `json:"customer_info"`
}

type customerInfoIn struct {
	Paid         bool                      `json:"paid"`
	AgentServed  bool                      `json:"agent_served"`
	Fingerprints *attribution.Fingerprints `json:"fingerprints"`
}

// info hashes in's fingerprints. An invalid one is an *attribution.Error
// (EInvalid) naming it.
func (s *Server) info(in *customerInfoIn) (attribution.CustomerInfo, error) {
	if in == nil {
		return attribution.CustomerInfo{}, nil
	}
	out := attribution.CustomerInfo{Paid: in.Paid, AgentServed: in.AgentServed}
	if in.Fingerprints != nil {
		fp, err := s.cfg.Hasher.Hash(*in.Fingerprints)
		if err != nil {
			return out, err
		}
		out.Fingerprints = fp
	}
	return out, nil
}

// inField prefixes the message of a domain error with the object that holds
// the field it names: "fingerprints.ips[0]: ..." becomes
// "customer_info.fingerprints.ips[0]: ...".
func inField(obj string, err error) error {
	if e, ok := err.(*attribution.Error); ok {
		return &attribution.Error{Code: e.Code, Message: obj + "." + e.Message}
	}
	return err
}

func (s *Server) bind(ctx *fasthttp.RequestCtx) {
	var in bindIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	info, err := s.info(in.CustomerInfo)
	if err != nil {
		s.fail(ctx, inField("customer_info", err))
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Bind(c, BindInput{Program: in.Program, Customer: in.Customer, Event: in.Event,
		Token: in.Token, Visitor: in.Visitor, Info: info})
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}

func (s *Server) putCustomer(ctx *fasthttp.RequestCtx, id string) {
	var in customerInfoIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	info, err := s.info(&in)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.PutCustomer(c, id, info)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}

func (s *Server) deleteCustomer(ctx *fasthttp.RequestCtx, id string) {
	c, cancel := s.storeCtx()
	defer cancel()
	if err := s.svc.EraseCustomer(c, id); err != nil {
		s.fail(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) attribution(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	program, customer, token := string(q.Peek("program")), string(q.Peek("customer")), string(q.Peek("token"))
	if token != "" {
		c, cancel := s.storeCtx()
		defer cancel()
		a, err := s.svc.TokenAttribution(c, program, token)
		if err != nil {
			s.fail(ctx, err)
			return
		}
		s.reply(ctx, 200, a)
		return
	}
	if err := checkIDs(program, customer); err != nil {
		s.fail(ctx, attribution.Errorf(attribution.EMalformed, "give program and customer, or token: %v", err))
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Attribution(c, program, customer)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}

func (s *Server) explain(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	program, customer := string(q.Peek("program")), string(q.Peek("customer"))
	if err := checkIDs(program, customer); err != nil {
		s.fail(ctx, attribution.Errorf(attribution.EMalformed, "give program and customer: %v", err))
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Explain(c, program, customer)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}

type conversionIn struct {
	Program      string                    `json:"program"`
	Order        string                    `json:"order"`
	Customer     string                    `json:"customer"`
	Amount       *int64                    `json:"amount"`
	Currency     string                    `json:"currency"`
	Product      string                    `json:"product"`
	Prepaid      bool                      `json:"prepaid"`
	Fingerprints *attribution.Fingerprints `json:"fingerprints"`
}

func (s *Server) convert(ctx *fasthttp.RequestCtx) {
	var in conversionIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	if in.Amount == nil {
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, "amount (cash paid, in minor units) is required"))
		return
	}
	info, err := s.info(&customerInfoIn{Fingerprints: in.Fingerprints})
	if err != nil {
		s.fail(ctx, err)
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Convert(c, ConversionInput{Program: in.Program, Order: in.Order, Customer: in.Customer,
		Amount: *in.Amount, Currency: in.Currency, Product: in.Product, Prepaid: in.Prepaid, Info: info})
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}

type refundIn struct {
	Refund string `json:"refund"`
	Amount *int64 `json:"amount"`
}

func (s *Server) refund(ctx *fasthttp.RequestCtx, order string) {
	var in refundIn
	if err := decode(ctx, &in); err != nil {
		s.fail(ctx, err)
		return
	}
	if in.Amount == nil {
		s.fail(ctx, attribution.Errorf(attribution.EInvalid, "amount is required"))
		return
	}
	c, cancel := s.storeCtx()
	defer cancel()
	a, err := s.svc.Refund(c, order, in.Refund, *in.Amount)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.reply(ctx, 200, a)
}
