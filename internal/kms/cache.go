package kms

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Wrapped is a stored, wrapped DEK and what unwraps it.
type Wrapped struct {
	Name string // stable and unique, e.g. "tenant/<uuid>/data/3": the cache key
	KEK  KEK
	Blob []byte // the wrapped DEK
	AD   []byte // its binding
}

// Cache keeps unwrapped DEKs in memory only, each for at most ttl and at
// most max of them, so a request whose DEK is cached never reaches the
// provider. Every unwrap is counted (elile_kms_unwraps_total). Concurrent
// requests for a DEK that is not cached share one unwrap. A DEK is zeroed
// when it leaves the cache; DEK hands out a copy, which the caller builds
// what it needs from (a cipher) and then clears — so that zeroing an entry
// can never change a key another goroutine is using.
type Cache struct {
	p   Provider
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	items   map[string]cached
	flights singleflight.Group
	unwraps *prometheus.CounterVec
}

type cached struct {
	dek     []byte
	fetched time.Time
}

// NewCache returns a cache over p (now: time.Now when nil).
func NewCache(p Provider, ttl time.Duration, maxKeys int, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	c := &Cache{p: p, ttl: ttl, max: max(maxKeys, 1), now: now, items: map[string]cached{},
		unwraps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elile_kms_unwraps_total", Help: "Data keys unwrapped by the key provider, by provider and outcome (ok, error).",
		}, []string{"provider", "outcome"})}
	// Both series exist from the start, so an alert on errors has a series
	// to compare with before the first one.
	c.unwraps.WithLabelValues(p.Name(), "ok")
	c.unwraps.WithLabelValues(p.Name(), "error")
	return c
}

// Collectors are the cache's metrics.
func (c *Cache) Collectors() []prometheus.Collector { return []prometheus.Collector{c.unwraps} }

// DEK returns a copy of the unwrapped key w names (the caller clears it
// after use): from memory while it is fresh, else from the provider (one
// unwrap for every caller waiting on it). A provider failure is returned
// and not remembered.
func (c *Cache) DEK(ctx context.Context, w Wrapped) ([]byte, error) {
	now := c.now()
	c.mu.Lock()
	it, ok := c.items[w.Name]
	var hit []byte
	if ok && now.Sub(it.fetched) < c.ttl {
		hit = bytes.Clone(it.dek) // under the lock: put and Forget zero entries under it
	}
	c.mu.Unlock()
	if hit != nil {
		return hit, nil
	}
	ch := c.flights.DoChan(w.Name, func() (any, error) {
		dek, err := c.p.Unwrap(context.WithoutCancel(ctx), w.KEK, w.Blob, w.AD)
		if err != nil {
			c.unwraps.WithLabelValues(c.p.Name(), "error").Inc()
			return nil, err
		}
		c.unwraps.WithLabelValues(c.p.Name(), "ok").Inc()
		c.put(w.Name, cached{dek: bytes.Clone(dek), fetched: now})
		return dek, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return bytes.Clone(r.Val.([]byte)), nil //nolint:forcetypeassert // the function above returns only []byte
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put stores it under name, evicting (and zeroing) what ran out and, past
// max, the oldest.
func (c *Cache) put(name string, it cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.items[name]; ok {
		clear(old.dek)
	}
	c.items[name] = it
	now := c.now()
	for n, x := range c.items {
		if now.Sub(x.fetched) >= c.ttl && n != name {
			clear(x.dek)
			delete(c.items, n)
		}
	}
	for len(c.items) > c.max {
		oldest := ""
		for n, x := range c.items {
			if n != name && (oldest == "" || x.fetched.Before(c.items[oldest].fetched)) {
				oldest = n
			}
		}
		clear(c.items[oldest].dek)
		delete(c.items, oldest)
	}
}

// Forget drops (and zeroes) the DEK called name: after a rotation or when
// its tenant is erased.
func (c *Cache) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.items[name]; ok {
		clear(it.dek)
		delete(c.items, name)
	}
}

// Len is how many DEKs are in memory.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
