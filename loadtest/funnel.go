package loadtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/client"
)

// FunnelOptions shape the funnel scenario. Zero values take the defaults.
type FunnelOptions struct {
	// Customers is how many customers the run creates and competes for.
	// Default 2000.
	Customers int
	// Shares of the steps (normalised): clicks 0.45, binds 0.35,
	// conversions 0.2.
	Clicks, Binds, Conversions float64
	// Retries is the share of conversions sent twice, the second right
	// after the first, as a storefront retrying a timed-out call would.
	// Default 0.1.
	Retries float64
	// ZipfS is the Zipf exponent of link popularity. Default 1.1.
	ZipfS float64
	// StorefrontToken authenticates the API calls.
	StorefrontToken string
}

func (o *FunnelOptions) defaults() {
	if o.Customers <= 0 {
		o.Customers = 2000
	}
	if o.Clicks+o.Binds+o.Conversions <= 0 {
		o.Clicks, o.Binds, o.Conversions = 0.45, 0.35, 0.2
	}
	if o.Retries == 0 {
		o.Retries = 0.1
	}
	if o.ZipfS <= 1 {
		o.ZipfS = 1.1
	}
}

// Funnel is the funnel scenario: customers click links of competing
// promoters, register and log in (binds with the token their last click
// set), and pay (conversions, some retried with the same order id), all
// through the real edge and API. Every answer is kept for Verify.
type Funnel struct {
	o      FunnelOptions
	edge   *Target
	api    *Target
	fx     *Fixture
	run    string // unique per run: customer and order ids do not collide with earlier runs
	uris   [][]byte
	cookie []byte
	auth   []byte
	custs  []*customer
	orders atomic.Int64
	retry  chan order // orders to send again
}

type customer struct {
	id string
	mu sync.Mutex
	// from the last click
	vid, token []byte
	binds      int // binds sent: the first is a register, the rest logins
	obs        []observation
}

// observation is one bind or conversion as the generator saw it.
type observation struct {
	sent, done time.Time
	event      string // register, login, conversion
	order      string
	token      string // a bind's token
	status     int
	bind       client.BindAnswer
	conv       client.ConversionAnswer
}

// order is a conversion to post, and whose it is.
type order struct {
	client.Conversion
	cust *customer
}

// NewFunnel returns the funnel scenario for fx's links on edge and api.
func NewFunnel(edge, api *Target, fx *Fixture, o FunnelOptions) (*Funnel, error) {
	o.defaults()
	uris, err := fx.clickPaths()
	if err != nil {
		return nil, err
	}
	if o.StorefrontToken == "" {
		return nil, fmt.Errorf("the funnel needs the storefront (or admin) token")
	}
	var b [6]byte
	rand.Read(b[:])
	f := &Funnel{o: o, edge: edge, api: api, fx: fx, run: hex.EncodeToString(b[:]), uris: uris, cookie: []byte("rg_" + fx.Program),
		auth: []byte("Bearer " + o.StorefrontToken), retry: make(chan order, 1024)}
	for i := range o.Customers {
		f.custs = append(f.custs, &customer{id: fmt.Sprintf("lt-%s-%d", f.run, i)})
	}
	return f, nil
}

// Name is "funnel".
func (f *Funnel) Name() string { return "funnel" }

// Do sends one step of some customer's journey.
func (f *Funnel) Do(w *Worker) Outcome {
	select {
	case c := <-f.retry:
		return f.convert(w, c)
	default:
	}
	c := f.custs[w.Rand.IntN(len(f.custs))]
	total := f.o.Clicks + f.o.Binds + f.o.Conversions
	x := w.Rand.Float64() * total
	c.mu.Lock()
	hasToken, bound := c.token != nil, c.binds > 0
	c.mu.Unlock()
	switch {
	case x < f.o.Clicks || !hasToken:
		return f.click(w, c)
	case x < f.o.Clicks+f.o.Binds || !bound:
		return f.bind(w, c)
	}
	amount := int64(10000)
	if w.Rand.IntN(20) == 0 {
		amount = 0 // a free trial: does not use up the first purchase
	}
	body := order{Conversion: client.Conversion{Program: f.fx.Program, Order: fmt.Sprintf("o-%s-%d", f.run, f.orders.Add(1)),
		Customer: c.id, Amount: amount, Currency: "CNY", Prepaid: true}, cust: c}
	if w.Rand.Float64() < f.o.Retries {
		select {
		case f.retry <- body:
		default:
		}
	}
	return f.convert(w, body)
}

func (f *Funnel) click(w *Worker, c *customer) Outcome {
	w.Req.SetRequestURIBytes(f.uris[linkPicker(w, f.o.ZipfS, len(f.uris)).Uint64()])
	w.Req.Header.SetUserAgent(browserUA)
	c.mu.Lock()
	if c.vid != nil {
		w.Req.Header.SetCookieBytesKV([]byte("rg_vid"), c.vid)
	}
	c.mu.Unlock()
	out := w.Send(f.edge, "click")
	if out.Err != "" {
		return out
	}
	if out.Status != fasthttp.StatusFound {
		out.Err = "unexpected_status"
		return out
	}
	vid, tok := refgateCookies(w.Resp, f.cookie)
	if tok == nil {
		out.Err = "no_cookie"
		return out
	}
	value := func(nv []byte) []byte { _, v, _ := bytes.Cut(nv, []byte("=")); return bytes.Clone(v) }
	c.mu.Lock()
	if vid != nil {
		c.vid = value(vid)
	}
	c.token = value(tok)
	c.mu.Unlock()
	return out
}

func (f *Funnel) bind(w *Worker, c *customer) Outcome {
	c.mu.Lock()
	event := "login"
	if c.binds == 0 {
		event = "register"
	}
	c.binds++
	tok := string(c.token)
	c.mu.Unlock()
	b, _ := json.Marshal(&client.BindRequest{Program: f.fx.Program, Customer: c.id, Event: event, Token: tok})
	o := observation{event: event, token: tok, sent: time.Now()}
	out := f.post(w, "/v1/bind", b, "bind_"+event)
	o.done, o.status = time.Now(), out.Status
	if out.Status == fasthttp.StatusOK {
		if err := json.Unmarshal(w.Resp.Body(), &o.bind); err != nil {
			out.Err = "bad_answer"
		}
	}
	c.mu.Lock()
	c.obs = append(c.obs, o)
	c.mu.Unlock()
	return out
}

func (f *Funnel) convert(w *Worker, body order) Outcome {
	b, _ := json.Marshal(&body.Conversion)
	o := observation{event: "conversion", order: body.Order, sent: time.Now()}
	out := f.post(w, "/v1/conversions", b, "conversion")
	o.done, o.status = time.Now(), out.Status
	if out.Status == fasthttp.StatusOK {
		if err := json.Unmarshal(w.Resp.Body(), &o.conv); err != nil {
			out.Err = "bad_answer"
		}
	}
	c := body.cust
	c.mu.Lock()
	c.obs = append(c.obs, o)
	c.mu.Unlock()
	return out
}

func (f *Funnel) post(w *Worker, path string, body []byte, op string) Outcome {
	w.Req.Header.SetMethod("POST")
	w.Req.SetRequestURI(path)
	w.Req.Header.SetBytesV("Authorization", f.auth)
	w.Req.Header.SetContentType("application/json")
	w.Req.SetBody(body)
	out := w.Send(f.api, op)
	if out.Err == "" && out.Status != fasthttp.StatusOK {
		out.Err = "unexpected_status"
	}
	return out
}
