package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/internal/redistest"
)

// runTail runs "refgate events tail" with args and returns the events it
// printed.
func runTail(t *testing.T, args ...string) []events.Event {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code := run(ctx, append([]string{"events", "tail"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("tail %v: exit %d: %s", args, code, errOut.String())
	}
	var evs []events.Event
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		var e events.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("tail printed %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestEventsTail(t *testing.T) {
	for _, kind := range []string{"embedded", "redis"} {
		t.Run(kind, func(t *testing.T) {
			data := t.TempDir()
			storeArgs := []string{"--data-dir", data}
			mod := func(*Config) {}
			if kind == "redis" {
				srv := redistest.Start(t)
				storeArgs = []string{"--redis-url", srv.URL()}
				mod = func(c *Config) { c.RedisURL = srv.URL() }
			}
			m, _ := MustRunMain(t, data, mod)
			setup(t, m, "tail0001")
			resp, _ := clickFrom(t, m.EdgeAddr(), "tail0001", "81.2.69.142")
			tok := token(t, resp)
			for i := 0; i < 4; i++ {
				clickFrom(t, m.EdgeAddr(), "tail0001", "81.2.69.142")
			}
			if s, b := callAPI(t, m, "POST", "/v1/bind", `{"program":"shop","customer":"u1","event":"register","token":"`+tok+`"}`); s != 200 {
				t.Fatalf("bind: %d %v", s, b)
			}
			waitEvents(t, func() []events.Event { return runTail(t, append(storeArgs, "--from", "start", "--follow=false")...) },
				func(e []events.Event) bool { return len(e) == 6 })

			if evs := runTail(t, append(storeArgs, "--from", "start", "--follow=false", "--type", "refgate.association")...); len(evs) != 1 ||
				evs[0].Type != events.TypeAssociationCreated {
				t.Fatalf("--type refgate.association: %v", evs)
			}
			if evs := runTail(t, append(storeArgs, "--follow=false")...); len(evs) != 0 {
				t.Fatalf("--from new (the default) at the end printed %d events", len(evs))
			}
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			if evs := runTail(t, append(storeArgs, "--from", future, "--follow=false")...); len(evs) != 0 {
				t.Fatalf("--from a future time printed %d events", len(evs))
			}

			// A consumer group acknowledges what it printed: a second run
			// goes on where the first stopped.
			group := append(storeArgs, "--group", "ops", "--from", "start", "--follow=false")
			first := runTail(t, append(group, "--count", "2")...)
			rest := runTail(t, group...)
			if len(first) != 2 || len(rest) != 4 || first[1].ID == rest[0].ID {
				t.Fatalf("group: %d then %d events", len(first), len(rest))
			}
			if again := runTail(t, group...); len(again) != 0 {
				t.Fatalf("group after everything was acknowledged: %d events", len(again))
			}

			// Following: a tail started now prints the clicks made after.
			done := make(chan []events.Event)
			go func() { done <- runTail(t, append(storeArgs, "--count", "3", "--type", "refgate.click")...) }()
			time.Sleep(500 * time.Millisecond)
			for i := 0; i < 3; i++ {
				clickFrom(t, m.EdgeAddr(), "tail0001", "81.2.69.142")
			}
			select {
			case evs := <-done:
				if len(evs) != 3 {
					t.Fatalf("follow: %d events", len(evs))
				}
			case <-time.After(15 * time.Second):
				t.Fatal("follow did not print the new clicks")
			}
		})
	}
}
