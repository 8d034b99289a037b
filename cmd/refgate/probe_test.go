package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProbe: refgate probe exits 0 on a 2xx, 1 with a one-line reason on
// anything else: an error status, a redirect, a closed port, a timeout.
func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(204)
		case "/down":
			http.Error(w, "{\"ready\": false,\n \"store\": \"down\"}", 503)
		case "/moved":
			http.Redirect(w, r, "/ok", 302)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/livez"
	ln.Close()
	m, _ := MustRunMain(t, t.TempDir(), nil)

	f := func(name string, args []string, wantCode int, wantErr string) {
		t.Helper()
		code, _, errOut := runCmd(append([]string{"probe"}, args...)...)
		if code != wantCode || strings.Count(errOut, "\n") != min(wantCode, 1) || !strings.Contains(errOut, wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", name, code, errOut, wantCode, wantErr)
		}
	}
	f("OK", []string{srv.URL + "/ok"}, 0, "")
	f("RefgateLivez", []string{"http://" + m.APIAddr() + "/livez"}, 0, "")
	f("RefgateReadyz", []string{"http://" + m.APIAddr() + "/readyz"}, 0, "")
	f("RefgateEdgeHealthz", []string{"http://" + m.EdgeAddr() + "/healthz"}, 0, "")
	f("Down", []string{srv.URL + "/down"}, 1, `/down: 503 Service Unavailable: {"ready": false, "store": "down"}`)
	f("Redirect", []string{srv.URL + "/moved"}, 1, "302 Found")
	f("NotFound", []string{"http://" + m.APIAddr() + "/nope"}, 1, "404")
	f("ClosedPort", []string{closed}, 1, "connection refused")
	f("Timeout", []string{"--timeout", "100ms", srv.URL + "/slow"}, 1, "Client.Timeout exceeded")

	if testing.Short() {
		return
	}
	// The real binary, as a container's HEALTHCHECK runs it.
	if code, out := runBinary(t, nil, "probe", "http://"+m.APIAddr()+"/livez"); code != 0 {
		t.Errorf("binary probe of /livez: exit %d %s", code, out)
	}
	if code, out := runBinary(t, nil, "probe", closed); code != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("binary probe of a closed port: exit %d %q", code, out)
	}
}
