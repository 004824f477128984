package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

func testRing(t *testing.T, active uint32, versions ...uint32) *fieldcrypt.Keyring {
	t.Helper()
	keys := map[uint32][]byte{}
	for _, v := range versions {
		keys[v] = bytes.Repeat([]byte{byte(v)}, 32)
	}
	k, err := fieldcrypt.NewKeyring(keys, active, bytes.Repeat([]byte{0xbb}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func column(table, col string) postgres.EncryptedColumn {
	for _, c := range postgres.EncryptedColumns() {
		if c.Table == table && c.Column == col {
			return c
		}
	}
	panic("no column " + table + "." + col)
}

type sealedRow struct {
	col       postgres.EncryptedColumn
	id        uuid.UUID
	tenant    uuid.UUID
	plaintext string
}

// seedEncrypted writes rows whose encrypted columns are sealed with ring,
// the way the stores do, and returns what each should decrypt to.
func seedEncrypted(t *testing.T, url string, ring *fieldcrypt.Keyring, tid tenant.ID, n int) []sealedRow {
	t.Helper()
	seal := func(c postgres.EncryptedColumn, id, ten uuid.UUID, pt string) []byte {
		ct, err := ring.Seal([]byte(pt), c.AD(id, ten))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	var out []sealedRow
	ten := tid.UUID()
	for i := range n {
		e := newUUID()
		pt := fmt.Sprintf(`{"ssn":"1234567%02d"}`, i)
		pgtest.Exec(t, url, "INSERT INTO entities (entity_id, tenant_id, entity_type, identifiers, metadata) VALUES ($1, $2, 'individual', $3, $4)",
			e, ten, seal(column("entities", "identifiers"), e, ten, pt), fmt.Sprintf(`{"employee_no": "E-%02d"}`, i))
		out = append(out, sealedRow{column("entities", "identifiers"), e, ten, pt})

		p := newUUID()
		f, cn, d := fmt.Sprintf("findings %d", i), fmt.Sprintf("connections %d", i), fmt.Sprintf("delta %d", i)
		pgtest.Exec(t, url, `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections, delta, risk_score, connection_count)
			VALUES ($1, $2, $3, 1, 'manual', $4, $5, $6, '{}', 0)`, p, e, ten,
			seal(column("entity_profiles", "findings"), p, ten, f), seal(column("entity_profiles", "connections"), p, ten, cn),
			seal(column("entity_profiles", "delta"), p, ten, d))
		out = append(out, sealedRow{column("entity_profiles", "findings"), p, ten, f},
			sealedRow{column("entity_profiles", "connections"), p, ten, cn}, sealedRow{column("entity_profiles", "delta"), p, ten, d})

		c := newUUID()
		raw, norm := fmt.Sprintf("raw %d", i), fmt.Sprintf("normalized %d", i)
		pgtest.Exec(t, url, `INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, customer_id, provider_id, check_type, data_origin,
			raw_response, normalized_data, acquired_at, fresh_until) VALUES ($1, $2, $3, $3, 'p', 'criminal', 'customer_provided', $4, $5, now(), now())`,
			c, e, ten, seal(column("cached_data_sources", "raw_response"), c, ten, raw), seal(column("cached_data_sources", "normalized_data"), c, ten, norm))
		out = append(out, sealedRow{column("cached_data_sources", "raw_response"), c, ten, raw},
			sealedRow{column("cached_data_sources", "normalized_data"), c, ten, norm})

		a := newUUID()
		pgtest.Exec(t, url, `INSERT INTO audit_events (audit_id, tenant_id, event_type, severity, actor_type, correlation_id, event_data)
			VALUES ($1, $2, 'entity.created', 'info', 'human', $1, $3)`, a, ten, seal(column("audit_events", "event_data"), a, ten, "{}"))
	}
	return out
}

func readCiphertext(t *testing.T, url string, r sealedRow) []byte {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ct []byte
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s = $1", r.col.Column, r.col.Table, r.col.ID)
	if err := conn.QueryRow(context.Background(), q, r.id).Scan(&ct); err != nil {
		t.Fatal(err)
	}
	return ct
}

func usage(t *testing.T, db *postgres.DB) map[string]int64 {
	t.Helper()
	u, err := db.KeyUsage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, x := range u {
		out[fmt.Sprintf("%s.%s@%d", x.Table, x.Column, x.Version)] = x.Count
	}
	return out
}

// TestRotateKeys_MovesEnvironmentDataToTenantKeys is the move to envelope
// encryption on data as the previous version wrote it (sealed by the
// environment keyring, seedEncrypted): interrupted and resumed, every
// rotatable value ends under its tenant's data key and opens without the
// environment keyring; audit data keeps its environment key; the tenant's
// blind key is the one the environment derived, so its lookups still work.
func TestRotateKeys_MovesEnvironmentDataToTenantKeys(t *testing.T) {
	t.Parallel()
	legacy := testRing(t, 1, 1)
	b := setup(t, postgres.Options{Keyring: legacy})
	ctx := context.Background()
	a := seedTenant(t, b.url, "rotation")
	rows := seedEncrypted(t, b.url, legacy, a, 5)

	if u := usage(t, b.db); u["entities.identifiers@1"] != 5 || u["audit_events.event_data@1"] != 5 || len(u) != 7 {
		t.Fatalf("usage before rotation = %v", u)
	}

	// Interrupted after the first batch (two entities' clear metadata
	// sealed).
	cctx, cancel := context.WithCancel(ctx)
	var calls int
	_, err := b.db.RotateKeys(cctx, 2, func(p postgres.RotationProgress) {
		calls++
		if p.Total != 35 || p.Done != 2 || p.Column != "metadata" {
			t.Errorf("progress = %+v, want 2 of 35 (metadata first)", p)
		}
		cancel()
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("interrupted rotation = %v after %d batches, want canceled after 1", err, calls)
	}
	dek, err := b.db.DataKeys().Active(ctx, a.UUID())
	if err != nil || dek < fieldcrypt.DEKBase {
		t.Fatalf("tenant data key = %d, %v", dek, err)
	}
	if u := usage(t, b.db); u[fmt.Sprintf("entities.sealed_metadata@%d", dek)] != 2 || u["entities.identifiers@1"] != 5 {
		t.Fatalf("usage after one batch = %v, want 2 metadata sealed under key %d", u, dek)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE metadata <> '{}'::jsonb"); n != 3 {
		t.Fatalf("%d entities with metadata in clear after one batch, want 3", n)
	}

	// Resumed: finishes the rest.
	var last postgres.RotationProgress
	res, err := b.db.RotateKeys(ctx, 2, func(p postgres.RotationProgress) { last = p })
	if err != nil || res.Rotated != 33 || len(res.Failures) != 0 {
		t.Fatalf("resumed rotation = %+v, %v; want the 33 values left", res, err)
	}
	if last.Done != 33 || last.Total != 33 {
		t.Errorf("final progress = %+v", last)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE metadata <> '{}'::jsonb"); n != 0 {
		t.Errorf("%d entities with metadata in clear after rotation", n)
	}
	u := usage(t, b.db)
	for _, c := range postgres.EncryptedColumns() {
		want := dek
		if c.Table == "webhook_endpoints" {
			continue // made after envelope encryption: never under the environment keyring
		}
		if c.Column == "sealed_metadata" {
			if u[fmt.Sprintf("entities.sealed_metadata@%d", dek)] != 5 {
				t.Errorf("metadata not all sealed under key %d: %v", dek, u)
			}
			continue
		}
		if !c.Rotatable {
			want = 1
		}
		if u[fmt.Sprintf("%s.%s@%d", c.Table, c.Column, want)] != 5 {
			t.Errorf("%s.%s not all under key %d: %v", c.Table, c.Column, want, u)
		}
	}

	// Without the environment keyring (the same provider): every moved
	// value still opens.
	local, err := kms.NewLocal(fieldcrypt.LocalMaster(legacy))
	if err != nil {
		t.Fatal(err)
	}
	db2, err := postgres.Open(ctx, postgres.Options{URL: b.url, KMS: local})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	for _, r := range rows {
		pt, err := db2.DataKeys().Open(ctx, readCiphertext(t, b.url, r), r.col.AD(r.id, r.tenant))
		if err != nil || string(pt) != r.plaintext {
			t.Errorf("%s.%s %s after rotation: %q, %v; want %q", r.col.Table, r.col.Column, r.id, pt, err, r.plaintext)
		}
	}
	var metaCT []byte
	readInto(t, b.url, "SELECT sealed_metadata FROM entities WHERE entity_id = $1", []any{rows[0].id}, &metaCT)
	if pt, err := db2.DataKeys().Open(ctx, metaCT, fieldcrypt.AD{Table: "entities", Column: "sealed_metadata", Row: rows[0].id, Tenant: a.UUID()}); err != nil ||
		string(pt) != `{"employee_no": "E-00"}` {
		t.Errorf("sealed metadata: %q, %v", pt, err)
	}
	bi, err := db2.DataKeys().BlindIndex(ctx, a.UUID(), "ssn", "123456700")
	if err != nil || !bytes.Equal(bi, legacy.BlindIndex(a.UUID(), "ssn", "123456700")) {
		t.Errorf("the migrated tenant's blind index changed: %v", err)
	}

	// Idempotent: nothing left to do.
	res, err = b.db.RotateKeys(ctx, 100, nil)
	if err != nil || res.Rotated != 0 || len(res.Failures) != 0 {
		t.Fatalf("second rotation = %+v, %v; want nothing to do", res, err)
	}
}

// A value moved to another row cannot be opened there: rotation reports
// it and rotates the rest.
func TestRotateKeys_ReportsTamperedValues(t *testing.T) {
	t.Parallel()
	legacy := testRing(t, 1, 1)
	b := setup(t, postgres.Options{Keyring: legacy})
	a := seedTenant(t, b.url, "rotation-tamper")
	rows := seedEncrypted(t, b.url, legacy, a, 2)
	// Copy entity 0's identifiers over entity 1's, as an attacker with
	// database access might.
	pgtest.Exec(t, b.url, "UPDATE entities SET identifiers = $1 WHERE entity_id = $2", readCiphertext(t, b.url, rows[0]), rows[6].id)
	res, err := b.db.RotateKeys(context.Background(), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || res.Failures[0].ID != rows[6].id || !errors.Is(res.Failures[0].Err, fieldcrypt.ErrAuthentication) {
		t.Fatalf("failures = %+v, want the copied value", res.Failures)
	}
	if res.Rotated != 13 {
		t.Errorf("rotated %d, want the other 11 and the 2 entities' metadata", res.Rotated)
	}
}
