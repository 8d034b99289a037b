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
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"

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
	shop := &Shop{RG: client.New(*api, token), Program: *program}
	log.Printf("storefront on http://%s, refgate at %s, program %s", *listen, *api, *program)
	log.Fatal(http.ListenAndServe(*listen, shop.Handler()))
}

// Shop is the storefront's refgate integration.
type Shop struct {
	RG      *client.Client
	Program string
}

// Handler serves GET / (the landing page) and POST /register, /login,
// /checkout and /refund.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.land)
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
	order := r.FormValue("order")
	ans, err := s.RG.Convert(r.Context(), client.Conversion{
		Program: s.Program, Order: order, Customer: r.FormValue("user"),
		Amount: amount, Currency: "CNY", Product: r.FormValue("product"), Prepaid: r.FormValue("prepaid") != "false",
	})
	if err != nil {
		s.failed(w, "order "+order, err, map[string]any{"order": order, "commission": "pending"})
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
	order, id := r.FormValue("order"), r.FormValue("refund")
	ans, err := s.RG.Refund(r.Context(), order, id, amount)
	if err != nil {
		s.failed(w, "refund "+id+" of order "+order, err, map[string]any{"order": order, "refund": id, "commission": "pending"})
		return
	}
	reply(w, map[string]any{"order": ans.Order, "refund": ans.Refund, "commission": ans})
}

// failed answers a conversion or refund that refgate did not decide;
// pending is the answer while it waits for a retry.
func (s *Shop) failed(w http.ResponseWriter, what string, err error, pending map[string]any) {
	var e *client.Error
	switch {
	case client.IsUnavailable(err):
		// Never book the sale as unattributed because refgate was down or
		// slow: queue the report and retry it with the same ids (a timed-out
		// call may have been applied; the retry gets its answer).
		log.Printf("refgate unavailable; %s queued for retry: %v", what, err)
		reply(w, pending)
	case errors.As(err, &e) && e.Status == http.StatusConflict:
		// The id was used before with other values: a bug in the shop (an
		// order or refund id reused). Retrying cannot fix it.
		log.Printf("BUG: refgate says %s conflicts with an earlier report: %v", what, err)
		http.Error(w, e.Message, e.Status)
	case errors.As(err, &e):
		http.Error(w, e.Message, e.Status)
	default:
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
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
