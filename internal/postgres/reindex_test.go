package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/tenant"
)

// TestReindex_NewBlindKeyKeepsUniqueness: a tenant whose blind key the
// environment derived (it existed before envelope encryption) gets a
// random one. While the re-index runs, a duplicate is refused whichever
// key indexed the existing value; afterwards lookups find everything, the
// indexes are no longer the environment's, and the old key is retired.
func TestReindex_NewBlindKeyKeepsUniqueness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	legacy := testRing(t, 1, 1)
	b := setup(t, postgres.Options{Keyring: legacy, KeyMetaTTL: 50 * time.Millisecond})
	w := runWriter(t, b.db)
	ents := entity.NewService(b.db.Entities(), w, nil)
	a := seedTenant(t, b.url, "reindex") // no keys yet: its blind key will be the derived one
	sc := tenant.Of(a)
	mk := func(ssn string) (entity.Entity, error) {
		return ents.Create(ctx, sc, entity.NewEntity{Type: "individual", Identifiers: map[string]string{"ssn": ssn, "email": ssn + "@example.com"}})
	}
	var made []entity.Entity
	for _, ssn := range []string{"111-22-0001", "111-22-0002", "111-22-0003"} {
		e, err := mk(ssn)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, e)
	}
	derived := legacy.BlindIndex(a.UUID(), "ssn", "111220001")
	if n := countRows(t, b.url, "SELECT count(*) FROM entity_identifiers WHERE blind_index = $1", derived); n != 1 {
		t.Fatalf("the tenant's blind index is not the environment's before the re-index (%d rows)", n)
	}

	// The re-index stops after its key exists and the settle wait: the
	// window where both keys are live.
	errStop := errors.New("stop here")
	_, err := b.db.Reindex(ctx, a.UUID(), 1, func(d time.Duration) error {
		time.Sleep(d)
		return errStop
	}, nil)
	if !errors.Is(err, errStop) {
		t.Fatalf("re-index = %v", err)
	}
	var dup *entity.DuplicateError
	if _, err := mk("111-22-0001"); !errors.As(err, &dup) || dup.Existing != made[0].ID {
		t.Fatalf("duplicate of an old-key value during the re-index = %v", err)
	}
	during, err := mk("111-22-0004") // indexed under both keys
	if err != nil {
		t.Fatal(err)
	}

	// Finish (interrupted after one batch first).
	var calls int
	res, err := b.db.Reindex(ctx, a.UUID(), 1, func(time.Duration) error { return nil }, func(int) { calls++ })
	if err != nil || res.Indexed != 3 || calls != 3 || res.Dropped == 0 {
		t.Fatalf("re-index = %+v (%d batches), %v; want the 3 entities from before indexed", res, calls, err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entity_identifiers WHERE blind_index = $1", derived); n != 0 {
		t.Error("the environment-derived index is still stored")
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'blind' AND retired_at IS NOT NULL", a.UUID()); n != 1 {
		t.Errorf("%d retired blind keys, want 1", n)
	}
	for _, e := range append(made, during) {
		found, err := ents.Search(ctx, sc, "ssn", e.Identifiers["ssn"])
		if err != nil || len(found) != 1 || found[0].ID != e.ID {
			t.Errorf("search %s after the re-index = %d, %v", e.Identifiers["ssn"], len(found), err)
		}
	}
	if _, err := mk("111-22-0002"); !errors.As(err, &dup) {
		t.Errorf("duplicate after the re-index = %v", err)
	}
	bi, err := b.db.DataKeys().BlindIndex(ctx, a.UUID(), "ssn", "111220001")
	if err != nil || bytes.Equal(bi, derived) {
		t.Errorf("the tenant's blind index is still the environment's: %v", err)
	}
}
