package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/loadtest"
)

const usage = `refgate-load: load generator for refgate

Usage:
  refgate-load run [flags]       one run: --rate N req/s (open model) or --rate 0 (closed loop)
  refgate-load ramp [flags]      raise the rate until --slo is missed; print the highest that met it
  refgate-load setup [flags]     create a program, promoters and links; print them as JSON
  refgate-load ceiling [flags]   serve the baseline (a fixed 302 with one cookie; --redis-url: plus one key per click;
                               --redis-events: plus one stream entry per click)
  refgate-load bench [flags]     ceiling, store baselines, then refgate (embedded store, Redis) under the same load, as ratios

Each command takes -h. Flags can also be set as REFGATE_LOAD_<NAME> variables.
Exit status: 0 when every --slo threshold is met and a funnel found no invariant
violation, 1 when not, 2 for a usage or setup error.
`

// Exit codes.
const (
	exitOK    = 0
	exitSLO   = 1
	exitUsage = 2
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	code := exitOK
	switch args[0] {
	case "run", "ramp":
		code, err = runLoad(ctx, args[0], args[1:], stdout, stderr)
	case "setup":
		err = runSetup(args[1:], stdout, stderr)
	case "ceiling":
		err = runCeiling(ctx, args[1:], stdout, stderr)
	case "bench":
		code, err = runBench(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "refgate-load: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintln(stderr, "refgate-load:", err)
		return exitUsage
	}
	return code
}

func parse(fs *flag.FlagSet, args []string) error {
	return ff.Parse(fs, args, ff.WithEnvVarPrefix("REFGATE_LOAD"))
}

// targetFlags are the flags every command that talks to refgate shares.
type targetFlags struct {
	edge, api, adminToken, sfToken string
	allowRemote                    bool
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.edge, "target", "http://127.0.0.1:8080", "refgate's public edge (or the ceiling)")
	fs.StringVar(&t.api, "api", "http://127.0.0.1:8081", "refgate's API, for setup, the funnel and verification")
	fs.StringVar(&t.adminToken, "admin-token", "", "admin token, to create the fixture (setup)")
	fs.StringVar(&t.sfToken, "storefront-token", "", "storefront token for the funnel (default: the admin token)")
	fs.BoolVar(&t.allowRemote, "allow-remote", false, "allow targets that are not loopback addresses")
}

type setupFlags struct {
	program, destination string
	promoters, links     int
}

func (s *setupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.program, "program", "load", "program id to create")
	fs.IntVar(&s.promoters, "promoters", 8, "promoters to create; they compete for the same visitors")
	fs.IntVar(&s.links, "links-per-promoter", 16, "links per promoter")
	fs.StringVar(&s.destination, "destination", "https://shop.example.com/landing", "the links' destination")
}

func (s *setupFlags) options() loadtest.SetupOptions {
	return loadtest.SetupOptions{Program: s.program, Promoters: s.promoters, LinksPerPromoter: s.links, Destination: s.destination}
}

func runSetup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("refgate-load setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t targetFlags
	var s setupFlags
	t.register(fs)
	s.register(fs)
	out := fs.String("out", "", "write the fixture JSON here (default: standard output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if t.adminToken == "" {
		return errors.New("setup needs --admin-token")
	}
	api, err := loadtest.NewTarget(t.api, 4, t.allowRemote)
	if err != nil {
		return err
	}
	fx, err := loadtest.Setup(api, t.adminToken, s.options())
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(fx, "", "  ")
	b = append(b, '\n')
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

func runCeiling(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("refgate-load ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9090", "address to serve on")
	redisURL := fs.String("redis-url", "", "also write one key per click to this Redis, pipelined in the background (the store baseline)")
	redisEvents := fs.Bool("redis-events", false, "with --redis-url, also add one event-sized entry per click to a capped Redis Stream")
	if err := parse(fs, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := loadtest.NewCeiling()
	if *redisEvents && *redisURL == "" {
		return errors.New("--redis-events needs --redis-url")
	}
	if *redisURL != "" {
		opt, err := redis.ParseURL(*redisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		kw := loadtest.NewKeyWriter(rdb, *redisEvents)
		defer func() {
			kw.Close()
			if n := kw.Errors(); n > 0 {
				fmt.Fprintf(stderr, "ceiling: %d pipelines to Redis failed\n", n)
			}
		}()
		srv = loadtest.NewCeilingWithKeys(kw)
	}
	fmt.Fprintf(stdout, "ceiling serving on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.ShutdownWithContext(sctx)
	}
}
