package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/internal/redistest"
)

func TestFaultReadReply(t *testing.T) {
	frames := []string{
		"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "$0\r\n\r\n", "*-1\r\n",
		"*2\r\n$1\r\na\r\n:1\r\n", "_\r\n", ",1.5\r\n", "#t\r\n", "(123\r\n", "!3\r\nerr\r\n",
		"=7\r\ntxt:abc\r\n", "%1\r\n+k\r\n*1\r\n~1\r\n:2\r\n",
		"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", // an attribute belongs to the reply after it
		">2\r\n+message\r\n$1\r\nx\r\n",
	}
	r := bufio.NewReader(strings.NewReader(strings.Join(frames, "")))
	for _, want := range frames {
		got, push, err := readReply(r, nil, 1<<20)
		if err != nil || string(got) != want || push != (want[0] == '>') {
			t.Fatalf("readReply = %q, %v, %v; want %q", got, push, err, want)
		}
	}
	if _, _, err := readReply(r, nil, 1<<20); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v", err)
	}
	for _, bad := range []string{"?\r\n", "$5\r\nab\r\n", "*x\r\n", "+OK\n", "$3\r\nabcde"} {
		if _, _, err := readReply(bufio.NewReader(strings.NewReader(bad)), nil, 1<<20); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, _, err := readReply(bufio.NewReader(strings.NewReader("$100\r\n")), nil, 64); !errors.Is(err, errTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
}

func TestFaultReadCommand(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nPING x\r\n*0\r\n"))
	for _, want := range [][]string{{"SET", "k", ""}, {"PING", "x"}, {}} {
		_, args, err := readCommand(r, nil, 1<<20)
		if err != nil || len(args) != len(want) {
			t.Fatalf("readCommand = %q, %v; want %q", args, err, want)
		}
		for i := range want {
			if string(args[i]) != want[i] {
				t.Fatalf("readCommand = %q; want %q", args, want)
			}
		}
	}
}

// setup starts a redis-server, a proxy in front of it, a client through the
// proxy with o's settings and a direct client.
func setup(t *testing.T, o redis.Options) (*Proxy, *redis.Client, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	network := "tcp"
	if srv.Unix {
		network = "unix"
	}
	p, err := Start(Config{Network: network, Target: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	o.Addr = p.Addr()
	c := redis.NewClient(&o)
	t.Cleanup(func() { c.Close() })
	return p, c, srv.Client()
}

// hit waits for f to take its reply.
func hit(t *testing.T, f *Fault) {
	t.Helper()
	select {
	case <-f.Hit():
	case <-time.After(10 * time.Second):
		t.Fatal("the fault never took its reply")
	}
}

func TestFaultDelayPastReadTimeout(t *testing.T) {
	ctx := context.Background()
	p, c, direct := setup(t, redis.Options{ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	const hold = 3 * time.Second
	f := p.Delay(Command("incr", "fault:k"), hold)
	start := time.Now()
	err := c.Incr(ctx, "fault:k").Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("INCR through a held reply: %v; want a timeout", err)
	}
	if took := time.Since(start); took >= hold {
		t.Fatalf("the client waited %v: it must time out before the reply is released", took)
	}
	hit(t, f)
	if got := string(f.Reply()); got != ":1\r\n" {
		t.Errorf("held reply %q", got)
	}
	if got := string(f.Command()[0]); got != "incr" {
		t.Errorf("held command %q", got)
	}
	// The command ran although its answer was lost.
	if n, err := direct.Get(ctx, "fault:k").Int(); err != nil || n != 1 {
		t.Fatalf("in Redis: %d, %v; want 1", n, err)
	}
	// One reply only: the next command passes.
	if n, err := c.Incr(ctx, "fault:k").Result(); err != nil || n != 2 {
		t.Fatalf("next INCR: %d, %v", n, err)
	}
}

func TestFaultDrop(t *testing.T) {
	ctx := context.Background()
	// AtOnce: the client sees the connection close long before its read
	// timeout; Later: it times out first.
	f := func(name string, after, readTimeout time.Duration, timeout bool) {
		t.Run(name, func(t *testing.T) {
			p, c, direct := setup(t, redis.Options{ReadTimeout: readTimeout, MaxRetries: -1})
			fault := p.Drop(Command("SET", "fault:d"), after)
			err := c.Set(ctx, "fault:d", "v", 0).Err()
			var ne net.Error
			if err == nil || timeout != (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("SET with its reply dropped: %v; want timeout %v", err, timeout)
			}
			hit(t, fault)
			if v, err := direct.Get(ctx, "fault:d").Result(); err != nil || v != "v" {
				t.Fatalf("in Redis: %q, %v", v, err)
			}
			if err := c.Set(ctx, "fault:d", "w", 0).Err(); err != nil {
				t.Fatalf("next SET: %v", err)
			}
		})
	}
	f("AtOnce", 0, time.Minute, false)
	f("Later", time.Minute, 200*time.Millisecond, true)
}

func TestFaultPipelineInOrder(t *testing.T) {
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			p, c, _ := setup(t, redis.Options{Protocol: proto, ReadTimeout: 10 * time.Second})
			f := p.Delay(Command("INCR", "a"), 50*time.Millisecond)
			pipe := c.Pipeline()
			set := pipe.Set(ctx, "a", 1, 0)
			incr := pipe.Incr(ctx, "a")
			hset := pipe.HSet(ctx, "h", "f", "v")
			all := pipe.HGetAll(ctx, "h")
			get := pipe.Get(ctx, "a")
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			hit(t, f)
			if set.Val() != "OK" || incr.Val() != 2 || hset.Val() != 1 || all.Val()["f"] != "v" || get.Val() != "2" {
				t.Fatalf("replies out of order: %v %v %v %v %v", set, incr, hset, all, get)
			}
		})
	}
}

func TestFaultSubscribePassesThrough(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, c, direct := setup(t, redis.Options{})
	sub := c.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := direct.Publish(ctx, "ch", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	m, err := sub.ReceiveMessage(ctx)
	if err != nil || m.Payload != "hello" {
		t.Fatalf("message %v, %v", m, err)
	}
}

func TestFaultCloseStopsHeldReplies(t *testing.T) {
	ctx := context.Background()
	p, c, _ := setup(t, redis.Options{ReadTimeout: time.Minute, MaxRetries: -1})
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f := p.Delay(Command("PING"), time.Hour)
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(ctx).Err() }()
	hit(t, f)
	closed := make(chan struct{})
	go func() {
		p.Close()
		p.Close() // safe twice
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop a held reply")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a PING whose reply was held until Close succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not see the connection close")
	}
}

// A client that times out leaves before Redis answers; the fault still
// takes the reply, which Redis still sends.
func TestFaultClientGoneBeforeReply(t *testing.T) {
	ctx := context.Background()
	p, c, _ := setup(t, redis.Options{ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	// Busy for 300ms inside Redis: the reply comes after the client left.
	const slow = `-- fault:slow
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + 300000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return redis.call('INCR', KEYS[1])`
	f := p.Drop(Command("EVAL", "fault:slow"), 0)
	var ne net.Error
	if err := c.Eval(ctx, slow, []string{"fault:n"}).Err(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a slow EVAL: %v; want a timeout", err)
	}
	hit(t, f)
	if got := string(f.Reply()); got != ":1\r\n" {
		t.Errorf("reply %q", got)
	}
}
