package kv

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Mode tells which store a Failover is serving from.
type Mode int32

// The modes of a Failover.
const (
	ModeRedis    Mode = iota // Redis is configured and answering
	ModeFallback             // Redis is configured but unreachable: in-process
	ModeMemory               // no Redis configured: in-process by design
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case ModeRedis:
		return "redis"
	case ModeFallback:
		return "fallback"
	default:
		return "memory"
	}
}

// Failover serves from Redis while it answers and from an in-process store
// while it does not. A failed call is retried once on the in-process store,
// so callers see no error; Run probes Redis and switches back when it
// returns. Values written during an outage stay in-process only: limits
// and idempotency then hold per instance until Redis is back.
type Failover struct {
	redis    *Redis // nil: memory only
	memory   *Memory
	mode     atomic.Int32
	log      *slog.Logger
	interval time.Duration
}

// NewFailover returns a store over r (nil for memory only) with mem as its
// fallback, probing Redis every interval while Run runs.
func NewFailover(r *Redis, mem *Memory, log *slog.Logger, interval time.Duration) *Failover {
	f := &Failover{redis: r, memory: mem, log: log, interval: interval}
	if r == nil {
		f.mode.Store(int32(ModeMemory))
	}
	return f
}

// Mode returns the store currently in use.
func (f *Failover) Mode() Mode { return Mode(f.mode.Load()) }

// Ping checks Redis directly (nil when no Redis is configured) and updates
// the mode with what it learns.
func (f *Failover) Ping(ctx context.Context) error {
	if f.redis == nil {
		return nil
	}
	err := f.redis.Ping(ctx)
	f.observe(ctx, err)
	return err
}

// Run probes Redis every interval until ctx ends.
func (f *Failover) Run(ctx context.Context) {
	if f.redis == nil {
		return
	}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, f.interval)
		_ = f.Ping(pctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Failover) observe(ctx context.Context, err error) {
	if f.redis == nil || ctx.Err() != nil {
		return
	}
	if err == nil {
		if f.mode.Swap(int32(ModeRedis)) != int32(ModeRedis) {
			f.log.InfoContext(ctx, "redis reachable: using it")
		}
		return
	}
	if errors.Is(err, ErrUnavailable) && f.mode.Swap(int32(ModeFallback)) != int32(ModeFallback) {
		f.log.WarnContext(ctx, "redis unreachable: serving from the in-process store", "err", err)
	}
}

// active returns Redis when it is in use, nil otherwise.
func (f *Failover) active() *Redis {
	if f.Mode() == ModeRedis {
		return f.redis
	}
	return nil
}

// Get implements Store.
func (f *Failover) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if r := f.active(); r != nil {
		v, ok, err := r.Get(ctx, key)
		if !errors.Is(err, ErrUnavailable) {
			return v, ok, err
		}
		f.observe(ctx, err)
	}
	return f.memory.Get(ctx, key)
}

// Set implements Store.
func (f *Failover) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if r := f.active(); r != nil {
		err := r.Set(ctx, key, value, ttl)
		if !errors.Is(err, ErrUnavailable) {
			return err
		}
		f.observe(ctx, err)
	}
	return f.memory.Set(ctx, key, value, ttl)
}

// SetNX implements Store.
func (f *Failover) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if r := f.active(); r != nil {
		ok, err := r.SetNX(ctx, key, value, ttl)
		if !errors.Is(err, ErrUnavailable) {
			return ok, err
		}
		f.observe(ctx, err)
	}
	return f.memory.SetNX(ctx, key, value, ttl)
}

// Del implements Store.
func (f *Failover) Del(ctx context.Context, keys ...string) error {
	if r := f.active(); r != nil {
		err := r.Del(ctx, keys...)
		if !errors.Is(err, ErrUnavailable) {
			return err
		}
		f.observe(ctx, err)
	}
	return f.memory.Del(ctx, keys...)
}

// Incr implements Store.
func (f *Failover) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return f.IncrBy(ctx, key, 1, ttl)
}

// IncrBy implements Store.
func (f *Failover) IncrBy(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	if r := f.active(); r != nil {
		v, err := r.IncrBy(ctx, key, n, ttl)
		if !errors.Is(err, ErrUnavailable) {
			return v, err
		}
		f.observe(ctx, err)
	}
	return f.memory.IncrBy(ctx, key, n, ttl)
}
