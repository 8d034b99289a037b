package events

import (
	"context"
	"hash/fnv"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// StreamKey is the stream events go to on a single Redis server.
const StreamKey = "refgate:events"

// StreamKeys returns the stream keys events are spread over: StreamKey on a
// single server; on a Cluster, n keys "refgate:events:{0}" ..
// "refgate:events:{n-1}", whose hash tags put them in different slots, so
// that the event load is spread over the masters rather than landing on the
// one shard that owns a single key.
func StreamKeys(cluster bool, n int) []string {
	if !cluster || n <= 1 {
		return []string{StreamKey}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = StreamKey + ":{" + strconv.Itoa(i) + "}"
	}
	return keys
}

// StreamEntryBytes is what one click event costs Redis in the stream, as
// MEMORY USAGE of the stream divided by its length: 734 bytes measured after
// 4,000 clicks of browsers without cookies, coming from a blog post, through
// the real server (TestRedisBytesPerClick, which fails when this drifts by
// more than a fifth). Its JSON is about 640 bytes; GeoIP fields add some 80.
// Decision events are of the same order, and far fewer.
const StreamEntryBytes = 730

// DefaultStreamMaxLen is the default cap of the events kept in the
// stream(s): about 557 MiB at StreamEntryBytes, 27% of the 2 GiB maxmemory
// of the shipped deploy/redis/redis.conf (a third at most), leaving the
// rest to the attribution state (visitor records, customers, orders). At
// 1,000 clicks/s that is some 13 minutes of events: the stream is a buffer
// for consumers, not an archive.
const DefaultStreamMaxLen = 800_000

// RedisStream delivers events to Redis Streams with XADD ... MAXLEN ~ N, one
// entry per event with the event in the field "event". Events with the same
// subject go to the same stream key, so one link's or one customer's events
// stay in order.
type RedisStream struct {
	rdb    redis.UniversalClient
	keys   []string
	maxLen int64 // of each key
}

// NewRedisStream returns a sink writing to keys (see StreamKeys) that keeps
// about maxLen events in all of them together (0: uncapped): each key is
// capped at PerKeyMaxLen(maxLen, len(keys)) entries. One figure for all the
// keys is one figure to size against one Redis's memory; on a Cluster the
// keys spread over the masters, and each master holds its share.
func NewRedisStream(rdb redis.UniversalClient, keys []string, maxLen int64) *RedisStream {
	return &RedisStream{rdb: rdb, keys: keys, maxLen: PerKeyMaxLen(maxLen, len(keys))}
}

// PerKeyMaxLen is the MAXLEN of each of n stream keys that together keep
// about maxLen events (0: uncapped).
func PerKeyMaxLen(maxLen int64, n int) int64 {
	if maxLen <= 0 || n <= 1 {
		return max(maxLen, 0)
	}
	return (maxLen + int64(n) - 1) / int64(n)
}

// Keys returns the stream keys events go to; the caller must not change
// them.
func (s *RedisStream) Keys() []string { return s.keys }

// Client is the client the sink writes with.
func (s *RedisStream) Client() redis.UniversalClient { return s.rdb }

// MaxLen is the cap of each stream key (0: uncapped).
func (s *RedisStream) MaxLen() int64 { return s.maxLen }

// Name implements Sink.
func (s *RedisStream) Name() string { return "redis-stream" }

// KeyFor returns the stream key of an event with this subject.
func (s *RedisStream) KeyFor(subject string) string {
	if len(s.keys) == 1 {
		return s.keys[0]
	}
	h := fnv.New32a()
	h.Write([]byte(subject))
	return s.keys[h.Sum32()%uint32(len(s.keys))]
}

// Write sends recs in one pipeline; on a Cluster go-redis splits it by
// node. Only the entries whose XADD failed are reported failed.
func (s *RedisStream) Write(ctx context.Context, recs []Record) ([]Record, error) {
	cmds := make([]*redis.StringCmd, len(recs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range recs {
			cmds[i] = p.XAdd(ctx, &redis.XAddArgs{Stream: s.KeyFor(recs[i].Subject),
				MaxLen: s.maxLen, Approx: s.maxLen > 0, Values: []any{"event", recs[i].JSON}})
		}
		return nil
	})
	if err == nil {
		return nil, nil
	}
	var failed []Record
	var first error
	for i, c := range cmds {
		if c == nil || c.Err() != nil {
			failed = append(failed, recs[i])
			if first == nil && c != nil {
				first = c.Err()
			}
		}
	}
	if first == nil {
		first = err
	}
	if len(failed) == 0 { // the pipeline failed before any command ran
		return recs, err
	}
	return failed, first
}

// Ping implements Sink.
func (s *RedisStream) Ping(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
	}
	return s.rdb.Ping(ctx).Err()
}

// Close implements Sink. The client belongs to the store.
func (s *RedisStream) Close() error { return nil }
