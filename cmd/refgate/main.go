// Command refgate is the edge click-tracking and attribution redirector.
//
//	refgate serve [flags]     run the edge and the API
//	refgate validate [flags]  check a configuration without starting
//	refgate events tail       print the events as they flow
//	refgate probe URL         GET URL, exit 0 on 2xx (container health checks)
//	refgate settle [flags]    settle a program's ledger through the API (cron)
//	refgate links ...         create, list, pause and resume links through the API
//	refgate promoters list    list the promoters through the API
//	refgate report ...        a program's, promoter's or link's report as a table
//	refgate version           print the version, revision, build date and Go version
//
// Help (-h, --help, refgate help COMMAND) goes to stdout with exit status
// 0; a command line refgate cannot read gets one error line and a hint on
// stderr, exit status 2.
//
// This file only wires packages together; the logic lives in them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `refgate: edge click tracking and attribution for referral programs

Usage:
  refgate serve [flags]              run the public edge and the API
  refgate validate --config FILE     check a configuration (flags, env and file as serve reads them) without starting
  refgate events tail [flags]        print the events as they flow
  refgate probe [--timeout 2s] URL   GET URL: exit 0 on 2xx, 1 otherwise (container health checks)
  refgate settle --program P         settle a program's ledger through the API: exit 0 settled, 1 not (cron)
  refgate links COMMAND [flags]      create, list, pause or resume links through the API
  refgate promoters list [flags]     list the promoters through the API
  refgate report --program P         a program's report per day or month, as a table (promoter, link)
  refgate version                    print the version, revision, build date and Go version
  refgate help [COMMAND]             this, or a command's flags (as refgate COMMAND --help)
`

const eventsUsage = `Usage: refgate events tail [flags]

The only subcommand is tail: it prints the events refgate emits, one JSON
object per line (refgate events tail --help for its flags).
`

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "validate":
		const cmd = "refgate validate"
		var c Config
		err := c.ParseFlags(cmd, args[1:], stdout)
		var usage usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &usage):
			return usageFailed(stderr, cmd, err)
		case err == nil:
			err = c.Check()
		}
		if err != nil {
			fmt.Fprintln(stderr, "refgate: invalid configuration:", err)
			return 1
		}
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	case "events":
		switch {
		case len(args) < 2:
			fmt.Fprint(stderr, eventsUsage)
			return 2
		case args[1] == "tail":
			return tail(ctx, args[2:], stdout, stderr)
		case isHelp(args[1]):
			fmt.Fprint(stdout, eventsUsage)
			return 0
		}
		fmt.Fprintf(stderr, "refgate events: unknown subcommand %q\nrun 'refgate events --help' for the subcommands\n", args[1])
		return 2
	case "probe":
		return probe(ctx, args[1:], stdout, stderr)
	case "settle":
		return settle(ctx, args[1:], stdout, stderr)
	case "links":
		return links(ctx, args[1:], stdout, stderr)
	case "promoters":
		return promoters(ctx, args[1:], stdout, stderr)
	case "report":
		return report(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		if len(args) > 1 {
			if isHelp(args[1]) {
				fmt.Fprint(stdout, "Usage: refgate version\n\nPrints the version, the revision, the build date and the Go version and platform.\n")
				return 0
			}
			return usageFailed(stderr, "refgate version", fmt.Errorf("unexpected arguments: %v", args[1:]))
		}
		fmt.Fprintln(stdout, "refgate", readBuild())
		return 0
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && !isHelp(args[1]) {
			// refgate help serve is refgate serve --help.
			return run(ctx, append(args[1:], "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "refgate: unknown command %q\nrun 'refgate help' for the commands\n", args[0])
	return 2
}

// serve runs "refgate serve" until ctx ends or a listener fails.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "refgate serve"
	m := NewMain()
	if err := m.Config.ParseFlags(cmd, args, stdout); err != nil {
		var usage usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &usage):
			return usageFailed(stderr, cmd, err)
		}
		fmt.Fprintln(stderr, "refgate:", err)
		return 2
	}
	m.LogOutput = stderr
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "refgate:", err)
		m.Close()
		return 1
	}
	select {
	case <-ctx.Done():
	case <-m.Done():
	}
	if err := m.Close(); err != nil {
		fmt.Fprintln(stderr, "refgate:", err)
		return 1
	}
	if err := m.Err(); err != nil {
		fmt.Fprintln(stderr, "refgate:", err)
		return 1
	}
	return 0
}
