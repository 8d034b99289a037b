package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/refgate/refgate/client"
)

// apiFlags are the flags of the commands that talk to the API (settle,
// links, promoters): where it is, where the admin token is, how long the
// command may take.
type apiFlags struct {
	url       string
	tokenFile string
	timeout   time.Duration
}

const apiFlagsDoc = `The admin token is read from the environment variable REFGATE_ADMIN_TOKEN,
or from the file --admin-token-file names (which wins), never from a flag's
value, which ps and the shell's history would show. The API's address is
--api-url, else REFGATE_API_URL, else http://127.0.0.1:8081.
`

const defaultAPIURL = "http://127.0.0.1:8081"

// register adds the flags to fs.
func (a *apiFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&a.url, "api-url", defaultAPIURL, "the API's base URL; when not given, REFGATE_API_URL if set")
	fs.StringVar(&a.tokenFile, "admin-token-file", "", "read the admin token from this file (one line) instead of REFGATE_ADMIN_TOKEN")
	fs.DurationVar(&a.timeout, "timeout", timeout, "longest the whole run may take, retries included")
}

// client checks the flags (fs parsed) and returns a client of the API with
// the admin token, retrying as retry says. Its errors are the command
// line's (exit 2) and never hold the token.
func (a *apiFlags) client(fs *flag.FlagSet, retry client.Retry) (*client.Client, error) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "api-url" })
	if v := os.Getenv("REFGATE_API_URL"); !given && v != "" {
		a.url = v
	}
	if a.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, got %v", a.timeout)
	}
	if u, err := url.Parse(a.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--api-url %q: want the API's http(s) base URL, such as %s", a.url, defaultAPIURL)
	}
	token, err := adminToken(a.tokenFile)
	if err != nil {
		return nil, err
	}
	// No timeout of its own: an attempt may take all of --timeout (a
	// settlement of many entries may); the context bounds the run.
	return client.New(a.url, token).WithHTTPClient(&http.Client{}).WithRetry(retry), nil
}

// apiFailed prints why a call to the API failed (the status, code and
// message of an error answer; else what kept it from answering) and
// returns exit status 1.
func apiFailed(stderr io.Writer, cmd string, err error, timeout time.Duration) int {
	var e *client.Error
	switch {
	case errors.As(err, &e):
		fmt.Fprintf(stderr, "%s: %d %s: %s\n", cmd, e.Status, e.Code, oneLine([]byte(e.Message)))
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "%s: %v (--timeout %v)\n", cmd, err, timeout)
	default:
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
	}
	return 1
}

// parseCommand parses args into fs, which takes no configuration from the
// environment but what its command reads itself. Asked for help it prints
// doc and the flags to stdout and returns exit status 0 and done; a
// command line it cannot read is printed with the hint (exit 2, done).
// Arguments after the flags are left in fs.Args() when allowed, up to
// that many (flags may follow them too).
func parseCommand(fs *flag.FlagSet, cmd string, args []string, stdout, stderr io.Writer, doc string, positional int) (code int, done bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var rest []string
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, doc+"\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0, true
		case err != nil:
			return usageFailed(stderr, cmd, err), true
		}
		if fs.NArg() == 0 {
			break
		}
		if len(rest) == positional {
			return usageFailed(stderr, cmd, fmt.Errorf("unexpected arguments: %v", fs.Args())), true
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// fs.Args() is what the command takes as its arguments.
	fs.Parse(append([]string{"--"}, rest...))
	return 0, false
}
