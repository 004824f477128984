package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/tenant"
)

// nopLog is an entity.AuditLog for services whose reads these tests do not
// look at.
type nopLog struct{}

func (nopLog) Write(context.Context, audit.Event) error { return nil }

// uowSetup is a pool of one connection, so every unit of work reuses the
// connection the one before it left behind.
func uowSetup(t *testing.T) (testBundle, *entity.Service, tenant.ID) {
	t.Helper()
	b := setup(t, postgres.Options{Keyring: testRing(t, 1, 1), MaxConns: 1})
	a := seedTenant(t, b.url, "uow-"+uuid.NewString()[:8])
	return b, entity.NewService(b.db.Entities(), nopLog{}, nil), a
}

// assertCleanConnection checks that the pool's one connection is idle, in
// its session role, with no tenant, and usable.
func assertCleanConnection(t *testing.T, db *postgres.DB) {
	t.Helper()
	got, err := db.SessionSetting(context.Background(), "app.tenant_id")
	if err != nil || !strings.HasPrefix(got, "/") {
		t.Errorf("the connection after the unit of work carries tenant %q (%v), want none", got, err)
	}
	var idle bool
	err = db.ReadRow(context.Background(), tenant.Platform(), "SELECT current_user = $1", []any{postgres.PlatformRole},
		func(r pgx.Row) error { return r.Scan(&idle) })
	if err != nil || !idle {
		t.Errorf("a read on the connection after the unit of work: %v, %v", idle, err)
	}
}

// A create is one pipeline (settings, entity, blind indexes, audit row,
// implicit commit). Failing at its third statement must store nothing of
// the first two and leave the connection clean.
func TestUnitOfWork_PipelineFailingHalfwayStoresNothing(t *testing.T) {
	t.Parallel()
	b, svc, a := uowSetup(t)
	ctx := context.Background()
	first, err := svc.Create(ctx, tenant.Of(a), entity.NewEntity{Type: entity.Individual, Identifiers: map[string]string{"ssn": "123-45-6789"}})
	if err != nil {
		t.Fatal(err)
	}
	if first.CreatedAt.IsZero() {
		t.Error("created_at of a pipelined insert was not read back")
	}
	_, err = svc.Create(ctx, tenant.Of(a), entity.NewEntity{Type: entity.Individual, ExternalID: "second",
		Identifiers: map[string]string{"ssn": "123456789", "email": "x@example.com"}})
	var dup *entity.DuplicateError
	if !errors.As(err, &dup) || dup.Existing != first.ID || dup.Kind != "ssn" {
		t.Fatalf("duplicate create = %v, want a DuplicateError naming %s", err, first.ID)
	}
	if e := apperr.As(err); e == nil || e.Kind != apperr.Conflict || e.Code != "ENTITY_DUPLICATE" {
		t.Errorf("duplicate as apperr = %v, want 409 ENTITY_DUPLICATE", e)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE external_id = 'second'"); n != 0 {
		t.Errorf("the entity of the failed create was stored (%d rows)", n)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'entity.created' AND tenant_id = $1", a.UUID()); n != 1 {
		t.Errorf("%d entity.created events, want 1: the failed create's event must roll back with it", n)
	}
	assertCleanConnection(t, b.db)
}

// A change reads first (an explicit transaction), then sends its writes
// with COMMIT. Failing there must undo the writes sent before the failure
// in the same pipeline and roll the transaction back.
func TestUnitOfWork_ExplicitTransactionFailingAtCommitRollsBack(t *testing.T) {
	t.Parallel()
	b, svc, a := uowSetup(t)
	ctx := context.Background()
	holder, err := svc.Create(ctx, tenant.Of(a), entity.NewEntity{Type: entity.Individual, Identifiers: map[string]string{"ssn": "111-22-3333"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := svc.Create(ctx, tenant.Of(a), entity.NewEntity{Type: entity.Individual, Identifiers: map[string]string{"ssn": "444-55-6666"}})
	if err != nil {
		t.Fatal(err)
	}
	// UPDATE identifiers, DELETE blind indexes, INSERT blind indexes (fails), audit row, COMMIT.
	_, err = svc.Update(ctx, tenant.Of(a), other.ID, entity.Patch{Identifiers: entity.IdentifierPatch{"ssn": "111223333"}})
	var dup *entity.DuplicateError
	if !errors.As(err, &dup) || dup.Existing != holder.ID {
		t.Fatalf("taking another entity's SSN = %v, want a DuplicateError naming %s", err, holder.ID)
	}
	got, err := b.db.Entities().Entity(ctx, tenant.Of(a), other.ID)
	if err != nil || got.Identifiers["ssn"] != "444556666" {
		t.Errorf("after the failed change: %v, %v; want the old SSN", got.Identifiers, err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entity_identifiers WHERE entity_id = $1", other.ID); n != 1 {
		t.Errorf("%d blind-index rows, want the old one back (the DELETE before the failure rolled back)", n)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'entity.updated'"); n != 0 {
		t.Errorf("%d entity.updated events for a change that failed", n)
	}
	assertCleanConnection(t, b.db)
	// The same connection then does a whole change.
	if _, err := svc.Update(ctx, tenant.Of(a), other.ID, entity.Patch{Identifiers: entity.IdentifierPatch{"ssn": "777-88-9999"}}); err != nil {
		t.Fatalf("a change after the failed one: %v", err)
	}
}

// An error or a panic of the service's own, after statements were sent
// (and others queued), rolls everything back.
func TestUnitOfWork_CallerFailureRollsBack(t *testing.T) {
	t.Parallel()
	b, _, a := uowSetup(t)
	ctx := context.Background()
	store := b.db.Entities()
	boom := errors.New("boom")
	mk := func() *entity.Entity {
		return &entity.Entity{ID: uuid.Must(uuid.NewV7()), Tenant: a, Type: entity.Individual, Identifiers: map[string]string{}}
	}
	existing := mk()
	if err := store.InScope(ctx, tenant.Of(a), func(tx entity.Tx) error { return tx.Insert(ctx, existing) }); err != nil {
		t.Fatal(err)
	}
	for name, fail := range map[string]func() error{"Error": func() error { return boom }, "Panic": func() error { panic(boom) }} {
		queued := mk()
		func() {
			defer func() { _ = recover() }()
			err := store.InScope(ctx, tenant.Of(a), func(tx entity.Tx) error {
				if _, err := tx.Lock(ctx, existing.ID); err != nil { // opens the transaction
					return err
				}
				if _, err := tx.Erase(ctx, existing.ID); err != nil { // a read, the DELETE queued
					return err
				}
				if err := tx.Insert(ctx, queued); err != nil {
					return err
				}
				if _, err := tx.ProfileVisible(ctx, uuid.New()); err != nil { // sends the DELETE and the insert
					return err
				}
				return fail()
			})
			if !errors.Is(err, boom) {
				t.Errorf("%s: InScope = %v, want the caller's error", name, err)
			}
		}()
		if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", existing.ID); n != 1 {
			t.Errorf("%s: the erased entity is gone after a rollback", name)
		}
		if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", queued.ID); n != 0 {
			t.Errorf("%s: the inserted entity stayed after a rollback", name)
		}
		assertCleanConnection(t, b.db)
	}
}
