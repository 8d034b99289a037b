package events

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/internal/logsample"
)

// OtherGroups is the group label of the consumer groups past
// StreamMonitorConfig.MaxGroups: their largest lag and their trimmed entries
// together.
const OtherGroups = "_other"

// StreamMonitorConfig tunes a StreamMonitor. Zero values take the defaults
// in brackets.
type StreamMonitorConfig struct {
	Client redis.UniversalClient // required
	Keys   []string              // the stream keys; required
	MaxLen int64                 // each key's cap (RedisStream.MaxLen); 0: uncapped
	// Interval is the time between two polls [5s].
	Interval time.Duration
	// MaxGroups bounds the groups exported per stream key, in name order;
	// the others are exported together as OtherGroups [20]. Groups are
	// named by the operators of the consumers, a small set; the bound keeps
	// a mistake (a group per process) from flooding the metrics.
	MaxGroups  int
	Logger     *slog.Logger
	Registerer prometheus.Registerer // [a private registry]
}

// StreamMonitor watches the event streams on Redis: their length and how
// far behind each consumer group is, polled with XINFO STREAM and XINFO
// GROUPS (on a Cluster, each key on its master) and exported as metrics:
//
//	refgate_events_stream_length{stream}         entries in the stream (XLEN)
//	refgate_events_stream_max_length{stream}     its cap (0: uncapped)
//	refgate_events_group_lag{stream,group}       entries in the stream the group has not read yet
//	refgate_events_group_trimmed_total{stream,group}  entries trimmed by the cap before the group read them
//	refgate_events_stream_poll_errors_total      polls that failed
//
// A group whose lag nears the cap is about to lose entries: the cap trims
// the oldest whether or not every group has read them, silently. Losses
// are counted from the positions the groups read to and the stream's
// counters (entries-added less the length is the number trimmed so far).
// Redis 7.0 keeps counting trimmed entries in a group's lag and read
// counter once it moves past them (fixed in later versions); the monitor
// corrects for that when it sees the group at the end of the stream. When
// Redis cannot tell a group's lag (a group created at "$" or at an ID, and
// busy in the middle of the stream: XINFO GROUPS says null), the monitor
// counts the entries after its position up to 100 (XRANGE), and beyond that
// estimates the lag from the entry IDs' times. Run polls until its context
// ends.
type StreamMonitor struct {
	cfg    StreamMonitorConfig
	length *prometheus.GaugeVec
	cap    *prometheus.GaugeVec
	lag    *prometheus.GaugeVec
	lost   *prometheus.CounterVec
	errs   prometheus.Counter
	logs   logsample.Sampler

	mu     sync.Mutex // Poll's: one at a time
	groups map[[2]string]*groupState
	shown  map[[2]string]bool // label pairs exported at the last poll
}

// NewStreamMonitor registers the metrics; Run polls.
func NewStreamMonitor(cfg StreamMonitorConfig) *StreamMonitor {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.MaxGroups == 0 {
		cfg.MaxGroups = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(cfg.Registerer)
	m := &StreamMonitor{cfg: cfg, groups: map[[2]string]*groupState{}, shown: map[[2]string]bool{},
		length: f.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_events_stream_length",
			Help: "Entries in the event stream (XLEN), per stream key."}, []string{"stream"}),
		cap: f.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_events_stream_max_length",
			Help: "The cap of the event stream key (XADD MAXLEN ~, from --events-stream-maxlen); 0: uncapped."}, []string{"stream"}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Name: "refgate_events_group_lag",
			Help: "Entries in the event stream that a consumer group has not read yet; past the cap they are trimmed unread."}, []string{"stream", "group"}),
		lost: f.NewCounterVec(prometheus.CounterOpts{Name: "refgate_events_group_trimmed_total",
			Help: "Entries the stream's cap trimmed before a consumer group read them, counted since this instance began watching the group."}, []string{"stream", "group"}),
		errs: f.NewCounter(prometheus.CounterOpts{Name: "refgate_events_stream_poll_errors_total",
			Help: "Polls of the event streams' XINFO that failed."}),
	}
	for _, k := range cfg.Keys {
		m.cap.WithLabelValues(k).Set(float64(cfg.MaxLen))
		m.length.WithLabelValues(k)
	}
	return m
}

// Run polls every Interval until ctx is done.
func (m *StreamMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if err := m.Poll(ctx); err != nil && ctx.Err() == nil {
			m.errs.Inc()
			if m.logs.Allow(time.Minute) {
				m.cfg.Logger.Warn("cannot read the event streams' consumer groups (XINFO); their lag is not up to date", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads every stream key once and updates the metrics.
func (m *StreamMonitor) Poll(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rdb := m.cfg.Client
	streams := make([]*redis.XInfoStreamCmd, len(m.cfg.Keys))
	groups := make([]*redis.Cmd, len(m.cfg.Keys))
	// One pipeline; on a Cluster go-redis sends each key's commands to its
	// master.
	// Each command's own error is read below; a key that does not exist
	// yet is one.
	rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range m.cfg.Keys {
			streams[i] = p.XInfoStream(ctx, k)
			// Not XInfoGroups: it reads a null entries-read as 0, and null
			// is what says Redis cannot count.
			groups[i] = p.Do(ctx, "XINFO", "GROUPS", k)
		}
		return nil
	})
	var first error
	seen := map[[2]string]bool{}
	shown := map[[2]string]bool{}
	for i, k := range m.cfg.Keys {
		s, gs, err := readStream(streams[i], groups[i])
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("stream %s: %w", k, err))
			for key := range m.groups { // keep what is known of this key
				if key[0] == k {
					seen[key] = true
				}
			}
			for key := range m.shown {
				if key[0] == k {
					shown[key] = true
				}
			}
			continue
		}
		m.length.WithLabelValues(k).Set(float64(s.length))
		slices.SortFunc(gs, func(a, b groupObs) int { return strings.Compare(a.name, b.name) })
		var otherLag float64
		var otherLost int64
		for j, g := range gs {
			key := [2]string{k, g.name}
			seen[key] = true
			st := m.groups[key]
			if st == nil {
				st = new(groupState)
				m.groups[key] = st
			}
			unread, lost, known := st.step(s, g)
			if !known {
				unread = m.countAfter(ctx, k, g.lastDelivered, unread)
			}
			if j < m.cfg.MaxGroups {
				shown[key] = true
				m.lag.WithLabelValues(k, g.name).Set(float64(unread))
				m.lost.WithLabelValues(k, g.name).Add(float64(lost))
				continue
			}
			otherLag, otherLost = max(otherLag, float64(unread)), otherLost+lost
		}
		if len(gs) > m.cfg.MaxGroups {
			key := [2]string{k, OtherGroups}
			shown[key] = true
			m.lag.WithLabelValues(k, OtherGroups).Set(otherLag)
			m.lost.WithLabelValues(k, OtherGroups).Add(float64(otherLost))
		}
	}
	for key := range m.groups {
		if !seen[key] {
			delete(m.groups, key)
		}
	}
	for key := range m.shown {
		if !shown[key] { // a group destroyed, or no longer among the first
			m.lag.DeleteLabelValues(key[0], key[1])
			m.lost.DeleteLabelValues(key[0], key[1])
		}
	}
	m.shown = shown
	return first
}

// exactUpTo is how many entries countAfter reads to count a lag Redis
// cannot tell: below it the count is exact; above, the estimate stands.
const exactUpTo = 100

// countAfter counts the entries after id in stream key, if there are fewer
// than exactUpTo (a group that keeps up, which is the common case), and
// otherwise returns estimate, raised to exactUpTo.
func (m *StreamMonitor) countAfter(ctx context.Context, key string, id streamID, estimate int64) int64 {
	start := "(" + strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
	msgs, err := m.cfg.Client.XRangeN(ctx, key, start, "+", exactUpTo).Result()
	switch {
	case err != nil:
		return estimate
	case len(msgs) < exactUpTo:
		return int64(len(msgs))
	}
	return max(estimate, exactUpTo)
}

func isNoKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

// readStream reads one key's XINFO STREAM and XINFO GROUPS; a key that does
// not exist yet is an empty stream without groups.
func readStream(sc *redis.XInfoStreamCmd, gc *redis.Cmd) (streamObs, []groupObs, error) {
	info, err := sc.Result()
	if isNoKey(err) {
		return streamObs{}, nil, nil
	}
	if err != nil {
		return streamObs{}, nil, err
	}
	s := streamObs{added: info.EntriesAdded, length: info.Length}
	if s.last, err = parseStreamID(info.LastGeneratedID); err != nil {
		return s, nil, err
	}
	if s.length > 0 {
		if s.first, err = parseStreamID(info.FirstEntry.ID); err != nil {
			return s, nil, err
		}
		if s.last, err = parseStreamID(info.LastEntry.ID); err != nil {
			return s, nil, err
		}
	}
	raw, err := gc.Result()
	if err != nil {
		return s, nil, err
	}
	list, ok := raw.([]any)
	if !ok {
		return s, nil, fmt.Errorf("XINFO GROUPS answered %T", raw)
	}
	gs := make([]groupObs, 0, len(list))
	for _, item := range list {
		f := replyFields(item)
		g := groupObs{}
		g.name, _ = f["name"].(string)
		id, _ := f["last-delivered-id"].(string)
		if g.lastDelivered, err = parseStreamID(id); err != nil || g.name == "" {
			return s, nil, fmt.Errorf("XINFO GROUPS: bad group %v", f)
		}
		g.read, g.readOK = f["entries-read"].(int64)
		g.lag, g.lagOK = f["lag"].(int64)
		gs = append(gs, g)
	}
	return s, gs, nil
}

// replyFields reads a map reply: a map in RESP3, a flat list of name, value
// pairs in RESP2.
func replyFields(v any) map[string]any {
	out := map[string]any{}
	switch v := v.(type) {
	case map[any]any:
		for k, x := range v {
			if ks, ok := k.(string); ok {
				out[ks] = x
			}
		}
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			if ks, ok := v[i].(string); ok {
				out[ks] = v[i+1]
			}
		}
	}
	return out
}

// streamID is an entry ID, milliseconds and sequence.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("bad stream entry id %q", s)
	}
	return streamID{a, b}, nil
}

func (a streamID) less(b streamID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

// streamObs is one poll's view of a stream: entries ever added, entries
// in it, and its first and last entry (the last generated ID when empty).
type streamObs struct {
	added, length int64
	first, last   streamID
}

// groupObs is one poll's view of a consumer group: where it has read to,
// and Redis's read counter and lag, each when Redis can tell.
type groupObs struct {
	name          string
	lastDelivered streamID
	read, lag     int64
	readOK, lagOK bool
}

// groupState is what the monitor remembers of a group between polls. An
// entry's counter is the number of entries ever added to the stream up to
// and including it: the group's position's counter against the counter of
// the stream's first entry says how many entries were trimmed after the
// position, unread.
type groupState struct {
	seen       bool
	pos        streamID
	counter    int64 // of pos
	counterOK  bool
	firstCount int64 // counter of the stream's first entry at the last poll
	behind     bool  // pos was before the stream's first entry
	lost       int64 // trimmed entries after pos already counted
	// offset is what Redis 7.0's read counter misses of the group's
	// position: it counts deliveries, not the entries trimmed in between.
	offset int64
}

// step takes one poll's view of a group and returns how many entries of
// the stream it has not read, and how many were trimmed unread since the
// last poll. known is false when unread is an estimate from the entry IDs'
// times: Redis could not tell.
func (g *groupState) step(s streamObs, o groupObs) (unread, lost int64, known bool) {
	moved := !g.seen || o.lastDelivered != g.pos
	empty := s.length == 0
	behind := !empty && o.lastDelivered.less(s.first) || empty && o.lastDelivered.less(s.last)
	atEnd := !behind && !o.lastDelivered.less(s.last)
	var counter int64
	ok := false
	switch {
	case !moved && g.counterOK:
		// The same position as last time: its counter has not changed.
		counter, ok = g.counter, true
	case atEnd:
		counter, ok = s.added, true
		if o.readOK {
			g.offset = max(0, s.added-o.read)
		}
	case behind && o.readOK:
		counter, ok = o.read+g.offset, true
	case !behind && o.lagOK:
		counter, ok = s.added-(o.lag-g.offset), true
	case !behind && o.readOK:
		counter, ok = o.read+g.offset, true
	}
	if ok && moved && g.seen {
		// A group only moves forward: past its last position, and past the
		// first entry that was there if it was behind. A counter that says
		// less is Redis 7.0's, short of the entries trimmed on the way.
		least := int64(0)
		if g.counterOK {
			least = g.counter + 1
		}
		if g.behind {
			least = max(least, g.firstCount)
		}
		if counter < least {
			g.offset += least - counter
			counter = least
		}
	}
	known = true
	switch {
	case behind:
		unread = s.length
	case atEnd:
		unread = 0
	case ok:
		unread = min(max(s.added-counter, 1), s.length)
	default:
		unread, known = timeShare(s, o.lastDelivered), false
	}
	if moved {
		g.lost = 0
	}
	if behind && ok {
		now := max(0, s.added-s.length-counter)
		if g.seen {
			lost = max(0, now-g.lost)
		}
		// What was lost before the monitor first saw the group is not
		// counted: it cannot tell when it happened.
		g.lost = max(g.lost, now)
	}
	g.seen, g.pos, g.counter, g.counterOK, g.behind = true, o.lastDelivered, counter, ok, behind
	g.firstCount = s.added - s.length + 1
	return unread, lost, known
}

// timeShare estimates the entries after id from the IDs' times: the share
// of the stream's time span that lies after id.
func timeShare(s streamObs, id streamID) int64 {
	span := float64(s.last.ms-s.first.ms) + 1
	after := float64(s.last.ms-min(id.ms, s.last.ms)) + 0.5
	return min(max(int64(float64(s.length)*after/span), 1), s.length)
}
