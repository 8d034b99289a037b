// Command refgate is the edge click-tracking and attribution redirector.
//
//	refgate serve [flags]     run the edge and the API
//	refgate version           print the version, revision, build date and Go version
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
  refgate serve [flags]              run the public edge and the API (refgate serve -h for flags)
  refgate validate --config FILE     check a configuration (flags, env and file as serve reads them) without starting
  refgate events tail [flags]        print the events as they flow (refgate events tail -h for flags)
  refgate version                    print the version, revision, build date and Go version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		m := NewMain()
		if err := m.Config.ParseFlags("refgate serve", args[1:], stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
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
	case "validate":
		var c Config
		err := c.ParseFlags("refgate validate", args[1:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err == nil {
			err = c.Check()
		}
		if err != nil {
			fmt.Fprintln(stderr, "refgate: invalid configuration:", err)
			return 1
		}
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	case "events":
		if len(args) < 2 || args[1] != "tail" {
			fmt.Fprint(stderr, "refgate events: the only subcommand is tail\n\n"+usage)
			return 2
		}
		return tail(ctx, args[2:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "refgate", readBuild())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "refgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}
