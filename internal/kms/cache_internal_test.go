package kms

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// What leaves the cache — evicted past its bound, past its TTL, or
// forgotten — is zeroed in memory.
func TestCache_ZeroesWhatLeaves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := NewLocal(bytes.Repeat([]byte{4}, 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	c := NewCache(p, time.Minute, 1, func() time.Time { return now })
	mk := func(name string) Wrapped {
		kek, err := p.CreateKEK(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := p.Wrap(ctx, kek, bytes.Repeat([]byte{9}, DEKSize), []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		return Wrapped{Name: name, KEK: kek, Blob: w, AD: []byte(name)}
	}
	inside := func(w Wrapped) []byte {
		t.Helper()
		if _, err := c.DEK(ctx, w); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.items[w.Name].dek
	}
	zero := make([]byte, DEKSize)

	a := inside(mk("a"))
	now = now.Add(time.Second)
	inside(mk("b")) // the bound is 1: a is evicted
	if !bytes.Equal(a, zero) {
		t.Errorf("evicted key not zeroed: %x", a)
	}
	b := inside(mk("b"))
	c.Forget("b")
	if !bytes.Equal(b, zero) {
		t.Errorf("forgotten key not zeroed: %x", b)
	}
	d := inside(mk("d"))
	now = now.Add(2 * time.Minute)
	inside(mk("e")) // d ran out
	if !bytes.Equal(d, zero) {
		t.Errorf("expired key not zeroed: %x", d)
	}
}
