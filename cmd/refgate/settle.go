package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/client"
	"github.com/refgate/refgate/internal/secrets"
)

const settleDoc = `Usage: refgate settle --program P [--through RFC3339] [flags]

Settles a program's ledger through the API (POST /v1/admin/statements):
every unsettled entry available at or before --through (default: the API's
now) goes on a new statement, one per promoter and currency. It prints one
line per statement and a total line, and exits 0 when the API settled, also
when nothing was due; 1 when it refused (the status, code and message on
stderr) or could not be reached within --timeout; 2 for a command line it
cannot run. For cron and Kubernetes CronJobs (deploy/README.md, Settlement).

` + apiFlagsDoc + `
Settling again settles no entry twice, so a refused or cut connection, a
502, 503 or 504 is tried again: up to 5 attempts in all, waiting up to 1, 2,
4 and 8 s between them, within --timeout.
`

// settleRetry is how refgate settle retries: 5 attempts, waits of up to 1,
// 2, 4 and 8 s (15 s in all, long enough for an API restart to pass).
var settleRetry = client.Retry{Attempts: 5, Base: time.Second, Max: 8 * time.Second}

// settle runs "refgate settle".
func settle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "refgate settle"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	program := fs.String("program", "", "the program to settle (required)")
	throughArg := fs.String("through", "", "settle the entries available at or before this RFC 3339 time (2026-12-01T00:00:00Z); empty = the API's now")
	var api apiFlags
	api.register(fs, 60*time.Second)
	if code, done := parseCommand(fs, cmd, args, stdout, stderr, settleDoc, 0); done {
		return code
	}
	var through time.Time
	var err error
	switch {
	case *program == "":
		err = errors.New("--program is required")
	case secrets.Placeholder(*program):
		err = fmt.Errorf("--program %s is a placeholder from an example file: set the program to settle", *program)
	case !attribution.ValidProgramID(*program):
		err = fmt.Errorf("--program %q: a program id is 1 to 64 characters of A-Z a-z 0-9 _ -", *program)
		if strings.HasPrefix(*program, "$(") {
			err = fmt.Errorf("%w (is the variable it names set in the container's environment?)", err)
		}
	case *throughArg != "":
		through, err = time.Parse(time.RFC3339, *throughArg)
		if err != nil {
			err = fmt.Errorf("--through %q: want an RFC 3339 time, such as 2026-12-01T00:00:00Z", *throughArg)
		}
	}
	var rg *client.Client
	if err == nil {
		rg, err = api.client(fs, settleRetry)
	}
	if err != nil {
		return usageFailed(stderr, cmd, err)
	}

	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	sts, err := rg.Settle(ctx, *program, through)
	if err != nil {
		return apiFailed(stderr, cmd, err, api.timeout)
	}
	totals := map[string]int64{}
	for _, s := range sts {
		fmt.Fprintf(stdout, "promoter=%s currency=%s amount=%d entries=%d id=%s\n", s.Promoter, s.Currency, s.Amount, s.Entries, s.ID)
		totals[s.Currency] += s.Amount
	}
	total := fmt.Sprintf("%d statements", len(sts))
	if len(sts) == 1 {
		total = "1 statement"
	}
	var sums []string
	for _, cur := range slices.Sorted(maps.Keys(totals)) {
		sums = append(sums, fmt.Sprintf("%s %d", cur, totals[cur]))
	}
	if len(sums) > 0 {
		total += " (" + strings.Join(sums, ", ") + ")"
	}
	fmt.Fprintln(stdout, total)
	return 0
}

// adminToken is the token in file, or else REFGATE_ADMIN_TOKEN. The errors
// never hold the token.
func adminToken(file string) (string, error) {
	from, tok := "REFGATE_ADMIN_TOKEN", os.Getenv("REFGATE_ADMIN_TOKEN")
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--admin-token-file: %v", err)
		}
		from, tok = "--admin-token-file "+file, string(b)
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "" && file == "":
		return "", errors.New("no admin token: set REFGATE_ADMIN_TOKEN or give --admin-token-file")
	case tok == "":
		return "", fmt.Errorf("%s is empty", from)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s: the token is one line without spaces", from)
	case secrets.Placeholder(tok):
		return "", fmt.Errorf("%s is a placeholder from an example file, not the API's admin token", from)
	}
	return tok, nil
}
