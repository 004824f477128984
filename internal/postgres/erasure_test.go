package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/kms/kmstest"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// TestErasure_EndToEnd erases a tenant whose KEK lives in an HSM
// (SoftHSM2) or a KMS (the emulator), with a copy of the database taken
// before: afterwards neither the live database nor the copy, restored
// into another database, yields the tenant's plaintext, while the other
// tenant's data still reads from both (the control that the test could
// see plaintext); the tenant's audit events stay, their data shown as
// erased. Not parallel: the PKCS#11 library reads SOFTHSM2_CONF once.
func TestErasure_EndToEnd(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) kms.Provider{
		"pkcs11": func(t *testing.T) kms.Provider { return kmstest.SoftHSM(t) },
		"awskms": func(t *testing.T) kms.Provider { return kmstest.AWS(t) },
	} {
		t.Run(name, func(t *testing.T) { erasureEndToEnd(t, mk(t)) })
	}
}

func erasureEndToEnd(t *testing.T, p kms.Provider) {
	ctx := context.Background()
	b := setup(t, postgres.Options{KMS: p})
	w := runWriter(t, b.db)
	tenants := tenancy.NewService(b.db.Tenancy(), nil)
	ents := entity.NewService(b.db.Entities(), w, nil)

	mk := func(slug, ssn, name string) (tenant.ID, uuid.UUID) {
		t.Helper()
		c, err := tenants.Create(ctx, tenancy.NewTenant{Name: slug, Slug: slug, AdminKey: true})
		if err != nil {
			t.Fatal(err)
		}
		e, err := ents.Create(ctx, tenant.Of(c.Tenant.ID), entity.NewEntity{Type: "individual",
			Identifiers: map[string]string{"ssn": ssn, "full_name": name}, Metadata: map[string]string{"manager": name + "'s manager"}})
		if err != nil {
			t.Fatal(err)
		}
		return c.Tenant.ID, e.ID
	}
	gone, goneEntity := mk("erase-me", "123-45-6789", "Erin Erased")
	kept, keptEntity := mk("keep-me", "876-54-3210", "Kim Kept")

	// The copy an attacker (or a backup) keeps from before the erasure.
	dump := filepath.Join(t.TempDir(), "before.sql")
	if out, err := exec.Command("pg_dump", "--no-owner", "-f", dump, b.url).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}

	// A legal hold blocks the erasure; a wrong confirmation too.
	hold := true
	if _, err := tenants.Update(ctx, gone, tenant.Patch{LegalHold: &hold}); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.Erase(ctx, gone, "erase-me", "test"); !errors.Is(err, tenancy.ErrLegalHold) {
		t.Fatalf("erase under a legal hold = %v", err)
	}
	hold = false
	if _, err := tenants.Update(ctx, gone, tenant.Patch{LegalHold: &hold}); err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.Erase(ctx, gone, "keep-me", "test"); err == nil {
		t.Fatal("erased with another tenant's slug as confirmation")
	}

	e, err := tenants.Erase(ctx, gone, "erase-me", "test")
	if err != nil || !e.KeysDestroyed || !e.Done || e.RowsDeleted == 0 {
		t.Fatalf("erase = %+v, %v", e, err)
	}
	// KMS: every KEK of the tenant disabled at once and scheduled for
	// deletion after the shortest window (the emulator's, like AWS's, is 7
	// days; within it AWS could still restore the key).
	if aws, ok := p.(*kms.AWS); ok {
		vs, err := b.db.KEKVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Tenant != gone.UUID() {
				continue
			}
			if state, err := aws.State(ctx, kms.KEK{Provider: "awskms", ID: v.KeyID}); err != nil || state != "PendingDeletion" || v.DestroyedAt == nil {
				t.Errorf("KEK version %d after erasure: %q (destroyed_at %v), %v", v.Version, state, v.DestroyedAt, err)
			}
		}
	}
	if again, err := tenants.Erase(ctx, gone, "erase-me", "test"); err != nil || !again.Done {
		t.Fatalf("erasing again = %+v, %v; want done", again, err)
	}

	// Live database: the rows are gone, the other tenant is untouched,
	// the erased tenant's audit events are listed with their data erased.
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE tenant_id = $1", gone.UUID()); n != 0 {
		t.Errorf("%d entities of the erased tenant left", n)
	}
	if _, err := ents.Get(ctx, tenant.Of(kept), keptEntity, true); err != nil {
		t.Errorf("the other tenant's entity: %v", err)
	}
	recs, err := b.db.AuditEvents(ctx, gone, audit.Filter{}, 100)
	if err != nil || len(recs) == 0 {
		t.Fatalf("the erased tenant's audit events: %d, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Data["_erased"] != true {
			t.Errorf("audit event %s of the erased tenant: data %v, want shown as erased", r.Type, r.Data)
		}
	}

	// The copy, restored into another database: the erased tenant's
	// identifiers do not decrypt (its KEK is gone from the provider), the
	// other tenant's do.
	restored := pgtest.EmptyDB(t)
	if out, err := exec.Command("psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump, restored).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"123456789", "Erin Erased", "876543210", "Kim Kept", "manager"} {
		if bytes.Contains(raw, []byte(plain)) {
			t.Errorf("the dump holds %q in clear", plain)
		}
	}
	db2, err := postgres.Open(ctx, postgres.Options{URL: restored, KMS: p})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	identifiers := func(id uuid.UUID, tn tenant.ID) ([]byte, error) {
		conn, err := pgx.Connect(ctx, restored)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ct []byte
		if err := conn.QueryRow(ctx, "SELECT identifiers FROM entities WHERE entity_id = $1", id).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		return db2.DataKeys().Open(ctx, ct, fieldcrypt.AD{Table: "entities", Column: "identifiers", Row: id, Tenant: tn.UUID()})
	}
	if pt, err := identifiers(goneEntity, gone); err == nil || !fieldcrypt.KeyFailure(err) {
		t.Errorf("the erased tenant's identifiers from the copy: %q, %v; want a key failure", pt, err)
	}
	if pt, err := identifiers(keptEntity, kept); err != nil || !bytes.Contains(pt, []byte("876543210")) {
		t.Errorf("the other tenant's identifiers from the copy: %q, %v", pt, err)
	}
}

// runWriter runs an audit writer over db until the test ends.
func runWriter(t *testing.T, db *postgres.DB) *audit.Writer {
	t.Helper()
	w := audit.NewWriter(db, quietLog(), 1000, 100)
	ctx, stop := context.WithCancel(context.Background())
	go w.Run(ctx)
	t.Cleanup(func() { stop(); w.Wait() })
	return w
}

// An erasure interrupted after its keys were destroyed (the server
// stopped, the request's time ran out) is finished by the sweeper:
// FinishErasures deletes the rows left and the tenant, and records it.
func TestErasure_SweeperFinishesAnInterruptedErasure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, postgres.Options{Keyring: testRing(t, 1, 1)})
	w := runWriter(t, b.db)
	tenants := tenancy.NewService(b.db.Tenancy(), nil)
	c, err := tenants.Create(ctx, tenancy.NewTenant{Name: "Interrupted", Slug: "interrupted", AdminKey: true})
	if err != nil {
		t.Fatal(err)
	}
	id := c.Tenant.ID
	ents := entity.NewService(b.db.Entities(), w, nil)
	for i := range 3 {
		if _, err := ents.Create(ctx, tenant.Of(id), entity.NewEntity{Type: "individual",
			Identifiers: map[string]string{"email": string(rune('a'+i)) + "@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The first steps of an erasure, then nothing: the process died.
	pgtest.Exec(t, b.url, "UPDATE tenants SET active = false, erasure_started_at = now() WHERE tenant_id = $1", id.UUID())
	if _, err := b.db.Tenancy().DestroyTenantKeys(ctx, id); err != nil {
		t.Fatal(err)
	}
	pending, err := b.db.Tenancy().PendingErasures(ctx)
	if err != nil || len(pending) != 1 || pending[0] != id {
		t.Fatalf("pending erasures = %v, %v", pending, err)
	}
	if err := tenants.FinishErasures(ctx, b.db.Tenancy().PendingErasures); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT count(*) FROM entities WHERE tenant_id = $1", "SELECT count(*) FROM api_keys WHERE tenant_id = $1",
		"SELECT count(*) FROM tenants WHERE tenant_id = $1"} {
		if n := countRows(t, b.url, q, id.UUID()); n != 0 {
			t.Errorf("%s = %d after the sweep", q, n)
		}
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'tenant.erased' AND resource_id = $1", id.String()); n != 1 {
		t.Errorf("%d tenant.erased events, want the sweeper's one (stage done)", n)
	}
	if pending, _ := b.db.Tenancy().PendingErasures(ctx); len(pending) != 0 {
		t.Errorf("still pending: %v", pending)
	}
}
