package kv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/elile/elile/internal/faultproxy"
	"github.com/elile/elile/internal/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func redisAddr() string {
	if u := os.Getenv("ELILE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func prefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "elile-test:" + hex.EncodeToString(b) + ":"
}

func newRedis(t *testing.T, url string) *kv.Redis {
	t.Helper()
	r, err := kv.NewRedis(url, prefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testStore runs the Store contract against s.
func testStore(t *testing.T, s kv.Store) {
	ctx := context.Background()
	t.Run("GetMissing", func(t *testing.T) {
		if v, ok, err := s.Get(ctx, "missing"); ok || v != nil || err != nil {
			t.Fatalf("Get(missing) = %q, %v, %v", v, ok, err)
		}
	})
	t.Run("SetGetDel", func(t *testing.T) {
		if err := s.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.Get(ctx, "k"); string(v) != "v1" || !ok || err != nil {
			t.Fatalf("Get = %q, %v, %v; want v1", v, ok, err)
		}
		if err := s.Del(ctx, "k", "other"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Get(ctx, "k"); ok {
			t.Fatal("key survived Del")
		}
		if err := s.Del(ctx); err != nil {
			t.Fatalf("Del() = %v", err)
		}
	})
	t.Run("SetNX", func(t *testing.T) {
		ok, err := s.SetNX(ctx, "nx", []byte("first"), time.Minute)
		if !ok || err != nil {
			t.Fatalf("first SetNX = %v, %v", ok, err)
		}
		ok, err = s.SetNX(ctx, "nx", []byte("second"), time.Minute)
		if ok || err != nil {
			t.Fatalf("second SetNX = %v, %v; want false", ok, err)
		}
		if v, _, _ := s.Get(ctx, "nx"); string(v) != "first" {
			t.Fatalf("value = %q, want first", v)
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		if err := s.Set(ctx, "short", []byte("x"), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(120 * time.Millisecond)
		if _, ok, _ := s.Get(ctx, "short"); ok {
			t.Fatal("key outlived its ttl")
		}
	})
	t.Run("IncrConcurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if _, err := s.Incr(ctx, "ctr", time.Minute); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		n, err := s.Incr(ctx, "ctr", time.Minute)
		if n != 51 || err != nil {
			t.Fatalf("Incr after 50 concurrent = %d, %v; want 51", n, err)
		}
	})
	t.Run("IncrExpires", func(t *testing.T) {
		if _, err := s.Incr(ctx, "win", 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(120 * time.Millisecond)
		if n, _ := s.Incr(ctx, "win", time.Minute); n != 1 {
			t.Fatalf("Incr after window = %d, want 1", n)
		}
	})
}

func TestMemory(t *testing.T) {
	t.Parallel()
	testStore(t, kv.NewMemory(nil))
}

func TestMemory_Sweep(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	m := kv.NewMemory(func() time.Time { return now })
	ctx := context.Background()
	for i := range 2000 {
		_ = m.Set(ctx, string(rune('a'+i%26))+string(rune(i)), nil, time.Second)
		if i == 999 {
			now = now.Add(time.Hour) // the first thousand expire
		}
	}
	if n := m.Len(); n > 1100 {
		t.Fatalf("Len = %d after expiry and sweep, want about 1000", n)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	r := newRedis(t, redisAddr())
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("redis at %s: %v (make test starts it)", redisAddr(), err)
	}
	testStore(t, r)
}

func TestFailover_NoRedisConfigured(t *testing.T) {
	t.Parallel()
	f := kv.NewFailover(nil, kv.NewMemory(nil), quietLog(), time.Second)
	if f.Mode() != kv.ModeMemory || f.Ping(context.Background()) != nil {
		t.Fatalf("mode %v, want memory and a nil ping", f.Mode())
	}
	f.Run(context.Background()) // returns at once without Redis
	testStore(t, f)
}

func TestFailover_RedisLostAndBack(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.Start("127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := newRedis(t, "redis://"+p.Addr()+"/0")
	f := kv.NewFailover(r, kv.NewMemory(nil), quietLog(), 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	waitMode(t, f, kv.ModeRedis)
	if err := f.Set(ctx, "k", []byte("in-redis"), time.Minute); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	// The first call after the cut must not fail: it falls back.
	if err := f.Set(ctx, "k2", []byte("in-memory"), time.Minute); err != nil {
		t.Fatalf("Set during outage = %v, want fallback", err)
	}
	waitMode(t, f, kv.ModeFallback)
	if v, ok, err := f.Get(ctx, "k2"); string(v) != "in-memory" || !ok || err != nil {
		t.Fatalf("Get during outage = %q, %v, %v", v, ok, err)
	}
	if n, err := f.Incr(ctx, "c", time.Minute); n != 1 || err != nil {
		t.Fatalf("Incr during outage = %d, %v", n, err)
	}
	if ok, err := f.SetNX(ctx, "nx", nil, time.Minute); !ok || err != nil {
		t.Fatalf("SetNX during outage = %v, %v", ok, err)
	}
	if err := f.Del(ctx, "nx"); err != nil {
		t.Fatal(err)
	}

	p.Restore()
	waitMode(t, f, kv.ModeRedis)
	if v, _, err := f.Get(ctx, "k"); string(v) != "in-redis" || err != nil {
		t.Fatalf("Get after recovery = %q, %v; want the value stored in Redis", v, err)
	}
}

func TestFailover_CallsFallBackWithoutProbe(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.Start("127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := kv.NewFailover(newRedis(t, "redis://"+p.Addr()+"/0"), kv.NewMemory(nil), quietLog(), time.Hour)
	ctx := context.Background()
	if err := f.Ping(ctx); err != nil || f.Mode() != kv.ModeRedis {
		t.Fatalf("Ping = %v, mode %v", err, f.Mode())
	}
	for name, call := range map[string]func() error{
		"Get":   func() error { _, _, err := f.Get(ctx, "a"); return err },
		"Set":   func() error { return f.Set(ctx, "a", nil, 0) },
		"SetNX": func() error { _, err := f.SetNX(ctx, "b", nil, 0); return err },
		"Incr":  func() error { _, err := f.Incr(ctx, "c", 0); return err },
		"Del":   func() error { return f.Del(ctx, "a") },
	} {
		p.Restore()
		if err := f.Ping(ctx); err != nil || f.Mode() != kv.ModeRedis {
			t.Fatalf("Ping after restore = %v, mode %v", err, f.Mode())
		}
		p.Cut()
		if err := call(); err != nil {
			t.Errorf("%s during outage = %v, want fallback", name, err)
		}
	}
	if f.Mode() != kv.ModeFallback {
		t.Fatalf("mode = %v, want fallback", f.Mode())
	}
	for _, m := range []kv.Mode{kv.ModeRedis, kv.ModeFallback, kv.ModeMemory} {
		if m.String() == "" {
			t.Errorf("mode %d has no name", m)
		}
	}
}

func TestNewRedis_BadURL(t *testing.T) {
	t.Parallel()
	if _, err := kv.NewRedis("http://u:secret@x", ""); err == nil {
		t.Fatal("NewRedis(http url) succeeded")
	}
}

func waitMode(t *testing.T, f *kv.Failover, want kv.Mode) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.Mode() != want {
		if time.Now().After(deadline) {
			t.Fatalf("mode = %v after 5s, want %v", f.Mode(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testAllow(t *testing.T, allow func(ctx context.Context, key string, r kv.Rate) (kv.Decision, error)) {
	ctx := context.Background()
	r := kv.Rate{Limit: 60, Period: time.Minute, Burst: 5}
	for i := range 5 {
		d, err := allow(ctx, "rl", r)
		if err != nil || !d.Allowed || d.Remaining != 4-i {
			t.Fatalf("request %d: %+v, %v; want allowed with %d remaining", i+1, d, err, 4-i)
		}
	}
	d, err := allow(ctx, "rl", r)
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > time.Second+50*time.Millisecond {
		t.Fatalf("request 6: %+v, %v; want denied, retry within about 1s", d, err)
	}
	if kv.Seconds(d.RetryAfter) != 1 || kv.Seconds(0) != 0 {
		t.Errorf("Seconds(%s) = %d", d.RetryAfter, kv.Seconds(d.RetryAfter))
	}
	if d, _ := allow(ctx, "other", r); !d.Allowed {
		t.Error("another key was limited")
	}
}

func TestAllow_Memory(t *testing.T) {
	t.Parallel()
	testAllow(t, kv.NewMemory(nil).Allow)
}

func TestAllow_Redis(t *testing.T) {
	t.Parallel()
	testAllow(t, newRedis(t, redisAddr()).Allow)
}

func TestAllow_MemoryRefills(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	m := kv.NewMemory(func() time.Time { return now })
	r := kv.Rate{Limit: 60, Period: time.Minute, Burst: 2}
	ctx := context.Background()
	m.Allow(ctx, "k", r) //nolint:errcheck // memory never fails
	m.Allow(ctx, "k", r) //nolint:errcheck
	if d, _ := m.Allow(ctx, "k", r); d.Allowed {
		t.Fatal("third request in the same instant allowed with burst 2")
	}
	now = now.Add(time.Second)
	if d, _ := m.Allow(ctx, "k", r); !d.Allowed {
		t.Fatal("a second later, one more request should be allowed")
	}
}

// The in-process fallback is bounded in bytes: a flood of large values
// (idempotency records while Redis is away) evicts instead of growing.
func TestMemory_ByteBound(t *testing.T) {
	t.Parallel()
	m := kv.NewMemory(nil).WithMaxBytes(1 << 20)
	ctx := context.Background()
	val := make([]byte, 100<<10)
	for i := range 100 {
		if err := m.Set(ctx, fmt.Sprint("k", i), val, time.Hour); err != nil {
			t.Fatal(err)
		}
		if m.Bytes() > 1<<20 {
			t.Fatalf("after %d values the store holds %d bytes, bound 1 MiB", i+1, m.Bytes())
		}
	}
	if _, ok, _ := m.Get(ctx, "k99"); !ok {
		t.Error("the newest value was evicted")
	}
	if n, _ := m.IncrBy(ctx, "c", 5, time.Hour); n != 5 {
		t.Errorf("IncrBy = %d, want 5", n)
	}
	if n, _ := m.IncrBy(ctx, "c", 7, time.Hour); n != 12 {
		t.Errorf("IncrBy = %d, want 12", n)
	}
	if err := m.Del(ctx, "c"); err != nil || m.Len() > 11 {
		t.Errorf("Del: %v, %d keys", err, m.Len())
	}
}
