package redisstore

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// reloadOnNetError makes a cluster client re-read the slot map when a
// command fails on the network. go-redis (v9.23) re-reads it only on
// MOVED/ASK or every ClusterStateReloadInterval (60 s by default); after a
// master dies and its replica takes over, nobody answers MOVED for the dead
// master's slots, so without this refgate would send them to the dead
// address for up to a minute. Reloads are asynchronous and at most one per
// reloadEvery.
type reloadOnNetError struct {
	cc   *redis.ClusterClient
	last atomic.Int64
}

const reloadEvery = 100 * time.Millisecond

func (h *reloadOnNetError) check(err error) {
	var ne net.Error
	if err == nil || !errors.As(err, &ne) && !errors.Is(err, redis.ErrClosed) {
		return
	}
	h.reload()
}

// reload asks go-redis to re-read the slot map (asynchronously), at most
// once per reloadEvery.
func (h *reloadOnNetError) reload() {
	now := time.Now().UnixNano()
	last := h.last.Load()
	if now-last < int64(reloadEvery) || !h.last.CompareAndSwap(last, now) {
		return
	}
	h.cc.ReloadState(context.Background())
}

func (h *reloadOnNetError) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.check(err)
		return c, err
	}
}

// ProcessHook also retries a command whose connection could not even be
// dialled (it never reached Redis, so running it again is safe), giving the
// reload it triggered a moment to land: without that, the first requests
// after a failover would fail on every instance.
func (h *reloadOnNetError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		for wait := 50 * time.Millisecond; isDialError(err) && wait <= 200*time.Millisecond; wait *= 2 {
			h.reload()
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
			err = next(ctx, cmd)
		}
		h.check(err)
		return err
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (h *reloadOnNetError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}
