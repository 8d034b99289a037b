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
	"github.com/peterbourgon/ff/v3/ffyaml"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/store/redisstore"
)

const tailUsage = `refgate events tail: print the events refgate emits, one JSON object per line

It reads the same store flags, environment and config file as serve: with a
Redis store it reads the stream(s), with the embedded store the JSON Lines
files under --data-dir.

`

var groupName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// tail runs "refgate events tail".
func tail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c Config
	var o events.TailOptions
	var types string
	fs := flag.NewFlagSet("refgate events tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, tailUsage)
		fs.PrintDefaults()
	}
	c.flags(fs)
	fs.StringVar(&types, "type", "", "comma-separated event types to print; a prefix such as refgate.association takes all of its types")
	fs.StringVar(&o.From, "from", "new", "new (only what arrives from now on), start (everything kept), an RFC 3339 time, or a stream entry id")
	fs.StringVar(&o.Group, "group", "", "read as this consumer group and acknowledge each event after printing it")
	fs.StringVar(&o.Consumer, "consumer", "", "consumer name within --group (Redis); default host-pid")
	fs.BoolVar(&o.Follow, "follow", true, "keep waiting for new events; false stops at the end")
	fs.IntVar(&o.Count, "count", 0, "stop after printing this many events; 0 = no limit")
	err := ff.Parse(fs, args, ff.WithEnvVarPrefix("REFGATE"), ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ffyaml.Parser), ff.WithIgnoreUndefined(true))
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = c.Validate()
	}
	if err == nil && o.Group != "" && !groupName.MatchString(o.Group) {
		err = fmt.Errorf("--group %q: use letters, digits, '_', '-' and '.'", o.Group)
	}
	if err != nil {
		fmt.Fprintln(stderr, "refgate events tail:", err)
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
