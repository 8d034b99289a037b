package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/refgate/refgate/loadtest"
)

// loadFlags are the flags of run and ramp.
type loadFlags struct {
	targetFlags
	setup                             setupFlags
	scenario, slo, jsonOut, htmlOut   string
	fixture                           string
	o                                 loadtest.Options
	clicks                            loadtest.ClickOptions
	funnel                            loadtest.FunnelOptions
	serverPID, storePID               int
	cpuProfile                        string
	ramp                              loadtest.RampOptions
	rate                              float64
	newShare, bots, prefetch, unknown float64
}

func (f *loadFlags) register(fs *flag.FlagSet, ramp bool) {
	f.targetFlags.register(fs)
	f.setup.register(fs)
	fs.StringVar(&f.scenario, "scenario", "clicks", "clicks or funnel")
	if ramp {
		fs.Float64Var(&f.ramp.From, "from", 1000, "first rate, req/s")
		fs.Float64Var(&f.ramp.Factor, "factor", 1.5, "each step's rate is the previous one times this")
		fs.Float64Var(&f.ramp.Max, "max", 1e6, "highest rate to try")
		fs.IntVar(&f.ramp.Refine, "refine", 3, "bisections between the last rate that met the SLO and the first that did not")
	} else {
		fs.Float64Var(&f.rate, "rate", 1000, "requests per second (open model); 0 = closed loop, as fast as the server answers")
	}
	fs.DurationVar(&f.o.Duration, "duration", 30*time.Second, "measured time (per step for ramp)")
	fs.DurationVar(&f.o.Warmup, "warmup", 5*time.Second, "time before the measured time, at the same rate, not recorded")
	fs.IntVar(&f.o.Workers, "workers", 256, "most requests in flight (and connections)")
	fs.DurationVar(&f.o.Timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.StringVar(&f.slo, "slo", "", `thresholds, e.g. "p99=5ms,p99.9=20ms,errors=0.1%,violations=0"; exit status 1 when missed`)
	fs.StringVar(&f.jsonOut, "json", "", "write the result as JSON to this file (- for standard output)")
	fs.StringVar(&f.htmlOut, "html", "", "write a self-contained HTML report to this file")
	fs.StringVar(&f.fixture, "fixture", "", "links to click, as written by setup (default: create them with --admin-token)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file")
	fs.IntVar(&f.serverPID, "server-pid", 0, "the server's process id on this machine, to report its CPU per request and memory")
	fs.IntVar(&f.storePID, "store-pid", 0, "the store's process id on this machine (a redis-server), reported the same way")
	fs.IntVar(&f.clicks.Visitors, "visitors", 10000, "clicks: returning visitors whose cookies are kept")
	fs.Float64Var(&f.newShare, "new", 0.3, "clicks: share from new visitors")
	fs.Float64Var(&f.bots, "bots", 0.05, "clicks: share from crawlers")
	fs.Float64Var(&f.prefetch, "prefetches", 0.02, "clicks: share of prefetches")
	fs.Float64Var(&f.unknown, "unknown", 0.01, "clicks: share of unknown codes")
	fs.Float64Var(&f.clicks.ZipfS, "zipf", 1.1, "Zipf exponent of link popularity (> 1)")
	fs.IntVar(&f.funnel.Customers, "customers", 2000, "funnel: customers competed for")
	fs.Float64Var(&f.funnel.Retries, "retries", 0.1, "funnel: share of conversions sent twice with the same order id")
}

// scenario builds the targets, the fixture and the scenario.
func (f *loadFlags) scenarioFor(stderr io.Writer) (loadtest.Scenario, *loadtest.Target, *loadtest.Funnel, error) {
	edge, err := loadtest.NewTarget(f.edge, 1, f.allowRemote) // workers dial their own connections
	if err != nil {
		return nil, nil, nil, err
	}
	var api *loadtest.Target
	if f.scenario == "funnel" || f.fixture == "" {
		// Its Client serves setup and the verification's concurrent reads.
		if api, err = loadtest.NewTarget(f.api, f.o.Workers, f.allowRemote); err != nil {
			return nil, nil, nil, err
		}
	}
	var fx *loadtest.Fixture
	if f.fixture != "" {
		b, err := os.ReadFile(f.fixture)
		if err != nil {
			return nil, nil, nil, err
		}
		fx = new(loadtest.Fixture)
		if err := json.Unmarshal(b, fx); err != nil {
			return nil, nil, nil, fmt.Errorf("fixture %s: %w", f.fixture, err)
		}
	} else {
		if f.adminToken == "" {
			return nil, nil, nil, errors.New("give --fixture (from refgate-load setup) or --admin-token to create one")
		}
		fmt.Fprintf(stderr, "setting up program %q: %d promoters × %d links\n", f.setup.program, f.setup.promoters, f.setup.links)
		if fx, err = loadtest.Setup(api, f.adminToken, f.setup.options()); err != nil {
			return nil, nil, nil, err
		}
	}
	switch f.scenario {
	case "clicks":
		f.clicks.New, f.clicks.Bots, f.clicks.Prefetches, f.clicks.Unknown = f.newShare, f.bots, f.prefetch, f.unknown
		sc, err := loadtest.NewClicks(edge, fx, f.clicks)
		return sc, edge, nil, err
	case "funnel":
		f.funnel.StorefrontToken = f.sfToken
		if f.funnel.StorefrontToken == "" {
			f.funnel.StorefrontToken = f.adminToken
		}
		f.funnel.ZipfS = f.clicks.ZipfS
		sc, err := loadtest.NewFunnel(edge, api, fx, f.funnel)
		return sc, edge, sc, err
	}
	return nil, nil, nil, fmt.Errorf("unknown scenario %q (clicks or funnel)", f.scenario)
}

func runLoad(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("refgate-load "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f loadFlags
	f.register(fs, cmd == "ramp")
	if err := parse(fs, args); err != nil {
		return exitUsage, err
	}
	slo, err := loadtest.ParseSLO(f.slo)
	if err != nil {
		return exitUsage, err
	}
	if cmd == "ramp" && slo == nil {
		return exitUsage, errors.New("ramp needs --slo")
	}
	if f.storePID > 0 {
		f.o.Store = &loadtest.Process{PID: f.storePID}
	}
	if f.serverPID > 0 {
		f.o.Usage = &loadtest.Process{PID: f.serverPID}
	}
	sc, edge, funnel, err := f.scenarioFor(stderr)
	if err != nil {
		return exitUsage, err
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return exitUsage, err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return exitUsage, err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	var res *loadtest.Result
	var steps []*loadtest.Result
	noneMet := false // a ramp whose first step already missed
	if cmd == "ramp" {
		res, steps, err = loadtest.Ramp(ctx, f.o, f.ramp, slo, sc, func(r *loadtest.Result, ok bool) {
			verdict := "met"
			if !ok {
				verdict = "missed"
			}
			fmt.Fprintf(stdout, "step %8.0f req/s: achieved %8.0f, p99 %-10s errors %.3f%%: SLO %s\n",
				r.Rate, r.Achieved, r.Stats.Latency.P99, r.Stats.ErrorRate()*100, verdict)
		})
		if err != nil {
			return exitUsage, err
		}
		if res == nil {
			noneMet = true
			fmt.Fprintf(stdout, "no rate met the SLO (the first step was %.0f req/s)\n", f.ramp.From)
			if len(steps) > 0 {
				res = steps[0]
			}
		} else {
			fmt.Fprintf(stdout, "highest rate that met the SLO: %.0f req/s\n", res.Rate)
		}
	} else {
		f.o.Rate = f.rate
		res, err = loadtest.Run(ctx, f.o, sc)
		if err != nil {
			return exitUsage, err
		}
	}
	if res == nil {
		return exitSLO, nil
	}
	res.Target = edge.Base
	if funnel != nil {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		res.Verification = funnel.Verify(vctx, 16)
		cancel()
	}
	met := slo.Check(res) && !noneMet
	loadtest.WriteText(stdout, res)
	if err := writeReports(&f, res, steps, stdout); err != nil {
		return exitUsage, err
	}
	if !met || res.Verification != nil && (res.Verification.Total() > 0 || res.Verification.Errors > 0) {
		return exitSLO, nil
	}
	return exitOK, nil
}

func writeReports(f *loadFlags, res *loadtest.Result, steps []*loadtest.Result, stdout io.Writer) error {
	if f.jsonOut != "" {
		w := stdout
		if f.jsonOut != "-" {
			file, err := os.Create(f.jsonOut)
			if err != nil {
				return err
			}
			defer file.Close()
			w = file
		}
		if steps != nil {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if err := enc.Encode(map[string]any{"best": res, "steps": steps}); err != nil {
				return err
			}
		} else if err := loadtest.WriteJSON(w, res); err != nil {
			return err
		}
	}
	if f.htmlOut != "" {
		file, err := os.Create(f.htmlOut)
		if err != nil {
			return err
		}
		if err := loadtest.WriteHTML(file, res); err != nil {
			file.Close()
			return err
		}
		return file.Close()
	}
	return nil
}
