package kv

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Memory is an in-process Store for a single instance. It is safe for
// concurrent use. Expired keys are removed when touched and by a sweep
// every sweepEvery writes. It holds at most maxBytes of keys and values:
// beyond that, expired keys are swept and then arbitrary keys evicted, so
// a flood of large values (idempotency records) cannot grow the process
// without bound while Redis is away.
type Memory struct {
	mu       sync.Mutex
	items    map[string]memItem
	now      func() time.Time
	writes   int
	bytes    int64
	maxBytes int64
}

// DefaultMemoryBytes bounds an in-process store made by NewMemory.
const DefaultMemoryBytes = 64 << 20

// WithMaxBytes sets the store's byte bound and returns it.
func (m *Memory) WithMaxBytes(n int64) *Memory {
	m.mu.Lock()
	m.maxBytes = n
	m.mu.Unlock()
	return m
}

func itemSize(key string, it memItem) int64 { return int64(len(key) + len(it.value) + 64) }

type memItem struct {
	value   []byte
	expires time.Time // zero: never
}

const sweepEvery = 1024

// NewMemory returns an empty in-process store using now as its clock
// (time.Now when nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{items: make(map[string]memItem), now: now, maxBytes: DefaultMemoryBytes}
}

func (m *Memory) live(key string, now time.Time) (memItem, bool) {
	it, ok := m.items[key]
	if ok && !it.expires.IsZero() && !now.Before(it.expires) {
		m.remove(key)
		return memItem{}, false
	}
	return it, ok
}

func (m *Memory) remove(key string) {
	if it, ok := m.items[key]; ok {
		m.bytes -= itemSize(key, it)
		delete(m.items, key)
	}
}

func (m *Memory) sweep(now time.Time) {
	for k, v := range m.items {
		if !v.expires.IsZero() && !now.Before(v.expires) {
			m.remove(k)
		}
	}
}

func (m *Memory) put(key string, value []byte, ttl time.Duration, now time.Time) {
	it := memItem{value: append([]byte(nil), value...)}
	if ttl > 0 {
		it.expires = now.Add(ttl)
	}
	m.remove(key)
	m.items[key] = it
	m.bytes += itemSize(key, it)
	m.writes++
	if m.writes%sweepEvery == 0 {
		m.sweep(now)
	}
	if m.maxBytes > 0 && m.bytes > m.maxBytes {
		m.sweep(now)
		for k := range m.items { // map order: arbitrary victims
			if m.bytes <= m.maxBytes {
				break
			}
			if k != key {
				m.remove(k)
			}
		}
	}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.live(key, m.now())
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), it.value...), true, nil
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, value, ttl, m.now())
	return nil
}

// SetNX implements Store.
func (m *Memory) SetNX(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if _, ok := m.live(key, now); ok {
		return false, nil
	}
	m.put(key, value, ttl, now)
	return true, nil
}

// Del implements Store.
func (m *Memory) Del(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.remove(k)
	}
	return nil
}

// Incr implements Store.
func (m *Memory) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return m.IncrBy(ctx, key, 1, ttl)
}

// IncrBy implements Store.
func (m *Memory) IncrBy(_ context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	it, ok := m.live(key, now)
	var n int64
	if ok {
		n, _ = strconv.ParseInt(string(it.value), 10, 64)
	}
	n += by
	if ok {
		m.bytes -= itemSize(key, it)
		it.value = strconv.AppendInt(it.value[:0], n, 10)
		m.items[key] = it
		m.bytes += itemSize(key, it)
	} else {
		m.put(key, strconv.AppendInt(nil, n, 10), ttl, now)
	}
	return n, nil
}

// Bytes returns the bytes the store accounts for its keys and values.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// Len returns the number of live and not yet swept keys.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}
