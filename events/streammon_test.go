package events

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/refgate/refgate/internal/redistest"
)

// metricValue is the value of the series name{labels} in reg, and whether
// it exists.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestStreamMonitorTrimmedUnread reproduces a consumer group that fell
// behind a capped stream on a real redis-server: the monitor reports its
// lag as it grows, counts exactly the entries the cap trimmed before the
// group read them (none for a group that keeps up), and once the group
// has caught up reports its true lag again, although Redis 7.0 keeps the
// trimmed entries in the group's own lag.
func TestStreamMonitorTrimmedUnread(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client()
	const maxLen = 5000
	sink := NewRedisStream(rdb, []string{StreamKey}, maxLen)
	n := 0
	write := func(count int) {
		t.Helper()
		for count > 0 {
			b := min(count, 500)
			if _, err := sink.Write(ctx, recs(n, b)); err != nil {
				t.Fatal(err)
			}
			n, count = n+b, count-b
		}
	}
	read := func(group string, count int64) {
		t.Helper()
		if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c",
			Streams: []string{StreamKey, ">"}, Count: count}).Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	mon := NewStreamMonitor(StreamMonitorConfig{Client: rdb, Keys: sink.Keys(), MaxLen: sink.MaxLen(), Registerer: reg})
	poll := func() {
		t.Helper()
		if err := mon.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	value := func(name, group string) float64 {
		t.Helper()
		v, ok := metricValue(t, reg, name, "stream", StreamKey, "group", group)
		if !ok {
			t.Fatalf("no %s{group=%q}", name, group)
		}
		return v
	}
	poll() // no stream yet
	if v, _ := metricValue(t, reg, "refgate_events_stream_length", "stream", StreamKey); v != 0 {
		t.Fatalf("length of a stream not there yet: %v", v)
	}

	write(100)
	for _, g := range []string{"ops", "live"} {
		if err := rdb.XGroupCreate(ctx, StreamKey, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	read("ops", 10)
	read("live", 1000)
	poll()
	if lag := value("refgate_events_group_lag", "ops"); lag != 90 {
		t.Fatalf("ops read 10 of 100: lag %v, want 90", lag)
	}

	// 20,000 more: ops reads nothing, live keeps up.
	for range 8 {
		write(2500)
		read("live", 100000)
		poll()
	}
	xlen, _ := rdb.XLen(ctx, StreamKey).Result()
	want := float64(n-int(xlen)) - 10 // every entry trimmed after the 10 ops read
	if got := value("refgate_events_group_trimmed_total", "ops"); got != want {
		t.Errorf("ops: %v entries counted trimmed unread, want %v (%d added, %d left)", got, want, n, xlen)
	}
	if lag := value("refgate_events_group_lag", "ops"); lag != float64(xlen) {
		t.Errorf("ops, behind the first entry: lag %v, want the whole stream, %d", lag, xlen)
	}
	if got := value("refgate_events_group_trimmed_total", "live"); got != 0 {
		t.Errorf("live kept up, yet %v entries are counted trimmed unread", got)
	}
	if v, _ := metricValue(t, reg, "refgate_events_stream_length", "stream", StreamKey); v != float64(xlen) {
		t.Errorf("length %v, XLEN %d", v, xlen)
	}
	if v, _ := metricValue(t, reg, "refgate_events_stream_max_length", "stream", StreamKey); v != maxLen {
		t.Errorf("max length %v, want %d", v, maxLen)
	}
	t.Logf("%d events added, %d left under MAXLEN ~ %d: %v trimmed before ops read them", n, xlen, maxLen, want)

	// ops catches up; then 100 more. Redis 7.0 still counts the trimmed
	// entries in its lag; the monitor does not.
	read("ops", 100000)
	poll()
	write(100)
	poll()
	if lag := value("refgate_events_group_lag", "ops"); lag != 100 {
		groups, _ := rdb.XInfoGroups(ctx, StreamKey).Result()
		t.Errorf("ops caught up, then 100 more: lag %v, want 100 (Redis says %+v)", lag, groups)
	}
	if got := value("refgate_events_group_trimmed_total", "ops"); got != want {
		t.Errorf("ops lost nothing more, yet the count went from %v to %v", want, got)
	}

	// A group destroyed takes its series with it.
	if err := rdb.XGroupDestroy(ctx, StreamKey, "ops").Err(); err != nil {
		t.Fatal(err)
	}
	poll()
	if _, ok := metricValue(t, reg, "refgate_events_group_lag", "group", "ops"); ok {
		t.Error("a destroyed group is still exported")
	}
}

// TestStreamMonitorGroups: a group created at "$", whose lag Redis cannot
// tell while it reads in the middle of the stream, gets its lag counted;
// past MaxGroups, groups are exported together as _other; on a
// Cluster every key is read from its master.
func TestStreamMonitorGroups(t *testing.T) {
	ctx := context.Background()
	t.Run("UnknownLagAndOther", func(t *testing.T) {
		srv := redistest.Start(t)
		rdb := srv.Client()
		sink := NewRedisStream(rdb, []string{StreamKey}, 0)
		if _, err := sink.Write(ctx, recs(0, 100)); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XGroupCreate(ctx, StreamKey, "tail", "$").Err(); err != nil {
			t.Fatal(err)
		}
		for _, g := range []string{"a0", "a1", "a2", "z9"} {
			if err := rdb.XGroupCreate(ctx, StreamKey, g, "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sink.Write(ctx, recs(100, 100)); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "tail", Consumer: "c", Streams: []string{StreamKey, ">"}, Count: 10}).Err(); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		mon := NewStreamMonitor(StreamMonitorConfig{Client: rdb, Keys: sink.Keys(), MaxGroups: 4, Registerer: reg})
		if err := mon.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		// tail read 10 of the 100 after it; Redis says null, and the
		// monitor counts them.
		if lag, ok := metricValue(t, reg, "refgate_events_group_lag", "group", "tail"); !ok || lag != 90 {
			t.Errorf("tail: lag %v %v, want 90", lag, ok)
		}
		for _, g := range []string{"a0", "a1", "a2"} {
			if lag, _ := metricValue(t, reg, "refgate_events_group_lag", "group", g); lag != 200 {
				t.Errorf("%s read nothing: lag %v, want 200", g, lag)
			}
		}
		if _, ok := metricValue(t, reg, "refgate_events_group_lag", "group", "z9"); ok {
			t.Error("z9 is past MaxGroups 4 (a0, a1, a2, tail, z9 in name order) and exported")
		}
		if lag, ok := metricValue(t, reg, "refgate_events_group_lag", "group", OtherGroups); !ok || lag != 200 {
			t.Errorf("_other: lag %v %v, want z9's, 200", lag, ok)
		}
	})
	t.Run("Cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a cluster")
		}
		cl := redistest.StartCluster(t, 3, 0)
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		defer rdb.Close()
		keys := StreamKeys(true, 8)
		sink := NewRedisStream(rdb, keys, 8000)
		var all []Record
		for i := range 400 {
			r := recs(i, 1)[0]
			r.Subject = fmt.Sprint("customer/c", i)
			all = append(all, r)
		}
		if _, err := sink.Write(ctx, all); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := rdb.XGroupCreate(ctx, k, "ops", "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		reg := prometheus.NewRegistry()
		mon := NewStreamMonitor(StreamMonitorConfig{Client: rdb, Keys: keys, MaxLen: sink.MaxLen(), Registerer: reg})
		if err := mon.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, k := range keys {
			n, _ := rdb.XLen(ctx, k).Result()
			lag, ok := metricValue(t, reg, "refgate_events_group_lag", "stream", k, "group", "ops")
			if !ok || lag != float64(n) {
				t.Errorf("%s: lag %v %v, want its %d entries", k, lag, ok, n)
			}
			if c, _ := metricValue(t, reg, "refgate_events_stream_max_length", "stream", k); c != 1000 {
				t.Errorf("%s: cap %v, want 8000 / 8 keys", k, c)
			}
			total += lag
		}
		if total != 400 {
			t.Errorf("lag over all keys %v, want 400", total)
		}
	})
}

// TestGroupStateFixedRedis: Redis versions after 7.0 recompute a group's
// read counter when it reads past trimmed entries; the monitor's counts are
// the same as on 7.0.
func TestGroupStateFixedRedis(t *testing.T) {
	id := func(c int64) streamID { return streamID{uint64(c), 0} } // entry c has ID c-0
	obs := func(added, length int64) streamObs {
		return streamObs{added: added, length: length, first: id(added - length + 1), last: id(added)}
	}
	var g groupState
	f := func(s streamObs, pos, read int64, wantUnread, wantLost int64) {
		t.Helper()
		unread, lost, known := g.step(s, groupObs{lastDelivered: id(pos), read: read, readOK: true, lag: s.added - read, lagOK: true})
		if unread != wantUnread || lost != wantLost || !known {
			t.Fatalf("at %d of %+v: unread %d, lost %d; want %d, %d", pos, s, unread, lost, wantUnread, wantLost)
		}
	}
	f(obs(100, 100), 10, 10, 90, 0)
	f(obs(3000, 3000), 10, 10, 2990, 0)
	f(obs(8000, 5000), 10, 10, 5000, 2990) // entries 11..3000 trimmed unread
	f(obs(20100, 5000), 10, 10, 5000, 12100)
	f(obs(20100, 5000), 20100, 20100, 0, 0) // caught up: the counter is recomputed
	f(obs(20200, 5000), 20100, 20100, 100, 0)
	f(obs(20200, 5000), 20150, 20150, 50, 0)
}

// TestGroupStateEstimate: with neither a read counter nor a lag from Redis,
// a group in the middle of a stream written at a steady rate gets the
// share of the stream's time span after its position.
func TestGroupStateEstimate(t *testing.T) {
	var g groupState
	s := streamObs{added: 1000, length: 1000, first: streamID{1, 0}, last: streamID{1000, 0}}
	if unread, lost, known := g.step(s, groupObs{lastDelivered: streamID{500, 0}}); unread != 500 || lost != 0 || known {
		t.Fatalf("unread %d, lost %d, known %v; want an estimate of 500", unread, lost, known)
	}
}
