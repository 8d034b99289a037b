// Command consumer is an example downstream consumer of refgate's events: it
// reads the Redis stream(s) as a consumer group, skips events it has already
// handled (delivery is at least once; the event id is the key), keeps a
// ledger of commissions per promoter, and acknowledges each event only after
// handling it, so a consumer that crashes gets its unacknowledged events
// again.
//
//	go run ./examples/consumer -redis-url redis://127.0.0.1:6379/0 -group ledger
//
// On Redis Cluster give the same -streams count as refgate's --events-streams
// and -cluster with the node addresses in -redis-url's place (-addrs).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/events"
)

func main() {
	url := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis URL (single server)")
	addrs := flag.String("addrs", "", "Redis Cluster node addresses, comma-separated (instead of -redis-url)")
	streams := flag.Int("streams", 8, "on a Cluster, refgate's --events-streams")
	group := flag.String("group", "ledger", "consumer group")
	consumer := flag.String("consumer", "", "consumer name (default host-pid)")
	flag.Parse()

	var rdb redis.UniversalClient
	cluster := *addrs != ""
	if cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(*addrs, ",")})
	} else {
		opt, err := redis.ParseURL(*url)
		if err != nil {
			log.Fatal(err)
		}
		rdb = redis.NewClient(opt)
	}
	defer rdb.Close()
	if *consumer == "" {
		host, _ := os.Hostname()
		*consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	l := NewLedger(rdb, *group)
	c := &Consumer{RDB: rdb, Keys: events.StreamKeys(cluster, *streams), Group: *group, Name: *consumer, Handle: l.Handle}
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
	log.Printf("stopped; commissions by promoter: %v", l.Totals())
}

// Consumer reads refgate's stream keys as one consumer of a consumer group.
type Consumer struct {
	RDB         redis.UniversalClient
	Keys        []string
	Group, Name string
	// Handle is called once per entry; an error leaves the entry
	// unacknowledged, to be read again.
	Handle func(ctx context.Context, e *events.Event) error
}

// Run reads until ctx ends: first the entries this consumer was given
// before and never acknowledged, then new ones.
func (c *Consumer) Run(ctx context.Context) error {
	for _, k := range c.Keys {
		if err := c.RDB.XGroupCreateMkStream(ctx, k, c.Group, "0").Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(c.Keys))
	for _, k := range c.Keys { // one reader per key: on a Cluster keys live on different nodes
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.read(ctx, k)
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (c *Consumer) read(ctx context.Context, key string) error {
	id := "0"
	for ctx.Err() == nil {
		res, err := c.RDB.XReadGroup(ctx, &redis.XReadGroupArgs{Group: c.Group, Consumer: c.Name,
			Streams: []string{key, id}, Count: 100, Block: time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Printf("read %s: %v; retrying", key, err)
			time.Sleep(time.Second)
			continue
		}
		n := 0
		for _, s := range res {
			for _, m := range s.Messages {
				n++
				var e events.Event
				raw, _ := m.Values["event"].(string)
				if err := json.Unmarshal([]byte(raw), &e); err != nil {
					log.Printf("skipping entry %s: %v", m.ID, err)
				} else if err := c.Handle(ctx, &e); err != nil {
					log.Printf("event %s not handled, left for later: %v", e.ID, err)
					continue
				}
				c.RDB.XAck(ctx, key, c.Group, m.ID)
			}
		}
		if id == "0" && n == 0 {
			id = ">" // the backlog of this consumer is done
		}
	}
	return ctx.Err()
}

// Ledger sums commissions per promoter from conversion and refund events,
// counting each event id once.
type Ledger struct {
	rdb   redis.UniversalClient
	group string

	mu     sync.Mutex
	totals map[string]int64
}

// NewLedger returns an empty ledger that records handled event ids in rdb.
func NewLedger(rdb redis.UniversalClient, group string) *Ledger {
	return &Ledger{rdb: rdb, group: group, totals: map[string]int64{}}
}

// Handle applies one event. The id is recorded with SET NX (kept a week,
// far longer than any redelivery) before it is applied; a second delivery
// finds it and is skipped. A real ledger would record the id and apply the
// event in one transaction of its own database.
func (l *Ledger) Handle(ctx context.Context, e *events.Event) error {
	first, err := l.rdb.SetNX(ctx, "consumer:"+l.group+":seen:{"+e.ID+"}", 1, 7*24*time.Hour).Result()
	if err != nil {
		return err
	}
	if !first {
		return nil // a duplicate delivery
	}
	switch e.Type {
	case events.TypeConversionAttributed, events.TypeConversionRefunded:
		if e.Data.CommissionDelta != nil {
			l.mu.Lock()
			l.totals[e.Data.Promoter] += *e.Data.CommissionDelta
			l.mu.Unlock()
		}
	}
	return nil
}

// Totals returns the commission per promoter so far.
func (l *Ledger) Totals() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.totals))
	for k, v := range l.totals {
		out[k] = v
	}
	return out
}
