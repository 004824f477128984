// Package kv is elile's small key-value layer: Redis when it is configured
// and reachable, an in-process store otherwise. Rate limits, idempotency
// keys, credential caches and locks are built on Store, so they all fall
// back together and readiness can report it.
package kv

import (
	"context"
	"errors"
	"time"
)

// Store is a key-value store with expiry. Keys are namespaced by the caller
// (and hash-tagged per tenant for Redis Cluster where that matters).
type Store interface {
	// Get returns the value and whether the key exists.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl (0: no expiry).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key is absent and reports whether it did.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Del removes keys; absent keys are not an error.
	Del(ctx context.Context, keys ...string) error
	// Incr adds one to the counter at key, creating it with ttl when absent,
	// and returns the new value.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// IncrBy adds n to the counter at key, creating it with ttl when
	// absent, and returns the new value.
	IncrBy(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error)
}

// ErrUnavailable reports that the backing server could not be reached.
var ErrUnavailable = errors.New("kv: store unavailable")
