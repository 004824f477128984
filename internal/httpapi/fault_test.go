package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/tenancy"
)

type outcome struct {
	status int
	id     string
	took   time.Duration
	at     time.Time
}

// createLoad is eight loops creating entities (a unique SSN each), each
// pausing between requests, recording every answer until stop.
type createLoad struct {
	mu      sync.Mutex
	results []outcome
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startCreateLoad(t *testing.T, h http.Handler, f fixture, pause time.Duration) *createLoad {
	t.Helper()
	l := &createLoad{stop: make(chan struct{})}
	for g := range 8 {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				rec := call(t, h, req{method: "POST", path: "/v1/entities", key: f.secret, tenant: f.tenant.String(),
					body: map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"ssn": identifier.SyntheticSSN(uint64(g)*1_000_000 + uint64(i))}}})
				o := outcome{status: rec.Code, took: time.Since(start), at: start}
				if rec.Code == 201 {
					o.id = decode[EntityOut](t, rec).EntityID
				}
				l.mu.Lock()
				l.results = append(l.results, o)
				l.mu.Unlock()
				time.Sleep(pause)
			}
		})
	}
	return l
}

// snapshot returns the answers so far.
func (l *createLoad) snapshot() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// firstCreatedAfter is the start of the first 201 begun after at (zero if
// none yet), and when it was answered.
func (l *createLoad) firstCreatedAfter(at time.Time) (started, answered time.Time) {
	for _, o := range l.snapshot() {
		if o.status == 201 && o.at.After(at) {
			return o.at, o.at.Add(o.took)
		}
	}
	return time.Time{}, time.Time{}
}

// finish stops the loops and returns every answer.
func (l *createLoad) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// TestFault_DatabaseLostDuringLoad cuts PostgreSQL (through a proxy, the
// shared server is never touched) while writers run: requests fail fast
// with 503, readiness says 503, service resumes by itself within 5 s of the
// database returning, and every write answered 2xx is stored.
func TestFault_DatabaseLostDuringLoad(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 1e6, Period: time.Minute, Burst: 1e5}, deadline: 5 * time.Second, acquire: time.Second})
	tid := mkTenant(t, b, "fault-db")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	load := startCreateLoad(t, h, key, 5*time.Millisecond)
	time.Sleep(700 * time.Millisecond)
	b.pgProxy.Cut()
	cutAt := time.Now()
	time.Sleep(300 * time.Millisecond)
	ready := do(t, h, "GET", "/health/ready", nil)
	if ready.Code != 503 {
		t.Errorf("readiness with the database gone: %d", ready.Code)
	}
	time.Sleep(1200 * time.Millisecond)
	b.pgProxy.Restore()
	restoredAt := time.Now()
	var firstOK time.Time
	for time.Since(restoredAt) < 10*time.Second && firstOK.IsZero() {
		time.Sleep(50 * time.Millisecond)
		for _, o := range load.snapshot() {
			if o.status == 201 && o.at.After(restoredAt) {
				firstOK = o.at
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	results := load.finish()

	if firstOK.IsZero() || firstOK.Sub(restoredAt) > 5*time.Second {
		t.Fatalf("no success within 5s of the database returning (first at %v after)", firstOK.Sub(restoredAt))
	}
	counts := map[int]int{}
	var ids []string
	for _, o := range results {
		counts[o.status]++
		if o.id != "" {
			ids = append(ids, o.id)
		}
		if o.took > 5*time.Second+500*time.Millisecond {
			t.Errorf("a request waited %s, past its 5s deadline", o.took)
		}
		if o.status != 201 && o.status != 503 {
			t.Errorf("status %d during the outage, want 201 or 503", o.status)
		}
		// Started after the cut and answered before the restore: it cannot
		// have reached the database. (One started during the outage may
		// legitimately succeed if it was still waiting when it came back.)
		if o.at.After(cutAt.Add(100*time.Millisecond)) && o.at.Add(o.took).Before(restoredAt) && o.status == 201 {
			t.Errorf("a write succeeded while the database was cut")
		}
	}
	if counts[500] > 0 {
		for _, line := range strings.Split(b.logs.String(), "\n") {
			if strings.Contains(line, "request failed") || strings.Contains(line, "\"status\":500") {
				t.Log(line)
			}
		}
	}
	if counts[503] == 0 || counts[201] == 0 {
		t.Fatalf("statuses %v: the test did not see both success and outage", counts)
	}
	t.Logf("statuses %v, first success %s after the database returned", counts, firstOK.Sub(restoredAt).Round(time.Millisecond))
	// Every 2xx write is stored (read directly, not through the proxy).
	conn, err := pgx.Connect(context.Background(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var stored int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM entities WHERE entity_id::text = ANY($1)", ids).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(ids) {
		t.Fatalf("%d of %d acknowledged writes are stored", stored, len(ids))
	}
}

// TestFault_RedisLostDuringLoad: the API keeps serving, readiness says
// degraded, limits and idempotency fall back to in-process.
func TestFault_RedisLostDuringLoad(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{redisProxy: true, rate: kv.Rate{Limit: 1e6, Period: time.Minute, Burst: 1e5}})
	tid := mkTenant(t, b, "fault-redis")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	get := func() int {
		return call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: tid.String()}).Code
	}
	for range 20 {
		if c := get(); c != 200 {
			t.Fatalf("before the cut: %d", c)
		}
	}
	b.redisProxy.Cut()
	for i := range 50 {
		if c := get(); c != 200 {
			t.Fatalf("request %d with Redis gone: %d", i, c)
		}
	}
	ready := decode[readyBody](t, do(t, h, "GET", "/health/ready", nil))
	if ready.Status != "degraded" {
		t.Errorf("readiness with Redis gone: %+v", ready)
	}
	// Idempotency still works, in-process.
	r := req{method: "POST", path: "/v1/api-keys", key: key.secret, tenant: tid.String(), body: map[string]any{"name": "x", "scopes": []string{"entities:read"}},
		hdr: map[string]string{"Idempotency-Key": "during-outage"}}
	first, second := call(t, h, r), call(t, h, r)
	if first.Code != 201 || second.Header().Get("Idempotent-Replayed") != "true" || first.Body.String() != second.Body.String() {
		t.Fatalf("idempotency with Redis gone: %d / %d %v", first.Code, second.Code, second.Header())
	}
	b.redisProxy.Restore()
	deadline := time.Now().Add(5 * time.Second)
	for decode[readyBody](t, do(t, h, "GET", "/health/ready", nil)).Status != "healthy" {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not recover with Redis back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFault_PoolExhausted: with every connection busy, a request gets 503
// with Retry-After within the acquire timeout instead of hanging.
func TestFault_PoolExhausted(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{maxConns: 2, acquire: 300 * time.Millisecond})
	tid := mkTenant(t, b, "fault-pool")
	// The fixture's key goes through the same two-connection pool, which the
	// audit writer shares: on a loaded machine one attempt can miss the
	// 300 ms acquire timeout the test is about.
	var k auth.Key
	var secret string
	var err error
	for range 5 {
		if k, secret, err = tenancy.NewService(b.db.Tenancy(), nil).CreateKey(context.Background(), tid, tenancy.NewKey{Name: "test", Scopes: []string{auth.ScopeTenantAdmin}}); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	key := fixture{tenant: tid, secret: secret, keyID: k.ID}
	// Warm the credential and tenant caches, then hold both connections.
	if c := call(t, h, req{method: "GET", path: "/v1/api-keys", key: key.secret, tenant: tid.String()}).Code; c != 200 {
		t.Fatal(c)
	}
	release := make(chan struct{})
	var held sync.WaitGroup
	for range 2 {
		held.Add(1)
		go func() {
			_ = b.db.InTx(context.Background(), tid, func(*postgres.Tx) error { held.Done(); <-release; return nil })
		}()
	}
	held.Wait()
	start := time.Now()
	rec := call(t, h, req{method: "GET", path: "/v1/api-keys", key: key.secret, tenant: tid.String()})
	took := time.Since(start)
	close(release)
	wantProblem(t, rec, 503, "DATABASE_UNAVAILABLE")
	if rec.Header().Get("Retry-After") == "" || took > 2*time.Second {
		t.Fatalf("503 after %s, Retry-After %q", took, rec.Header().Get("Retry-After"))
	}
}

// TestFault_SlowQueryCancelledAtDeadline: a request blocked in the
// database is cancelled when its deadline passes.
func TestFault_SlowQueryCancelledAtDeadline(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{deadline: 400 * time.Millisecond})
	tid := mkTenant(t, b, "fault-slow")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	rec := call(t, h, req{method: "POST", path: "/v1/entities", key: key.secret, tenant: tid.String(), body: map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "Slow"}}})
	e := decode[EntityOut](t, rec)
	// Another session holds the row: the PATCH waits on its lock.
	conn, err := pgx.Connect(context.Background(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "SELECT 1 FROM entities WHERE entity_id = $1 FOR UPDATE", uuid.MustParse(e.EntityID)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rec = call(t, h, req{method: "PATCH", path: "/v1/entities/" + e.EntityID, key: key.secret, tenant: tid.String(),
		body: map[string]any{"canonical_identifiers": map[string]any{"full_name": "x"}}})
	took := time.Since(start)
	_ = tx.Rollback(context.Background())
	if rec.Code != 503 || took > 2*time.Second || took < 350*time.Millisecond {
		t.Fatalf("blocked PATCH: %d after %s, want 503 at the 400ms deadline: %s", rec.Code, took, rec.Body)
	}
}
