package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

func tenantID(u uuid.UUID) tenant.ID { return tenant.ID(u) }

// explain returns the plan of q run as the runtime role in tenant t's
// scope, the way the stores run it.
func explain(t *testing.T, b testBundle, tid uuid.UUID, q string, args ...any) string {
	t.Helper()
	var plan strings.Builder
	err := b.db.InTx(context.Background(), tenantID(tid), func(tx *postgres.Tx) error {
		rows, err := tx.Raw().Query(context.Background(), "EXPLAIN "+q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			plan.WriteString(line + "\n")
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// TestExplain_AuditQueries: with many events stored, the audit log's hot
// lookups use their indexes, never a sequential scan.
func TestExplain_AuditQueries(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	a := seedTenant(t, b.url, "explain-a")
	other := seedTenant(t, b.url, "explain-b")
	for _, tid := range []uuid.UUID{a.UUID(), other.UUID()} {
		pgtest.Exec(t, b.url, `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, actor_type, correlation_id, entity_id)
			SELECT gen_random_uuid(), now() - (i || ' seconds')::interval, $1, 'data.accessed', 'info', 'human',
			       gen_random_uuid(), CASE WHEN i % 10 = 0 THEN gen_random_uuid() END
			FROM generate_series(1, 30000) i`, tid)
	}
	pgtest.Exec(t, b.url, "ANALYZE audit_events")
	cases := map[string]struct {
		q    string
		args []any
	}{
		"ByCorrelation": {`SELECT audit_id FROM audit_events WHERE tenant_id = $1 AND correlation_id = $2 ORDER BY created_at DESC, audit_id DESC LIMIT 101`, []any{a.UUID(), uuid.New()}},
		"ByEntity":      {`SELECT audit_id FROM audit_events WHERE tenant_id = $1 AND entity_id = $2 ORDER BY created_at DESC, audit_id DESC LIMIT 101`, []any{a.UUID(), uuid.New()}},
		"NewestPage":    {`SELECT audit_id FROM audit_events WHERE tenant_id = $1 ORDER BY created_at DESC, audit_id DESC LIMIT 101`, []any{a.UUID()}},
		"ByID":          {`SELECT audit_id FROM audit_events WHERE tenant_id = $1 AND audit_id = $2 AND created_at BETWEEN now() - interval '1 second' AND now()`, []any{a.UUID(), uuid.New()}},
		// Verification's per-seal read (finding 16 of the hardening review).
		"SealRange": {`SELECT audit_id FROM audit_events WHERE tenant_id = $1 AND txid >= '3'::xid8 AND txid < '5'::xid8 ORDER BY txid, audit_id`, []any{a.UUID()}},
	}
	// Empty partitions are rightly scanned (they have no pages); the one
	// holding the data must be reached through an index.
	full := "Seq Scan on " + time.Now().UTC().Format("audit_events_y2006m01")
	for name, c := range cases {
		plan := explain(t, b, a.UUID(), c.q, c.args...)
		if strings.Contains(plan, full) || !strings.Contains(plan, "Index") {
			t.Errorf("%s does not use an index:\n%s", name, plan)
		}
	}
}

// TestExplain_EntityQueries: with data, the domain's hot lookups use
// their indexes (run as the runtime role, row-level security on).
func TestExplain_EntityQueries(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	a := seedTenant(t, b.url, "explain-ent")
	pgtest.Exec(t, b.url, `INSERT INTO entities (entity_id, tenant_id, entity_type)
		SELECT gen_random_uuid(), CASE WHEN i % 3 = 0 THEN $1::uuid ELSE '00000000-0000-0000-0000-000000000000' END, 'individual' FROM generate_series(1, 20000) i`, a.UUID())
	pgtest.Exec(t, b.url, `INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index)
		SELECT gen_random_uuid(), entity_id, tenant_id, 'ssn', sha256(entity_id::text::bytea) FROM entities`)
	pgtest.Exec(t, b.url, `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections, risk_score, connection_count)
		SELECT gen_random_uuid(), e.entity_id, $1, v, 'manual', '\x00', '\x00', '{}', 0
		FROM (SELECT entity_id FROM entities WHERE tenant_id = $1 LIMIT 2000) e, generate_series(1, 5) v`, a.UUID())
	pgtest.Exec(t, b.url, `INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, provider_id, check_type, data_origin, raw_response, normalized_data, acquired_at, fresh_until)
		SELECT gen_random_uuid(), entity_id, tenant_id, 'acme', (ARRAY['criminal','credit','osint'])[1 + i % 3], 'paid_external', '\x00', '\x00', now(), now()
		FROM (SELECT entity_id, tenant_id FROM entities WHERE tenant_id = $1 LIMIT 3000) e, generate_series(1, 3) i`, a.UUID())
	pgtest.Exec(t, b.url, "ANALYZE entities, entity_identifiers, entity_profiles, cached_data_sources")
	var e uuid.UUID
	err := b.db.InTx(context.Background(), a, func(tx *postgres.Tx) error {
		return tx.Raw().QueryRow(context.Background(), "SELECT entity_id FROM entity_profiles LIMIT 1").Scan(&e)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		q    string
		args []any
	}{
		"EntityByID":       {`SELECT entity_id FROM entities WHERE tenant_id = $2 AND entity_id = $1`, []any{e, a.UUID()}},
		"IdentifierLookup": {`SELECT entity_id FROM entity_identifiers WHERE tenant_id = $1 AND kind = 'ssn' AND blind_index = $2`, []any{a.UUID(), []byte("0123456789abcdef0123456789abcdef")}},
		"ProfileByVersion": {`SELECT profile_id FROM entity_profiles WHERE entity_id = $1 AND tenant_id = $2 AND version = 3`, []any{e, a.UUID()}},
		"LatestProfile":    {`SELECT profile_id FROM entity_profiles WHERE entity_id = $1 AND tenant_id = $2 ORDER BY version DESC LIMIT 1`, []any{e, a.UUID()}},
		"CacheByCheckType": {`SELECT cache_id FROM cached_data_sources WHERE entity_id = $1 AND check_type = 'criminal' AND (customer_id IS NULL OR customer_id = $2) ORDER BY cache_id DESC LIMIT 101`, []any{e, a.UUID()}},
	} {
		plan := explain(t, b, a.UUID(), c.q, c.args...)
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") {
			t.Errorf("%s does not use an index:\n%s", name, plan)
		}
	}
}
