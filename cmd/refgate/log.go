package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(level))
	o := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// slogPrinter routes fasthttp's own log lines (connection errors) to slog.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.l.Log(context.Background(), slog.LevelWarn, fmt.Sprintf(format, args...), "component", "fasthttp")
}

// flagSink is a throwaway flag set: NewMain binds the flags to fill Config
// with defaults.
func flagSink() *flag.FlagSet { return flag.NewFlagSet("", flag.ContinueOnError) }

// redisPrinter routes go-redis's own log lines (dial failures, a pub/sub
// connection replaced) to slog, so that JSON logs stay JSON.
type redisPrinter struct{ l *slog.Logger }

func (p redisPrinter) Printf(_ context.Context, format string, args ...any) {
	p.l.Log(context.Background(), slog.LevelWarn, strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: "), "component", "redis")
}
