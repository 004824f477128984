package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

// Finding 7 of the hardening review: an idempotent replay answered before
// authorisation, so a deactivated tenant's stored 201s — a new API key's
// secret among them — replayed.
func TestHardening_ReplayOnlyAfterAuthorisation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idem := map[string]string{"Idempotency-Key": "replay-1"}
	create := w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "R"}})
	create.hdr = idem
	newKey := w.as(w.admin, "POST", "/v1/api-keys", map[string]any{"name": "k", "scopes": []string{"entities:read"}})
	newKey.hdr = map[string]string{"Idempotency-Key": "replay-2"}
	for _, r := range []req{create, newKey} {
		if rec := call(t, w.h, r); rec.Code != 201 {
			t.Fatalf("first %s: %d %s", r.path, rec.Code, rec.Body)
		}
		if rec := call(t, w.h, r); rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay while active: %d", rec.Code)
		}
	}
	// A credential that lost nothing but whose scope no longer fits: a
	// reader replaying the admin's key is refused too (keys are per
	// credential, so this is a fresh request, refused by scope).
	if rec := call(t, w.h, w.as(w.platform, "PATCH", "/v1/tenants/"+w.a.String(), map[string]any{"active": false})); rec.Code != 200 {
		t.Fatalf("deactivate: %d %s", rec.Code, rec.Body)
	}
	time.Sleep(tenantCacheTTL + 100*time.Millisecond)
	for _, r := range []req{create, newKey} {
		rec := call(t, w.h, r)
		wantProblem(t, rec, 403, "TENANT_INACTIVE")
		if strings.Contains(rec.Body.String(), auth.KeyPrefix) || rec.Header().Get("Idempotent-Replayed") != "" {
			t.Fatalf("replay after deactivation leaked the stored response: %s", rec.Body)
		}
	}
}

// Finding 8: a body without Content-Type skipped the JSON guard while huma
// still parsed it (duplicate keys accepted, 5,000 levels stored).
func TestHardening_BodyMustBeDeclaredJSON(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "CT"})
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	bodies := map[string]string{
		"duplicate keys": `{"entity_type":"individual","entity_type":"organization","canonical_identifiers":{}}`,
		"deep profile":   `{"trigger_type":"manual","findings":[` + deep + `],"risk_score":{"overall":0.1},"connections":[],"data_sources_used":[],"stale_data_used":[]}`,
	}
	for name, body := range bodies {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
			t.Run(fmt.Sprintf("%s %q", name, ct), func(t *testing.T) {
				path := "/v1/entities"
				if name == "deep profile" {
					path = "/v1/entities/" + e.EntityID + "/profiles"
				}
				r := w.as(w.admin, "POST", path, body)
				r.hdr = map[string]string{"Content-Type": ct}
				wantProblem(t, call(t, w.h, r), 415, "UNSUPPORTED_MEDIA_TYPE")
			})
		}
	}
	if rec := call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/profiles", nil)); !strings.Contains(rec.Body.String(), `"data":[]`) {
		t.Errorf("a profile was stored: %s", rec.Body)
	}
	if page := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities", nil))); len(page.Data) != 1 {
		t.Errorf("%d entities stored, want only the first", len(page.Data))
	}
	// JSON with parameters is still JSON.
	r := w.as(w.admin, "POST", "/v1/entities", `{"entity_type":"individual","canonical_identifiers":{"full_name":"X"}}`)
	r.hdr = map[string]string{"Content-Type": "application/json; charset=utf-8"}
	if rec := call(t, w.h, r); rec.Code != 201 {
		t.Errorf("application/json; charset=utf-8: %d %s", rec.Code, rec.Body)
	}
}

// Finding 5: a 0.9 MB POST stored a 2.4 MB record, with no bound per
// credential.
func TestHardening_IdempotencyRecordsAreBounded(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 1_000_000, Period: time.Minute, Burst: 100_000}, idemBudget: 3 << 20})
	tid := mkTenant(t, b, "idem-bounds")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	e := decode[EntityOut](t, call(t, h, req{method: "POST", path: "/v1/entities", key: key.secret,
		body: map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "Big"}}}))
	body := bigProfile("x")
	sum := sha256.Sum256([]byte("big-1"))
	skey := "idem:{key:" + key.keyID.String() + "}:" + hex.EncodeToString(sum[:])
	rec := call(t, h, req{method: "POST", path: "/v1/entities/" + e.EntityID + "/profiles", key: key.secret, body: body,
		hdr: map[string]string{"Idempotency-Key": "big-1"}})
	if rec.Code != 201 {
		t.Fatalf("profile: %d %.300s", rec.Code, rec.Body)
	}
	stored, ok, err := b.kv.Get(context.Background(), skey)
	if err != nil || !ok {
		t.Fatalf("record not stored: %v %v", ok, err)
	}
	if len(stored) > rec.Body.Len()+4096 {
		t.Errorf("record of %d bytes for a %d-byte response: records must cost about their response", len(stored), rec.Body.Len())
	}
	// The credential's budget (3 MiB here): more large POSTs with new keys
	// are refused with 429 before they run; without a key they still work.
	refused := false
	for i := range 10 {
		rec := call(t, h, req{method: "POST", path: "/v1/entities/" + e.EntityID + "/profiles", key: key.secret, body: body,
			hdr: map[string]string{"Idempotency-Key": fmt.Sprint("more-", i)}})
		if rec.Code == 429 {
			wantProblem(t, rec, 429, "IDEMPOTENCY_BUDGET_EXCEEDED")
			if rec.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			refused = true
			break
		}
		if rec.Code != 201 {
			t.Fatalf("POST %d: %d", i, rec.Code)
		}
	}
	if !refused {
		t.Fatal("a credential stored 10 large records beyond a 3 MiB budget")
	}
	if rec := call(t, h, req{method: "POST", path: "/v1/entities/" + e.EntityID + "/profiles", key: key.secret, body: profileBody(0.1)}); rec.Code != 201 {
		t.Errorf("without Idempotency-Key: %d", rec.Code)
	}
	// Another credential is not affected.
	other := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	if rec := call(t, h, req{method: "POST", path: "/v1/entities/" + e.EntityID + "/profiles", key: other.secret, body: profileBody(0.1),
		hdr: map[string]string{"Idempotency-Key": "other-1"}}); rec.Code != 201 {
		t.Errorf("another credential: %d", rec.Code)
	}
}

// A response too large to keep is done once and its replay points at it.
func TestHardening_IdempotencyResponseNotKept(t *testing.T) {
	t.Parallel()
	store := kv.NewMemory(nil)
	runs := 0
	h := withRequestContext(time.Now)(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := auth.NewPrincipal("key:big", uuid.Nil, uuid.Nil, auth.ActorService, tenant.NewID(), nil, time.Time{})
			next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		})
	}(idempotency(store, testKeys(t), 0, quietLogger())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.Header().Set("Location", "/v1/things/1")
		w.WriteHeader(201)
		_, _ = w.Write(make([]byte, maxIdemResponse+1))
	}))))
	r := req{method: "POST", path: "/v1/x", body: "{}", hdr: map[string]string{"Idempotency-Key": "huge"}}
	if rec := call(t, h, r); rec.Code != 201 || rec.Body.Len() != maxIdemResponse+1 {
		t.Fatalf("first: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	rec := call(t, h, r)
	wantProblem(t, rec, 409, "IDEMPOTENCY_RESPONSE_NOT_KEPT")
	if rec.Header().Get("Location") != "/v1/things/1" || runs != 1 {
		t.Errorf("replay: Location %q, handler ran %d times", rec.Header().Get("Location"), runs)
	}
	if store.Bytes() > 64<<10 {
		t.Errorf("store holds %d bytes for a response it did not keep", store.Bytes())
	}
}

// Finding 6, end to end: tenant A's JWT claiming platform:admin can
// neither list tenants nor act in tenant B.
func TestHardening_JWTCannotBePlatformAdmin(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	b := w.create(t, w.oAdm, map[string]string{"full_name": "B's"})
	tok, err := auth.SignJWT(testJWTSecret, uuid.New(), w.a, []string{auth.ScopePlatformAdmin, auth.ScopeEntitiesRead}, time.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, call(t, w.h, req{method: "GET", path: "/v1/tenants", key: tok}), 403, "PERMISSION_DENIED")
	wantProblem(t, call(t, w.h, req{method: "GET", path: "/v1/entities/" + b.EntityID, key: tok, tenant: w.other.String()}), 403, "TENANT_FORBIDDEN")
	wantProblem(t, call(t, w.h, req{method: "GET", path: "/v1/entities/" + b.EntityID, key: tok}), 404, "ENTITY_NOT_FOUND")
}

// Finding 9: the 100-identifier cap held only on create, and custom kinds
// came back in clear without pii:read.
func TestHardening_IdentifierCapAndDefaultMasking(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Cap", "x_drivers_license": "D1234-5678", "x_tax_id": "TX99887766"})
	if got := e.CanonicalIdentifiers; got["x_drivers_license"] != "******5678" || got["x_tax_id"] != "******7766" || got["full_name"] != "Cap" {
		t.Errorf("custom kinds not masked by default: %v", got)
	}
	got := decode[EntityOut](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+e.EntityID, nil)))
	if strings.Contains(fmt.Sprint(got.CanonicalIdentifiers), "D1234") || strings.Contains(fmt.Sprint(got.CanonicalIdentifiers), "TX9988") {
		t.Errorf("read without pii:read shows custom kinds: %v", got.CanonicalIdentifiers)
	}
	huge := map[string]any{}
	for i := range 5000 {
		huge[fmt.Sprintf("k%d", i)] = "v"
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+e.EntityID, map[string]any{"canonical_identifiers": huge})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.canonical_identifiers" {
		t.Errorf("errors = %+v", p.Errors)
	}
	// Two PATCHes of 60 each: the second would make 123.
	batch := func(from int) map[string]any {
		m := map[string]any{}
		for i := range 60 {
			m[fmt.Sprintf("x_extra_%d", from+i)] = "v"
		}
		return map[string]any{"canonical_identifiers": m}
	}
	if rec := call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+e.EntityID, batch(0))); rec.Code != 200 {
		t.Fatalf("first 60: %d %s", rec.Code, rec.Body)
	}
	p = wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+e.EntityID, batch(60))), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.canonical_identifiers" {
		t.Errorf("errors = %+v", p.Errors)
	}
	after := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID, nil)))
	if len(after.CanonicalIdentifiers) != 63 {
		t.Errorf("entity has %d identifiers after a refused PATCH, want 63", len(after.CanonicalIdentifiers))
	}
}

// bigProfile is a profile body of about 0.7 MB: findings and connections
// near their byte budgets.
func bigProfile(fill string) map[string]any {
	findings, connections := []any{}, []any{}
	for i := range 1000 {
		findings = append(findings, map[string]any{"id": fmt.Sprint(i), "summary": strings.Repeat(fill, 480)})
	}
	for i := range 450 {
		connections = append(connections, map[string]any{"id": fmt.Sprint(i), "summary": strings.Repeat(fill, 480)})
	}
	body := profileBody(0.5)
	body["findings"], body["connections"] = findings, connections
	return body
}

// Finding 4: one list request decrypted and rendered every large profile
// on the page (20 of ~0.9 MB peaked at 403 MiB). A page now ends at a byte
// budget, with a cursor, and the pages together still hold everything.
func TestHardening_ListPagesHaveAByteBudget(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Large"})
	body := bigProfile("y")
	const n = 7
	for range n {
		if rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", body)); rec.Code != 201 {
			t.Fatalf("profile: %d %.200s", rec.Code, rec.Body)
		}
	}
	seen := map[int]bool{}
	path := "/v1/entities/" + e.EntityID + "/profiles?limit=1000"
	pages := 0
	for path != "" {
		rec := call(t, w.h, w.as(w.admin, "GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("list: %d", rec.Code)
		}
		if rec.Body.Len() > 3*4<<20 {
			t.Errorf("a page of %d bytes: over the budget", rec.Body.Len())
		}
		pg := decode[Page[ProfileOut]](t, rec)
		if len(pg.Data) == 0 {
			t.Fatal("empty page with a cursor")
		}
		for _, p := range pg.Data {
			if seen[p.Version] {
				t.Fatalf("version %d on two pages", p.Version)
			}
			seen[p.Version] = true
		}
		pages++
		path = ""
		if pg.NextCursor != nil {
			path = "/v1/entities/" + e.EntityID + "/profiles?limit=1000&cursor=" + *pg.NextCursor
		}
	}
	if len(seen) != n || pages < 2 {
		t.Errorf("%d versions over %d pages, want %d over several", len(seen), pages, n)
	}
	// Entities: 100 identifiers of 1,000 characters each, ~100 KB stored apiece.
	ids := map[string]string{}
	for i := range 100 {
		ids[fmt.Sprintf("x_note_%d", i)] = strings.Repeat("z", 1000)
	}
	for range 45 {
		w.create(t, w.admin, ids)
	}
	pg := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities?limit=1000", nil)))
	if len(pg.Data) >= 46 || pg.NextCursor == nil {
		t.Errorf("entity page: %d items, cursor %v: want a page cut by bytes", len(pg.Data), pg.NextCursor != nil)
	}
}

func TestHeavyGate(t *testing.T) {
	t.Parallel()
	g := audit.NewGate(2, 3)
	a, b := tenant.NewID(), tenant.NewID()
	r1, err1 := g.Enter(a)
	r2, err2 := g.Enter(a)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := g.Enter(a); err == nil || !strings.Contains(err.Error(), "AUDIT_BUSY") {
		t.Errorf("third at once for one tenant = %v, want AUDIT_BUSY", err)
	}
	rb, err := g.Enter(b)
	if err != nil {
		t.Errorf("another tenant is held up by the first: %v", err)
	}
	if _, err := g.Enter(tenant.NewID()); err == nil {
		t.Error("the instance-wide bound did not hold")
	}
	r1()
	r1() // releasing twice frees one place only
	if _, err := g.Enter(a); err != nil {
		t.Errorf("after a release: %v", err)
	}
	r2()
	rb()
}

// Finding 16: the export held a pooled connection for as long as a slow
// reader wanted. Now it reads page by page in short transactions, so
// other requests get the connection while the reader stalls.
func TestHardening_SlowExportHoldsNoConnection(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{maxConns: 1, acquire: 5 * time.Second, rate: kv.Rate{Limit: 1_000_000, Period: time.Minute, Burst: 100_000}})
	a := mkTenant(t, b, "slow-export")
	key := mkKey(t, b, a, auth.ScopeTenantAdmin)
	pgtest.Exec(t, b.dbURL, `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, actor_type, correlation_id, resource_type, resource_id)
		SELECT gen_random_uuid(), now() - (i || ' milliseconds')::interval, $1, 'data.accessed', 'info', 'human', gen_random_uuid(), 'entity', repeat('r', 200)
		FROM generate_series(1, 30000) i`, a.UUID())
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (*http.Response, error) {
		r, _ := http.NewRequest("GET", srv.URL+path, nil)
		r.Header.Set("Authorization", "Bearer "+key.secret)
		return srv.Client().Do(r)
	}
	exp, err := get("/v1/audit-events/export")
	if err != nil || exp.StatusCode != 200 {
		t.Fatalf("export: %v %v", err, exp)
	}
	defer exp.Body.Close()
	if _, err := exp.Body.Read(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	// The reader now stalls with ~10 MB unread: the server blocks writing.
	time.Sleep(300 * time.Millisecond)
	for i := range 3 {
		start := time.Now()
		resp, err := get("/v1/entities")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d while the export stalls: %d after %s", i, resp.StatusCode, time.Since(start))
		}
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"no proxies configured: the peer, whatever the header says", "203.0.113.9:5000", []string{"1.2.3.4"}, nil, "203.0.113.9"},
		{"untrusted peer", "203.0.113.9:5000", []string{"1.2.3.4"}, trusted, "203.0.113.9"},
		{"one trusted hop", "10.0.0.5:5000", []string{"198.51.100.7"}, trusted, "198.51.100.7"},
		{"spoofed entries left of the proxies' are ignored", "10.0.0.5:5000", []string{"6.6.6.6, 198.51.100.7, 10.0.0.9"}, trusted, "198.51.100.7"},
		{"several headers", "10.0.0.5:5000", []string{"6.6.6.6", "198.51.100.7"}, trusted, "198.51.100.7"},
		{"garbage stops at the last trusted hop", "10.0.0.5:5000", []string{"198.51.100.7, not-an-ip\x00"}, trusted, "10.0.0.5"},
		{"all trusted", "10.0.0.5:5000", []string{"10.1.1.1"}, trusted, "10.1.1.1"},
		{"IPv6 peer", "[::1]:5000", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"mapped IPv4", "[::ffff:10.0.0.5]:5000", []string{"198.51.100.7"}, trusted, "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, tc.trusted); got != tc.want {
				t.Errorf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// Finding 17: every unknown but well-formed API key cost a database
// transaction and an audit row, with no limit before authentication.
func TestHardening_UnknownKeysAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	_, b := setup(t, setupOpts{lookups: kv.Rate{Limit: 60, Period: time.Minute, Burst: 10}})
	// The credential cache's clock stands still, so "cached" below does
	// not depend on how fast a loaded machine runs the flood.
	frozen := time.Now()
	d := b.deps
	d.Auth = auth.NewAuthenticator(b.db, testJWTSecret, func() time.Time { return frozen })
	h := NewServer(d)
	a := mkTenant(t, b, "lookups")
	good := mkKey(t, b, a, auth.ScopeEntitiesRead)
	from := func(ip, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/tenant", nil)
		r.RemoteAddr = ip + ":40000"
		r.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	// Warm the good key's cache entry from a clean address.
	if rec := from("198.51.100.1", good.secret); rec.Code != 200 {
		t.Fatalf("good key: %d", rec.Code)
	}
	limited := 0
	for range 100 {
		secret, _, _ := auth.NewKeySecret()
		switch rec := from("203.0.113.66", secret); rec.Code {
		case 401:
		case 429:
			limited++
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("unknown key: %d", rec.Code)
		}
	}
	if limited < 85 {
		t.Errorf("%d of 100 unknown keys from one address were refused before the database; want all past the burst of 10", limited)
	}
	// Cached credentials cost no look-up and pass even from that address;
	// other addresses are unaffected.
	if rec := from("203.0.113.66", good.secret); rec.Code != 200 {
		t.Errorf("a cached good key from the flooding address: %d", rec.Code)
	}
	secret, _, _ := auth.NewKeySecret()
	if rec := from("198.51.100.2", secret); rec.Code != 401 {
		t.Errorf("an unknown key from another address: %d, want 401", rec.Code)
	}
}

// A Redis reader sees no secret and no personal data: idempotency records
// (which hold a new key's secret, or an entity's identifiers) are sealed
// with the application's keyring; the other keys are counters.
func TestHardening_RedisHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	prefix := "elile-test:" + uuid.NewString() + ":"
	h, b := setup(t, setupOpts{kvPrefix: prefix})
	tid := mkTenant(t, b, "redis-reader")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	rec := call(t, h, req{method: "POST", path: "/v1/api-keys", key: key.secret, body: map[string]any{"name": "k", "scopes": []string{"entities:read"}},
		hdr: map[string]string{"Idempotency-Key": "redis-1"}})
	secret := decode[KeyOut](t, rec).Secret
	if !strings.HasPrefix(secret, auth.KeyPrefix) {
		t.Fatalf("create key: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, h, req{method: "POST", path: "/v1/entities", key: key.secret, hdr: map[string]string{"Idempotency-Key": "redis-2"},
		body: map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"ssn": "123-45-6789", "email": "jane@example.com"}}}); rec.Code != 201 {
		t.Fatalf("create entity: %d", rec.Code)
	}
	r := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer r.Close()
	keys, err := r.Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) < 3 {
		t.Fatalf("redis keys: %v %v", keys, err)
	}
	for _, k := range keys {
		v, err := r.Get(context.Background(), k).Bytes()
		if err != nil {
			continue // not a string (none today)
		}
		for _, clear := range []string{secret, key.secret, "123-45-6789", "123456789", "jane@example.com", auth.KeyPrefix} {
			if bytes.Contains(v, []byte(clear)) || strings.Contains(k, clear) {
				t.Errorf("redis key %s holds %q in clear", k, clear)
			}
		}
	}
}

// A missing required field is reported at the field, on every route with
// a body (issue 14 measured seven routes answering at "body" instead).
func TestMissingRequiredFieldsAreLocated(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Req"})
	for _, tc := range []struct {
		who        fixture
		path, want string
		body       map[string]any
	}{
		{w.platform, "/v1/tenants", "body.name", map[string]any{"slug": "x-y-z"}},
		{w.admin, "/v1/api-keys", "body.name", map[string]any{"scopes": []string{"entities:read"}}},
		{w.admin, "/v1/entities", "body.entity_type", map[string]any{"canonical_identifiers": map[string]string{}}},
		{w.admin, "/v1/entities/search", "body.value", map[string]any{"kind": "ssn"}},
		{w.admin, "/v1/entities/" + e.EntityID + "/relations", "body.relation_type", map[string]any{"to_entity_id": e.EntityID, "confidence_score": 0.5}},
		{w.admin, "/v1/entities/" + e.EntityID + "/profiles", "body.risk_score", map[string]any{"trigger_type": "manual", "findings": []any{},
			"connections": []any{}, "data_sources_used": []any{}, "stale_data_used": []any{}}},
		{w.admin, "/v1/entities/" + e.EntityID + "/cache", "body.provider_id", map[string]any{"check_type": "criminal", "data_origin": "paid_external",
			"raw_response": "", "normalized_data": map[string]any{}, "cost_incurred": "0"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := wantProblem(t, call(t, w.h, w.as(tc.who, "POST", tc.path, tc.body)), 422, "VALIDATION_FAILED")
			found := false
			for _, it := range p.Errors {
				found = found || it.Location == tc.want
				if it.Location == "body" {
					t.Errorf("an item located at body: %+v", it)
				}
			}
			if !found {
				t.Errorf("errors = %+v, want one at %s", p.Errors, tc.want)
			}
		})
	}
}
