package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store on a Redis server, shared by every instance.
type Redis struct {
	c      *redis.Client
	prefix string
}

// NewRedis connects lazily to the server at url ("redis://host:port/db").
// Every key gets prefix, so tests and deployments can share a server.
func NewRedis(url, prefix string) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("parse redis url: invalid connection string")
	}
	opts.DialTimeout = 500 * time.Millisecond
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.MaxRetries = 0 // the Failover decides what a failure means
	opts.DialerRetries = 1
	opts.PoolTimeout = time.Second
	return &Redis{c: redis.NewClient(opts), prefix: prefix}, nil
}

// QuietDriverLogs stops go-redis from printing its own dial errors to
// stderr: the Failover logs outages once, through slog. go-redis offers
// this only process-wide, so main (and tests) call it once.
func QuietDriverLogs() { redis.SetLogger(quietLogger{}) }

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// Close closes the client's connections.
func (r *Redis) Close() error { return r.c.Close() }

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error { return wrap(r.c.Ping(ctx).Err()) }

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := r.c.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, wrap(err)
	}
	return b, true, nil
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return wrap(r.c.Set(ctx, r.prefix+key, value, ttl).Err())
}

// SetNX implements Store.
func (r *Redis) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	ok, err := r.c.SetNX(ctx, r.prefix+key, value, ttl).Result()
	return ok, wrap(err)
}

// Del implements Store.
func (r *Redis) Del(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
	}
	return wrap(r.c.Del(ctx, full...).Err())
}

// incrScript creates the counter with its expiry atomically, so a crash
// between INCR and EXPIRE cannot leave a counter that never resets.
//
//nolint:gochecknoglobals // an immutable script, loaded by hash
var incrScript = redis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) == -1 and tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`) //nolint:gochecknoglobals // immutable script

// Incr implements Store.
func (r *Redis) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return r.IncrBy(ctx, key, 1, ttl)
}

// IncrBy implements Store.
func (r *Redis) IncrBy(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	v, err := incrScript.Run(ctx, r.c, []string{r.prefix + key}, ttl.Milliseconds(), n).Int64()
	return v, wrap(err)
}

// wrap marks connection-level failures with ErrUnavailable.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
