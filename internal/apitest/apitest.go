// Package apitest runs the real refgate API on a loopback port over a fresh
// embedded store, for tests of API clients.
package apitest

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/api"
	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/storetest"
)

// Tokens of the test server.
const (
	AdminToken      = "admin-token-0123456"
	StorefrontToken = "sf-token-0123456789"
)

// Server is a running API.
type Server struct {
	URL    string // http://127.0.0.1:PORT
	Store  store.Store
	Signer *cookie.Signer
}

// Serve starts the API with a program "shop" (storetest.Program), an
// active promoter "alice" and her link "l1", and stops it at the end of the test.
func Serve(t testing.TB) *Server {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, _ := cookie.NewSigner([]cookie.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123")}})
	s := api.New(api.Config{Store: st, AdminToken: AdminToken, StorefrontToken: StorefrontToken,
		Clock: new(clock.Clock), Hasher: attribution.NewFingerprintHasher([]byte("0123456789abcdef")), Signer: signer})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: s.ServeFastHTTP, ErrorHandler: s.ErrorHandler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	ctx := context.Background()
	if err := st.PutProgram(ctx, storetest.Program("shop")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutPromoter(ctx, &attribution.Promoter{ID: "alice", Status: "active"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateLink(ctx, &attribution.Link{Code: "l1", Program: "shop", Promoter: "alice",
		Destination: "https://shop.example.com/"}); err != nil {
		t.Fatal(err)
	}
	return &Server{URL: "http://" + ln.Addr().String(), Store: st, Signer: signer}
}
