package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/kms/kmstest"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// TestKEKRotation_AndBYOK on the KMS emulator (distinct keys per version):
// a KEK rotation re-wraps every data key under a new KMS key without
// touching a ciphertext, is idempotent, and finishes an interrupted run; a
// tenant brings its own key (re-wrapped online; a key that does not exist
// is a 422 on the field), and its erasure leaves that key to the tenant.
func TestKEKRotation_AndBYOK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := kmstest.AWS(t)
	b := setup(t, postgres.Options{KMS: p})
	w := runWriter(t, b.db)
	tenants := tenancy.NewService(b.db.Tenancy(), nil)
	c, err := tenants.Create(ctx, tenancy.NewTenant{Name: "Rotating", Slug: "rotating"})
	if err != nil {
		t.Fatal(err)
	}
	id := c.Tenant.ID
	ents := entity.NewService(b.db.Entities(), w, nil)
	e, err := ents.Create(ctx, tenant.Of(id), entity.NewEntity{Type: "individual", Identifiers: map[string]string{"ssn": "123-45-6789"}})
	if err != nil {
		t.Fatal(err)
	}
	// Read through a server that has nothing in memory.
	fresh := func() *postgres.DB {
		t.Helper()
		db, err := postgres.Open(ctx, postgres.Options{URL: b.url, KMS: p})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	readBack := func(db *postgres.DB) {
		t.Helper()
		got, err := entity.NewService(db.Entities(), w, nil).Get(ctx, tenant.Of(id), e.ID, true)
		if err != nil || got.Identifiers["ssn"] != "123456789" {
			t.Fatalf("read back: %v, %v", got.Identifiers, err)
		}
	}
	versions := func() map[int]int64 {
		t.Helper()
		vs, err := b.db.KEKVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int]int64{}
		for _, v := range vs {
			if v.Tenant == id.UUID() {
				out[v.Version] = v.DataKeys
			}
		}
		return out
	}
	before := countRows(t, b.url, "SELECT count(*) FROM entities WHERE identifiers = (SELECT identifiers FROM entities WHERE entity_id = $1)", e.ID)

	res, err := b.db.RotateKEKs(ctx, 0, nil)
	if err != nil || res.Rotated < 2 || res.Rewraps < 4 {
		t.Fatalf("rotate-kek = %+v, %v; want the tenant and the platform rotated", res, err)
	}
	if v := versions(); v[1] != 0 || v[2] != 2 {
		t.Fatalf("KEK versions after rotation (version: data keys) = %v", v)
	}
	readBack(fresh())
	if after := countRows(t, b.url, "SELECT count(*) FROM entities WHERE identifiers = (SELECT identifiers FROM entities WHERE entity_id = $1)", e.ID); after != before {
		t.Error("a ciphertext changed with a KEK rotation")
	}
	if res, err := b.db.RotateKEKs(ctx, 3600e9, nil); err != nil || res.Rotated != 0 || res.Finished != 0 {
		t.Fatalf("rotate-kek again = %+v, %v; want nothing to do", res, err)
	}

	// Interrupted: a data key left under the old version (as if the run
	// stopped before it) is finished by the next run, whatever the age.
	var blindID int64
	var v2Wrapped []byte
	readInto(t, b.url, `SELECT key_id, wrapped FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'blind'`, []any{id.UUID()}, &blindID, &v2Wrapped)
	if _, err := b.db.NewKEKVersion(ctx, id.UUID(), ""); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, b.url, `UPDATE tenant_keys SET kek_version = 2, wrapped = $2 WHERE key_id = $1`, blindID, v2Wrapped)
	if v := versions(); v[2] != 1 || v[3] != 1 {
		t.Fatalf("the simulated interruption: %v", v)
	}
	if res, err := b.db.RotateKEKs(ctx, 3600e9, nil); err != nil || res.Rotated != 0 || res.Finished != 1 || res.Rewraps != 1 {
		t.Fatalf("rotate-kek after an interruption = %+v, %v; want the one key finished", res, err)
	}
	if v := versions(); v[3] != 2 {
		t.Fatalf("after finishing: %v", v)
	}
	readBack(fresh())

	// Bring your own key: a key the tenant made in KMS.
	own, err := p.CreateKEK(ctx, "customer-managed")
	if err != nil {
		t.Fatal(err)
	}
	bad := "alias/does-not-exist"
	if _, err := tenants.Update(ctx, id, tenant.Patch{KEKRef: &bad}); len(apperr.FieldsOf(err)) != 1 {
		t.Fatalf("BYOK with a missing key = %v, want a 422 on byok_key", err)
	}
	elileMade, err := b.db.KEKVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tenants.Update(ctx, id, tenant.Patch{KEKRef: &own.ID})
	if err != nil || !got.BYOK {
		t.Fatalf("BYOK = %+v, %v", got, err)
	}
	readBack(fresh())
	// The KEKs elile made for the tenant are destroyed: only the tenant's
	// own key guards its data now, in backups from before too.
	for _, v := range elileMade {
		if v.Tenant != id.UUID() {
			continue
		}
		if state, err := p.State(ctx, kms.KEK{Provider: "awskms", ID: v.KeyID}); err != nil || state != "PendingDeletion" {
			t.Errorf("elile's KEK version %d after the switch to the tenant's key: %q, %v", v.Version, state, err)
		}
	}

	// A tenant can bring its key at creation, and a missing key refuses
	// the creation (422 on byok_key) and leaves nothing.
	theirs, err := p.CreateKEK(ctx, "customer-managed-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.Create(ctx, tenancy.NewTenant{Name: "Bad", Slug: "byok-bad", KEKRef: bad}); len(apperr.FieldsOf(err)) != 1 {
		t.Fatalf("creation with a missing key = %v", err)
	}
	c2, err := tenants.Create(ctx, tenancy.NewTenant{Name: "Own key", Slug: "byok-own", KEKRef: theirs.ID})
	if err != nil || !c2.Tenant.BYOK {
		t.Fatalf("creation with the tenant's key = %+v, %v", c2.Tenant, err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND byok AND key_id = $2", c2.Tenant.ID.UUID(), theirs.ID); n != 1 {
		t.Error("the tenant's own key is not its KEK")
	}

	// Erasure destroys the KEKs elile made; the tenant's own key is the
	// tenant's to destroy, and the erasure says so.
	er, err := tenants.Erase(ctx, id, "rotating", "test")
	if err != nil || er.KeysDestroyed || !er.Done {
		t.Fatalf("erase of a BYOK tenant = %+v, %v", er, err)
	}
	if state, err := p.State(ctx, own); err != nil || state != "Enabled" {
		t.Errorf("the tenant's own key after erasure: %q, %v; want untouched", state, err)
	}
	if _, err := fresh().DataKeys().Active(ctx, id.UUID()); !fieldcrypt.KeyFailure(err) {
		t.Errorf("the erased tenant's keys = %v, want destroyed", err)
	}
}

func readInto(t *testing.T, url, q string, args []any, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), q, args...).Scan(dest...); err != nil {
		t.Fatal(err)
	}
}
