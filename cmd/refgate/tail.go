package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/peterbourgon/ff/v3"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/store/redisstore"
)

const tailDoc = `Usage: refgate events tail [flags]

Prints the events refgate emits, one JSON object per line. It reads serve's
store flags, REFGATE_* environment and --config file (keys it does not use
are ignored): with a Redis store it reads the stream(s), with the embedded
store the JSON Lines files under --data-dir.
`

// tailStoreFlags are the flags of serve's that say where the events are.
var tailStoreFlags = []string{"config", "data-dir", "redis-url", "redis-addrs", "redis-cluster",
	"redis-username", "redis-password", "events-streams"}

var groupName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// tail runs "refgate events tail".
func tail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "refgate events tail"
	var c Config
	var o events.TailOptions
	var types string
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	// serve's flags bound to c, with their defaults and help texts; only
	// those tail reads are offered.
	all := flag.NewFlagSet("", flag.ContinueOnError)
	c.flags(all)
	for _, name := range tailStoreFlags {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	fs.StringVar(&types, "type", "", "comma-separated event types to print; a prefix such as refgate.association takes all of its types")
	fs.StringVar(&o.From, "from", "new", "new (only what arrives from now on), start (everything kept), an RFC 3339 time, or a stream entry id")
	fs.StringVar(&o.Group, "group", "", "read as this consumer group and acknowledge each event after printing it")
	fs.StringVar(&o.Consumer, "consumer", "", "consumer name within --group (Redis); default host-pid")
	fs.BoolVar(&o.Follow, "follow", true, "keep waiting for new events; false stops at the end")
	fs.IntVar(&o.Count, "count", 0, "stop after printing this many events; 0 = no limit")
	err := parseFlags(fs, args, stdout, tailDoc, ff.WithIgnoreUndefined(true))
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		return usageFailed(stderr, cmd, err)
	case err == nil:
		err = c.checkTail()
	}
	if err == nil && o.Group != "" && !groupName.MatchString(o.Group) {
		err = fmt.Errorf("--group %q: use letters, digits, '_', '-' and '.'", o.Group)
	}
	if err == nil && o.Count < 0 {
		err = fmt.Errorf("--count must not be negative (0 = no limit), got %d", o.Count)
	}
	if err != nil {
		fmt.Fprintln(stderr, cmd+":", err)
		return 2
	}
	for _, t := range strings.Split(types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.Types = append(o.Types, t)
		}
	}
	print := func(raw []byte) error {
		_, err := fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	if storeKind(&c) == "embedded" {
		err = events.TailFiles(ctx, filepath.Join(c.DataDir, events.FileDir), o, print)
	} else {
		err = tailRedis(ctx, &c, o, print)
	}
	if err != nil {
		fmt.Fprintln(stderr, "refgate events tail:", err)
		return 1
	}
	return 0
}

func tailRedis(ctx context.Context, c *Config, o events.TailOptions, print events.Printer) error {
	cluster := storeKind(c) == "redis-cluster"
	rc := redisstore.Config{URL: c.RedisURL, Cluster: cluster, Username: c.RedisUsername, Password: c.RedisPassword}
	for _, a := range strings.Split(c.RedisAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			rc.Addrs = append(rc.Addrs, a)
		}
	}
	st, err := redisstore.New(rc)
	if err != nil {
		return err
	}
	defer st.Close()
	return events.TailRedis(ctx, st.Client(), events.StreamKeys(cluster, c.EventsStreams), o, print)
}

// checkTail is Validate for the flags tail reads.
func (c *Config) checkTail() error {
	var errs []error
	if c.RedisURL != "" && c.RedisAddrs != "" {
		errs = append(errs, errors.New("give --redis-url or --redis-addrs, not both"))
	}
	if c.RedisCluster && c.RedisURL == "" && c.RedisAddrs == "" {
		errs = append(errs, errors.New("--redis-cluster needs --redis-addrs or --redis-url"))
	}
	if c.EventsStreams < 1 {
		errs = append(errs, errors.New("--events-streams must be positive"))
	}
	return errors.Join(errs...)
}
