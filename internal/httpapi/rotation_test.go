package httpapi

import (
	"context"
	"testing"

	"github.com/elile/elile/internal/fieldcrypt"
)

// TestRotation_DataKey writes through the API, gives the tenant a new data
// key and re-encrypts every column to it: identifiers, findings, deltas and
// cached responses all read back, every value carries the new key's id,
// and lookups by blind index still find the entity (the blind key does not
// rotate). Audit events keep the key they were written with and still read.
func TestRotation_DataKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	e := w.create(t, w.admin, map[string]string{"ssn": "777-66-5555", "full_name": "Rotated"})
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", profileBody(0.3, "r1")))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/cache", cacheBody("criminal", "paid_external")))

	tid := w.a.UUID()
	old, err := w.b.db.DataKeys().Active(ctx, tid)
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.b.db.RotateDataKey(ctx, tid)
	if err != nil || id <= old {
		t.Fatalf("rotate data key: %d (was %d), %v", id, old, err)
	}
	res, err := w.b.db.RotateKeys(ctx, 2, nil)
	if err != nil || len(res.Failures) != 0 || res.Rotated < 6 {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	if n, err := w.b.db.StaleValues(ctx); err != nil || n != 0 {
		t.Fatalf("values left under an old key: %d, %v", n, err)
	}
	usage, err := w.b.db.KeyUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		if u.Version == old && u.Table != "audit_events" {
			t.Errorf("%s.%s still has %d values under key %d", u.Table, u.Column, u.Count, old)
		}
		if u.Version < fieldcrypt.DEKBase {
			t.Errorf("%s.%s has %d values under environment key %d", u.Table, u.Column, u.Count, u.Version)
		}
	}

	got := decode[EntityOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"?reveal=true", nil)))
	if got.CanonicalIdentifiers["ssn"] != "777665555" {
		t.Fatalf("identifiers after rotation: %v", got.CanonicalIdentifiers)
	}
	p := decode[ProfileOut](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/profiles/latest", nil)))
	if len(p.Findings) != 1 || p.Delta == nil || len(p.Delta.NewFindings) != 1 {
		t.Fatalf("profile after rotation: %+v", p)
	}
	c := decode[Page[CacheOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/cache?include_raw=true", nil)))
	if len(c.Data) != 1 || string(c.Data[0].RawResponse) != "secret raw" {
		t.Fatalf("cache after rotation: %+v", c.Data)
	}
	found := decode[struct{ Data []EntityOut }](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/search", map[string]any{"kind": "ssn", "value": "777-66-5555"})))
	if len(found.Data) != 1 {
		t.Fatal("blind-index lookup broke with rotation")
	}
	rec := call(t, w.h, w.as(w.admin, "GET", "/v1/audit-events?event_type=entity.created", nil))
	page := decode[Page[AuditEventOut]](t, rec)
	if rec.Code != 200 || len(page.Data) != 1 || page.Data[0].EventData["_unreadable"] != nil {
		t.Fatalf("audit event under the old data key: %d %s", rec.Code, rec.Body)
	}
}
