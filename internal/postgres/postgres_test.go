package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

type testBundle struct {
	url string
	db  *postgres.DB
}

func setup(t *testing.T, o postgres.Options) testBundle {
	t.Helper()
	url := pgtest.DB(t)
	o.URL = url
	db, err := postgres.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	return testBundle{url: url, db: db}
}

func newUUID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// seedTenant inserts a tenant as the schema owner and returns its id.
func seedTenant(t *testing.T, url, slug string) tenant.ID {
	t.Helper()
	id := tenant.NewID()
	pgtest.Exec(t, url, "INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, $2, $2)", id.UUID(), slug)
	return id
}

// seedEntity inserts an entity (tenant nil: shared) with one identifier row.
func seedEntity(t *testing.T, url string, tid *tenant.ID) uuid.UUID {
	t.Helper()
	id := newUUID()
	tv := uuid.Nil // the platform's: a shared entity
	if tid != nil {
		tv = tid.UUID()
	}
	pgtest.Exec(t, url, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", id, tv)
	pgtest.Exec(t, url, "INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index) VALUES ($1, $2, $3, 'ssn', $4)",
		newUUID(), id, tv, []byte(strings.Repeat("x", 16)+id.String()[:16]))
	return id
}

func tenantsIn(t *testing.T, tx *postgres.Tx, query string) []string {
	t.Helper()
	rows, err := tx.Raw().Query(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id *uuid.UUID
		err := r.Scan(&id)
		if id == nil || *id == uuid.Nil { // a cache row's customer; the platform's rows
			return "shared", err
		}
		return id.String(), err
	})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return got
}

func TestMigrations_UpDownUp(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyDB(t)
	ctx := context.Background()
	m, err := postgres.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	applied, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if len(applied) == 0 || applied[len(applied)-1] != postgres.LatestVersion() {
		t.Fatalf("Up applied %v, want up to %d", applied, postgres.LatestVersion())
	}
	wantTables := []string{"api_keys", "audit_events", "audit_pending", "audit_retention", "audit_retention_floor", "audit_seals", "cached_data_sources", "entities",
		"entity_identifiers", "entity_profiles", "entity_relations", "key_fingerprints", "river_job", "river_leader", "river_migration", "river_notification", "river_queue",
		"server_instances", "tenant_keks", "tenant_keys", "tenants", "webhook_deliveries", "webhook_endpoints", "webhook_events"}
	if diff := cmp.Diff(wantTables, tables(t, url)); diff != "" {
		t.Fatalf("tables after Up (-want +got):\n%s", diff)
	}

	down, err := m.DownTo(ctx, 0)
	if err != nil {
		t.Fatalf("DownTo(0): %v", err)
	}
	if len(down) != len(applied) {
		t.Fatalf("DownTo(0) rolled back %v, want %v", down, applied)
	}
	if got := tables(t, url); len(got) != 0 {
		t.Fatalf("tables after down to zero: %v, want none", got)
	}
	cur, latest, err := m.Versions(ctx)
	if err != nil || cur != 0 || latest != postgres.LatestVersion() {
		t.Fatalf("Versions = %d, %d, %v; want 0, %d", cur, latest, err, postgres.LatestVersion())
	}

	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("Up again: %v", err)
	}
	if diff := cmp.Diff(wantTables, tables(t, url)); diff != "" {
		t.Fatalf("tables after Up again (-want +got):\n%s", diff)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Applied || s.At == "" || (!strings.HasSuffix(s.Name, ".sql") && !strings.Contains(s.Name, ".go (River")) {
			t.Errorf("status %+v: want applied .sql (or River's .go) migration with a time", s)
		}
	}
	// Redo: the latest migration down and up again.
	v, err := m.Down(ctx)
	if err != nil || v != postgres.LatestVersion() {
		t.Fatalf("Down = %d, %v", v, err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
}

func tables(t *testing.T, url string) []string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND c.relname <> 'goose_db_version' ORDER BY 1`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRLS_Catalog fails when any table with a tenant column lacks enabled,
// forced row-level security with at least one policy, so a new table cannot
// forget it. Partitions are reached only through their parent: the runtime
// roles must have no privilege on them.
func TestRLS_Catalog(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	conn, err := pgx.Connect(context.Background(), b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
		       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
		              AND a.attname IN ('tenant_id', 'customer_id'))
		ORDER BY 1`)
	type rls struct {
		Name            string
		Enabled, Forced bool
		Policies        int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rls])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 9 {
		t.Fatalf("found %d tenant tables, want at least 9: %+v", len(got), got)
	}
	for _, r := range got {
		if !r.Enabled || !r.Forced || r.Policies == 0 {
			t.Errorf("table %s: rls enabled=%v forced=%v policies=%d; want enabled, forced, ≥1 policy", r.Name, r.Enabled, r.Forced, r.Policies)
		}
	}

	rows, _ = conn.Query(context.Background(), `
		SELECT c.relname, r.rolname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN (VALUES ('elile_app'), ('elile_platform'), ('elile_audit_writer')) AS r(rolname)
		WHERE n.nspname = 'public' AND c.relispartition
		  AND has_table_privilege(r.rolname, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')`)
	leaks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Table, Role string }])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) != 0 {
		t.Errorf("runtime roles have privileges on partitions: %+v", leaks)
	}
}

func TestRuntimeRole(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ten := seedTenant(t, b.url, "role-check")
	err := b.db.InTx(context.Background(), ten, func(tx *postgres.Tx) error {
		var user string
		var super, bypass bool
		var owned int
		err := tx.Raw().QueryRow(context.Background(), `
			SELECT current_user, r.rolsuper, r.rolbypassrls,
			       (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)
			FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &super, &bypass, &owned)
		if err != nil {
			return err
		}
		if user != postgres.AppRole || super || bypass || owned != 0 {
			t.Errorf("runtime role %s: superuser=%v bypassrls=%v owns %d relations; want %s, false, false, 0",
				user, super, bypass, owned, postgres.AppRole)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRLS_DatabaseAloneIsolatesTenants runs deliberately unfiltered queries:
// only row-level security stands between the tenants.
func TestRLS_DatabaseAloneIsolatesTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "tenant-a")
	bt := seedTenant(t, b.url, "tenant-b")
	ea := seedEntity(t, b.url, &a)
	eb := seedEntity(t, b.url, &bt)
	es := seedEntity(t, b.url, nil)
	for _, e := range []struct {
		entity uuid.UUID
		tenant tenant.ID
	}{{ea, a}, {eb, bt}} {
		pgtest.Exec(t, b.url, `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections, risk_score, connection_count)
			VALUES ($1, $2, $3, 1, 'manual', '\x00', '\x00', '{}', 0)`, newUUID(), e.entity, e.tenant.UUID())
	}
	// Cache rows: paid_external on A's entity, B's customer_provided row on
	// the shared entity, paid_external on the shared entity.
	insCache := `INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, customer_id, provider_id, check_type, data_origin,
		raw_response, normalized_data, acquired_at, fresh_until) VALUES ($1, $2, $3, $4, 'p', 'criminal', $5, '\x00', '\x00', now(), now())`
	pgtest.Exec(t, b.url, insCache, newUUID(), ea, a.UUID(), nil, "paid_external")
	pgtest.Exec(t, b.url, insCache, newUUID(), es, uuid.Nil, bt.UUID(), "customer_provided")
	pgtest.Exec(t, b.url, insCache, newUUID(), es, uuid.Nil, nil, "paid_external")

	t.Run("SeesOwnAndShared", func(t *testing.T) {
		err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
			want := []string{a.String(), "shared"}
			for _, table := range []string{"entities", "entity_identifiers"} {
				got := tenantsIn(t, tx, "SELECT tenant_id FROM "+table+" ORDER BY tenant_id = '00000000-0000-0000-0000-000000000000', tenant_id")
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s seen by A (-want +got):\n%s", table, diff)
				}
			}
			if got := tenantsIn(t, tx, "SELECT tenant_id FROM entity_profiles"); !cmp.Equal(got, []string{a.String()}) {
				t.Errorf("profiles seen by A: %v, want only A's", got)
			}
			if got := tenantsIn(t, tx, "SELECT tenant_id FROM tenants"); !cmp.Equal(got, []string{a.String()}) {
				t.Errorf("tenants seen by A: %v, want only A", got)
			}
			// A sees its paid row and the shared paid row, not B's customer row.
			got := tenantsIn(t, tx, "SELECT customer_id FROM cached_data_sources")
			if !cmp.Equal(got, []string{"shared", "shared"}) {
				t.Errorf("cache rows seen by A: customer ids %v, want two paid_external rows", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = b.db.InTx(ctx, bt, func(tx *postgres.Tx) error {
			got := tenantsIn(t, tx, "SELECT customer_id FROM cached_data_sources ORDER BY customer_id NULLS LAST")
			if !cmp.Equal(got, []string{bt.String(), "shared"}) {
				t.Errorf("cache rows seen by B: %v, want B's customer row and the shared paid row", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("NoTenantSeesNothing", func(t *testing.T) {
		err := b.db.InNoTenantTx(ctx, func(tx *postgres.Tx) error {
			for _, table := range []string{"tenants", "api_keys", "entity_profiles", "audit_events", "audit_seals"} {
				if got := tenantsIn(t, tx, "SELECT tenant_id FROM "+table); len(got) != 0 {
					t.Errorf("%s without a tenant: %d rows, want 0", table, len(got))
				}
			}
			// Shared rows stay visible, and nothing else.
			if got := tenantsIn(t, tx, "SELECT tenant_id FROM entities"); !cmp.Equal(got, []string{"shared"}) {
				t.Errorf("entities without a tenant: %v, want only shared", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("CannotWriteForAnotherTenant", func(t *testing.T) {
		cases := []struct {
			name string
			sql  string
			args []any
		}{
			{"InsertEntityForB", "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", []any{newUUID(), bt.UUID()}},
			{"InsertSharedEntity", "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, '00000000-0000-0000-0000-000000000000', 'individual')", []any{newUUID()}},
			{"MoveOwnEntityToB", "UPDATE entities SET tenant_id = $1 WHERE entity_id = $2", []any{bt.UUID(), ea}},
			{"InsertProfileForB", `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections, risk_score, connection_count)
				VALUES ($1, $2, $3, 2, 'manual', '\x00', '\x00', '{}', 0)`, []any{newUUID(), eb, bt.UUID()}},
			{"InsertAuditForB", `INSERT INTO audit_events (audit_id, tenant_id, event_type, severity, actor_type, correlation_id)
				VALUES ($1, $2, 'data.accessed', 'info', 'human', $1)`, []any{newUUID(), bt.UUID()}},
			{"InsertCustomerCacheAsB", insCache, []any{newUUID(), es, nil, bt.UUID(), "customer_provided"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
					_, err := tx.Raw().Exec(ctx, c.sql, c.args...)
					return err
				})
				// Row-level security, or the tenant-reference triggers, which
				// run first for the rows they guard (see migration 00005).
				if err == nil || !strings.Contains(err.Error(), "row-level security") &&
					!strings.Contains(err.Error(), "another tenant") && !strings.Contains(err.Error(), "tenant never changes") {
					t.Fatalf("err = %v, want a row-level security violation", err)
				}
			})
		}
	})

	t.Run("CannotChangeOthersOrShared", func(t *testing.T) {
		err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
			for _, q := range []struct {
				sql string
				id  uuid.UUID
			}{
				{"UPDATE entities SET external_id = 'x' WHERE entity_id = $1", eb},
				{"DELETE FROM entities WHERE entity_id = $1", eb},
				{"UPDATE entities SET external_id = 'x' WHERE entity_id = $1", es},
				{"DELETE FROM entities WHERE entity_id = $1", es},
				{"DELETE FROM entity_identifiers WHERE entity_id = $1", es},
			} {
				tag, err := tx.Raw().Exec(ctx, q.sql, q.id)
				if err != nil {
					return err
				}
				if tag.RowsAffected() != 0 {
					t.Errorf("%s (%s): %d rows affected, want 0", q.sql, q.id, tag.RowsAffected())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestRLS_PooledConnectionDoesNotLeakTenant uses a one-connection pool, so
// every transaction reuses the connection of the one before.
func TestRLS_PooledConnectionDoesNotLeakTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{MaxConns: 1})
	ctx := context.Background()
	a := seedTenant(t, b.url, "leak-a")
	seedEntity(t, b.url, &a)

	var pidA, pidAfter uint32
	if err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		if got := tenantsIn(t, tx, "SELECT tenant_id FROM entities"); len(got) != 1 {
			t.Errorf("A sees %d entities, want 1", len(got))
		}
		return tx.Raw().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA)
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := b.db.InTx(ctx, a, func(*postgres.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want the callback's error", err)
	}
	err := b.db.InNoTenantTx(ctx, func(tx *postgres.Tx) error {
		var setting string
		if err := tx.Raw().QueryRow(ctx, "SELECT pg_backend_pid(), coalesce(current_setting('app.tenant_id', true), '')").Scan(&pidAfter, &setting); err != nil {
			return err
		}
		if setting != "" {
			t.Errorf("app.tenant_id on the reused connection = %q, want empty", setting)
		}
		if got := tenantsIn(t, tx, "SELECT tenant_id FROM entities"); len(got) != 0 {
			t.Errorf("after A's transaction, an unscoped one sees %d entities, want 0", len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pidA != pidAfter {
		t.Fatalf("backend pid %d then %d: the test did not reuse the connection", pidA, pidAfter)
	}
}

func TestInTx_RequiresTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	err := b.db.InTx(context.Background(), tenant.ID{}, func(*postgres.Tx) error { return nil })
	if !errors.Is(err, postgres.ErrNoTenant) {
		t.Fatalf("InTx(zero tenant) = %v, want ErrNoTenant", err)
	}
}

func TestInTx_RollsBackOnError(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "rollback")
	id := newUUID()
	err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		if _, err := tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", id, a.UUID()); err != nil {
			return err
		}
		// Fails halfway: the second statement violates a check constraint.
		_, err := tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'alien')", newUUID(), a.UUID())
		return err
	})
	if err == nil {
		t.Fatal("InTx succeeded, want the check violation")
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", id); n != 0 {
		t.Fatalf("first insert survived the failed transaction: %d rows", n)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in the callback was swallowed")
			}
		}()
		_ = b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
			_, _ = tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", id, a.UUID())
			panic("halfway")
		})
	}()
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", id); n != 0 {
		t.Fatalf("insert survived a panic: %d rows", n)
	}
}

func countRows(t *testing.T, url, q string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAudit_AppendOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "audit-a")
	id := newUUID()
	insert := `INSERT INTO audit_events (audit_id, tenant_id, event_type, severity, actor_type, correlation_id) VALUES ($1, $2, 'data.accessed', 'info', 'human', $1)`
	if err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		_, err := tx.Raw().Exec(ctx, insert, id, a.UUID())
		return err
	}); err != nil {
		t.Fatalf("insert own audit event: %v", err)
	}
	for _, stmt := range []string{
		"UPDATE audit_events SET severity = 'debug'",
		"DELETE FROM audit_events",
		"TRUNCATE audit_events",
		"UPDATE audit_seals SET signature = '\\x00'",
	} {
		err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
			_, err := tx.Raw().Exec(ctx, stmt)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("runtime role: %s = %v, want permission denied", stmt, err)
		}
	}
	// Even the owner (a superuser here) is stopped by the triggers.
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{"UPDATE audit_events SET severity = 'debug'", "DELETE FROM audit_events", "TRUNCATE audit_events"} {
		if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("owner: %s = %v, want append-only rejection", stmt, err)
		}
	}
	var part string
	if err := conn.QueryRow(ctx, "SELECT tableoid::regclass::text FROM audit_events LIMIT 1").Scan(&part); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "TRUNCATE "+part); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("owner: TRUNCATE %s = %v, want append-only rejection", part, err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events"); n != 1 {
		t.Fatalf("audit events = %d after the attempts, want 1", n)
	}

	// The group-commit writer's role inserts any tenant's events, reads none.
	other := seedTenant(t, b.url, "audit-b")
	err = b.db.InAuditWriterTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.Raw().Exec(ctx, insert, newUUID(), other.UUID()); err != nil {
			return err
		}
		if _, err := tx.Raw().Exec(ctx, insert, newUUID(), uuid.Nil); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("audit writer insert: %v", err)
	}
	err = b.db.InAuditWriterTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.Raw().Exec(ctx, "SELECT count(*) FROM audit_events")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("audit writer SELECT = %v, want permission denied", err)
	}
}

func TestAudit_MonthBoundaryPartitions(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "audit-month")
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	last := next.Add(-time.Second)
	ids := map[time.Time]uuid.UUID{last: newUUID(), next: newUUID()}
	// As the schema owner: the runtime roles may only write events dated
	// now (migration 00005), and this test needs the month's edges.
	for at, id := range ids {
		pgtest.Exec(t, b.url, `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, actor_type, correlation_id)
			VALUES ($1, $2, $3, 'data.accessed', 'info', 'human', $1)`, id, at, a.UUID())
	}
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for at, id := range ids {
		var part string
		if err := conn.QueryRow(ctx, "SELECT tableoid::regclass::text FROM audit_events WHERE audit_id = $1", id).Scan(&part); err != nil {
			t.Fatal(err)
		}
		if want := at.Format("audit_events_y2006m01"); part != want {
			t.Errorf("event at %s landed in %s, want %s", at, part, want)
		}
	}
}

func TestProfiles_Immutable(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "immutable")
	e := seedEntity(t, b.url, &a)
	pgtest.Exec(t, b.url, `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections, risk_score, connection_count)
		VALUES ($1, $2, $3, 1, 'manual', '\x00', '\x00', '{"overall": 0.5}', 0)`, newUUID(), e, a.UUID())
	exec := func(stmt string) error {
		return b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
			_, err := tx.Raw().Exec(ctx, stmt)
			return err
		})
	}
	if err := exec(`UPDATE entity_profiles SET risk_score = '{"overall": 0}'`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("changing a profile's score = %v, want permission denied", err)
	}
	if err := exec(`UPDATE entity_profiles SET findings = '\x01'`); err != nil {
		t.Errorf("rewriting a profile's ciphertext (key rotation) = %v, want allowed", err)
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	a := seedTenant(t, b.url, "translate")
	e := seedEntity(t, b.url, &a)
	err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		_, err := tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", e, a.UUID())
		return err
	})
	if apperr.KindOf(err) != apperr.Conflict {
		t.Errorf("duplicate key: kind %v (%v), want conflict", apperr.KindOf(err), err)
	}
	err = b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		var id uuid.UUID
		return tx.Raw().QueryRow(ctx, "SELECT entity_id FROM entities WHERE entity_id = $1", newUUID()).Scan(&id)
	})
	if !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("no rows: %v, want ErrNotFound", err)
	}
	if err := postgres.Translate(nil); err != nil {
		t.Errorf("Translate(nil) = %v", err)
	}
	if err := postgres.Translate(context.DeadlineExceeded); apperr.KindOf(err) != apperr.Unavailable {
		t.Errorf("deadline: kind %v, want unavailable", apperr.KindOf(err))
	}
	// A connection cut mid-answer (found by the fault test under load).
	if err := postgres.Translate(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)); apperr.KindOf(err) != apperr.Unavailable {
		t.Errorf("unexpected EOF: kind %v, want unavailable", apperr.KindOf(err))
	}
	// Data the database refuses although validation let it through: 422.
	err = b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		_, err := tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type, external_id) VALUES ($1, $2, 'individual', $3)",
			newUUID(), a.UUID(), "nul\x00byte")
		return err
	})
	if apperr.KindOf(err) != apperr.Invalid {
		t.Errorf("NUL in text: kind %v (%v), want invalid", apperr.KindOf(err), err)
	}
}

func TestPool_AcquireTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{MaxConns: 1, AcquireTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	a := seedTenant(t, b.url, "exhausted")
	hold := make(chan struct{})
	held := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.db.InTx(ctx, a, func(*postgres.Tx) error { close(held); <-hold; return nil })
	}()
	<-held
	start := time.Now()
	err := b.db.InTx(ctx, a, func(*postgres.Tx) error { return nil })
	waited := time.Since(start)
	close(hold)
	if apperr.KindOf(err) != apperr.Unavailable {
		t.Errorf("second transaction on a full pool: %v, want unavailable", err)
	}
	if waited > 5*time.Second {
		t.Errorf("waited %s for a connection, want about the acquire timeout", waited)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Options{URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(ctx); apperr.KindOf(err) != apperr.Unavailable {
		t.Errorf("Ping = %v, want unavailable", err)
	}
	start := time.Now()
	err = db.WaitReady(ctx, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("WaitReady = %v after %s, want an error after about 1s", err, time.Since(start))
	}
	if _, err := postgres.Open(ctx, postgres.Options{URL: "postgres://u:secret@host:notaport/db"}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open(bad url) = %v, want an error without the password", err)
	}
}

func TestEnsureDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := "elile_test_ensure_" + strings.ReplaceAll(newUUID().String()[24:], "-", "")
	url := pgtest.URLFor(name)
	t.Cleanup(func() { pgtest.Drop(t, name) })
	created, err := postgres.EnsureDatabase(ctx, url)
	if err != nil || !created {
		t.Fatalf("EnsureDatabase = %v, %v; want created", created, err)
	}
	created, err = postgres.EnsureDatabase(ctx, url)
	if err != nil || created {
		t.Fatalf("EnsureDatabase again = %v, %v; want existing", created, err)
	}
	db, err := postgres.Open(ctx, postgres.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Before migrations the runtime role may not exist yet in a brand-new
	// cluster, but the version query must still answer 0 or fail cleanly.
	if v, err := db.SchemaVersion(ctx); err == nil && v != 0 {
		t.Errorf("SchemaVersion of an empty database = %d, want 0", v)
	}
}
