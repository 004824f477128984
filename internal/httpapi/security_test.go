package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
)

// operation is one route of the served OpenAPI document with its access.
type operation struct {
	Method, Path string
	Access       access
	HasBody      bool
}

// routeTable reads the operations and their access rules from the huma
// API itself, so a new route is covered by these tests without edits.
func routeTable(t *testing.T) []operation {
	t.Helper()
	var ops []operation
	useProblemErrors()
	api := humago.New(http.NewServeMux(), apiConfig())
	table := routes(api, Deps{}, &tenantCache{})
	for _, pi := range api.OpenAPI().Paths {
		for _, op := range []*huma.Operation{pi.Get, pi.Post, pi.Patch, pi.Delete, pi.Put} {
			if op == nil || !strings.HasPrefix(op.Path, "/v1") {
				continue
			}
			a := table[op.Method+" "+op.Path]
			ops = append(ops, operation{Method: op.Method, Path: op.Path, Access: a, HasBody: op.RequestBody != nil})
		}
	}
	if len(ops) < 25 {
		t.Fatalf("route table has %d operations", len(ops))
	}
	return ops
}

var paramRE = regexp.MustCompile(`\{([a-z_]+)\}`) //nolint:gochecknoglobals // compiled once

func fill(path string, ids map[string]string) string {
	return paramRE.ReplaceAllStringFunc(path, func(m string) string {
		if v, ok := ids[m[1:len(m)-1]]; ok {
			return v
		}
		return uuid.NewString()
	})
}

// TestSecurity_RouteTable: every route without credentials is 401; with a
// credential lacking its scope, 403; with tenant B's credential on tenant
// A's objects, 404.
func TestSecurity_RouteTable(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// Tenant A's objects, one of each kind a path can name.
	e := w.create(t, w.admin, map[string]string{"ssn": "555-44-3333"})
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", profileBody(0.2)))
	c := decode[CacheOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/cache", cacheBody("criminal", "paid_external"))))
	k := decode[KeyOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"entities:read"}})))
	ev := decode[Page[AuditEventOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/audit-events?limit=1", nil)))
	rec := call(t, w.h, w.as(w.admin, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://receiver.example.com/a"}))
	if rec.Code != 201 {
		t.Fatalf("create endpoint: %d %s", rec.Code, rec.Body)
	}
	ep := decode[EndpointOut](t, rec)
	w.create(t, w.admin, map[string]string{"full_name": "announced"})
	ds := decode[Page[DeliveryOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/webhook-endpoints/"+ep.EndpointID+"/deliveries", nil)))
	if len(ds.Data) != 1 {
		t.Fatalf("deliveries after one create = %+v", ds)
	}
	peer := w.create(t, w.admin, map[string]string{"full_name": "Peer"})
	rel := decode[RelationOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/relations",
		map[string]any{"to_entity_id": peer.EntityID, "relation_type": "employer", "confidence_score": 0.9})))
	ids := map[string]string{"entity_id": e.EntityID, "cache_id": c.CacheID, "key_id": k.KeyID, "audit_id": ev.Data[0].AuditID,
		"version": "1", "tenant_id": w.a.String(), "endpoint_id": ep.EndpointID, "delivery_id": ds.Data[0].DeliveryID, "relation_id": rel.RelationID}
	bEntity := w.create(t, w.oAdm, map[string]string{"full_name": "B's own"})
	// A credential holding a scope no route needs alone.
	weak := mkKey(t, w.b, w.a, auth.ScopeEntitiesRead)
	body := func(op operation) any {
		if op.HasBody {
			return map[string]any{}
		}
		return nil
	}
	for _, op := range routeTable(t) {
		name := op.Method + " " + op.Path
		path := fill(op.Path, ids)
		t.Run("NoCredential "+name, func(t *testing.T) {
			wantProblem(t, call(t, w.h, req{method: op.Method, path: path, tenant: w.a.String(), body: body(op)}), 401, "AUTH_REQUIRED")
		})
		if op.Access.Scope != "" && op.Access.Scope != auth.ScopeEntitiesRead {
			t.Run("MissingScope "+name, func(t *testing.T) {
				wantProblem(t, call(t, w.h, w.as(weak, op.Method, path, body(op))), 403, "PERMISSION_DENIED")
			})
		}
		if op.Access.Tenant && strings.Contains(op.Path, "{") {
			t.Run("OtherTenant "+name, func(t *testing.T) {
				var b any
				if op.HasBody {
					b = validBodyFor(op, bEntity.EntityID)
				}
				rec := call(t, w.h, w.as(w.oAdm, op.Method, path, b))
				if rec.Code != 404 {
					t.Fatalf("tenant B on tenant A's object: %d %s", rec.Code, rec.Body)
				}
			})
		}
	}
	// Nothing of A's changed.
	if got := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID, nil))); got.EntityID != e.EntityID {
		t.Fatal("A's entity is gone")
	}
	if rec := call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/profiles/1", nil)); rec.Code != 200 {
		t.Fatal("A's profile is gone")
	}
}

// validBodyFor gives a body that would succeed on the caller's own
// objects, so a 404 can only come from the ownership check.
func validBodyFor(op operation, other string) any {
	switch {
	case strings.HasSuffix(op.Path, "/relations"):
		return map[string]any{"to_entity_id": other, "relation_type": "knows", "confidence_score": 0.5}
	case strings.HasSuffix(op.Path, "/profiles"):
		return profileBody(0.1)
	case strings.HasSuffix(op.Path, "/cache"):
		return cacheBody("criminal", "customer_provided")
	case strings.Contains(op.Path, "/relations/") && op.Method == http.MethodPatch:
		return map[string]any{"valid_to": "2026-12-31"}
	case strings.HasPrefix(op.Path, "/v1/webhook-endpoints") && op.Method == http.MethodPatch:
		return map[string]any{"description": "taken over"}
	case op.Method == http.MethodPatch:
		return map[string]any{"canonical_identifiers": map[string]any{"full_name": "x"}}
	}
	return map[string]any{}
}

//nolint:gochecknoglobals // test corpus
var sqlInjection = []string{
	`' OR '1'='1`, `'; DROP TABLE entities; --`, `" OR 1=1 --`, `1; SELECT pg_sleep(5)`, `' UNION SELECT secret_hash FROM api_keys --`,
	`\'; TRUNCATE audit_events; --`, `$$; DELETE FROM tenants; $$`, `%' AND 1=0 UNION SELECT NULL --`, "\x00' OR 1=1", `)) OR ((1=1`,
}

// TestSecurity_InjectionAndXSS sends SQL injection payloads in every string
// field and query parameter, and XSS payloads that must come back inert.
func TestSecurity_InjectionAndXSS(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Target"})
	before := schemaFingerprint(t, w)
	for _, p := range sqlInjection {
		for _, r := range []req{
			w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": p, "ssn": p, "my_kind": p}, "external_id": p, "metadata": map[string]string{p: p}}),
			w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": p, "canonical_identifiers": map[string]string{}}),
			w.as(w.admin, "POST", "/v1/entities/search", map[string]any{"kind": "email", "value": p}),
			w.as(w.admin, "GET", "/v1/entities?external_id="+urlq(p), nil),
			w.as(w.admin, "GET", "/v1/entities?entity_type="+urlq(p), nil),
			w.as(w.admin, "GET", "/v1/audit-events?event_type="+urlq(p)+"&resource_id="+urlq(p), nil),
			w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/cache?check_type="+urlq(p)+"&provider_id="+urlq(p), nil),
			w.as(w.admin, "GET", "/v1/entities/"+urlq(p), nil),
			w.as(w.admin, "PATCH", "/v1/entities/"+e.EntityID, map[string]any{"canonical_identifiers": map[string]any{"address_line": p}}),
			w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/relations", map[string]any{"to_entity_id": p, "relation_type": p, "confidence_score": 0.5}),
			w.as(w.admin, "POST", "/v1/api-keys", map[string]any{"name": p, "scopes": []string{p}}),
			w.as(w.platform, "POST", "/v1/tenants", map[string]any{"name": p, "slug": p}),
			{method: "GET", path: "/v1/tenant", key: w.admin.secret, tenant: p},
		} {
			rec := call(t, w.h, r)
			if rec.Code >= 500 {
				t.Fatalf("%s %s with %q: %d %s", r.method, r.path, p, rec.Code, rec.Body)
			}
		}
	}
	if after := schemaFingerprint(t, w); after != before {
		t.Fatalf("schema changed under injection: %s -> %s", before, after)
	}

	// XSS: stored as data, returned as JSON with nosniff, never as HTML.
	xss := `<script>alert(document.cookie)</script><img src=x onerror=alert(1)>`
	rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": xss}, "metadata": map[string]string{"note": xss}}))
	if rec.Code != 201 {
		t.Fatalf("xss create: %d", rec.Code)
	}
	got := call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+decode[EntityOut](t, rec).EntityID, nil))
	if ct := got.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || got.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("content type %q nosniff %q: %s", ct, got.Header().Get("X-Content-Type-Options"), got.Body)
	}
	if !strings.Contains(got.Body.String(), `\u003cscript\u003e`) && !strings.Contains(got.Body.String(), "<script>") {
		t.Fatal("payload not returned as data")
	}
	// An error page never reflects input as HTML either.
	nf := call(t, w.h, req{method: "GET", path: "/%3Cscript%3Ealert(1)%3C/script%3E"})
	if nf.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("404 content type %q", nf.Header().Get("Content-Type"))
	}
}

func urlq(s string) string {
	r := strings.NewReplacer("%", "%25", " ", "%20", "'", "%27", "\"", "%22", ";", "%3B", "&", "%26", "#", "%23", "?", "%3F", "+", "%2B", "/", "%2F", "\x00", "%00", "$", "%24", "\\", "%5C", "(", "%28", ")", "%29", "=", "%3D")
	return r.Replace(s)
}

func schemaFingerprint(t *testing.T, w world) string {
	t.Helper()
	return fmt.Sprint(countWhere(t, w.b, `SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`),
		"/", countWhere(t, w.b, `SELECT count(*) FROM entities`), "/", countWhere(t, w.b, `SELECT count(*) FROM api_keys`),
		"/", countWhere(t, w.b, `SELECT count(*) FROM tenants`), "/", countWhere(t, w.b, `SELECT count(*) FROM entity_relations`))
}

// TestSecurity_HostileRequests: CRLF in headers, malformed, deeply nested
// and duplicate-key JSON, and oversized bodies get clear 4xx answers.
func TestSecurity_HostileRequests(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	post := func(body string) *httptest.ResponseRecorder {
		return call(t, w.h, w.as(w.admin, "POST", "/v1/entities", body))
	}
	wantProblem(t, post(`{"entity_type":"individual","entity_type":"organization","canonical_identifiers":{}}`), 400, "BAD_REQUEST")
	wantProblem(t, post(`{"entity_type":"individual","canonical_identifiers":{"ssn":"123456789","ssn":"987654321"}}`), 400, "BAD_REQUEST")
	wantProblem(t, post(strings.Repeat(`{"a":`, 100)+"1"+strings.Repeat("}", 100)), 400, "BAD_REQUEST")
	wantProblem(t, post(strings.Repeat("[", 5000)), 400, "BAD_REQUEST")
	wantProblem(t, post(`{"entity_type":`), 400, "BAD_REQUEST")
	wantProblem(t, post(`{"entity_type":"individual","canonical_identifiers":{},"metadata":{"n":1`+strings.Repeat("0", 400)+`}}`), 400, "BAD_REQUEST")
	wantProblem(t, post(`{"entity_type":"individual"} {"extra":1}`), 400, "BAD_REQUEST")
	wantProblem(t, post(`{"entity_type":"individual","canonical_identifiers":{"pad":"`+strings.Repeat("a", 1<<20)+`"}}`), 413, "BODY_TOO_LARGE")
	if rec := post(`{"entity_type":"individual","canonical_identifiers":{"x_note":"{\"a\":1,\"a\":2}"}}`); rec.Code != 201 {
		t.Errorf("a duplicate key inside a string is data: %d %s", rec.Code, rec.Body)
	}
	// CRLF and control characters in headers do not split responses.
	rec := call(t, w.h, req{method: "GET", path: "/health", hdr: map[string]string{"X-Correlation-ID": "abc\r\nSet-Cookie: evil=1"}})
	if rec.Header().Get("Set-Cookie") != "" || strings.ContainsAny(rec.Header().Get("X-Correlation-ID"), "\r\n") {
		t.Errorf("header injection: %v", rec.Header())
	}
	r := w.as(w.admin, "POST", "/v1/api-keys", map[string]any{"name": "x", "scopes": []string{"entities:read"}})
	r.hdr = map[string]string{"Idempotency-Key": "a\x01b"}
	wantProblem(t, call(t, w.h, r), 400, "BAD_REQUEST")
}

// TestSecurity_LogsHoldNoSecrets runs a session with a seeded SSN, email
// and API-key secret and scans everything the server logged.
func TestSecurity_LogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ssn, email := "321-54-9876", "seeded.person@example.org"
	e := w.create(t, w.admin, map[string]string{"ssn": ssn, "email": email})
	call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"?reveal=true", nil))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/search", map[string]any{"kind": "ssn", "value": ssn}))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"ssn": ssn}}))
	call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+e.EntityID, map[string]any{"canonical_identifiers": map[string]any{"ssn": "bad " + ssn}}))
	call(t, w.h, req{method: "GET", path: "/v1/tenant", key: w.admin.secret + "x"})
	call(t, w.h, req{method: "GET", path: "/v1/entities/" + ssn, key: w.admin.secret, tenant: w.a.String()})
	logs := w.b.logs.String()
	for _, secret := range []string{ssn, "321549876", email, w.admin.secret, w.admin.secret[4:20]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if len(logs) < 200 {
		t.Fatalf("suspiciously little was logged (%d bytes)", len(logs))
	}
}

// sample builds a value for schema s with every string set to payload.
func sample(api huma.API, s *huma.Schema, payload string, depth int) any {
	if s == nil || depth > 6 {
		return payload
	}
	if s.Ref != "" {
		s = api.OpenAPI().Components.Schemas.SchemaFromRef(s.Ref)
	}
	switch s.Type {
	case "object":
		m := map[string]any{}
		for name, p := range s.Properties {
			m[name] = sample(api, p, payload, depth+1)
		}
		if len(s.Properties) == 0 {
			m[payload] = payload // free-form maps: the payload as key and value
		}
		return m
	case "array":
		return []any{sample(api, s.Items, payload, depth+1)}
	case "integer", "number":
		return 1
	case "boolean":
		return true
	default:
		return payload
	}
}

// TestSecurity_InjectionEveryField sends each SQL injection payload in
// every string field of every request body and every string query and path
// parameter of every route, read from the OpenAPI description: no 5xx, no
// change to the schema.
func TestSecurity_InjectionEveryField(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Target"})
	useProblemErrors()
	api := humago.New(http.NewServeMux(), apiConfig())
	table := routes(api, Deps{}, &tenantCache{})
	before := schemaFingerprint(t, w)
	sent := 0
	for _, pi := range api.OpenAPI().Paths {
		for _, op := range []*huma.Operation{pi.Get, pi.Post, pi.Patch, pi.Delete} {
			if op == nil {
				continue
			}
			a := table[op.Method+" "+op.Path]
			who := w.admin
			if a.Scope == auth.ScopePlatformAdmin {
				who = w.platform
			}
			for _, p := range sqlInjection {
				ids := map[string]string{"entity_id": e.EntityID, "tenant_id": w.a.String(), "version": "1"}
				path := fill(op.Path, ids)
				var query []string
				for _, prm := range op.Parameters {
					if prm.In == "query" && prm.Schema != nil && prm.Schema.Type == "string" {
						query = append(query, prm.Name+"="+urlq(p))
					}
				}
				variants := []string{path}
				if len(query) > 0 {
					variants = append(variants, path+"?"+strings.Join(query, "&"))
				}
				if strings.Contains(op.Path, "{") {
					variants = append(variants, paramRE.ReplaceAllString(op.Path, urlq(p)))
				}
				var body any
				if op.RequestBody != nil {
					body = sample(api, op.RequestBody.Content["application/json"].Schema, p, 0)
				}
				for _, v := range variants {
					rec := call(t, w.h, w.as(who, op.Method, v, body))
					sent++
					if rec.Code >= 500 {
						t.Fatalf("%s %s with %q: %d %s", op.Method, v, p, rec.Code, rec.Body)
					}
				}
			}
		}
	}
	if after := schemaFingerprint(t, w); strings.Split(after, "/")[0] != strings.Split(before, "/")[0] {
		t.Fatalf("relations in the schema changed: %s -> %s", before, after)
	}
	if sent < 500 {
		t.Fatalf("only %d requests sent", sent)
	}
	t.Logf("%d injection requests, no 5xx", sent)
}
