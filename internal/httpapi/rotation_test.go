package httpapi

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
)

// TestRotation_EndToEnd writes through the API under key 1, rotates every
// column to key 2, then serves the same data from a server that has only
// key 2: identifiers, findings, deltas and cached responses all read back,
// and lookups by blind index still find the entity.
func TestRotation_EndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"ssn": "777-66-5555", "full_name": "Rotated"})
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", profileBody(0.3, "r1")))
	call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/cache", cacheBody("criminal", "paid_external")))

	k1, k2, blind := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 32)
	both, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: k1, 2: k2}, 2, blind)
	res, err := w.b.db.RotateKeys(context.Background(), both, 2, nil)
	if err != nil || len(res.Failures) != 0 || res.Rotated < 6 {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	only2, _ := fieldcrypt.NewKeyring(map[uint32][]byte{2: k2}, 2, blind)
	db2, err := postgres.Open(context.Background(), postgres.Options{URL: w.b.dbURL, Keyring: only2})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	d := overDB(w.b.deps, db2, only2, w.b.signer.Public())
	d.Now = time.Now
	h2 := NewServer(d)

	got := decode[EntityOut](t, call(t, h2, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"?reveal=true", nil)))
	if got.CanonicalIdentifiers["ssn"] != "777665555" {
		t.Fatalf("identifiers after rotation without key 1: %v", got.CanonicalIdentifiers)
	}
	p := decode[ProfileOut](t, call(t, h2, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/profiles/latest", nil)))
	if len(p.Findings) != 1 || p.Delta == nil || len(p.Delta.NewFindings) != 1 {
		t.Fatalf("profile after rotation: %+v", p)
	}
	c := decode[Page[CacheOut]](t, call(t, h2, w.as(w.admin, "GET", "/v1/entities/"+e.EntityID+"/cache?include_raw=true", nil)))
	if len(c.Data) != 1 || string(c.Data[0].RawResponse) != "secret raw" {
		t.Fatalf("cache after rotation: %+v", c.Data)
	}
	found := decode[struct{ Data []EntityOut }](t, call(t, h2, w.as(w.admin, "POST", "/v1/entities/search", map[string]any{"kind": "ssn", "value": "777-66-5555"})))
	if len(found.Data) != 1 {
		t.Fatal("blind-index lookup broke with rotation")
	}
}

// TestRotation_AuditEventsKeepTheirKey: audit events are sealed and never
// re-encrypted; without their key they are listed with the reason instead
// of failing the whole read.
func TestRotation_AuditEventsKeepTheirKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.create(t, w.admin, map[string]string{"full_name": "Audited"})
	only2, _ := fieldcrypt.NewKeyring(map[uint32][]byte{2: bytes.Repeat([]byte{8}, 32)}, 2, bytes.Repeat([]byte{9}, 32))
	db2, err := postgres.Open(context.Background(), postgres.Options{URL: w.b.dbURL, Keyring: only2})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	d := overDB(w.b.deps, db2, only2, w.b.signer.Public())
	rec := call(t, NewServer(d), w.as(w.admin, "GET", "/v1/audit-events?event_type=entity.created", nil))
	page := decode[Page[AuditEventOut]](t, rec)
	if rec.Code != 200 || len(page.Data) != 1 || page.Data[0].EventData["_unreadable"] == nil {
		t.Fatalf("audit read without the old key: %d %s", rec.Code, rec.Body)
	}
}
