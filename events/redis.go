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

// RedisStream delivers events to Redis Streams with XADD ... MAXLEN ~ N, one
// entry per event with the event in the field "event". Events with the same
// subject go to the same stream key, so one link's or one customer's events
// stay in order.
type RedisStream struct {
	rdb    redis.UniversalClient
	keys   []string
	maxLen int64
}

// NewRedisStream returns a sink writing to keys (see StreamKeys), each
// capped at about maxLen entries (0: uncapped).
func NewRedisStream(rdb redis.UniversalClient, keys []string, maxLen int64) *RedisStream {
	return &RedisStream{rdb: rdb, keys: keys, maxLen: maxLen}
}

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
