package kv

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Memory is an in-process Store for a single instance. It is safe for
// concurrent use. Expired keys are removed when touched and by a sweep
// every sweepEvery writes.
type Memory struct {
	mu     sync.Mutex
	items  map[string]memItem
	now    func() time.Time
	writes int
}

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
	return &Memory{items: make(map[string]memItem), now: now}
}

func (m *Memory) live(key string, now time.Time) (memItem, bool) {
	it, ok := m.items[key]
	if ok && !it.expires.IsZero() && !now.Before(it.expires) {
		delete(m.items, key)
		return memItem{}, false
	}
	return it, ok
}

func (m *Memory) put(key string, value []byte, ttl time.Duration, now time.Time) {
	it := memItem{value: append([]byte(nil), value...)}
	if ttl > 0 {
		it.expires = now.Add(ttl)
	}
	m.items[key] = it
	m.writes++
	if m.writes%sweepEvery == 0 {
		for k, v := range m.items {
			if !v.expires.IsZero() && !now.Before(v.expires) {
				delete(m.items, k)
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
		delete(m.items, k)
	}
	return nil
}

// Incr implements Store.
func (m *Memory) Incr(_ context.Context, key string, ttl time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	it, ok := m.live(key, now)
	var n int64
	if ok {
		n, _ = strconv.ParseInt(string(it.value), 10, 64)
	}
	n++
	if ok {
		it.value = strconv.AppendInt(it.value[:0], n, 10)
		m.items[key] = it
	} else {
		m.put(key, strconv.AppendInt(nil, n, 10), ttl, now)
	}
	return n, nil
}

// Len returns the number of live and not yet swept keys.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}
