package kms_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/elile/elile/internal/kms"
)

// counting wraps a real provider and counts unwraps; fail makes them fail.
type counting struct {
	kms.Provider
	unwraps atomic.Int32
	fail    atomic.Bool
	gate    chan struct{} // when set, unwraps wait for it
}

func (c *counting) Unwrap(ctx context.Context, kek kms.KEK, w, ad []byte) ([]byte, error) {
	c.unwraps.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return nil, errors.New("provider unreachable")
	}
	return c.Provider.Unwrap(ctx, kek, w, ad)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func wrapped(t *testing.T, p kms.Provider, name string) (kms.Wrapped, []byte) {
	t.Helper()
	kek, err := p.CreateKEK(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte(name[len(name)-1:]), kms.DEKSize)
	ad := []byte(name)
	return kms.Wrapped{Name: name, KEK: kek, Blob: mustWrap(t, p, kek, dek, ad), AD: ad}, dek
}

func TestCache(t *testing.T) {
	t.Parallel()
	local, _ := kms.NewLocal(bytes.Repeat([]byte{1}, 32))
	p := &counting{Provider: local}
	clk := &clock{t: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	c := kms.NewCache(p, time.Minute, 2, clk.now)
	ctx := context.Background()
	a, deka := wrapped(t, local, "tenant/a")
	b, _ := wrapped(t, local, "tenant/b")
	cc, _ := wrapped(t, local, "tenant/c")

	for range 3 {
		got, err := c.DEK(ctx, a)
		if err != nil || !bytes.Equal(got, deka) {
			t.Fatalf("DEK = %x, %v", got, err)
		}
	}
	if n := p.unwraps.Load(); n != 1 {
		t.Errorf("%d unwraps for three reads of a cached key, want 1: a cached key never reaches the provider", n)
	}
	// Past the TTL the key is unwrapped again.
	clk.add(time.Minute)
	if _, err := c.DEK(ctx, a); err != nil || p.unwraps.Load() != 2 {
		t.Errorf("after the TTL: %v, %d unwraps; want a second unwrap", err, p.unwraps.Load())
	}
	// The provider down: a cached key keeps serving, an uncached one
	// fails, and the failure is not remembered.
	p.fail.Store(true)
	if _, err := c.DEK(ctx, a); err != nil {
		t.Errorf("cached key with the provider down: %v", err)
	}
	if _, err := c.DEK(ctx, b); err == nil {
		t.Error("an uncached key with the provider down was served")
	}
	p.fail.Store(false)
	clk.add(time.Second) // b is now newer than a
	if _, err := c.DEK(ctx, b); err != nil {
		t.Errorf("after the provider came back: %v", err)
	}
	// Bounded: a third key evicts the oldest (whose bytes the cache zeroes:
	// TestCache_ZeroesWhatLeaves); the copy a caller holds stays intact.
	held, _ := c.DEK(ctx, a)
	clk.add(time.Second)
	if _, err := c.DEK(ctx, cc); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Errorf("%d keys in memory, want at most 2", c.Len())
	}
	if !bytes.Equal(held, deka) {
		t.Errorf("the copy a caller held changed when its key was evicted: %x", held)
	}
	// Every unwrap counted, by outcome: a twice, b once failed and once
	// not, c once.
	want := `
# HELP elile_kms_unwraps_total Data keys unwrapped by the key provider, by provider and outcome (ok, error).
# TYPE elile_kms_unwraps_total counter
elile_kms_unwraps_total{outcome="error",provider="local"} 1
elile_kms_unwraps_total{outcome="ok",provider="local"} 4
`
	if err := testutil.CollectAndCompare(c.Collectors()[0], strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	c.Forget("tenant/c")
	if c.Len() != 1 {
		t.Errorf("after Forget: %d keys in memory, want 1", c.Len())
	}
}

// Requests for a key that is not cached share one unwrap.
func TestCache_OneUnwrapForConcurrentMisses(t *testing.T) {
	t.Parallel()
	local, _ := kms.NewLocal(bytes.Repeat([]byte{2}, 32))
	p := &counting{Provider: local, gate: make(chan struct{})}
	c := kms.NewCache(p, time.Minute, 10, nil)
	w, dek := wrapped(t, local, "tenant/x")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.DEK(context.Background(), w)
			if err == nil && !bytes.Equal(got, dek) {
				err = errors.New("wrong key")
			}
			errs <- err
		}()
	}
	for p.unwraps.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(p.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := p.unwraps.Load(); n != 1 {
		t.Errorf("%d unwraps for 20 concurrent misses, want 1", n)
	}
}

// A key handed out stays intact while the cache zeroes its own copy
// (Forget, eviction) at the same time: a caller building a cipher from
// bytes being zeroed would seal with a wrong key and lose the value.
func TestCache_HandsOutCopiesNeverZeroedUnderTheCaller(t *testing.T) {
	t.Parallel()
	local, _ := kms.NewLocal(bytes.Repeat([]byte{2}, 32))
	c := kms.NewCache(local, time.Hour, 10, nil)
	w, dek := wrapped(t, local, "tenant/k")
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				c.Forget(w.Name)
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				got, err := c.DEK(ctx, w)
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Microsecond) // a caller still using the bytes
				if !bytes.Equal(got, dek) {
					t.Error("a key handed out was changed under its caller")
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
}
