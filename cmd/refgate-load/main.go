// Command refgate-load is refgate's load generator.
//
//	refgate-load run [flags]      one run at a constant rate (open model) or closed loop
//	refgate-load ramp [flags]     find the highest rate that meets --slo
//	refgate-load setup [flags]    create a program, promoters and links, print them as JSON
//	refgate-load ceiling [flags]  serve the baseline: a fixed 302 with one cookie
//	refgate-load bench [flags]    ceiling, then refgate on the embedded store and on Redis, with ratios
//
// Exit status: 0 when every --slo threshold is met and a funnel run found no
// invariant violation, 1 when not, 2 for a usage or setup error.
//
// This file only wires the loadtest package to flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
