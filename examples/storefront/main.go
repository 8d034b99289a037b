// Command storefront is a minimal storefront back end (net/http) that shows
// how a shop talks to refgate: it binds customers at registration and login
// from the visitor's refgate cookies, reports paid orders at checkout and
// refunds when it gives money back. docs/storefront.md explains the rules.
//
//	REFGATE_STOREFRONT_TOKEN=dev-storefront-token go run ./examples/storefront -program tencent
//
// Then, with a browser that clicked a refgate link on the same site (so it
// carries the rg_vid and rg_tencent cookies), or with curl:
//
//	curl -b 'rg_vid=...; rg_tencent=...' -d user=u1 localhost:9090/register
//	curl -d user=u1 localhost:9090/login
//	curl -d 'user=u1&order=o1&amount=10000&product=cvm' localhost:9090/checkout
//	curl -d 'order=o1&refund=rf-1&amount=2500' localhost:9090/refund
//
// A shop on another registrable domain than refgate's edge uses a program
// with append_token: true; its links then land on GET / with an rg_token
// parameter, which the shop keeps in a cookie of its own until the visitor
// registers:
//
//	curl -c jar 'localhost:9090/?rg_token=...'
//	curl -b jar -d user=u2 localhost:9090/register
//
// When refgate cannot answer at checkout (down, unreachable, its store
// down), the shopper's checkout still succeeds: the shop keeps the report
// in a bounded queue in memory and sends it again every few seconds, with
// the same order id, until refgate decides it. GET /status shows the queue:
//
//	curl localhost:9090/status
//
// A real shop keeps that queue in its own database, written in the same
// transaction as the order (an outbox), so that a restart loses nothing;
// this one is lost when the process exits, which it logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/refgate/refgate/client"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9090", "address of this storefront")
	api := flag.String("refgate", "http://127.0.0.1:8081", "refgate API base URL")
	program := flag.String("program", "tencent", "the referral program this shop takes part in")
	flag.Parse()
	token := os.Getenv("REFGATE_STOREFRONT_TOKEN")
	if token == "" {
		log.Fatal("set REFGATE_STOREFRONT_TOKEN to refgate's storefront token")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shop := &Shop{RG: client.New(*api, token), Program: *program}
	var wg sync.WaitGroup
	wg.Go(func() { shop.Run(ctx) })
	srv := &http.Server{Addr: *listen, Handler: shop.Handler()}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("storefront on http://%s, refgate at %s, program %s", *listen, *api, *program)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	wg.Wait()
	if st := shop.Status(); st.Pending > 0 {
		log.Printf("exiting with %d reports to refgate still queued; they are lost (a real shop keeps them in its database)", st.Pending)
	}
}

// Shop is the storefront's refgate integration.
type Shop struct {
	RG      *client.Client
	Program string
	// QueueLimit bounds the reports kept for refgate while it cannot answer
	// [1000]. Past it a report is dropped and logged with its ids, to be
	// sent again by hand: the shop never refuses a sale because of it.
	QueueLimit int
	// RetryEvery is how often Run sends queued reports again [5s].
	RetryEvery time.Duration

	mu      sync.Mutex
	queue   []report
	sent    int // queued reports refgate has since decided
	dropped int // reports lost: the queue was full, or refgate refused one
}

// report is a conversion or a refund refgate has yet to decide.
type report struct {
	conv   *client.Conversion // a paid order; else a refund:
	order  string
	refund string
	amount int64
	queued time.Time
}

func (r report) String() string {
	if r.conv != nil {
		return "order " + r.conv.Order
	}
	return "refund " + r.refund + " of order " + r.order
}

// checkoutWait bounds how long a checkout waits for refgate (the client's
// own retries included) before it queues the report and lets the shopper
// go.
const checkoutWait = 3 * time.Second

// Handler serves GET / (the landing page), GET /status (the queue of
// reports for refgate) and POST /register, /login, /checkout and /refund.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.land)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Status()) })
	mux.HandleFunc("POST /register", func(w http.ResponseWriter, r *http.Request) { s.bind(w, r, client.Register) })
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) { s.bind(w, r, client.Login) })
	mux.HandleFunc("POST /checkout", s.checkout)
	mux.HandleFunc("POST /refund", s.refund)
	return mux
}

// landedToken is the shop's own cookie holding the rg_token a link of an
// append_token program carried to the landing page.
const landedToken = "shop_rg_token"

// land is the page refgate links lead to. On the same site as refgate's
// edge the browser already holds the rg_{program} cookie and there is
// nothing to do. For a program with append_token the token comes in the
// query instead: keep it until the visitor registers or logs in (refgate
// checks its signature and expiry then, so the cookie may outlive it).
func (s *Shop) land(w http.ResponseWriter, r *http.Request) {
	if tok := client.TokenFromQuery(r); tok != "" {
		http.SetCookie(w, &http.Cookie{Name: landedToken, Value: tok, Path: "/", MaxAge: 365 * 86400,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	reply(w, map[string]any{"page": "home"})
}

// token returns the visitor's attribution token: refgate's rg_{program}
// cookie, else the one the landing page kept.
func (s *Shop) token(r *http.Request) string {
	if tok := client.TokenFromRequest(r, s.Program); tok != "" {
		return tok
	}
	if ck, err := r.Cookie(landedToken); err == nil {
		return ck.Value
	}
	return ""
}

// bind runs at registration and login: the visitor's refgate cookies say
// which promoter's link brought them; refgate applies the program's rules.
func (s *Shop) bind(w http.ResponseWriter, r *http.Request, event string) {
	user := r.FormValue("user")
	ans, err := s.RG.Bind(r.Context(), client.BindRequest{
		Program:  s.Program,
		Customer: user,
		Event:    event,
		Token:    s.token(r),
		Visitor:  client.VisitorFromRequest(r),
		CustomerInfo: &client.CustomerInfo{Fingerprints: &client.Fingerprints{
			IPs: []string{clientIP(r)}, Devices: []string{r.UserAgent()},
		}},
	})
	if err != nil {
		// Registration goes on without refgate; a bind can be retried later.
		// A 422 here is a fingerprint that does not parse (the message names
		// it): fix the data rather than retry.
		log.Printf("refgate bind for %s failed: %v", user, err)
		reply(w, map[string]any{"user": user, "event": event, "referral": "unknown"})
		return
	}
	reply(w, map[string]any{"user": user, "event": event, "referral": ans})
}

// maxAmount is the largest amount refgate takes, in minor units.
const maxAmount = 1_000_000_000_000_000

// checkout reports every paid order; refgate decides whether it earns a
// commission. Retrying is safe as long as the order id and its values stay
// the same: the order id makes it idempotent.
func (s *Shop) checkout(w http.ResponseWriter, r *http.Request) {
	amount, err := strconv.ParseInt(r.FormValue("amount"), 10, 64)
	if err != nil || amount < 0 || amount > maxAmount {
		http.Error(w, "amount must be a whole number of minor units, 0 to 10^15", http.StatusBadRequest)
		return
	}
	conv := client.Conversion{
		Program: s.Program, Order: r.FormValue("order"), Customer: r.FormValue("user"),
		Amount: amount, Currency: "CNY", Product: r.FormValue("product"), Prepaid: r.FormValue("prepaid") != "false",
	}
	rep := report{conv: &conv}
	if s.behindQueue(w, rep) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkoutWait)
	defer cancel()
	ans, err := s.RG.Convert(ctx, conv)
	if err != nil {
		s.failed(w, rep, err)
		return
	}
	reply(w, map[string]any{"order": ans.Order, "commission": ans})
}

// refund reports cash given back on an order. The refund id is the shop's
// own refund record id (form field refund), never a fresh random one per
// attempt: a retry after a timeout must send the same id, or refgate would
// count a second refund.
func (s *Shop) refund(w http.ResponseWriter, r *http.Request) {
	amount, err := strconv.ParseInt(r.FormValue("amount"), 10, 64)
	if err != nil || amount < 1 || amount > maxAmount {
		http.Error(w, "amount must be a whole number of minor units, 1 to 10^15", http.StatusBadRequest)
		return
	}
	rep := report{order: r.FormValue("order"), refund: r.FormValue("refund"), amount: amount}
	if s.behindQueue(w, rep) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checkoutWait)
	defer cancel()
	ans, err := s.RG.Refund(ctx, rep.order, rep.refund, amount)
	if err != nil {
		s.failed(w, rep, err)
		return
	}
	reply(w, map[string]any{"order": ans.Order, "refund": ans.Refund, "commission": ans})
}

// pendingAnswer is the shopper's answer for a report refgate has not
// decided yet: the checkout or refund itself went through.
func pendingAnswer(r report, commission string) map[string]any {
	if r.conv != nil {
		return map[string]any{"order": r.conv.Order, "commission": commission}
	}
	return map[string]any{"order": r.order, "refund": r.refund, "commission": commission}
}

// behindQueue queues r, and answers, when reports are already waiting for
// refgate: they go first, in the order they came. A refund must reach
// refgate after its order (else it is a 404), and a customer's first order
// must be decided before their second (only the first purchase earns).
func (s *Shop) behindQueue(w http.ResponseWriter, r report) bool {
	s.mu.Lock()
	waiting := len(s.queue) > 0
	s.mu.Unlock()
	if !waiting {
		return false
	}
	reply(w, pendingAnswer(r, s.enqueue(r, "reports ahead of it are waiting for refgate")))
	return true
}

// enqueue keeps r for Run to send again, and returns what the shopper is
// told of the commission: "pending", or "unreported" when the queue is full.
func (s *Shop) enqueue(r report, why string) string {
	limit := s.QueueLimit
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) >= limit {
		s.dropped++
		log.Printf("ALERT: refgate queue full (%d); %s NOT reported, send it again by hand", limit, r)
		return "unreported"
	}
	r.queued = time.Now()
	s.queue = append(s.queue, r)
	log.Printf("%s queued for refgate (%d waiting): %s", r, len(s.queue), why)
	return "pending"
}

// failed answers a conversion or refund that refgate did not decide.
func (s *Shop) failed(w http.ResponseWriter, r report, err error) {
	var e *client.Error
	switch {
	case client.IsUnavailable(err) || !errors.As(err, &e):
		// Never book the sale as unattributed, nor fail the checkout,
		// because refgate was down or slow (or something else answered in
		// its place): queue the report and send it again later with the
		// same ids (a timed-out call may have been applied; the retry gets
		// its answer).
		reply(w, pendingAnswer(r, s.enqueue(r, err.Error())))
	case e.Status == http.StatusConflict:
		// The id was used before with other values: a bug in the shop (an
		// order or refund id reused). Retrying cannot fix it.
		log.Printf("BUG: refgate says %s conflicts with an earlier report: %v", r, err)
		http.Error(w, e.Message, e.Status)
	default:
		http.Error(w, e.Message, e.Status)
	}
}

// Status is the queue of reports for refgate, as GET /status answers it.
type Status struct {
	Pending int        `json:"pending"`          // reports waiting for refgate
	Oldest  *time.Time `json:"oldest,omitempty"` // when the oldest of them was queued
	Sent    int        `json:"sent"`             // queued reports refgate has since decided
	Dropped int        `json:"dropped"`          // reports lost: queue full, or refused by refgate
}

// Status returns the queue's state.
func (s *Shop) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Pending: len(s.queue), Sent: s.sent, Dropped: s.dropped}
	if len(s.queue) > 0 {
		t := s.queue[0].queued
		st.Oldest = &t
	}
	return st
}

// Run sends the queued reports again every RetryEvery, oldest first, until
// ctx ends. Start it once, next to the HTTP server.
func (s *Shop) Run(ctx context.Context) {
	every := s.RetryEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush(ctx)
		}
	}
}

// flush sends queued reports, oldest first, until the queue is empty or
// refgate still cannot answer. Only Run removes from the queue, so the
// head it sent is still the head when it removes it.
func (s *Shop) flush(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		r := s.queue[0]
		s.mu.Unlock()

		err := s.send(ctx, r)
		if client.IsUnavailable(err) {
			return // keep it, and everything behind it, for the next tick
		}
		s.mu.Lock()
		s.queue = s.queue[1:]
		if err == nil {
			s.sent++
		} else {
			s.dropped++
		}
		left := len(s.queue)
		s.mu.Unlock()
		if err != nil {
			// refgate refused it (a 409, a 422), or what answers is not
			// refgate: sending it again cannot fix that.
			log.Printf("BUG: refgate did not take queued %s, dropped: %v", r, err)
		} else {
			log.Printf("queued %s reported to refgate after %v (%d waiting)", r, time.Since(r.queued).Round(time.Millisecond), left)
		}
	}
}

func (s *Shop) send(ctx context.Context, r report) error {
	ctx, cancel := context.WithTimeout(ctx, checkoutWait)
	defer cancel()
	var err error
	if r.conv != nil {
		_, err = s.RG.Convert(ctx, *r.conv)
	} else {
		_, err = s.RG.Refund(ctx, r.order, r.refund, r.amount)
	}
	return err
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
