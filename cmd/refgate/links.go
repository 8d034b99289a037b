package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/client"
)

const linksUsage = `Usage: refgate links COMMAND [flags]

Manages links through the API:
  refgate links create --program P --promoter A --destination URL [--code C]
  refgate links list [--program P] [--promoter A] [--limit N]
  refgate links pause CODE      the link still redirects, sets no cookie, counts clicks inactive
  refgate links resume CODE     attributes again
Each prints a table (--json: the API's JSON) and exits 0 when the API
answered yes, 1 when it refused (the status, code and message on stderr) or
could not be reached within --timeout, 2 for a command line it cannot run.
refgate links COMMAND --help lists a command's flags.
`

const promotersUsage = `Usage: refgate promoters list [--limit N] [flags]

The only subcommand is list: it prints the promoters, by id, as a table
(refgate promoters list --help for its flags).
`

// cliRetry is how the link and promoter commands retry: 3 attempts,
// waits of up to 1 and 2 s.
var cliRetry = client.Retry{Attempts: 3, Base: time.Second, Max: 2 * time.Second}

// links runs "refgate links".
func links(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, linksUsage)
		return 2
	}
	switch args[0] {
	case "create":
		return linksCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return linksList(ctx, args[1:], stdout, stderr)
	case "pause":
		return linksStatus(ctx, "pause", attribution.LinkPaused, args[1:], stdout, stderr)
	case "resume":
		return linksStatus(ctx, "resume", attribution.LinkActive, args[1:], stdout, stderr)
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, linksUsage)
		return 0
	}
	fmt.Fprintf(stderr, "refgate links: unknown subcommand %q\nrun 'refgate links --help' for the subcommands\n", args[0])
	return 2
}

// promoters runs "refgate promoters".
func promoters(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, promotersUsage)
		return 2
	case args[0] == "list":
		return promotersList(ctx, args[1:], stdout, stderr)
	case isHelp(args[0]):
		fmt.Fprint(stdout, promotersUsage)
		return 0
	}
	fmt.Fprintf(stderr, "refgate promoters: unknown subcommand %q\nrun 'refgate promoters --help' for the subcommands\n", args[0])
	return 2
}

// apiCommand is what every link and promoter command shares: its flags,
// and after parsing, its client and the run's context.
type apiCommand struct {
	name  string
	fs    *flag.FlagSet
	api   apiFlags
	json  bool
	limit *int // --limit of the list commands (listFlag), nil for others
}

// listFlag adds --limit, at most that many of what (0: all), which start
// checks and list obeys.
func (c *apiCommand) listFlag(what string) {
	c.limit = c.fs.Int("limit", 0, "list at most this many "+what+"; 0 = all")
}

// list reads the list at path (listAll, up to --limit) and, with --json,
// prints it and is done with the exit status; an API failure is done too.
func (c *apiCommand) list(run context.Context, rg *client.Client, path string, q url.Values, stdout, stderr io.Writer) (items []json.RawMessage, code int, done bool) {
	items, next, err := listAll(run, rg, path, q, *c.limit)
	switch {
	case err != nil:
		return nil, apiFailed(stderr, c.name, err, c.api.timeout), true
	case c.json:
		return nil, printPage(stdout, stderr, c.name, items, next), true
	}
	return items, 0, false
}

func newAPICommand(name string) *apiCommand {
	c := &apiCommand{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.api.register(c.fs, 30*time.Second)
	c.fs.BoolVar(&c.json, "json", false, "print the API's JSON answer instead of a table")
	return c
}

// start parses args (up to positional arguments), checks them with check
// (nil for none), and returns the client and a context bounded by
// --timeout; or done and the exit status.
func (c *apiCommand) start(ctx context.Context, args []string, stdout, stderr io.Writer, doc string, positional int,
	check func() error) (rg *client.Client, run context.Context, cancel context.CancelFunc, code int, done bool) {
	if code, done := parseCommand(c.fs, c.name, args, stdout, stderr, doc, positional); done {
		return nil, nil, nil, code, true
	}
	var err error
	switch {
	case c.limit != nil && *c.limit < 0:
		err = fmt.Errorf("--limit must be 0 (all) or more, got %d", *c.limit)
	case check != nil:
		err = check()
	}
	if err == nil {
		rg, err = c.api.client(c.fs, cliRetry)
	}
	if err != nil {
		return nil, nil, nil, usageFailed(stderr, c.name, err), true
	}
	run, cancel = context.WithTimeout(ctx, c.api.timeout)
	return rg, run, cancel, 0, false
}

// linkRow is what the link commands read of a link.
type linkRow struct {
	Code        string     `json:"code"`
	URL         string     `json:"url"`
	Program     string     `json:"program"`
	Promoter    string     `json:"promoter"`
	Destination string     `json:"destination"`
	CreatedAt   time.Time  `json:"created_at"`
	Status      string     `json:"status"`
	ExpiresAt   *time.Time `json:"expires_at"`
	ExpiredURL  string     `json:"expired_url"`
}

// printLinks writes links as a table, one line each under a header.
func printLinks(w io.Writer, ls []linkRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tPROGRAM\tPROMOTER\tSTATUS\tEXPIRES\tCREATED\tURL\tDESTINATION")
	for _, l := range ls {
		exp := "-"
		if l.ExpiresAt != nil {
			exp = l.ExpiresAt.UTC().Format(time.RFC3339)
		}
		dest := l.Destination
		if l.ExpiredURL != "" {
			dest += " (expired: " + l.ExpiredURL + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Code, l.Program, l.Promoter, l.Status, exp,
			l.CreatedAt.UTC().Format(time.RFC3339), l.URL, dest)
	}
	tw.Flush()
}

// printOne prints one link answer: raw, or as a table.
func (c *apiCommand) printOne(stdout io.Writer, raw json.RawMessage) error {
	if c.json {
		_, err := fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	var l linkRow
	if err := json.Unmarshal(raw, &l); err != nil {
		return fmt.Errorf("bad answer: %w", err)
	}
	printLinks(stdout, []linkRow{l})
	return nil
}

const linksCreateDoc = `Usage: refgate links create --program P --promoter A --destination URL [--code C] [flags]

Creates a link (POST /v1/admin/links): without --code the API draws a
random 10-character one. The destination's host must be allowed by the
program. It prints the link, its public URL included.

` + apiFlagsDoc + `
A create is sent again only when it never reached the API (a refused
connection): a second one would be a second link.
`

func linksCreate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newAPICommand("refgate links create")
	program := c.fs.String("program", "", "the link's program (required)")
	promoter := c.fs.String("promoter", "", "the link's promoter (required)")
	dest := c.fs.String("destination", "", "where the link sends clicks, an http(s) URL the program allows (required)")
	code := c.fs.String("code", "", "the link's code, 3 to 64 characters of A-Z a-z 0-9 _ -; empty: a random one")
	rg, run, cancel, status, done := c.start(ctx, args, stdout, stderr, linksCreateDoc, 0, func() error {
		switch {
		case *program == "":
			return errors.New("--program is required")
		case *promoter == "":
			return errors.New("--promoter is required")
		case *dest == "":
			return errors.New("--destination is required")
		case *code != "" && !attribution.ValidCode(*code):
			return fmt.Errorf("--code %q: a code is 3 to 64 characters of A-Z a-z 0-9 _ -", *code)
		}
		return nil
	})
	if done {
		return status
	}
	defer cancel()
	in := map[string]string{"program": *program, "promoter": *promoter, "destination": *dest}
	if *code != "" {
		in["code"] = *code
	}
	var raw json.RawMessage
	if err := rg.Do(run, "POST", "/v1/admin/links", in, &raw, false); err != nil {
		return apiFailed(stderr, c.name, err, c.api.timeout)
	}
	if err := c.printOne(stdout, raw); err != nil {
		return apiFailed(stderr, c.name, err, c.api.timeout)
	}
	return 0
}

const linksListDoc = `Usage: refgate links list [--program P] [--promoter A] [--limit N] [flags]

Lists links (GET /v1/admin/links), newest first, of one program and one
promoter when given, following the pages to the end or to --limit links.
Deleted links are not listed. --json prints {"items":[...]} with every link
read, and the next_cursor the API gave when --limit stopped it short.

` + apiFlagsDoc

func linksList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newAPICommand("refgate links list")
	program := c.fs.String("program", "", "only this program's links")
	promoter := c.fs.String("promoter", "", "only this promoter's links")
	c.listFlag("links")
	rg, run, cancel, status, done := c.start(ctx, args, stdout, stderr, linksListDoc, 0, nil)
	if done {
		return status
	}
	defer cancel()
	q := url.Values{}
	if *program != "" {
		q.Set("program", *program)
	}
	if *promoter != "" {
		q.Set("promoter", *promoter)
	}
	items, status, done := c.list(run, rg, "/v1/admin/links", q, stdout, stderr)
	if done {
		return status
	}
	ls := make([]linkRow, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &ls[i]); err != nil {
			return apiFailed(stderr, c.name, fmt.Errorf("bad answer: %w", err), c.api.timeout)
		}
	}
	printLinks(stdout, ls)
	return 0
}

// listAll reads the pages of the list at path from the first, following
// next_cursor, until the end or limit items (0: no limit). next is the
// cursor after the last item read when limit stopped it short.
func listAll(ctx context.Context, rg *client.Client, path string, q url.Values, limit int) (items []json.RawMessage, next string, err error) {
	for {
		page := 1000
		if limit > 0 {
			page = min(page, limit-len(items))
		}
		q.Set("limit", strconv.Itoa(page))
		var ans struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := rg.Do(ctx, "GET", path+"?"+q.Encode(), nil, &ans, true); err != nil {
			return nil, "", err
		}
		items = append(items, ans.Items...)
		if ans.NextCursor == "" {
			return items, "", nil
		}
		if limit > 0 && len(items) >= limit {
			return items, ans.NextCursor, nil
		}
		q.Set("cursor", ans.NextCursor)
	}
}

// printPage prints items as one list answer.
func printPage(stdout, stderr io.Writer, cmd string, items []json.RawMessage, next string) int {
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(struct {
		Items      []json.RawMessage `json:"items"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}{items, next})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}

const linksStatusDoc = `Usage: refgate links %s CODE [flags]

%s (PATCH /v1/admin/links/CODE {"status":"%s"})
and prints it. %s
Every instance honours the change within a second.

` + apiFlagsDoc

func linksStatus(ctx context.Context, verb string, status attribution.LinkStatus, args []string, stdout, stderr io.Writer) int {
	c := newAPICommand("refgate links " + verb)
	var doc string
	if status == attribution.LinkPaused {
		doc = fmt.Sprintf(linksStatusDoc, verb, "Pauses a link", status,
			"A paused link still redirects (to its expired_url when set, else\nto its destination) but sets no cookie, and its clicks are counted inactive.")
	} else {
		doc = fmt.Sprintf(linksStatusDoc, verb, "Makes a paused link active again", status,
			"A link past its expires_at stays inactive:\nPATCH its expires_at to change that.")
	}
	var code string
	rg, run, cancel, st, done := c.start(ctx, args, stdout, stderr, doc, 1, func() error {
		if c.fs.NArg() != 1 {
			return errors.New("want one link code")
		}
		code = c.fs.Arg(0)
		if !attribution.ValidCode(code) {
			return fmt.Errorf("%q is not a link code (3 to 64 characters of A-Z a-z 0-9 _ -)", code)
		}
		return nil
	})
	if done {
		return st
	}
	defer cancel()
	var raw json.RawMessage
	if err := rg.Do(run, "PATCH", "/v1/admin/links/"+code, map[string]string{"status": string(status)}, &raw, true); err != nil {
		return apiFailed(stderr, c.name, err, c.api.timeout)
	}
	if err := c.printOne(stdout, raw); err != nil {
		return apiFailed(stderr, c.name, err, c.api.timeout)
	}
	return 0
}

const promotersListDoc = `Usage: refgate promoters list [--limit N] [flags]

Lists the promoters (GET /v1/admin/promoters) by id, following the pages to
the end or to --limit promoters: id, status, tier and how many fingerprints
are kept (never the fingerprints). --json prints {"items":[...]}.

` + apiFlagsDoc

func promotersList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newAPICommand("refgate promoters list")
	c.listFlag("promoters")
	rg, run, cancel, status, done := c.start(ctx, args, stdout, stderr, promotersListDoc, 0, nil)
	if done {
		return status
	}
	defer cancel()
	items, status, done := c.list(run, rg, "/v1/admin/promoters", url.Values{}, stdout, stderr)
	if done {
		return status
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTIER\tFINGERPRINTS")
	for _, it := range items {
		var p struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			Tier         int    `json:"tier"`
			Fingerprints int    `json:"fingerprints"`
		}
		if err := json.Unmarshal(it, &p); err != nil {
			return apiFailed(stderr, c.name, fmt.Errorf("bad answer: %w", err), c.api.timeout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", p.ID, p.Status, p.Tier, p.Fingerprints)
	}
	tw.Flush()
	return 0
}
