package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// NodeMemory is one Redis server's memory limit and use, from INFO memory
// (which an ACL user may be allowed, unlike CONFIG GET).
type NodeMemory struct {
	Addr      string
	MaxMemory int64  // maxmemory in bytes; 0: no limit
	Policy    string // maxmemory-policy
	Used      int64  // used_memory
}

// Memory reads INFO memory from the server, or from every master of a
// Cluster.
func (s *Store) Memory(ctx context.Context) ([]NodeMemory, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		c, ok := s.rdb.(*redis.Client)
		if !ok {
			return nil, fmt.Errorf("memory of a %T: not supported", s.rdb)
		}
		n, err := nodeMemory(ctx, c)
		if err != nil {
			return nil, err
		}
		return []NodeMemory{n}, nil
	}
	var mu sync.Mutex
	var out []NodeMemory
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := nodeMemory(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NodeFor returns the address of the server that holds key, as Memory
// names it: the one server, or the master of key's slot on a Cluster.
func (s *Store) NodeFor(ctx context.Context, key string) (string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		c, ok := s.rdb.(*redis.Client)
		if !ok {
			return "", fmt.Errorf("node of a %T: not supported", s.rdb)
		}
		return c.Options().Addr, nil
	}
	c, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return "", translate("master for key", err)
	}
	return c.Options().Addr, nil
}

func nodeMemory(ctx context.Context, c *redis.Client) (NodeMemory, error) {
	n := NodeMemory{Addr: c.Options().Addr}
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return n, translate("info memory", err)
	}
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "maxmemory":
			n.MaxMemory, err = strconv.ParseInt(v, 10, 64)
		case "used_memory":
			n.Used, err = strconv.ParseInt(v, 10, 64)
		case "maxmemory_policy":
			n.Policy = v
		default:
			continue
		}
		if err != nil {
			return n, fmt.Errorf("INFO memory of %s: bad %s %q", n.Addr, k, v)
		}
		found++
	}
	if found < 3 {
		return n, fmt.Errorf("INFO memory of %s lacks maxmemory, maxmemory_policy or used_memory", n.Addr)
	}
	return n, nil
}

// MemoryWarnings says what is wrong with a server's memory settings for
// refgate, given reserved, the most the caller keeps there besides the
// attribution state (the event streams at their cap; -1: no bound). Each
// warning is one sentence for an operator:
//   - no maxmemory: Redis grows until the machine or the container kills it,
//     and with it every association;
//   - a policy that evicts: Redis would make room by dropping attribution
//     state (allkeys-*: any key; volatile-*: keys with a TTL, which visitor
//     records and click claims have), a commission paid to the wrong
//     promoter or to no one;
//   - reserved over a third of maxmemory, or unbounded: too little room is
//     left for visitor records, customers and orders, and once Redis is full
//     every bind and conversion is refused;
//   - already over nine tenths full.
func MemoryWarnings(n NodeMemory, reserved int64) []string {
	var w []string
	mb := func(b int64) string { return strconv.FormatInt((b+(1<<19))>>20, 10) + " MiB" }
	if n.MaxMemory == 0 {
		w = append(w, "Redis has no maxmemory (0: unlimited): it grows until the machine or its container kills it; set maxmemory (deploy/redis/redis.conf: 2gb) and maxmemory-policy noeviction")
	}
	if n.Policy != "noeviction" {
		what := "any key"
		if strings.HasPrefix(n.Policy, "volatile") {
			what = "keys with a TTL, visitor records and click claims among them"
		}
		w = append(w, fmt.Sprintf("Redis maxmemory-policy is %s: when full it evicts %s, which loses attributions silently; set maxmemory-policy noeviction (refused writes are reported and retried)", n.Policy, what))
	}
	switch {
	case reserved < 0:
		w = append(w, "the event stream is uncapped (--events-stream-maxlen 0): it grows until Redis is full, and then every bind and conversion is refused")
	case n.MaxMemory > 0 && reserved > n.MaxMemory/3:
		w = append(w, fmt.Sprintf("the event stream(s) on this server take up to %s at their cap, over a third of its maxmemory (%s), leaving too little for visitor records, customers and orders; lower --events-stream-maxlen or raise maxmemory",
			mb(reserved), mb(n.MaxMemory)))
	}
	if n.MaxMemory > 0 && n.Used > n.MaxMemory/10*9 {
		w = append(w, fmt.Sprintf("Redis uses %s of its maxmemory %s: it refuses writes once full", mb(n.Used), mb(n.MaxMemory)))
	}
	return w
}

// MemoryGauges exports what Memory reads, per server (a Cluster's masters:
// a set fixed by the deployment), as refgate_redis_used_memory_bytes{node}
// and refgate_redis_maxmemory_bytes{node}: at maxmemory, with noeviction,
// Redis refuses every write, so the ratio of the two says how much time is
// left. Run polls.
type MemoryGauges struct {
	s         *Store
	used, max *prometheus.GaugeVec
	errs      prometheus.Counter
	mu        sync.Mutex
	nodes     map[string]bool
}

// NewMemoryGauges registers the gauges on reg.
func NewMemoryGauges(s *Store, reg prometheus.Registerer) *MemoryGauges {
	f := promauto.With(reg)
	return &MemoryGauges{s: s, nodes: map[string]bool{},
		used: f.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_redis_used_memory_bytes",
			Help: "Redis's used_memory (INFO memory), per server; at maxmemory it refuses writes."}, []string{"node"}),
		max: f.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_redis_maxmemory_bytes",
			Help: "Redis's maxmemory (INFO memory), per server; 0: no limit."}, []string{"node"}),
		errs: f.NewCounter(prometheus.CounterOpts{Name: "refgate_redis_memory_poll_errors_total",
			Help: "Reads of Redis's INFO memory that failed."}),
	}
}

// Poll reads every server's memory once.
func (g *MemoryGauges) Poll(ctx context.Context) error {
	nodes, err := g.s.Memory(ctx)
	if err != nil {
		g.errs.Inc()
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n.Addr] = true
		g.used.WithLabelValues(n.Addr).Set(float64(n.Used))
		g.max.WithLabelValues(n.Addr).Set(float64(n.MaxMemory))
	}
	for addr := range g.nodes {
		if !seen[addr] { // a master gone after a failover
			g.used.DeleteLabelValues(addr)
			g.max.DeleteLabelValues(addr)
		}
	}
	g.nodes = seen
	return nil
}

// Run polls every interval until ctx is done.
func (g *MemoryGauges) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, every)
		g.Poll(c)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
