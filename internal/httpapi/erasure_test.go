package httpapi

import (
	"testing"
)

// TestTenantErasure_Route: only a platform admin erases, with the tenant's
// slug as confirmation and no legal hold; afterwards the tenant's
// credentials are refused, its entities gone, the other tenant untouched,
// and the platform's audit chain records the erasure. (The local provider
// cannot destroy keys: keys_destroyed says so. The HSM and KMS providers
// are erased end to end, with a database copy, in package postgres.)
func TestTenantErasure_Route(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.create(t, w.admin, map[string]string{"ssn": "111-22-3333", "full_name": "Gone Soon"})
	kept := w.create(t, w.oAdm, map[string]string{"ssn": "111-22-3333", "full_name": "Stays"})
	path := "/v1/tenants/" + w.a.String()

	if rec := call(t, w.h, w.as(w.admin, "DELETE", path, map[string]any{"confirm": "world-a"})); rec.Code != 403 {
		t.Fatalf("a tenant admin erasing its tenant: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, w.h, w.as(w.platform, "DELETE", path, map[string]any{"confirm": "world-b"})); rec.Code != 422 {
		t.Fatalf("erase with another slug: %d %s", rec.Code, rec.Body)
	}
	rec := call(t, w.h, w.as(w.platform, "PATCH", path, map[string]any{"legal_hold": true}))
	if rec.Code != 200 || !decode[TenantOut](t, rec).LegalHold {
		t.Fatalf("legal hold: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, call(t, w.h, w.as(w.platform, "DELETE", path, map[string]any{"confirm": "world-a"})), 409, "LEGAL_HOLD")
	call(t, w.h, w.as(w.platform, "PATCH", path, map[string]any{"legal_hold": false}))

	rec = call(t, w.h, w.as(w.platform, "DELETE", path, map[string]any{"confirm": "world-a"}))
	out := decode[ErasureOut](t, rec)
	if rec.Code != 200 || !out.Done || out.KeysDestroyed || out.RowsDeleted == 0 {
		t.Fatalf("erase: %d %s", rec.Code, rec.Body)
	}
	if code := call(t, w.h, w.as(w.admin, "GET", "/v1/entities", nil)).Code; code != 401 && code != 403 {
		t.Errorf("the erased tenant's key still works: %d", code)
	}
	if rec := call(t, w.h, w.as(w.platform, "GET", path, nil)); rec.Code != 404 {
		t.Errorf("the erased tenant: %d", rec.Code)
	}
	if n := countWhere(t, w.b, "SELECT count(*) FROM entities WHERE tenant_id = $1", w.a.UUID()); n != 0 {
		t.Errorf("%d entities of the erased tenant left", n)
	}
	if got := call(t, w.h, w.as(w.oAdm, "GET", "/v1/entities/"+kept.EntityID+"?reveal=true", nil)); got.Code != 200 {
		t.Errorf("the other tenant's entity: %d", got.Code)
	}
	if n := countWhere(t, w.b, "SELECT count(*) FROM audit_events WHERE tenant_id = '00000000-0000-0000-0000-000000000000' AND event_type = 'tenant.erased' AND resource_id = $1", w.a.String()); n != 2 {
		t.Errorf("%d tenant.erased events on the platform chain, want 2 (started, done)", n)
	}
}
