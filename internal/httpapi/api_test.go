package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// fixture is a tenant with a key of the given scopes.
type fixture struct {
	tenant tenant.ID
	secret string
	keyID  uuid.UUID
}

func mkTenant(t *testing.T, b *testBundle, slug string) tenant.ID {
	t.Helper()
	id := tenant.NewID()
	_, err := tenancy.NewService(b.db.Tenancy(), nil).Create(context.Background(), tenancy.NewTenant{ID: id, Name: slug, Slug: slug})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mkKey(t *testing.T, b *testBundle, tid tenant.ID, scopes ...string) fixture {
	t.Helper()
	k, secret, err := tenancy.NewService(b.db.Tenancy(), nil).CreateKey(context.Background(), tid, tenancy.NewKey{Name: "test", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{tenant: tid, secret: secret, keyID: k.ID}
}

type req struct {
	method, path string
	body         any
	key          string // bearer token
	tenant       string // X-Tenant-ID
	hdr          map[string]string
}

func call(t *testing.T, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	var body *bytes.Reader
	switch b := r.body.(type) {
	case nil:
		body = bytes.NewReader(nil)
	case string:
		body = bytes.NewReader([]byte(b))
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		body = bytes.NewReader(j)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.tenant != "" {
		hr.Header.Set("X-Tenant-ID", r.tenant)
	}
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	return rec
}

func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) Problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Code != code || p.Status != status || p.CorrelationID == "" || p.Category == "" {
		t.Fatalf("problem = %+v, want code %s", p, code)
	}
	return p
}

func jwtFor(t *testing.T, sub uuid.UUID, tid tenant.ID, scope string, exp time.Time) string {
	t.Helper()
	tok, err := auth.SignJWT(testJWTSecret, sub, tid, strings.Fields(scope), exp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuth_Rejections(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "auth-rejections")
	good := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	revoked := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	if err := tenancy.NewService(b.db.Tenancy(), nil).RevokeKey(context.Background(), tid, revoked.keyID); err != nil {
		t.Fatal(err)
	}
	// A key made an hour ago that expired a minute ago.
	anHourAgo := func() time.Time { return time.Now().Add(-time.Hour) }
	_, expiredSecret, err := tenancy.NewService(b.db.Tenancy(), anHourAgo).CreateKey(context.Background(), tid,
		tenancy.NewKey{Name: "old", Scopes: []string{auth.ScopeTenantAdmin}, ExpiresAt: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	sub := uuid.New()
	valid := jwtFor(t, sub, tid, "tenant:admin", time.Now().Add(time.Hour))
	parts := strings.Split(valid, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	wrongKey, _ := auth.SignJWT([]byte("another-secret-another-secret-another"), sub, tid, []string{"tenant:admin"}, time.Now().Add(time.Hour))
	expired := jwtFor(t, sub, tid, "tenant:admin", time.Now().Add(-time.Hour))
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(claims, []byte(tid.String()), []byte(tenant.NewID().String()), 1)) + "." + parts[2]
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub.String(), "tenant_id": tid.String(), "scope": "tenant:admin"}).SignedString(testJWTSecret)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": sub.String(), "tenant_id": tid.String(), "exp": time.Now().Add(time.Hour).Unix()}).SignedString(testJWTSecret)

	for _, tc := range []struct {
		name, header, code string
	}{
		{"Missing", "", "AUTH_REQUIRED"},
		{"Basic", "Basic dXNlcjpwYXNz", "AUTH_INVALID"},
		{"EmptyBearer", "Bearer ", "AUTH_INVALID"},
		{"UnknownKey", "Bearer elk_" + strings.Repeat("A", 43), "AUTH_INVALID"},
		{"ShortKey", "Bearer elk_short", "AUTH_INVALID"},
		{"RevokedKey", "Bearer " + revoked.secret, "AUTH_REVOKED"},
		{"ExpiredKey", "Bearer " + expiredSecret, "AUTH_EXPIRED"},
		{"JWTAlgNone", "Bearer " + none, "AUTH_INVALID"},
		{"JWTWrongSecret", "Bearer " + wrongKey, "AUTH_INVALID"},
		{"JWTExpired", "Bearer " + expired, "AUTH_EXPIRED"},
		{"JWTTamperedTenant", "Bearer " + tampered, "AUTH_INVALID"},
		{"JWTNoExp", "Bearer " + noExp, "AUTH_INVALID"},
		{"JWTHS512", "Bearer " + hs512, "AUTH_INVALID"},
		{"Garbage", "Bearer a.b.c", "AUTH_INVALID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := call(t, h, req{method: "GET", path: "/v1/tenant", tenant: tid.String(), hdr: map[string]string{"Authorization": tc.header}})
			wantProblem(t, rec, 401, tc.code)
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	for name, tok := range map[string]string{"APIKey": good.secret, "JWT": valid} {
		if rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: tok, tenant: tid.String()}); rec.Code != 200 {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
}

func TestTenantHeader(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	a := mkTenant(t, b, "header-a")
	other := mkTenant(t, b, "header-b")
	key := mkKey(t, b, a, auth.ScopeEntitiesRead)
	admin := mkKey(t, b, tenant.ID{}, auth.ScopePlatformAdmin)
	// A credential bound to one tenant may leave the header out; a
	// platform admin must name the tenant.
	if rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret}); rec.Code != 200 || !strings.Contains(rec.Body.String(), a.String()) {
		t.Fatalf("tenant-bound key without X-Tenant-ID: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: admin.secret}), 400, "TENANT_REQUIRED")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: "not-a-uuid"}), 400, "TENANT_INVALID")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: other.String()}), 403, "TENANT_FORBIDDEN")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: uuid.NewString()}), 403, "TENANT_FORBIDDEN")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: admin.secret, tenant: uuid.NewString()}), 403, "TENANT_FORBIDDEN")
	rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: admin.secret, tenant: other.String()})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), other.String()) {
		t.Fatalf("platform admin naming another tenant: %d %s", rec.Code, rec.Body)
	}

	// Deactivated: the tenant's credentials get 403 within a second.
	active := false
	rec = call(t, h, req{method: "PATCH", path: "/v1/tenants/" + a.String(), key: admin.secret, body: map[string]any{"active": active}})
	if rec.Code != 200 {
		t.Fatalf("deactivate: %d %s", rec.Code, rec.Body)
	}
	deadline := time.Now().Add(time.Second)
	for {
		rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: a.String()})
		if rec.Code == 403 {
			wantProblem(t, rec, 403, "TENANT_INACTIVE")
			wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret}), 403, "TENANT_INACTIVE")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deactivated tenant still served after 1s: %d", rec.Code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestScopes(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "scopes")
	reader := mkKey(t, b, tid, auth.ScopeEntitiesRead)
	manager := mkKey(t, b, tid, auth.ScopeKeysManage, auth.ScopeEntitiesRead)
	admin := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	body := map[string]any{"name": "k", "scopes": []string{"entities:read"}}
	wantProblem(t, call(t, h, req{method: "POST", path: "/v1/api-keys", key: reader.secret, tenant: tid.String(), body: body}), 403, "PERMISSION_DENIED")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenants", key: admin.secret}), 403, "PERMISSION_DENIED")
	// Granting a scope the caller lacks.
	wantProblem(t, call(t, h, req{method: "POST", path: "/v1/api-keys", key: manager.secret, tenant: tid.String(),
		body: map[string]any{"name": "k", "scopes": []string{"pii:read"}}}), 403, "PERMISSION_DENIED")
	wantProblem(t, call(t, h, req{method: "POST", path: "/v1/api-keys", key: manager.secret, tenant: tid.String(),
		body: map[string]any{"name": "k", "scopes": []string{"tenant:admin"}}}), 403, "PERMISSION_DENIED")
	p := wantProblem(t, call(t, h, req{method: "POST", path: "/v1/api-keys", key: admin.secret, tenant: tid.String(),
		body: map[string]any{"name": "k", "scopes": []string{"platform:admin", "nope"}}}), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 2 {
		t.Errorf("errors = %+v, want one per bad scope", p.Errors)
	}
	// tenant:admin implies keys:manage and may grant any tenant scope.
	rec := call(t, h, req{method: "POST", path: "/v1/api-keys", key: admin.secret, tenant: tid.String(),
		body: map[string]any{"name": "k", "scopes": []string{"pii:read", "tenant:admin"}}})
	if rec.Code != 201 {
		t.Fatalf("tenant admin create: %d %s", rec.Code, rec.Body)
	}
}

// TestScopes_EraseHasItsOwnScope: entities:write creates and changes but
// does not erase; entities:erase (or tenant:admin) does.
func TestScopes_EraseHasItsOwnScope(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "erase-scope")
	writer := mkKey(t, b, tid, auth.ScopeEntitiesWrite, auth.ScopeEntitiesRead)
	eraser := mkKey(t, b, tid, auth.ScopeEntitiesErase)
	rec := call(t, h, req{method: "POST", path: "/v1/entities", key: writer.secret, tenant: tid.String(),
		body: map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "Kept"}}})
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	e := decode[EntityOut](t, rec)
	wantProblem(t, call(t, h, req{method: "DELETE", path: "/v1/entities/" + e.EntityID, key: writer.secret, tenant: tid.String()}), 403, "PERMISSION_DENIED")
	if rec := call(t, h, req{method: "GET", path: "/v1/entities/" + e.EntityID, key: writer.secret, tenant: tid.String()}); rec.Code != 200 {
		t.Fatalf("the refused erase erased: %d", rec.Code)
	}
	if rec := call(t, h, req{method: "DELETE", path: "/v1/entities/" + e.EntityID, key: eraser.secret, tenant: tid.String()}); rec.Code != 204 {
		t.Fatalf("erase with entities:erase: %d %s", rec.Code, rec.Body)
	}
}

func TestAPIKeys_Lifecycle(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "keys-life")
	other := mkTenant(t, b, "keys-other")
	admin := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	otherKey := mkKey(t, b, other, auth.ScopeTenantAdmin)
	rec := call(t, h, req{method: "POST", path: "/v1/api-keys", key: admin.secret, tenant: tid.String(),
		body: map[string]any{"name": "ci", "scopes": []string{"entities:read"}, "expires_at": time.Now().Add(time.Hour)}})
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	created := decode[KeyOut](t, rec)
	if !strings.HasPrefix(created.Secret, "elk_") || created.ExpiresAt == nil || !strings.HasPrefix(created.Secret, created.Prefix) {
		t.Fatalf("created = %+v", created)
	}
	if rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: created.Secret, tenant: tid.String()}); rec.Code != 200 {
		t.Fatalf("new key: %d", rec.Code)
	}
	list := call(t, h, req{method: "GET", path: "/v1/api-keys?limit=1", key: admin.secret, tenant: tid.String()})
	if list.Code != 200 || strings.Contains(list.Body.String(), "elk_") && strings.Contains(list.Body.String(), created.Secret) {
		t.Fatalf("list: %d %s", list.Code, list.Body)
	}
	page1 := decode[Page[KeyOut]](t, list)
	if len(page1.Data) != 1 || page1.NextCursor == nil || page1.Data[0].Secret != "" {
		t.Fatalf("page 1 = %+v", page1)
	}
	page2 := decode[Page[KeyOut]](t, call(t, h, req{method: "GET", path: "/v1/api-keys?limit=1&cursor=" + *page1.NextCursor, key: admin.secret, tenant: tid.String()}))
	if len(page2.Data) != 1 || page2.Data[0].KeyID == page1.Data[0].KeyID {
		t.Fatalf("page 2 = %+v", page2)
	}
	// Another tenant's key: 404, and it keeps working.
	wantProblem(t, call(t, h, req{method: "DELETE", path: "/v1/api-keys/" + otherKey.keyID.String(), key: admin.secret, tenant: tid.String()}), 404, "API_KEY_NOT_FOUND")
	if rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: otherKey.secret, tenant: other.String()}); rec.Code != 200 {
		t.Fatalf("other tenant's key after the attempt: %d", rec.Code)
	}
	if rec := call(t, h, req{method: "DELETE", path: "/v1/api-keys/" + created.KeyID, key: admin.secret, tenant: tid.String()}); rec.Code != 204 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	waitStatus(t, h, req{method: "GET", path: "/v1/tenant", key: created.Secret, tenant: tid.String()}, 401, time.Second)
	// The audit log has the creation and the revocation, in the tenant's log.
	if n := auditCount(t, b, tid, "api_key.revoked", created.KeyID); n != 1 {
		t.Errorf("api_key.revoked events = %d, want 1", n)
	}
	if n := auditCount(t, b, tid, "api_key.created", created.KeyID); n != 1 {
		t.Errorf("api_key.created events = %d, want 1", n)
	}
}

func waitStatus(t *testing.T, h http.Handler, r req, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rec := call(t, h, r)
		if rec.Code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s still %d after %s, want %d", r.method, r.path, rec.Code, within, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func auditCount(t *testing.T, b *testBundle, tid tenant.ID, typ, resource string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = $2 AND resource_id = $3`,
		tid.UUID(), typ, resource).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTenants_AdminRoutes(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	admin := mkKey(t, b, tenant.ID{}, auth.ScopePlatformAdmin)
	rec := call(t, h, req{method: "POST", path: "/v1/tenants", key: admin.secret, body: map[string]any{"name": "Acme Screening GmbH", "config": map[string]any{"retention_days": 30}}})
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	created := decode[TenantOut](t, rec)
	if created.Slug != "acme-screening-gmbh" || created.Locale != "US" || !created.Active || created.Config["retention_days"] != float64(30) {
		t.Fatalf("created = %+v", created)
	}
	wantProblem(t, call(t, h, req{method: "POST", path: "/v1/tenants", key: admin.secret, body: map[string]any{"name": "Dup", "slug": "acme-screening-gmbh"}}), 409, "TENANT_SLUG_TAKEN")
	p := wantProblem(t, call(t, h, req{method: "POST", path: "/v1/tenants", key: admin.secret, body: map[string]any{"name": "", "slug": "A!"}}), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 2 {
		t.Errorf("errors = %+v, want one per bad field", p.Errors)
	}
	got := decode[TenantOut](t, call(t, h, req{method: "GET", path: "/v1/tenants/" + created.TenantID, key: admin.secret}))
	if got.TenantID != created.TenantID {
		t.Fatalf("get = %+v", got)
	}
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenants/" + uuid.NewString(), key: admin.secret}), 404, "TENANT_NOT_FOUND")
	rec = call(t, h, req{method: "PATCH", path: "/v1/tenants/" + created.TenantID, key: admin.secret, body: map[string]any{"locale": "DE", "name": "Acme"}})
	if upd := decode[TenantOut](t, rec); rec.Code != 200 || upd.Locale != "DE" || upd.Name != "Acme" || upd.Slug != created.Slug {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, call(t, h, req{method: "PATCH", path: "/v1/tenants/" + created.TenantID, key: admin.secret, body: map[string]any{}}), 422, "VALIDATION_FAILED")
	tid, _ := tenant.ParseID(created.TenantID)
	if auditCount(t, b, tid, "config.changed", created.TenantID) != 1 || auditCount(t, b, tid, "tenant.created", created.TenantID) != 1 {
		t.Error("tenant.created / config.changed not in the tenant's audit log")
	}
	list := decode[Page[TenantOut]](t, call(t, h, req{method: "GET", path: "/v1/tenants", key: admin.secret}))
	if len(list.Data) != 1 || list.NextCursor != nil {
		t.Fatalf("list = %+v", list)
	}

	// The platform's own row (the nil UUID: shared entities, the system
	// audit chain) is no tenant: it cannot be read, changed, erased or
	// acted in.
	nilID := uuid.Nil.String()
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/tenants/" + nilID, key: admin.secret}), 404, "TENANT_NOT_FOUND")
	wantProblem(t, call(t, h, req{method: "PATCH", path: "/v1/tenants/" + nilID, key: admin.secret, body: map[string]any{"active": false}}), 404, "TENANT_NOT_FOUND")
	wantProblem(t, call(t, h, req{method: "DELETE", path: "/v1/tenants/" + nilID, key: admin.secret, body: map[string]any{"confirm": nilID}}), 404, "TENANT_NOT_FOUND")
	if rec := call(t, h, req{method: "GET", path: "/v1/entities", key: admin.secret, tenant: nilID}); rec.Code < 400 || rec.Code >= 500 {
		t.Errorf("acting in the platform's row: %d %s, want refused", rec.Code, rec.Body)
	}
	if n := countWhere(t, b, "SELECT count(*) FROM tenants WHERE tenant_id = $1 AND active", uuid.Nil); n != 1 {
		t.Errorf("platform row after the attempts: %d active, want 1", n)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 60, Period: time.Minute, Burst: 3}})
	tid := mkTenant(t, b, "rate")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	other := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	for i := range 3 {
		rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: tid.String()})
		if rec.Code != 200 || rec.Header().Get("RateLimit-Limit") != "3" || rec.Header().Get("RateLimit-Policy") != "3;w=3" || rec.Header().Get("RateLimit-Remaining") != fmt.Sprint(2-i) || rec.Header().Get("RateLimit-Reset") == "" {
			t.Fatalf("request %d: %d %v", i+1, rec.Code, rec.Header())
		}
	}
	rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: key.secret, tenant: tid.String()})
	if p := wantProblem(t, rec, 429, "RATE_LIMITED"); p.RetryAfter != 1 {
		t.Errorf("retry_after = %d, want 1 (as Retry-After)", p.RetryAfter)
	}
	if rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", rec.Header().Get("Retry-After"))
	}
	if rec := call(t, h, req{method: "GET", path: "/v1/tenant", key: other.secret, tenant: tid.String()}); rec.Code != 200 {
		t.Errorf("another credential limited: %d", rec.Code)
	}
	if !strings.Contains(call(t, h, req{method: "GET", path: "/metrics"}).Body.String(), "elile_rate_limit_rejections_total 1") {
		t.Error("rejection not counted in /metrics")
	}
}

// TestTwoInstances: two servers on one database and one Redis. A key
// revoked through one is refused by the other within a second, and the
// rate limit is shared.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	prefix := "elile-test:" + uuid.NewString() + ":"
	h1, b1 := setup(t, setupOpts{kvPrefix: prefix, rate: kv.Rate{Limit: 60, Period: time.Minute, Burst: 4}})
	h2, _ := setup(t, setupOpts{kvPrefix: prefix, dbURL: b1.dbURL, rate: kv.Rate{Limit: 60, Period: time.Minute, Burst: 4}})
	tid := mkTenant(t, b1, "two")
	admin := mkKey(t, b1, tid, auth.ScopeTenantAdmin)
	victim := mkKey(t, b1, tid, auth.ScopeEntitiesRead)
	r := req{method: "GET", path: "/v1/tenant", key: victim.secret, tenant: tid.String()}
	if rec := call(t, h2, r); rec.Code != 200 { // instance 2 caches the key
		t.Fatalf("before revocation: %d", rec.Code)
	}
	if rec := call(t, h1, req{method: "DELETE", path: "/v1/api-keys/" + victim.keyID.String(), key: admin.secret, tenant: tid.String()}); rec.Code != 204 {
		t.Fatalf("revoke on instance 1: %d %s", rec.Code, rec.Body)
	}
	start := time.Now()
	waitStatus(t, h2, r, 401, time.Second)
	t.Logf("instance 2 refused the revoked key after %s", time.Since(start).Round(time.Millisecond))

	// The rate limit counts requests on both instances: 4 allowed in all.
	shared := mkKey(t, b1, tid, auth.ScopeEntitiesRead)
	sr := req{method: "GET", path: "/v1/tenant", key: shared.secret, tenant: tid.String()}
	codes := []int{call(t, h1, sr).Code, call(t, h2, sr).Code, call(t, h1, sr).Code, call(t, h2, sr).Code, call(t, h1, sr).Code}
	if fmt.Sprint(codes) != "[200 200 200 200 429]" {
		t.Fatalf("alternating instances: %v, want four 200s then 429", codes)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "idem")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	body := map[string]any{"name": "once", "scopes": []string{"entities:read"}}
	r := req{method: "POST", path: "/v1/api-keys", key: key.secret, tenant: tid.String(), body: body, hdr: map[string]string{"Idempotency-Key": "k-1"}}
	first := call(t, h, r)
	second := call(t, h, r)
	if first.Code != 201 || second.Code != 201 || first.Body.String() != second.Body.String() {
		t.Fatalf("replay: %d %s / %d %s", first.Code, first.Body, second.Code, second.Body)
	}
	if first.Header().Get("Idempotent-Replayed") != "" || second.Header().Get("Idempotent-Replayed") != "true" {
		t.Error("Idempotent-Replayed header wrong")
	}
	keys := decode[Page[KeyOut]](t, call(t, h, req{method: "GET", path: "/v1/api-keys", key: key.secret, tenant: tid.String()}))
	if len(keys.Data) != 2 { // the fixture's and one "once"
		t.Fatalf("keys after a replay: %d, want 2 (the work was done once)", len(keys.Data))
	}
	// The same request laid out otherwise (re-indented, keys reordered, a
	// charset parameter) is the same request: replayed, not refused.
	same := r
	same.body = "{\n  \"scopes\" : [ \"entities:read\" ],\n  \"name\": \"once\"\n}\n"
	same.hdr = map[string]string{"Idempotency-Key": "k-1", "Content-Type": "application/json; charset=utf-8"}
	if rec := call(t, h, same); rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "true" || rec.Body.String() != first.Body.String() {
		t.Fatalf("the same JSON laid out otherwise: %d %s (replayed %q)", rec.Code, rec.Body, rec.Header().Get("Idempotent-Replayed"))
	}
	r.body = map[string]any{"name": "different", "scopes": []string{"entities:read"}}
	wantProblem(t, call(t, h, r), 422, "IDEMPOTENCY_KEY_REUSED")
	// Scoped to the credential: another key may use the same Idempotency-Key.
	other := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	r.key = other.secret
	if rec := call(t, h, r); rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("same key, other credential: %d", rec.Code)
	}
	// Errors below 500 are replayed too; the stored record is encrypted.
	bad := req{method: "POST", path: "/v1/api-keys", key: key.secret, tenant: tid.String(), body: map[string]any{"name": "x"}, hdr: map[string]string{"Idempotency-Key": "k-2"}}
	wantProblem(t, call(t, h, bad), 422, "VALIDATION_FAILED")
	if rec := call(t, h, bad); rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Error("a 422 was not replayed")
	}
	wantProblem(t, call(t, h, req{method: "POST", path: "/v1/api-keys", key: key.secret, tenant: tid.String(), body: body,
		hdr: map[string]string{"Idempotency-Key": "bad\x7fkey"}}), 400, "BAD_REQUEST")
}

// TestIdempotency_InProgress: while the first request runs, a retry gets 409.
func TestIdempotency_InProgress(t *testing.T) {
	t.Parallel()
	store := kv.NewMemory(nil)
	release, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := withRequestContext(time.Now)(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := auth.NewPrincipal("key:x", uuid.Nil, uuid.Nil, auth.ActorService, tenant.NewID(), nil, time.Time{})
			next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		})
	}(idempotency(store, testKeys(t), 0, quietLogger())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered); <-release })
		w.WriteHeader(201)
	}))))
	r := req{method: "POST", path: "/v1/x", body: "{}", hdr: map[string]string{"Idempotency-Key": "slow"}}
	done := make(chan int)
	go func() { done <- call(t, h, r).Code }()
	<-entered
	busy := call(t, h, r)
	wantProblem(t, busy, 409, "IDEMPOTENCY_IN_PROGRESS")
	if busy.Header().Get("Retry-After") != "1" {
		t.Errorf("409 IDEMPOTENCY_IN_PROGRESS: Retry-After %q, want 1", busy.Header().Get("Retry-After"))
	}
	close(release)
	if code := <-done; code != 201 {
		t.Fatalf("first request: %d", code)
	}
	if rec := call(t, h, r); rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after completion: %d", rec.Code)
	}
}

func TestRequestBodies(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	tid := mkTenant(t, b, "bodies")
	key := mkKey(t, b, tid, auth.ScopeTenantAdmin)
	base := req{method: "POST", path: "/v1/api-keys", key: key.secret, tenant: tid.String()}
	r := base
	r.body = `{"name":"x","scopes":["entities:read"],"tenant_id":"` + uuid.NewString() + `"}`
	p := wantProblem(t, call(t, h, r), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.tenant_id" {
		t.Errorf("unknown field errors = %+v", p.Errors)
	}
	r.body = `{"name":`
	wantProblem(t, call(t, h, r), 400, "BAD_REQUEST")
	r.body = `{"name":"x","scopes":["entities:read"],"pad":"` + strings.Repeat("a", 1<<20) + `"}`
	wantProblem(t, call(t, h, r), 413, "BODY_TOO_LARGE")
	r.body = "name=x"
	r.hdr = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	wantProblem(t, call(t, h, r), 415, "UNSUPPORTED_MEDIA_TYPE")
	// With an Idempotency-Key the middleware reads the body first: same limit.
	r = base
	r.body = `{"pad":"` + strings.Repeat("a", 1<<20) + `"}`
	r.hdr = map[string]string{"Idempotency-Key": "big"}
	wantProblem(t, call(t, h, r), 413, "BODY_TOO_LARGE")
}

func TestCORS(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{origins: []string{"https://app.example.com"}})
	pre := call(t, h, req{method: "OPTIONS", path: "/v1/tenant", hdr: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}})
	if pre.Code != 204 || pre.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(pre.Header().Get("Access-Control-Allow-Headers"), "X-Tenant-ID") {
		t.Fatalf("preflight: %d %v", pre.Code, pre.Header())
	}
	evil := call(t, h, req{method: "GET", path: "/health", hdr: map[string]string{"Origin": "https://evil.example"}})
	if evil.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Error("a foreign origin got CORS headers")
	}
}

func TestOpenAPI_Operations(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	var doc struct {
		Paths map[string]map[string]struct {
			Security  []map[string][]string `json:"security"`
			Responses map[string]struct {
				Content map[string]any `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
		Components struct {
			SecuritySchemes map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(do(t, h, "GET", "/openapi.json", nil).Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Components.SecuritySchemes["bearer"] == nil {
		t.Error("no bearer security scheme")
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !strings.HasPrefix(path, "/v1") {
				continue
			}
			if len(op.Security) == 0 {
				t.Errorf("%s %s has no security requirement", method, path)
			}
			r401, ok := op.Responses["401"]
			if !ok || r401.Content["application/problem+json"] == nil {
				t.Errorf("%s %s does not document its 401 problem", method, path)
			}
		}
	}
}

func quietLogger() *slogLogger { return quiet() }
