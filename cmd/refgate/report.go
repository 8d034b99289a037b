package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/refgate/refgate/api"
	"github.com/refgate/refgate/attribution"
)

const reportDoc = `Usage: refgate report --program P [--promoter A | --link L] [--from DATE] [--to DATE] [--interval day|month] [flags]

Prints a program's report (GET /v1/admin/reports), or one promoter's or one
link's, as a table: one row per UTC day (or month) from --from to --to, both
included, quiet days as zeros, and a total row. Dates are YYYY-MM-DD; --to
defaults to today (UTC) and --from to six days before --to, a week.

Columns: CLICKS the attributed clicks; NOT ATTR. the others (bots, suspect,
self clicks, rate limited, inactive, GPC); VISITORS distinct visitors
(approximate; a total over several days is not their sum, so the total row
shows it only for one period); BINDS associations created, renewed or
overridden; KEPT binds that left an earlier protected holder in place;
REJECTED binds refused; ORDERS conversions attributed; NOT ATTR. orders
that earned nothing, for any reason; CASH, COMMISSION, REFUNDED in minor
units (every currency added together). --json prints the API's answer, with
every outcome and reason apart.

` + apiFlagsDoc

func report(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newAPICommand("refgate report")
	program := c.fs.String("program", "", "the program (required)")
	promoter := c.fs.String("promoter", "", "one promoter's series")
	link := c.fs.String("link", "", "one link's series (not with --promoter)")
	today := time.Now().UTC().Format(time.DateOnly)
	to := c.fs.String("to", today, "the last day, YYYY-MM-DD (UTC), included")
	from := c.fs.String("from", "", "the first day, YYYY-MM-DD (UTC), included; empty = six days before --to")
	interval := c.fs.String("interval", "day", "day or month: one row per day, or per month")
	rg, run, cancel, status, done := c.start(ctx, args, stdout, stderr, reportDoc, 0, func() error {
		end, err := time.Parse(time.DateOnly, *to)
		switch {
		case *program == "":
			return fmt.Errorf("--program is required")
		case !attribution.ValidProgramID(*program):
			return fmt.Errorf("--program %q: a program id is 1 to 64 characters of A-Z a-z 0-9 _ -", *program)
		case *promoter != "" && *link != "":
			return fmt.Errorf("--promoter and --link: give one of them")
		case *interval != "day" && *interval != "month":
			return fmt.Errorf("--interval %q: want day or month", *interval)
		case err != nil:
			return fmt.Errorf("--to %q: want a date such as %s", *to, today)
		}
		if *from == "" {
			*from = end.AddDate(0, 0, -6).Format(time.DateOnly)
		} else if _, err := time.Parse(time.DateOnly, *from); err != nil {
			return fmt.Errorf("--from %q: want a date such as %s", *from, today)
		}
		return nil
	})
	if done {
		return status
	}
	defer cancel()
	q := url.Values{"program": {*program}, "from": {*from}, "to": {*to}, "interval": {*interval}}
	if *promoter != "" {
		q.Set("promoter", *promoter)
	}
	if *link != "" {
		q.Set("link", *link)
	}
	var raw json.RawMessage
	if err := rg.Do(run, "GET", "/v1/admin/reports?"+q.Encode(), nil, &raw, true); err != nil {
		return apiFailed(stderr, c.name, err, c.api.timeout)
	}
	if c.json {
		fmt.Fprintf(stdout, "%s\n", raw)
		return 0
	}
	var a api.ReportAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return apiFailed(stderr, c.name, fmt.Errorf("bad answer: %w", err), c.api.timeout)
	}
	printReport(stdout, a.Series)
	return 0
}

// printReport writes a report's rows as a table with a total row.
func printReport(w io.Writer, rows []api.ReportPoint) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DATE\tCLICKS\tNOT ATTR.\tVISITORS\tBINDS\tKEPT\tREJECTED\tORDERS\tNOT ATTR.\tCASH\tCOMMISSION\tREFUNDED\t")
	var total [11]int64
	for _, r := range rows {
		v := [11]int64{
			r.Clicks[string(attribution.OutcomeAttributed)],
			sumExcept(r.Clicks, string(attribution.OutcomeAttributed)),
			r.Visitors,
			r.Binds[attribution.DecisionCreated] + r.Binds[attribution.DecisionRenewed] + r.Binds[attribution.DecisionOverridden],
			r.Binds[attribution.DecisionKept],
			r.Binds[attribution.DecisionRejected],
			r.Conversions[attribution.DecisionAttributed],
			sumExcept(r.Conversions, attribution.DecisionAttributed),
			r.Cash, r.Commission, r.Refunded,
		}
		fmt.Fprintf(tw, "%s\t", r.Date)
		for i, n := range v {
			fmt.Fprintf(tw, "%d\t", n)
			total[i] += n
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprint(tw, "TOTAL\t")
	for i, n := range total {
		if i == 2 && len(rows) != 1 { // distinct visitors do not add up
			fmt.Fprint(tw, "-\t")
			continue
		}
		fmt.Fprintf(tw, "%d\t", n)
	}
	fmt.Fprintln(tw)
	tw.Flush()
}

// sumExcept adds up m's counts but skip's.
func sumExcept(m map[string]int64, skip string) int64 {
	var n int64
	for k, v := range m {
		if k != skip {
			n += v
		}
	}
	return n
}
