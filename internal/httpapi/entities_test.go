package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/tenant"
)

type world struct {
	h           http.Handler
	b           *testBundle
	a, other    tenant.ID
	admin, oAdm fixture // tenant admins of a and other
	platform    fixture
	reader      fixture // a: entities:read only
}

func newWorld(t *testing.T) world {
	t.Helper()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 1_000_000, Period: time.Minute, Burst: 100_000}})
	w := world{h: h, b: b, a: mkTenant(t, b, "world-a"), other: mkTenant(t, b, "world-b")}
	w.admin = mkKey(t, b, w.a, auth.ScopeTenantAdmin)
	w.oAdm = mkKey(t, b, w.other, auth.ScopeTenantAdmin)
	w.platform = mkKey(t, b, tenant.ID{}, auth.ScopePlatformAdmin)
	w.reader = mkKey(t, b, w.a, auth.ScopeEntitiesRead, auth.ScopeCacheRead, auth.ScopeProfilesRead)
	return w
}

func (w world) as(f fixture, method, path string, body any) req {
	r := req{method: method, path: path, key: f.secret, body: body}
	if !f.tenant.IsZero() {
		r.tenant = f.tenant.String()
	}
	return r
}

func (w world) create(t *testing.T, f fixture, ids map[string]string) EntityOut {
	t.Helper()
	rec := call(t, w.h, w.as(f, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": ids}))
	if rec.Code != 201 {
		t.Fatalf("create entity: %d %s", rec.Code, rec.Body)
	}
	return decode[EntityOut](t, rec)
}

func TestEntities_CreateReadSearch(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"ssn": "123-45-6789", "email": "Jane.Doe@Example.com", "full_name": " Jane  Doe ", "phone": "+1 415 555 0123"})
	want := map[string]string{"ssn": "***-**-6789", "email": "j***@example.com", "full_name": "Jane Doe", "phone": "********0123"}
	for k, v := range want {
		if e.CanonicalIdentifiers[k] != v {
			t.Errorf("masked %s = %q, want %q", k, e.CanonicalIdentifiers[k], v)
		}
	}
	// Duplicates of a unique kind, with and without dashes: 409 naming the entity.
	for _, ssn := range []string{"123456789", "123-45-6789"} {
		p := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
			"canonical_identifiers": map[string]string{"ssn": ssn}})), 409, "ENTITY_DUPLICATE")
		if !strings.Contains(p.Detail, e.EntityID) || p.ExistingEntityID != e.EntityID {
			t.Errorf("duplicate %+v does not name %s (detail and existing_entity_id)", p, e.EntityID)
		}
	}
	// The duplicates failed halfway (after the entity row, at the blind
	// index): nothing of them is left.
	if n := countWhere(t, w.b, `SELECT count(*) FROM entities WHERE tenant_id = $1`, w.a.UUID()); n != 1 {
		t.Errorf("entities after two refused duplicates = %d, want 1", n)
	}
	if n := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'entity.created'`, w.a.UUID()); n != 1 {
		t.Errorf("entity.created events = %d, want 1: a refused create left its event", n)
	}
	// The same SSN in another tenant is another person's business.
	if rec := call(t, w.h, w.as(w.oAdm, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
		"canonical_identifiers": map[string]string{"ssn": "123-45-6789"}})); rec.Code != 201 {
		t.Fatalf("same SSN in tenant B: %d", rec.Code)
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
		"canonical_identifiers": map[string]string{"ssn": "12-34", "email": "nope", "date_of_birth": "2999-01-01", "Bad-Kind": "x"},
		"metadata":              map[string]string{strings.Repeat("k", 65): "v"}})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 5 {
		t.Errorf("errors = %+v, want one per bad field (5)", p.Errors)
	}
	// Mass assignment: server-owned fields are rejected.
	for _, field := range []string{"tenant_id", "entity_id", "created_at", "version"} {
		p := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
			"canonical_identifiers": map[string]string{"full_name": "Mass"}, field: "x"})), 422, "VALIDATION_FAILED")
		if p.Errors[0].Location != "body."+field {
			t.Errorf("%s: %+v", field, p.Errors)
		}
	}

	// Read: masked, revealed only with pii:read (and then audited as such).
	wantProblem(t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+e.EntityID+"?reveal=true", nil)), 403, "PERMISSION_DENIED")
	got := decode[EntityOut](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+e.EntityID, nil)))
	if got.CanonicalIdentifiers["ssn"] != "***-**-6789" {
		t.Errorf("read without reveal: %v", got.CanonicalIdentifiers)
	}
	rev := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"?reveal=true", nil)))
	if rev.CanonicalIdentifiers["ssn"] != "123456789" || rev.CanonicalIdentifiers["email"] != "jane.doe@example.com" {
		t.Errorf("revealed = %v", rev.CanonicalIdentifiers)
	}
	if n := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'data.accessed' AND entity_id = $2 AND severity = 'warning'`, w.a.UUID(), uuid.MustParse(e.EntityID)); n != 1 {
		t.Errorf("reveal audited %d times, want 1 (warning)", n)
	}

	// Search by blind index; nothing leaks across tenants, the value never reaches the log.
	found := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(w.reader, "POST", "/v1/entities/search", map[string]any{"kind": "email", "value": "JANE.DOE@example.com"})))
	if len(found.Data) != 1 || found.Data[0].EntityID != e.EntityID {
		t.Fatalf("search = %+v", found)
	}
	otherFound := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(w.oAdm, "POST", "/v1/entities/search", map[string]any{"kind": "email", "value": "jane.doe@example.com"})))
	if len(otherFound.Data) != 0 {
		t.Fatalf("tenant B found A's entity: %+v", otherFound)
	}
	wantProblem(t, call(t, w.h, w.as(w.reader, "POST", "/v1/entities/search", map[string]any{"kind": "full_name", "value": "x"})), 422, "VALIDATION_FAILED")
	if strings.Contains(w.b.logs.String(), "123456789") || strings.Contains(w.b.logs.String(), "jane.doe") {
		t.Error("personal data reached the log")
	}
}

func TestEntities_ListPatchDelete(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var ids []string
	for i := range 3 {
		rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": []string{"individual", "organization", "individual"}[i],
			"canonical_identifiers": map[string]string{"ein": fmt.Sprintf("12-34567%02d", i)}, "external_id": fmt.Sprintf("ext-%d", i)}))
		if rec.Code != 201 {
			t.Fatal(rec.Body)
		}
		ids = append(ids, decode[EntityOut](t, rec).EntityID)
	}
	taken := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "Taken"}, "external_id": "ext-0"})), 409, "EXTERNAL_ID_TAKEN")
	if taken.ExistingEntityID != ids[0] {
		t.Errorf("EXTERNAL_ID_TAKEN names %q, want the holder %s", taken.ExistingEntityID, ids[0])
	}
	page1 := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities?entity_type=individual&limit=1", nil)))
	if len(page1.Data) != 1 || page1.Data[0].EntityID != ids[2] || page1.NextCursor == nil {
		t.Fatalf("page 1 = %+v", page1)
	}
	page2 := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities?entity_type=individual&limit=1&cursor="+*page1.NextCursor, nil)))
	if len(page2.Data) != 1 || page2.Data[0].EntityID != ids[0] || page2.NextCursor != nil {
		t.Fatalf("page 2 = %+v", page2)
	}
	byExt := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities?external_id=ext-1", nil)))
	if len(byExt.Data) != 1 || byExt.Data[0].EntityID != ids[1] {
		t.Fatalf("by external id = %+v", byExt)
	}

	// PATCH merges: a value sets, null removes; a duplicate is 409.
	rec := call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+ids[0], map[string]any{"canonical_identifiers": map[string]any{"ein": nil, "full_name": "Acme", "ssn": "876-54-3210"}}))
	patched := decode[EntityOut](t, rec)
	if rec.Code != 200 || patched.CanonicalIdentifiers["ein"] != "" || patched.CanonicalIdentifiers["ssn"] != "***-**-3210" || patched.CanonicalIdentifiers["full_name"] != "Acme" {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	found := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(w.reader, "POST", "/v1/entities/search", map[string]any{"kind": "ein", "value": "123456700"})))
	if len(found.Data) != 0 {
		t.Errorf("removed EIN still found: %+v", found)
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+ids[1], map[string]any{"canonical_identifiers": map[string]any{"ssn": "876543210", "ein": nil}})), 409, "ENTITY_DUPLICATE")
	// That PATCH failed halfway (identifiers rewritten, blind rows deleted,
	// then the duplicate): entity 1 is exactly as before.
	kept := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+ids[1]+"?reveal=true", nil)))
	if kept.CanonicalIdentifiers["ein"] != "123456701" || kept.CanonicalIdentifiers["ssn"] != "" {
		t.Errorf("entity after a refused PATCH: %v", kept.CanonicalIdentifiers)
	}
	if f := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(w.reader, "POST", "/v1/entities/search", map[string]any{"kind": "ein", "value": "12-3456701"}))); len(f.Data) != 1 {
		t.Errorf("its blind index is gone after a refused PATCH")
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+ids[1], map[string]any{"canonical_identifiers": map[string]any{"ssn": 5}})), 422, "VALIDATION_FAILED")
	wantProblem(t, call(t, w.h, w.as(w.reader, "PATCH", "/v1/entities/"+ids[1], map[string]any{"canonical_identifiers": map[string]any{"full_name": "x"}})), 403, "PERMISSION_DENIED")

	// DELETE removes identifiers, relations, profiles and cache rows at once.
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+ids[0]+"/relations", map[string]any{"to_entity_id": ids[1], "relation_type": "employer", "confidence_score": 0.9}))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+ids[0]+"/profiles", profileBody(0.3, "f1")))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+ids[0]+"/cache", cacheBody("criminal", "paid_external")))
	id0 := uuid.MustParse(ids[0])
	before := countWhere(t, w.b, `SELECT (SELECT count(*) FROM entity_identifiers WHERE entity_id = $1) + (SELECT count(*) FROM entity_relations WHERE from_entity_id = $1)
		+ (SELECT count(*) FROM entity_profiles WHERE entity_id = $1) + (SELECT count(*) FROM cached_data_sources WHERE entity_id = $1)`, id0)
	if before != 4 {
		t.Fatalf("rows hanging off the entity before delete = %d, want 4", before)
	}
	if rec := call(t, w.h, w.as(w.admin, "DELETE", "/v1/entities/"+ids[0], nil)); rec.Code != 204 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	after := countWhere(t, w.b, `SELECT (SELECT count(*) FROM entities WHERE entity_id = $1) + (SELECT count(*) FROM entity_identifiers WHERE entity_id = $1)
		+ (SELECT count(*) FROM entity_relations WHERE from_entity_id = $1 OR to_entity_id = $1)
		+ (SELECT count(*) FROM entity_profiles WHERE entity_id = $1) + (SELECT count(*) FROM cached_data_sources WHERE entity_id = $1)`, id0)
	if after != 0 {
		t.Fatalf("rows left after delete = %d", after)
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+ids[0], nil)), 404, "ENTITY_NOT_FOUND")
	if n := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE event_type = 'data.erased' AND entity_id = $1`, id0); n != 1 {
		t.Errorf("data.erased events = %d", n)
	}
	for typ, want := range map[string]int{"entity.created": 3, "entity.updated": 1, "entity.related": 1, "profile.created": 1, "provider.query": 1} {
		if n := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = $2`, w.a.UUID(), typ); n != want {
			t.Errorf("%s events = %d, want %d", typ, n, want)
		}
	}
}

func TestEntities_ConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Go(func() {
			codes[i] = call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
				"canonical_identifiers": map[string]string{"passport": "X1234567"}})).Code
		})
	}
	wg.Wait()
	sort.Ints(codes)
	if fmt.Sprint(codes) != "[201 409 409 409 409 409 409 409 409 409]" {
		t.Fatalf("10 concurrent creates of one passport: %v, want one 201", codes)
	}
}

func profileBody(overall float64, findings ...string) map[string]any {
	fs := []any{}
	for _, f := range findings {
		fs = append(fs, map[string]any{"id": f, "summary": "finding " + f})
	}
	return map[string]any{"trigger_type": "screening", "findings": fs, "risk_score": map[string]any{"overall": overall},
		"connections": []any{map[string]any{"to": "x"}}, "data_sources_used": []any{"acme"}, "stale_data_used": []any{}}
}

func cacheBody(checkType, origin string) map[string]any {
	return map[string]any{"provider_id": "acme", "check_type": checkType, "data_origin": origin, "raw_response": "c2VjcmV0IHJhdw==",
		"normalized_data": map[string]any{"hits": 1}, "cost_incurred": 1.5}
}

// TestEntities_OtherTenants404: every route with an object id answers 404
// to another tenant's credential, and changes nothing.
func TestEntities_OtherTenants404(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"ssn": "111-22-3333"})
	mine := w.create(t, w.oAdm, map[string]string{"ssn": "111-22-4444"})
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", profileBody(0.5, "a")))
	c := decode[CacheOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/cache", cacheBody("criminal", "paid_external"))))
	base := "/v1/entities/" + e.EntityID
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", base, nil},
		{"GET", base + "?reveal=true", nil},
		{"PATCH", base, map[string]any{"canonical_identifiers": map[string]any{"full_name": "x"}}},
		{"DELETE", base, nil},
		{"POST", base + "/relations", map[string]any{"to_entity_id": mine.EntityID, "relation_type": "knows", "confidence_score": 1}},
		{"POST", "/v1/entities/" + mine.EntityID + "/relations", map[string]any{"to_entity_id": e.EntityID, "relation_type": "knows", "confidence_score": 1}},
		{"GET", base + "/relations", nil},
		{"POST", base + "/profiles", profileBody(0.1)},
		{"GET", base + "/profiles", nil},
		{"GET", base + "/profiles/latest", nil},
		{"GET", base + "/profiles/1", nil},
		{"POST", base + "/cache", cacheBody("criminal", "customer_provided")},
		{"GET", base + "/cache", nil},
		{"GET", base + "/cache/" + c.CacheID, nil},
	} {
		rec := call(t, w.h, w.as(w.oAdm, r.method, r.path, r.body))
		if rec.Code != 404 {
			t.Errorf("tenant B %s %s = %d, want 404: %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if got := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", base, nil))); got.EntityID != e.EntityID {
		t.Fatal("A's entity changed or vanished")
	}
	if n := countWhere(t, w.b, `SELECT count(*) FROM entity_profiles WHERE entity_id = $1`, uuid.MustParse(e.EntityID)); n != 1 {
		t.Errorf("profiles of A's entity = %d, want 1", n)
	}
}

func TestEntities_Shared(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	rec := call(t, w.h, w.as(w.platform, "POST", "/v1/shared/entities", map[string]any{"entity_type": "organization",
		"canonical_identifiers": map[string]string{"ein": "98-7654321", "legal_name": "Shared Corp"}}))
	if rec.Code != 201 {
		t.Fatalf("shared create: %d %s", rec.Code, rec.Body)
	}
	s := decode[EntityOut](t, rec)
	if s.TenantID != nil {
		t.Fatalf("shared entity has tenant %v", *s.TenantID)
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/shared/entities", map[string]any{"entity_type": "organization", "canonical_identifiers": map[string]string{}})), 403, "PERMISSION_DENIED")
	for _, f := range []fixture{w.admin, w.oAdm} {
		if got := decode[EntityOut](t, call(t, w.h, w.as(f, "GET", "/v1/entities/"+s.EntityID, nil))); got.EntityID != s.EntityID {
			t.Errorf("tenant %s cannot read the shared entity", f.tenant)
		}
		found := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(f, "POST", "/v1/entities/search", map[string]any{"kind": "ein", "value": "987654321"})))
		if len(found.Data) != 1 {
			t.Errorf("tenant %s: search for the shared EIN = %d results", f.tenant, len(found.Data))
		}
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+s.EntityID, map[string]any{"canonical_identifiers": map[string]any{"legal_name": "Mine now"}})), 403, "PERMISSION_DENIED")
	wantProblem(t, call(t, w.h, w.as(w.admin, "DELETE", "/v1/entities/"+s.EntityID, nil)), 403, "PERMISSION_DENIED")
	// Cache on a shared entity: A's customer_provided rows stay A's; paid
	// external data on it comes from the platform only.
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+s.EntityID+"/cache", cacheBody("criminal", "paid_external"))), 403, "PERMISSION_DENIED")
	if rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+s.EntityID+"/cache", cacheBody("criminal", "customer_provided"))); rec.Code != 201 {
		t.Fatalf("customer_provided on shared: %d %s", rec.Code, rec.Body)
	}
	if got := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.oAdm, "GET", "/v1/entities/"+s.EntityID+"/cache", nil))); len(got.Data) != 0 {
		t.Errorf("tenant B sees A's customer_provided row: %+v", got.Data)
	}
	if got := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+s.EntityID+"/cache", nil))); len(got.Data) != 1 {
		t.Errorf("tenant A sees %d of its rows", len(got.Data))
	}
	// A platform admin (acting in any tenant) changes shared entities and
	// adds the paid data every tenant then sees.
	pa := fixture{tenant: w.a, secret: w.platform.secret}
	if rec := call(t, w.h, w.as(pa, "PATCH", "/v1/entities/"+s.EntityID, map[string]any{"canonical_identifiers": map[string]any{"legal_name": "Shared Corp Ltd"}})); rec.Code != 200 {
		t.Fatalf("platform PATCH of a shared entity: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, w.h, w.as(pa, "POST", "/v1/entities/"+s.EntityID+"/cache", cacheBody("corporate_registry", "paid_external"))); rec.Code != 201 {
		t.Fatalf("platform paid_external on shared: %d %s", rec.Code, rec.Body)
	}
	for _, f := range []fixture{w.admin, w.oAdm} {
		got := decode[Page[CacheOut]](t, call(t, w.h, w.as(f, "GET", "/v1/entities/"+s.EntityID+"/cache?check_type=corporate_registry", nil)))
		if len(got.Data) != 1 {
			t.Errorf("tenant %s sees %d shared paid rows, want 1", f.tenant, len(got.Data))
		}
	}
	// Relations from a tenant's entity to the shared one are the tenant's.
	mine := w.create(t, w.admin, map[string]string{"full_name": "Employee"})
	if rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+mine.EntityID+"/relations", map[string]any{"to_entity_id": s.EntityID, "relation_type": "employer", "confidence_score": 0.8})); rec.Code != 201 {
		t.Fatalf("relation to shared: %d %s", rec.Code, rec.Body)
	}
	if got := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.oAdm, "GET", "/v1/entities/"+s.EntityID+"/relations", nil))); len(got.Data) != 0 {
		t.Errorf("tenant B sees A's relation to the shared entity: %+v", got.Data)
	}
	// A's relations of the shared entity: its own and the platform's (a
	// second shared entity related to it by the platform), merged newest
	// first from two single-shard reads.
	s2 := decode[EntityOut](t, call(t, w.h, w.as(w.platform, "POST", "/v1/shared/entities", map[string]any{"entity_type": "organization",
		"canonical_identifiers": map[string]string{"legal_name": "Shared Parent"}})))
	if rec := call(t, w.h, w.as(pa, "POST", "/v1/entities/"+s2.EntityID+"/relations", map[string]any{"to_entity_id": s.EntityID, "relation_type": "parent_of", "confidence_score": 1})); rec.Code != 201 {
		t.Fatalf("platform relation between shared entities: %d %s", rec.Code, rec.Body)
	}
	rels := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+s.EntityID+"/relations", nil)))
	if len(rels.Data) != 2 || rels.Data[0].RelationID < rels.Data[1].RelationID {
		t.Errorf("A's view of the shared entity's relations: %+v, want its own and the platform's, newest first", rels.Data)
	}
	// A's entity list pages through its own entities and the shared ones,
	// newest first, each once; B's shows no entity of A.
	var listed []string
	cursor := ""
	for range 10 {
		page := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities?limit=1"+cursor, nil)))
		for _, e := range page.Data {
			listed = append(listed, e.EntityID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	want := []string{s2.EntityID, mine.EntityID, s.EntityID}
	for _, id := range want {
		if !slices.Contains(listed, id) {
			t.Errorf("A's list %v lacks %s", listed, id)
		}
	}
	if !slices.IsSortedFunc(listed, func(x, y string) int { return strings.Compare(y, x) }) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Errorf("A's list %v: want newest first, each once", listed)
	}
	for _, e := range decode[Page[EntityOut]](t, call(t, w.h, w.as(w.oAdm, "GET", "/v1/entities?limit=100", nil))).Data {
		if e.EntityID == mine.EntityID {
			t.Errorf("B lists A's entity")
		}
	}
	// A profile of the shared entity, and a relation found in it.
	prof := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+s.EntityID+"/profiles", profileBody(0.3))))
	other := w.create(t, w.admin, map[string]string{"full_name": "Colleague"})
	if rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+other.EntityID+"/relations", map[string]any{"to_entity_id": mine.EntityID,
		"relation_type": "colleague_of", "confidence_score": 0.5, "discovered_in_profile_id": prof.ProfileID})); rec.Code != 201 {
		t.Fatalf("relation found in a profile of the shared entity: %d %s", rec.Code, rec.Body)
	}
	// Deleting the shared entity is the platform's: it takes every
	// tenant's profiles of it and relations to it, and clears the links to
	// those profiles.
	if rec := call(t, w.h, w.as(pa, "DELETE", "/v1/entities/"+s.EntityID, nil)); rec.Code != 204 {
		t.Fatalf("platform DELETE of a shared entity: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, call(t, w.h, w.as(w.oAdm, "GET", "/v1/entities/"+s.EntityID, nil)), 404, "ENTITY_NOT_FOUND")
	if n := countWhere(t, w.b, `SELECT (SELECT count(*) FROM entity_profiles WHERE entity_id = $1)
		+ (SELECT count(*) FROM entity_relations WHERE from_entity_id = $1 OR to_entity_id = $1)
		+ (SELECT count(*) FROM entity_relations WHERE discovered_in_profile_id = $2)`, s.EntityID, prof.ProfileID); n != 0 {
		t.Errorf("%d rows still name the erased shared entity or its profile", n)
	}
	if rels := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+other.EntityID+"/relations", nil))); len(rels.Data) != 1 {
		t.Errorf("A's relation found in the erased profile: %+v, want kept (its link cleared)", rels.Data)
	}
}

func TestRelations(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.create(t, w.admin, map[string]string{"full_name": "A"})
	b := w.create(t, w.admin, map[string]string{"full_name": "B"})
	prof := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/profiles", profileBody(0.2))))
	rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/relations", map[string]any{"to_entity_id": b.EntityID,
		"relation_type": "director_of", "confidence_score": 0.75, "discovered_in_profile_id": prof.ProfileID}))
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	r := decode[RelationOut](t, rec)
	if r.FromEntityID != a.EntityID || r.ConfidenceScore != 0.75 || r.DiscoveredInProfileID == nil {
		t.Fatalf("relation = %+v", r)
	}
	for _, id := range []string{a.EntityID, b.EntityID} {
		got := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+id+"/relations", nil)))
		if len(got.Data) != 1 || got.Data[0].RelationID != r.RelationID {
			t.Errorf("relations of %s = %+v (both directions)", id, got.Data)
		}
	}
	exists := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/relations", map[string]any{"to_entity_id": b.EntityID, "relation_type": "director_of", "confidence_score": 0.5})), 409, "RELATION_EXISTS")
	if exists.ExistingRelationID != r.RelationID {
		t.Errorf("RELATION_EXISTS names %q, want %s", exists.ExistingRelationID, r.RelationID)
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/relations", map[string]any{"to_entity_id": b.EntityID, "relation_type": "Bad Type", "confidence_score": 1.5})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 2 {
		t.Errorf("errors = %+v", p.Errors)
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/relations", map[string]any{"to_entity_id": a.EntityID, "relation_type": "self", "confidence_score": 1})), 422, "VALIDATION_FAILED")
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+a.EntityID+"/relations", map[string]any{"to_entity_id": uuid.NewString(), "relation_type": "x", "confidence_score": 1})), 404, "ENTITY_NOT_FOUND")
	// Another tenant's profile cannot be cited.
	ob := w.create(t, w.oAdm, map[string]string{"full_name": "O"})
	oprof := decode[ProfileOut](t, call(t, w.h, w.as(w.oAdm, "POST", "/v1/entities/"+ob.EntityID+"/profiles", profileBody(0.2))))
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+b.EntityID+"/relations", map[string]any{"to_entity_id": a.EntityID, "relation_type": "x", "confidence_score": 1, "discovered_in_profile_id": oprof.ProfileID})), 404, "PROFILE_NOT_FOUND")
}

func TestProfiles_VersionsAndDelta(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Versioned"})
	path := "/v1/entities/" + e.EntityID + "/profiles"
	wantProblem(t, call(t, w.h, w.as(w.admin, "GET", path+"/latest", nil)), 404, "PROFILE_NOT_FOUND")
	v1 := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "POST", path, profileBody(0.4, "a", "b"))))
	if v1.Version != 1 || v1.PreviousVersion != nil || len(v1.Delta.NewFindings) != 2 || v1.Delta.RiskScoreChange != 0.4 {
		t.Fatalf("v1 = %+v", v1)
	}
	body := profileBody(0.7, "b", "c")
	body["connections"] = []any{}
	v2 := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "POST", path, body)))
	d := v2.Delta
	if v2.Version != 2 || *v2.PreviousVersion != 1 || len(d.NewFindings) != 1 || len(d.ResolvedFindings) != 1 ||
		d.RiskScoreChange != 0.3 || d.ConnectionCountChange != -1 || !strings.Contains(string(d.NewFindings[0]), `"c"`) || !strings.Contains(string(d.ResolvedFindings[0]), `"a"`) {
		t.Fatalf("v2 delta = %+v", d)
	}
	// Findings without ids are matched by content.
	noID := profileBody(0.7)
	noID["findings"] = []any{map[string]any{"summary": "same"}}
	call(t, w.h, w.as(w.admin, "POST", path, noID))
	v4 := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "POST", path, noID)))
	if len(v4.Delta.NewFindings) != 0 || len(v4.Delta.ResolvedFindings) != 0 {
		t.Errorf("identical content findings: %+v", v4.Delta)
	}

	// 20 at once: all succeed, versions 5..24, no gaps or duplicates.
	var wg sync.WaitGroup
	versions := make([]int, 20)
	for i := range versions {
		wg.Go(func() {
			rec := call(t, w.h, w.as(w.admin, "POST", path, profileBody(0.1)))
			if rec.Code != 201 {
				t.Errorf("concurrent create: %d %s", rec.Code, rec.Body)
				return
			}
			versions[i] = decode[ProfileOut](t, rec).Version
		})
	}
	wg.Wait()
	sort.Ints(versions)
	for i, v := range versions {
		if v != i+5 {
			t.Fatalf("concurrent versions = %v, want 5..24", versions)
		}
	}
	latest := decode[ProfileOut](t, call(t, w.h, w.as(w.reader, "GET", path+"/latest", nil)))
	if latest.Version != 24 {
		t.Errorf("latest = %d", latest.Version)
	}
	if got := decode[ProfileOut](t, call(t, w.h, w.as(w.reader, "GET", path+"/2", nil))); got.Version != 2 || got.RiskScore["overall"] != 0.7 {
		t.Errorf("version 2 = %+v", got)
	}
	wantProblem(t, call(t, w.h, w.as(w.reader, "GET", path+"/99", nil)), 404, "PROFILE_NOT_FOUND")
	wantProblem(t, call(t, w.h, w.as(w.reader, "GET", path+"/0", nil)), 422, "VALIDATION_FAILED")
	list := decode[Page[ProfileOut]](t, call(t, w.h, w.as(w.reader, "GET", path+"?limit=10", nil)))
	if len(list.Data) != 10 || list.Data[0].Version != 24 || list.NextCursor == nil {
		t.Fatalf("list = %d items", len(list.Data))
	}
	next := decode[Page[ProfileOut]](t, call(t, w.h, w.as(w.reader, "GET", path+"?limit=10&cursor="+*list.NextCursor, nil)))
	if next.Data[0].Version != 14 {
		t.Errorf("page 2 starts at %d", next.Data[0].Version)
	}
	bad := profileBody(1.5)
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", path, bad)), 422, "VALIDATION_FAILED")
	delete(bad, "risk_score")
	wantProblem(t, call(t, w.h, w.as(w.admin, "POST", path, bad)), 422, "VALIDATION_FAILED")
}

func TestCache_WindowsVisibilityRaw(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "Cached"})
	path := "/v1/entities/" + e.EntityID + "/cache"
	now := time.Now().UTC()
	mk := func(checkType string, acquired time.Time, extra map[string]any) *CacheOut {
		body := cacheBody(checkType, "paid_external")
		body["acquired_at"] = acquired
		for k, v := range extra {
			body[k] = v
		}
		rec := call(t, w.h, w.as(w.admin, "POST", path, body))
		if rec.Code != 201 {
			t.Fatalf("create %s: %d %s", checkType, rec.Code, rec.Body)
		}
		o := decode[CacheOut](t, rec)
		return &o
	}
	day := 24 * time.Hour
	// Defaults from acquired_at; one second either side of each boundary.
	freshEdge := mk("criminal", now.Add(-7*day+2*time.Second), nil)
	staleEdge := mk("criminal", now.Add(-7*day-2*time.Second), nil)
	staleEnd := mk("criminal", now.Add(-30*day+2*time.Second), nil)
	expired := mk("criminal", now.Add(-30*day-2*time.Second), nil)
	if !freshEdge.FreshUntil.Equal(freshEdge.AcquiredAt.Add(7*day)) || !freshEdge.StaleUntil.Equal(freshEdge.AcquiredAt.Add(30*day)) {
		t.Errorf("criminal windows = %s / %s from %s", freshEdge.FreshUntil, freshEdge.StaleUntil, freshEdge.AcquiredAt)
	}
	for name, c := range map[string]struct {
		o    *CacheOut
		want string
	}{"BeforeFresh": {freshEdge, "fresh"}, "AfterFresh": {staleEdge, "stale"}, "BeforeStale": {staleEnd, "stale"}, "AfterStale": {expired, "expired"}} {
		if c.o.FreshnessStatus != c.want {
			t.Errorf("%s: %s, want %s", name, c.o.FreshnessStatus, c.want)
		}
	}
	if s := mk("sanctions", now, nil); s.FreshnessStatus != "expired" {
		t.Errorf("sanctions (0/0) = %s", s.FreshnessStatus)
	}
	if ed := mk("education", now.Add(-400*day), nil); ed.StaleUntil != nil || ed.FreshnessStatus != "stale" {
		t.Errorf("education = %+v", ed)
	}
	custom := mk("drug_test", now, map[string]any{"fresh_until": now.Add(time.Hour), "stale_until": now.Add(2 * time.Hour), "cost_incurred": "12.5"})
	if custom.FreshnessStatus != "fresh" || custom.CostIncurred != "12.50" {
		t.Errorf("custom = %+v", custom)
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "POST", path, cacheBody("drug_test", "paid_external"))), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 2 {
		t.Errorf("unknown type without windows: %+v", p.Errors)
	}
	for _, cost := range []any{"1.234", -1, "abc", 0.001} {
		body := cacheBody("criminal", "paid_external")
		body["cost_incurred"] = cost
		wantProblem(t, call(t, w.h, w.as(w.admin, "POST", path, body)), 422, "VALIDATION_FAILED")
	}
	// Reading: filters, freshness, raw only with pii:read and include_raw.
	list := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.reader, "GET", path+"?check_type=criminal", nil)))
	if len(list.Data) != 4 || list.Data[0].RawResponse != nil {
		t.Fatalf("criminal entries = %d", len(list.Data))
	}
	wantProblem(t, call(t, w.h, w.as(w.reader, "GET", path+"?include_raw=true", nil)), 403, "PERMISSION_DENIED")
	raw := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.admin, "GET", path+"?include_raw=true&provider_id=acme", nil)))
	if string(raw.Data[0].RawResponse) != "secret raw" {
		t.Errorf("raw = %q", raw.Data[0].RawResponse)
	}
	one := decode[CacheOut](t, call(t, w.h, w.as(w.reader, "GET", path+"/"+expired.CacheID, nil)))
	if one.FreshnessStatus != "expired" {
		t.Errorf("one = %+v", one)
	}
	hits := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'cache.hit'`, w.a.UUID())
	misses := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'cache.miss'`, w.a.UUID())
	empty := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.reader, "GET", path+"?check_type=credit", nil)))
	if len(empty.Data) != 0 || hits != 2 || misses != 1 {
		t.Errorf("cache.hit = %d (want 2), cache.miss = %d (want 1)", hits, misses)
	}
	if n := countWhere(t, w.b, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'cache.miss'`, w.a.UUID()); n != 2 {
		t.Errorf("an empty listing is a cache.miss: %d", n)
	}
	// Stored encrypted: the raw bytes are not in the table.
	if n := countWhere(t, w.b, `SELECT count(*) FROM cached_data_sources WHERE position('secret raw'::bytea in raw_response) > 0`); n != 0 {
		t.Error("raw_response stored in clear")
	}
}

// Every 201 says where the new resource is (Location), and a GET of that
// path returns it; a replay of the create carries the same Location.
func TestCreated_Location(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ent := call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"full_name": "Located"}}))
	e := decode[EntityOut](t, ent)
	tn := call(t, w.h, w.as(w.platform, "POST", "/v1/tenants", map[string]any{"name": "Located Ltd"}))
	shared := call(t, w.h, w.as(w.platform, "POST", "/v1/shared/entities", map[string]any{"entity_type": "organization", "canonical_identifiers": map[string]string{"legal_name": "Located Shared"}}))
	prof := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", profileBody(0.4)))
	cache := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/cache", cacheBody("criminal", "customer_provided")))
	key := call(t, w.h, w.as(w.admin, "POST", "/v1/api-keys", map[string]any{"name": "located", "scopes": []string{"entities:read"}}))
	for name, c := range map[string]struct {
		rec    *httptest.ResponseRecorder
		as     fixture
		prefix string
		get    bool
	}{
		"entity":        {ent, w.admin, "/v1/entities/", true},
		"tenant":        {tn, w.platform, "/v1/tenants/", true},
		"shared entity": {shared, w.admin, "/v1/entities/", true},
		"profile":       {prof, w.admin, "/v1/entities/" + e.EntityID + "/profiles/", true},
		"cache entry":   {cache, w.admin, "/v1/entities/" + e.EntityID + "/cache/", true},
		"api key":       {key, w.admin, "/v1/api-keys/", false},
	} {
		loc := c.rec.Header().Get("Location")
		if c.rec.Code != 201 || !strings.HasPrefix(loc, c.prefix) || len(loc) <= len(c.prefix) {
			t.Errorf("%s: %d, Location %q; want 201 and a path under %s", name, c.rec.Code, loc, c.prefix)
			continue
		}
		if !c.get {
			continue
		}
		got := call(t, w.h, w.as(c.as, "GET", loc, nil))
		if got.Code != 200 || !strings.Contains(got.Body.String(), loc[strings.LastIndex(loc, "/")+1:]) {
			t.Errorf("%s: GET %s = %d %s", name, loc, got.Code, got.Body)
		}
	}
}

// TestRelations_Lifecycle: an employment with a start, ended by PATCH;
// an end before the start refused at the field; a date that does not
// exist refused; Location names the relation; DELETE removes it, and a
// second DELETE is 404; another tenant's key finds nothing.
func TestRelations_Lifecycle(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	person := w.create(t, w.admin, map[string]string{"full_name": "Ada"})
	org := w.create(t, w.admin, map[string]string{"legal_name": "Acme"})
	rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+person.EntityID+"/relations",
		map[string]any{"to_entity_id": org.EntityID, "relation_type": "employer", "confidence_score": 1, "valid_from": "2021-03-01"}))
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	r := decode[RelationOut](t, rec)
	path := "/v1/entities/" + person.EntityID + "/relations/" + r.RelationID
	if rec.Header().Get("Location") != path || r.ValidFrom == nil || *r.ValidFrom != "2021-03-01" || r.ValidTo != nil || r.UpdatedAt != nil {
		t.Fatalf("created %+v at %q", r, rec.Header().Get("Location"))
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{"valid_to": "2020-12-31"})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.valid_to" {
		t.Fatalf("an end before the start: %+v", p.Errors)
	}
	p = wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{"valid_to": "2023-02-30"})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.valid_to" {
		t.Fatalf("a day that does not exist: %+v", p.Errors)
	}
	// Ended, seen from the organisation's side too.
	ended := decode[RelationOut](t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+org.EntityID+"/relations/"+r.RelationID,
		map[string]any{"valid_to": "2024-06-30"})))
	if ended.ValidTo == nil || *ended.ValidTo != "2024-06-30" || *ended.ValidFrom != "2021-03-01" || ended.UpdatedAt == nil {
		t.Fatalf("ended: %+v", ended)
	}
	list := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+person.EntityID+"/relations", nil)))
	if len(list.Data) != 1 || list.Data[0].ValidTo == nil || *list.Data[0].ValidTo != "2024-06-30" {
		t.Fatalf("list after the end: %+v", list.Data)
	}
	// Reopened: an empty string removes the end.
	if re := decode[RelationOut](t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{"valid_to": ""}))); re.ValidTo != nil {
		t.Fatalf("reopened: %+v", re)
	}
	// Through an entity it does not link: not found.
	stranger := w.create(t, w.admin, map[string]string{"full_name": "Stranger"})
	wantProblem(t, call(t, w.h, w.as(w.admin, "DELETE", "/v1/entities/"+stranger.EntityID+"/relations/"+r.RelationID, nil)), 404, "RELATION_NOT_FOUND")
	// Another tenant: not found, and nothing changed.
	wantProblem(t, call(t, w.h, w.as(w.oAdm, "PATCH", path, map[string]any{"valid_to": "2025-01-01"})), 404, "RELATION_NOT_FOUND")
	if rec := call(t, w.h, w.as(w.admin, "DELETE", path, nil)); rec.Code != 204 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, call(t, w.h, w.as(w.admin, "DELETE", path, nil)), 404, "RELATION_NOT_FOUND")
	if list := decode[Page[RelationOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities/"+person.EntityID+"/relations", nil))); len(list.Data) != 0 {
		t.Fatalf("after delete: %+v", list.Data)
	}
}

// TestEntities_PatchMetadataAndExternalID: PATCH changes metadata
// (replaced whole) and external_id (unique per tenant: 409 naming the
// holder; "" removes it), with the identifiers in the same unit of work;
// every bad field is reported at once.
func TestEntities_PatchMetadataAndExternalID(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.create(t, w.admin, map[string]string{"full_name": "Ada"})
	b := w.create(t, w.admin, map[string]string{"full_name": "Bea"})
	path := "/v1/entities/" + a.EntityID
	got := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{
		"metadata": map[string]string{"team": "risk"}, "external_id": "hr-17", "canonical_identifiers": map[string]any{"email": "ada@example.com"}})))
	if got.ExternalID == nil || *got.ExternalID != "hr-17" || got.Metadata["team"] != "risk" || got.CanonicalIdentifiers["email"] == "" {
		t.Fatalf("after PATCH: %+v", got)
	}
	list := decode[Page[EntityOut]](t, call(t, w.h, w.as(w.reader, "GET", "/v1/entities?external_id=hr-17", nil)))
	if len(list.Data) != 1 || list.Data[0].EntityID != a.EntityID {
		t.Fatalf("by external_id: %+v", list.Data)
	}
	taken := wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", "/v1/entities/"+b.EntityID, map[string]any{"external_id": "hr-17"})), 409, "EXTERNAL_ID_TAKEN")
	if taken.ExistingEntityID != a.EntityID {
		t.Fatalf("taken names %q, want %s", taken.ExistingEntityID, a.EntityID)
	}
	p := wantProblem(t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{
		"metadata": map[string]string{"bad\u0001key": "x"}, "canonical_identifiers": map[string]any{"ssn": "not-an-ssn"}})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 2 {
		t.Fatalf("one pass: %+v", p.Errors)
	}
	cleared := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "PATCH", path, map[string]any{"metadata": map[string]string{}, "external_id": ""})))
	if cleared.ExternalID != nil || len(cleared.Metadata) != 0 || cleared.CanonicalIdentifiers["email"] == "" {
		t.Fatalf("cleared: %+v", cleared)
	}
	again := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", path, nil)))
	if again.ExternalID != nil || len(again.Metadata) != 0 {
		t.Fatalf("read back: %+v", again)
	}
}
