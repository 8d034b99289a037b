package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const probeDoc = `Usage: refgate probe [--timeout 2s] URL

GETs URL: exit 0 on a 2xx answer, 1 otherwise with the reason on stderr. It
is the health check of images without a shell or curl (distroless):

  HEALTHCHECK CMD ["/refgate", "probe", "http://127.0.0.1:8081/livez"]

Redirects are not followed (a 3xx fails), no proxy is used, and the
REFGATE_* environment and --config do not apply.
`

// probe runs "refgate probe".
func probe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "refgate probe"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "longest the whole request may take, answer included")
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, probeDoc+"\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	case err != nil:
		return usageFailed(stderr, cmd, err)
	case fs.NArg() != 1:
		return usageFailed(stderr, cmd, errors.New("want one URL"))
	case *timeout <= 0:
		return usageFailed(stderr, cmd, fmt.Errorf("--timeout must be positive, got %v", *timeout))
	}
	target := fs.Arg(0)
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageFailed(stderr, cmd, fmt.Errorf("%q: want an http(s) URL", target))
	}
	client := &http.Client{
		Timeout: *timeout,
		// A health check asks the process it checks: never through an
		// HTTP_PROXY the container's environment may set.
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return usageFailed(stderr, cmd, err)
	}
	req.Header.Set("User-Agent", "refgate-probe/"+Version())
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	defer resp.Body.Close()
	// The start of the body says why, as /readyz's does.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		reason := resp.Status
		if line := oneLine(body); line != "" {
			reason += ": " + line
		}
		fmt.Fprintf(stderr, "%s: %s: %s\n", cmd, target, reason)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", target, resp.Status)
	return 0
}

// oneLine is b's whitespace folded into single spaces, at most 200 bytes.
func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}
