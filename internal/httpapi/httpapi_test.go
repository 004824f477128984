package httpapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/faultproxy"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/logging"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/webhook"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testBundle struct {
	dbURL      string
	db         *postgres.DB
	kv         *kv.Failover
	logs       *syncBuffer
	pgProxy    *faultproxy.Proxy
	ring       *fieldcrypt.Keyring
	deps       Deps
	signer     *audit.Signer
	redisProxy *faultproxy.Proxy
}

type setupOpts struct {
	noRedis    bool
	redisAddr  string // default: the local server
	rate       kv.Rate
	origins    []string
	dbURL      string // share another test's database
	kvPrefix   string // share another test's Redis keys
	maxConns   int32
	acquire    time.Duration
	deadline   time.Duration // per-request timeout
	redisProxy bool          // reach Redis through a fault proxy too
	idemBudget int64         // idempotency bytes per credential (0: default)
	lookups    kv.Rate       // per-address credential look-ups (zero: default)
	trusted    []netip.Prefix
	tracer     trace.Tracer // spans of requests, statements and Redis commands
}

var testJWTSecret = []byte("test-secret-test-secret-test-secret!!") //nolint:gochecknoglobals // test fixture

func testKeyring(t testing.TB) *fieldcrypt.Keyring {
	t.Helper()
	k, err := fieldcrypt.NewKeyring(map[uint32][]byte{1: bytes.Repeat([]byte{7}, 32)}, 1, bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testKeys are tenant keys over a fresh database (the local provider).
func testKeys(t testing.TB) *fieldcrypt.Keys {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Options{URL: pgtest.DB(t), Keyring: testKeyring(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db.DataKeys()
}

// setup starts a server on a fresh database reached through a fault proxy.
func setup(t *testing.T, o setupOpts) (http.Handler, *testBundle) {
	t.Helper()
	url := o.dbURL
	if url == "" {
		url = pgtest.DB(t)
	}
	ring := testKeyring(t)
	// ELILE_TEST_VIA_PGBOUNCER=1 puts the pool behind the PgBouncer in
	// transaction mode at ELILE_TEST_PGBOUNCER (scripts/pgbouncer.sh), as
	// CI runs these tests a second time.
	target, pooler := "127.0.0.1:5432", ""
	if os.Getenv("ELILE_TEST_VIA_PGBOUNCER") != "" {
		if pooler = os.Getenv("ELILE_TEST_PGBOUNCER"); pooler == "" {
			t.Fatal("ELILE_TEST_VIA_PGBOUNCER needs ELILE_TEST_PGBOUNCER (host:port)")
		}
		target = pooler
	}
	proxy, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	proxied := strings.Replace(url, "127.0.0.1:5432", proxy.Addr(), 1)
	tables, err := tenantTables(url)
	if err != nil {
		t.Fatal(err)
	}
	rule := &tenantRule{}
	t.Cleanup(func() { rule.check(t) })
	db, err := postgres.Open(context.Background(), postgres.Options{URL: proxied, Keyring: ring, MaxConns: o.maxConns, AcquireTimeout: o.acquire, Tracer: o.tracer,
		TransactionPooler: pooler != "", DirectURL: directURL(url, pooler), Statements: rule.seen(tables)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	logs := &syncBuffer{}
	log, err := logging.New(logs, "json", "DEBUG")
	if err != nil {
		t.Fatal(err)
	}
	var store *kv.Failover
	var redisProxy *faultproxy.Proxy
	if o.noRedis {
		store = kv.NewFailover(nil, kv.NewMemory(nil), log, time.Second)
	} else {
		addr := o.redisAddr
		if addr == "" {
			addr = "127.0.0.1:6379"
		}
		if o.redisProxy {
			rp, err := faultproxy.Start(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rp.Close() })
			redisProxy = rp
			addr = rp.Addr()
		}
		prefix := o.kvPrefix
		if prefix == "" {
			prefix = "elile-test:" + uuid.NewString() + ":"
		}
		r, err := kv.NewRedis("redis://"+addr+"/0", prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if o.tracer != nil {
			r.Trace(o.tracer)
		}
		store = kv.NewFailover(r, kv.NewMemory(nil), log, time.Second)
	}
	if err := store.Ping(context.Background()); err != nil && !o.noRedis && o.redisAddr == "" {
		t.Fatalf("redis: %v", err)
	}
	signer, err := audit.NewSigner(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	writer := audit.NewWriter(db, log, 1000, 200)
	wctx, stopWriter := context.WithCancel(context.Background())
	go writer.Run(wctx)
	t.Cleanup(func() { stopWriter(); writer.Wait() })
	d := Deps{Log: log, KV: store, Audit: writer, Rate: o.rate, CORSOrigins: o.origins, RequestTimeout: o.deadline, IdempotencyBudget: o.idemBudget, AuthLookups: o.lookups, TrustedProxies: o.trusted, Collectors: []prometheus.Collector{postgres.NewPoolCollector(db)},
		LatestSchema: postgres.LatestVersion(), Version: "test-1", Started: time.Now().Add(-90 * time.Second)}
	d = overDB(d, db, signer.Public())
	d.Tracer = o.tracer
	h := conforming(t, NewServer(d))
	return h, &testBundle{dbURL: url, db: db, kv: store, logs: logs, pgProxy: proxy, ring: ring, deps: d, signer: signer, redisProxy: redisProxy}
}

// directURL is the database's own URL when the pool goes through a pooler
// (leader election needs a real session), else empty.
func directURL(url, pooler string) string {
	if pooler == "" {
		return ""
	}
	return url
}

func do(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body.String(), err)
	}
	return v
}

func TestHealth(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	rec := do(t, h, "GET", "/health", nil)
	if rec.Code != 200 {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	body := decode[healthBody](t, rec)
	if body.Status != "healthy" || body.Version != "test-1" || body.UptimeSeconds < 89 {
		t.Fatalf("body = %+v, want healthy, test-1, uptime ≥ 90s", body)
	}
}

func TestReady_Healthy(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	rec := do(t, h, "GET", "/health/ready", nil)
	body := decode[readyBody](t, rec)
	if rec.Code != 200 || body.Status != "healthy" {
		t.Fatalf("ready = %d %+v, want 200 healthy", rec.Code, body)
	}
	for _, name := range []string{"database", "redis", "migrations", "kms"} {
		c, ok := body.Components[name]
		if !ok || c.Status != "healthy" || c.LatencyMS < 0 {
			t.Errorf("component %s = %+v (present %v), want healthy", name, c, ok)
		}
	}
	m := body.Components["migrations"]
	if m.Current == nil || m.Latest == nil || *m.Current != *m.Latest {
		t.Errorf("migrations = %+v, want current = latest", m)
	}
}

func TestReady_DatabaseLostAndBack(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	if rec := do(t, h, "GET", "/health/ready", nil); rec.Code != 200 {
		t.Fatalf("before the cut: %d %s", rec.Code, rec.Body)
	}
	b.pgProxy.Cut()
	start := time.Now()
	rec := do(t, h, "GET", "/health/ready", nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("readiness took %s with the database gone, want under 5s", took)
	}
	body := decode[readyBody](t, rec)
	if rec.Code != 503 || body.Status != "unhealthy" || body.Components["database"].Status != "unhealthy" {
		t.Fatalf("ready with database cut = %d %+v, want 503 unhealthy", rec.Code, body)
	}
	if rec := do(t, h, "GET", "/health", nil); rec.Code != 200 {
		t.Errorf("liveness with the database cut = %d, want 200", rec.Code)
	}
	if rec := do(t, h, "GET", "/health/db", nil); rec.Code != 503 {
		t.Errorf("/health/db with the database cut = %d, want 503", rec.Code)
	}

	b.pgProxy.Restore()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := do(t, h, "GET", "/health/ready", nil)
		if rec.Code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness did not recover within 5s: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec := do(t, h, "GET", "/health/db", nil); rec.Code != 200 {
		t.Errorf("/health/db after recovery = %d, want 200", rec.Code)
	}
}

func TestReady_RedisDegraded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    setupOpts
	}{
		{"Unreachable", setupOpts{redisAddr: "127.0.0.1:1"}},
		{"NotConfigured", setupOpts{noRedis: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _ := setup(t, tc.o)
			rec := do(t, h, "GET", "/health/ready", nil)
			body := decode[readyBody](t, rec)
			if rec.Code != 200 || body.Status != "degraded" || body.Components["redis"].Status != "degraded" {
				t.Fatalf("ready = %d %+v, want 200 degraded", rec.Code, body)
			}
		})
	}
}

func TestReady_MigrationsBehind(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	m, err := postgres.NewMigrator(b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := do(t, h, "GET", "/health/ready", nil)
	body := decode[readyBody](t, rec)
	mig := body.Components["migrations"]
	if rec.Code != 503 || mig.Status != "unhealthy" || mig.Current == nil || *mig.Current != postgres.LatestVersion()-1 {
		t.Fatalf("ready with migrations behind = %d %+v, want 503 with migrations unhealthy", rec.Code, body)
	}
}

func TestCorrelationID(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	given := uuid.NewString()
	rec := do(t, h, "GET", "/health", map[string]string{"X-Correlation-ID": given})
	if got := rec.Header().Get("X-Correlation-ID"); got != given {
		t.Errorf("echoed correlation id = %q, want %q", got, given)
	}
	if !strings.Contains(b.logs.String(), `"correlation_id":"`+given+`"`) {
		t.Errorf("access log lacks the correlation id:\n%s", b.logs)
	}
	for _, bad := range []string{"", "not-a-uuid", "<script>", strings.Repeat("a", 500)} {
		rec := do(t, h, "GET", "/health", map[string]string{"X-Correlation-ID": bad})
		got, err := uuid.Parse(rec.Header().Get("X-Correlation-ID"))
		if err != nil || got.String() == bad || got.Version() != 7 {
			t.Errorf("correlation id for %q = %q, want a fresh UUIDv7", bad, rec.Header().Get("X-Correlation-ID"))
		}
	}
	// Errors carry it too, in the header and the problem body.
	rec = do(t, h, "GET", "/nowhere", map[string]string{"X-Correlation-ID": given})
	p := decode[Problem](t, rec)
	if p.CorrelationID != given || rec.Header().Get("X-Correlation-ID") != given {
		t.Errorf("404 problem correlation id = %q / header %q, want %q", p.CorrelationID, rec.Header().Get("X-Correlation-ID"), given)
	}
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got := do(t, h, "GET", "/health", map[string]string{"traceparent": in}).Header().Get("traceparent")
	if !strings.HasPrefix(got, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || got == in || !strings.HasSuffix(got, "-01") {
		t.Errorf("traceparent = %q, want the same trace with a new span", got)
	}
	fresh := do(t, h, "GET", "/health", map[string]string{"traceparent": "garbage"}).Header().Get("traceparent")
	if !traceParentRE.MatchString(fresh) || strings.Contains(fresh, "garbage") {
		t.Errorf("traceparent for garbage = %q, want a new valid one", fresh)
	}
}

func TestSecurityHeadersAndProblems(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/health", 200, ""},
		{"GET", "/no/such/route", 404, "ROUTE_NOT_FOUND"},
		{"DELETE", "/health/ready", 405, "METHOD_NOT_ALLOWED"},
	} {
		rec := do(t, h, tc.method, tc.path, nil)
		if rec.Code != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.status)
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, want)
			}
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s %s: CSP = %q", tc.method, tc.path, csp)
		}
		if tc.code == "" {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: Content-Type = %q, want application/problem+json", tc.method, tc.path, ct)
		}
		p := decode[Problem](t, rec)
		if p.Code != tc.code || p.Status != tc.status || p.Title == "" || p.Category == "" {
			t.Errorf("%s %s problem = %+v", tc.method, tc.path, p)
		}
	}
	if got := do(t, h, "DELETE", "/health/ready", nil).Header().Get("Allow"); got != "GET" {
		t.Errorf("Allow = %q, want GET", got)
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	do(t, h, "GET", "/health/db", nil)
	do(t, h, "GET", "/secret-path-123-45-6789", nil)
	var seen int
	for line := range strings.SplitSeq(strings.TrimSpace(b.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "request" {
			continue
		}
		seen++
		for _, k := range []string{"method", "route", "status", "bytes", "duration_ms"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("access line lacks %s: %s", k, line)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("access lines = %d, want 2:\n%s", seen, b.logs)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, `"route":"GET /health/db"`) || !strings.Contains(logs, `"route":"unmatched"`) {
		t.Errorf("routes not logged as patterns:\n%s", logs)
	}
	if strings.Contains(logs, "123-45-6789") {
		t.Errorf("the raw path reached the log:\n%s", logs)
	}
}

func TestRecoverer(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	h := withRequestContext(time.Now)(recoverer(log)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("secret internal state")
		}
		w.WriteHeader(204)
	})))
	rec := do(t, h, "GET", "/boom", nil)
	p := decode[Problem](t, rec)
	if rec.Code != 500 || p.Code != "INTERNAL_ERROR" || p.CorrelationID == "" || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("panic response = %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "secret internal state") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("panic and stack not logged: %s", logs)
	}
	if rec := do(t, h, "GET", "/fine", nil); rec.Code != 204 {
		t.Errorf("after a panic: %d, want the server to keep serving", rec.Code)
	}
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler { //nolint:errorlint // sentinel
				t.Errorf("ErrAbortHandler not re-panicked: %v", p)
			}
		}()
		h := recoverer(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
		do(t, h, "GET", "/", nil)
	}()
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	rec := do(t, h, "GET", "/openapi.json", nil)
	doc := decode[struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}](t, rec)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	for _, p := range []string{"/health", "/health/ready", "/health/db"} {
		if _, ok := doc.Paths[p]["get"]; !ok {
			t.Errorf("openapi lacks GET %s", p)
		}
	}
	if strings.Contains(rec.Body.String(), "$schema") {
		t.Error("openapi document links $schema bodies; they are switched off")
	}
	_ = io.Discard
}

type slogLogger = slog.Logger

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// overDB returns d with everything that reads or writes the database — the
// services, the stores, authentication — over db and ring, the audit log
// verified with pub, wired as serve wires them.
func overDB(d Deps, db *postgres.DB, pub ed25519.PublicKey) Deps {
	d.DB, d.Tenants, d.Keys = db, db, db.DataKeys()
	d.Auth = auth.NewAuthenticator(db, testJWTSecret, nil)
	d.Audits = audit.NewService(db, d.Audit, pub, audit.NewGate(2, 8))
	d.Tenancy = tenancy.NewService(db.Tenancy(), nil)
	d.Entities = entity.NewService(db.Entities(), d.Audit, nil)
	d.Profiles = entity.NewProfileService(db.Profiles(), d.Audit)
	d.Cache = sourcecache.NewService(db.Cache(), d.Audit, nil)
	d.Webhooks = webhook.NewService(db.Webhooks(), webhook.Options{RequireHTTPS: true})
	return d
}
