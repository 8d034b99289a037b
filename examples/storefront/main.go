// Command storefront is a minimal storefront back end (net/http) that shows
// how a shop talks to refgate: it binds customers at registration and login
// from the visitor's refgate cookies, and reports paid orders at checkout.
//
//	REFGATE_STOREFRONT_TOKEN=dev-storefront-token go run ./examples/storefront -program tencent
//
// Then, with a browser that clicked a refgate link on the same site (so it
// carries the rg_vid and rg_tencent cookies), or with curl:
//
//	curl -b 'rg_vid=...; rg_tencent=...' -d user=u1 localhost:9090/register
//	curl -d user=u1 localhost:9090/login
//	curl -d 'user=u1&order=o1&amount=10000&product=cvm' localhost:9090/checkout
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

// Handler serves POST /register, /login and /checkout.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", func(w http.ResponseWriter, r *http.Request) { s.bind(w, r, client.Register) })
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) { s.bind(w, r, client.Login) })
	mux.HandleFunc("POST /checkout", s.checkout)
	return mux
}

// bind runs at registration and login: the visitor's refgate cookies say
// which promoter's link brought them; refgate applies the program's rules.
func (s *Shop) bind(w http.ResponseWriter, r *http.Request, event string) {
	user := r.FormValue("user")
	ans, err := s.RG.Bind(r.Context(), client.BindRequest{
		Program:  s.Program,
		Customer: user,
		Event:    event,
		Token:    client.TokenFromRequest(r, s.Program),
		Visitor:  client.VisitorFromRequest(r),
		CustomerInfo: &client.CustomerInfo{Fingerprints: &client.Fingerprints{
			IPs: []string{clientIP(r)}, Devices: []string{r.UserAgent()},
		}},
	})
	if err != nil {
		// Registration goes on without refgate; a bind can be retried later.
		log.Printf("refgate bind for %s failed: %v", user, err)
		reply(w, map[string]any{"user": user, "event": event, "referral": "unknown"})
		return
	}
	reply(w, map[string]any{"user": user, "event": event, "referral": ans})
}

// checkout reports every paid order; refgate decides whether it earns a
// commission. Retrying is safe: the order id makes it idempotent.
func (s *Shop) checkout(w http.ResponseWriter, r *http.Request) {
	amount, err := strconv.ParseInt(r.FormValue("amount"), 10, 64)
	if err != nil || amount < 0 {
		http.Error(w, "amount must be a whole number of minor units", http.StatusBadRequest)
		return
	}
	ans, err := s.RG.Convert(r.Context(), client.Conversion{
		Program: s.Program, Order: r.FormValue("order"), Customer: r.FormValue("user"),
		Amount: amount, Currency: "CNY", Product: r.FormValue("product"), Prepaid: r.FormValue("prepaid") != "false",
	})
	var e *client.Error
	switch {
	case client.IsUnavailable(err):
		// Never book the sale as unattributed because refgate was down:
		// queue the report and retry it.
		log.Printf("refgate unavailable; order %s queued for retry", r.FormValue("order"))
		reply(w, map[string]any{"order": r.FormValue("order"), "commission": "pending"})
		return
	case errors.As(err, &e):
		http.Error(w, e.Message, e.Status)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	reply(w, map[string]any{"order": ans.Order, "commission": ans})
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
