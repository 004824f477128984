package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

// Finding 14 of the hardening review: a seal inserted without the signing
// key, with a huge horizon_to, stopped sealing while the lag read 0.
func TestSealer_ForgedHorizonIsPassedOver(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "forged-horizon")
	appendEvent(t, b.db, a)
	if n := sealAll(t, b.db, signer, 1); n != 1 {
		t.Fatalf("sealed %d, want 1", n)
	}
	// The attacker: full write access, no signing key.
	superuser(t, b.url, fmt.Sprintf(`INSERT INTO audit_seals (seal_id, tenant_id, seq, horizon_from, horizon_to, event_count,
		cumulative_count, prev_hash, seal_hash, signature, signing_key_id, event_hashes)
		SELECT '%s', tenant_id, seq + 1, horizon_to, '4611686018427387904'::xid8, 0, cumulative_count, seal_hash,
			'\x%064x', '\x00', signing_key_id, '\x' FROM audit_seals WHERE tenant_id = '%s'`, newUUID(), 7, a))
	appendEvent(t, b.db, a)
	time.Sleep(20 * time.Millisecond)
	lag, err := b.db.SealingLag(ctx, signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if lag <= 0 {
		t.Errorf("sealing lag with an unsealed event behind a forged seal = %v, want > 0", lag)
	}
	if n := sealAll(t, b.db, signer, 1); n != 1 {
		t.Fatalf("sealed %d after the forged seal, want 1: the forged horizon stopped sealing", n)
	}
	if b.db.ForgedSealsSeen() == 0 {
		t.Error("the forged seal was not counted")
	}
	if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "tampered" {
		t.Errorf("verify with a forged seal in the chain: %+v, want tampered", rep)
	}
}

// appConn connects as pgtest.AppLogin: what someone holding a production
// DATABASE_URL can do.
func appConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgtest.AppLoginURL(t, url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// asRole runs sql on conn in one transaction as role, with the tenant
// setting when tenant is not empty, and rolls back whatever failed: what an
// attacker holding the app's login can do in one statement.
func asRole(ctx context.Context, conn *pgx.Conn, role, tenant, sql string) error {
	set := ""
	if tenant != "" {
		set = "SELECT set_config('app.tenant_id', '" + tenant + "', true); "
	}
	_, err := conn.Exec(ctx, "BEGIN; SET LOCAL ROLE "+role+"; "+set+sql+"; COMMIT")
	if err != nil {
		_, _ = conn.Exec(ctx, "ROLLBACK")
	}
	return err
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Finding 2 of the hardening review: a row added to audit_retention made
// verification say intact after events were deleted, and the app's role
// could drop every partition through elile_platform.
func TestRetention_AttacksWithTheAppsCredentials(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "retention-attack")
	var ids []uuid.UUID
	for range 4 {
		ids = append(ids, appendEvent(t, b.db, a).ID)
	}
	if n := sealAll(t, b.db, signer, 4); n != 4 {
		t.Fatalf("sealed %d", n)
	}
	cp := audit.CheckpointOf(mustLatest(t, b.db, a))
	conn := appConn(t, b.url)
	// 1. Dropping partitions inside the floor, as the platform role.
	for _, cutoff := range []string{"now() + interval '2 years'", "now() - interval '6 years'"} {
		err := asRole(ctx, conn, "elile_platform", "", "SELECT audit_drop_partitions_before("+cutoff+")")
		if sqlState(err) != "42501" {
			t.Errorf("audit_drop_partitions_before(%s) as the app = %v, want refused (42501)", cutoff, err)
		}
	}
	// 2. Changing the floor.
	for _, q := range []string{"UPDATE audit_retention_floor SET min_age = interval '30 days'", "DELETE FROM audit_retention_floor",
		"INSERT INTO audit_retention_floor VALUES (false, interval '30 days')"} {
		for _, role := range []string{"elile_app", "elile_platform"} {
			if err := asRole(ctx, conn, role, "", q); sqlState(err) != "42501" {
				t.Errorf("%s as %s = %v, want permission denied", q, role, err)
			}
		}
	}
	// 3. An unsigned retention record with a future cutoff, then events
	// deleted (by someone with more than the app's rights): verification
	// ignores the record and reports the deletion, with and without the
	// saved checkpoint.
	if err := asRole(ctx, conn, "elile_platform", "", `INSERT INTO audit_retention (cutoff, dropped) VALUES (now() + interval '1 year', '{}')`); err != nil {
		t.Fatalf("the platform role may add (unsigned) records: %v", err)
	}
	superuser(t, b.url, fmt.Sprintf("DELETE FROM audit_events WHERE audit_id = '%s'", ids[1]))
	for _, c := range []*audit.Checkpoint{nil, &cp} {
		rep := verify(t, b.db, a.UUID(), signer, c)
		kinds := map[string]bool{}
		for _, p := range rep.Problems {
			kinds[p.Kind] = true
		}
		if rep.Status != "tampered" || !kinds["deleted"] || !kinds["bad_signature"] {
			t.Errorf("verify (checkpoint %v) after a forged retention record and a deletion = %+v", c != nil, rep)
		}
	}
}

func mustLatest(t *testing.T, db *postgres.DB, a tenant.ID) audit.Seal {
	t.Helper()
	s, err := db.LatestSeal(context.Background(), a.UUID())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Finding 18: txid and created_at were plain defaults the INSERT grants
// let a caller set, so events could be planted inside sealed ranges.
func TestAudit_OrderAndTimeAreNotTheCallers(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a := seedTenant(t, b.url, "stamp")
	conn := appConn(t, b.url)
	planted := newUUID()
	err := asRole(ctx, conn, "elile_audit_writer", "", `INSERT INTO audit_events (audit_id, txid, tenant_id, event_type, severity, actor_type, correlation_id)
		VALUES ('`+planted.String()+`', '3'::xid8, '`+a.String()+`', 'data.accessed', 'info', 'human', gen_random_uuid())`)
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1 AND txid = '3'::xid8", planted); n != 0 {
		t.Error("the caller chose the event's txid")
	}
	for _, at := range []string{"now() - interval '1 day'", "now() + interval '1 hour'", "'2020-01-01'"} {
		for _, role := range []string{"elile_audit_writer", "elile_platform"} {
			err := asRole(ctx, conn, role, "", `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, actor_type, correlation_id)
				VALUES (gen_random_uuid(), `+at+`, '`+a.String()+`', 'data.accessed', 'info', 'human', gen_random_uuid())`)
			if sqlState(err) != "23514" {
				t.Errorf("created_at %s as %s = %v, want refused (23514)", at, role, err)
			}
		}
	}
}

// Finding 11: foreign keys ignore row-level security, so tenant A's rows
// could point at tenant B's entity. The database refuses that on its own,
// as the app role and even as the platform role, while references to
// platform-shared entities stay allowed.
func TestTenantReferences_RefusedByTheDatabase(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	ta, tb := seedTenant(t, b.url, "refs-a"), seedTenant(t, b.url, "refs-b")
	ea, eb, shared := seedEntity(t, b.url, &ta), seedEntity(t, b.url, &tb), seedEntity(t, b.url, nil)
	conn := appConn(t, b.url)
	// A reference flagged shared skips the composite foreign key (the
	// shared entity lives on the platform's shard); the flag is checked.
	profile := func(entity uuid.UUID, shared bool) string {
		return fmt.Sprintf(`INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, trigger_type, findings, connections,
			risk_score, connection_count, entity_shared) VALUES (gen_random_uuid(), '%s', '%s', 1, 'manual', '\x00', '\x00', '{}', 0, %t)`, entity, ta, shared)
	}
	relation := func(from, to uuid.UUID, fromShared, toShared bool) string {
		return fmt.Sprintf(`INSERT INTO entity_relations (relation_id, tenant_id, from_entity_id, to_entity_id, relation_type, confidence_score, from_shared, to_shared)
			VALUES (gen_random_uuid(), '%s', '%s', '%s', 'knows', 0.5, %t, %t)`, ta, from, to, fromShared, toShared)
	}
	cache := func(entity uuid.UUID, owner string) string {
		return fmt.Sprintf(`INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, customer_id, provider_id, check_type, data_origin,
			raw_response, normalized_data, acquired_at, fresh_until) VALUES (gen_random_uuid(), '%s', %s, '%s', 'p', 'criminal',
			'customer_provided', '\x00', '\x00', now(), now())`, entity, owner, ta)
	}
	ident := fmt.Sprintf(`INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index)
		VALUES (gen_random_uuid(), '%s', '%s', 'ssn', '\x%064x')`, eb, ta, 1)
	attacks := map[string]string{
		"profile on B's entity":                      profile(eb, false),
		"profile on B's entity flagged shared":       profile(eb, true),
		"profile on a missing entity flagged shared": profile(newUUID(), true),
		"relation to B's entity":                     relation(ea, eb, false, false),
		"relation from B's entity":                   relation(eb, ea, false, false),
		"relation to B's entity flagged shared":      relation(ea, eb, false, true),
		"relation from B's entity flagged shared":    relation(eb, ea, true, false),
		"own entity flagged shared":                  relation(ea, shared, true, true),
		"relation to a shared entity not flagged":    relation(ea, shared, false, false),
		"cache row on B's entity":                    cache(eb, "'"+tb.String()+"'"),
		"identifier row on B's entity":               ident,
		"move an entity to another tenant":           fmt.Sprintf(`UPDATE entities SET tenant_id = '%s' WHERE entity_id = '%s'`, tb, ea),
	}
	for name, q := range attacks {
		for _, role := range []string{"elile_app", "elile_platform"} {
			t.Run(name+" as "+role, func(t *testing.T) {
				err := asRole(ctx, conn, role, ta.String(), q)
				if st := sqlState(err); st != "23503" && st != "23514" && (role != "elile_app" || st != "42501") {
					t.Fatalf("%s as %s = %v, want refused", name, role, err)
				}
			})
		}
	}
	// Shared entities stay referable.
	for name, q := range map[string]string{"profile on a shared entity": profile(shared, true), "relation to a shared entity": relation(ea, shared, false, true),
		"own cache row on a shared entity": cache(shared, "'00000000-0000-0000-0000-000000000000'")} {
		if err := asRole(ctx, conn, "elile_app", ta.String(), q); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := countRows(t, b.url, `SELECT (SELECT count(*) FROM entity_profiles WHERE entity_id = $1) + (SELECT count(*) FROM entity_relations WHERE to_entity_id = $1 OR from_entity_id = $1)
		+ (SELECT count(*) FROM cached_data_sources WHERE entity_id = $1)`, eb); n != 0 {
		t.Errorf("%d rows of tenant A reference tenant B's entity", n)
	}
}

// Finding 12: SET ROLE ran once per connection, so after a RESET ROLE (or
// behind a transaction-mode pooler) statements ran as the login user —
// a superuser in development, with no row-level security.
func TestRole_SetForEveryTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{MaxConns: 1})
	ctx := context.Background()
	a, other := seedTenant(t, b.url, "role-a"), seedTenant(t, b.url, "role-b")
	seedEntity(t, b.url, &a)
	seedEntity(t, b.url, &other)
	if err := b.db.ExecSession(ctx, "RESET ROLE"); err != nil {
		t.Fatal(err)
	}
	var user string
	var seen int
	err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		if err := tx.Raw().QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
			return err
		}
		return tx.Raw().QueryRow(ctx, "SELECT count(*) FROM entities WHERE tenant_id IS NOT NULL").Scan(&seen)
	})
	if err != nil {
		t.Fatal(err)
	}
	if user != postgres.AppRole || seen != 1 {
		t.Errorf("after RESET ROLE on the pooled connection: current_user %q, %d tenant entities visible; want %s and 1", user, seen, postgres.AppRole)
	}
	// The one-round-trip read path scopes itself the same way.
	if err := b.db.ExecSession(ctx, "RESET ROLE"); err != nil {
		t.Fatal(err)
	}
	var setting string
	if err := b.db.ReadRow(ctx, tenant.Of(a), "SELECT current_user, current_setting('app.tenant_id'), (SELECT count(*) FROM entities WHERE tenant_id IS NOT NULL)", nil,
		func(r pgx.Row) error { return r.Scan(&user, &setting, &seen) }); err != nil {
		t.Fatal(err)
	}
	if user != postgres.AppRole || setting != a.String() || seen != 1 {
		t.Errorf("pipelined read after RESET ROLE: %q, tenant %q, %d tenant entities visible; want %s, %s, 1", user, setting, seen, postgres.AppRole, a)
	}
	// …and its settings end with it: the connection (the pool has one)
	// carries no tenant into the next transaction.
	if got, err := b.db.SessionSetting(ctx, "app.tenant_id"); err != nil || got != "/true" {
		t.Errorf("after a pipelined read the connection carries %q (tenant/role; %v), want no tenant and the session's role", got, err)
	}
	for name, in := range map[string]func(context.Context, func(*postgres.Tx) error) error{
		postgres.PlatformRole: b.db.InPlatformTx, postgres.AuditWriterRole: b.db.InAuditWriterTx} {
		if err := b.db.ExecSession(ctx, "RESET ROLE"); err != nil {
			t.Fatal(err)
		}
		if err := in(ctx, func(tx *postgres.Tx) error { return tx.Raw().QueryRow(ctx, "SELECT current_user").Scan(&user) }); err != nil || user != name {
			t.Errorf("%s transaction runs as %q (%v)", name, user, err)
		}
	}
}

// The server refuses to start outside development with a login that
// would make row-level security moot: a superuser, BYPASSRLS, or an owner.
func TestCheckLogin(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	if err := b.db.CheckLogin(ctx); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Errorf("CheckLogin as a superuser = %v, want a refusal naming it", err)
	}
	login := pgtest.AppLoginURL(t, b.url)
	app, err := postgres.Open(ctx, postgres.Options{URL: login})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.CheckLogin(ctx); err != nil {
		t.Errorf("CheckLogin as a runtime-only login = %v, want nil", err)
	}
	// The same login made owner of one table (in this database only).
	pgtest.Exec(t, b.url, "ALTER TABLE audit_retention_floor OWNER TO "+pgtest.AppLogin)
	if err := app.CheckLogin(ctx); err == nil || !strings.Contains(err.Error(), "owns") {
		t.Errorf("CheckLogin as an owner = %v, want a refusal naming ownership", err)
	}
}

// Finding 13: a zero tenant id became the row-level-security-bypassing
// platform role. Now a store takes a tenant.Scope, whose zero value acts
// for nobody; only tenant.Platform() reaches platform data.
func TestScope_ZeroTenantIsNeverThePlatform(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a := seedTenant(t, b.url, "zero-a")
	theirs := seedEntity(t, b.url, &a)
	store := b.db.Entities()
	for _, sc := range []tenant.Scope{{}, tenant.Of(tenant.ID{})} {
		if _, err := store.Entity(ctx, sc, theirs); !errors.Is(err, postgres.ErrNoTenant) {
			t.Errorf("Entity in scope %v = %v, want ErrNoTenant", sc, err)
		}
		if _, _, err := store.Entities(ctx, sc, entity.Filter{}, uuid.Nil, 10); !errors.Is(err, postgres.ErrNoTenant) {
			t.Errorf("Entities in scope %v = %v, want ErrNoTenant", sc, err)
		}
		err := store.InScope(ctx, sc, func(tx entity.Tx) error {
			_, err := tx.Erase(ctx, theirs)
			return err
		})
		if !errors.Is(err, postgres.ErrNoTenant) {
			t.Errorf("Erase in scope %v = %v, want ErrNoTenant", sc, err)
		}
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", theirs); n != 1 {
		t.Fatal("the entity was erased through a zero scope")
	}
	// The platform scope reaches shared data, and still not a tenant's.
	shared := seedEntity(t, b.url, nil)
	if _, err := store.Entity(ctx, tenant.Platform(), shared); err != nil {
		t.Errorf("shared entity in the platform scope: %v", err)
	}
	if _, err := store.Entity(ctx, tenant.Platform(), theirs); apperr.KindOf(err) != apperr.NotFound {
		t.Errorf("a tenant's entity in the platform scope = %v, want not found", err)
	}
}

// BenchmarkSealingLag measures the lag reading the sealer makes every
// round, on a month partition of 200,000 events, past the five executions
// after which PostgreSQL may switch a prepared statement to a generic plan.
func BenchmarkSealingLag(b *testing.B) {
	url := pgtest.DB(b)
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url, MaxConns: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	pgtest.Exec(b, url, `INSERT INTO audit_events (audit_id, created_at, event_type, severity, actor_type, correlation_id)
		SELECT gen_random_uuid(), now(), 'data.accessed', 'info', 'system', gen_random_uuid() FROM generate_series(1, 200000)`)
	pgtest.Exec(b, url, "ANALYZE audit_events")
	signer, err := audit.NewSigner(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	// Seal them all (as a running system would have), then a few new ones
	// wait: the lag query's rows are the few above the sealed horizon.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if r, err := db.SealRound(context.Background(), signer); err != nil {
			b.Fatal(err)
		} else if r.Sealed > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pgtest.Exec(b, url, `INSERT INTO audit_events (audit_id, created_at, event_type, severity, actor_type, correlation_id)
		SELECT gen_random_uuid(), now(), 'data.accessed', 'info', 'system', gen_random_uuid() FROM generate_series(1, 100)`)
	b.ResetTimer()
	for range b.N {
		if _, err := db.SealingLag(context.Background(), signer.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

// What waits for a seal (migration 00010) is not the caller's to write:
// no runtime role can add, change or remove a pending row but the
// platform's sealing path, and an event kept out of the seals by deleting
// its pending row (the platform role can) is reported by verification.
func TestPendingEvents_NotTheCallers(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "pending")
	appendEvent(t, b.db, a)
	conn := appConn(t, b.url)
	for _, role := range []string{"elile_app", "elile_platform", "elile_audit_writer"} {
		for _, q := range []string{
			fmt.Sprintf("INSERT INTO audit_pending (tenant_id, created_at, audit_id) VALUES ('%s', now(), '%s')", a, newUUID()),
			"UPDATE audit_pending SET created_at = now()",
		} {
			if err := asRole(ctx, conn, role, a.String(), q); sqlState(err) != "42501" {
				t.Errorf("%s as %s = %v, want permission denied", q, role, err)
			}
		}
	}
	for _, role := range []string{"elile_app", "elile_audit_writer"} {
		if err := asRole(ctx, conn, role, a.String(), "DELETE FROM audit_pending"); sqlState(err) != "42501" {
			t.Errorf("DELETE FROM audit_pending as %s = %v, want permission denied", role, err)
		}
	}
	if n := sealAll(t, b.db, signer, 1); n != 1 {
		t.Fatalf("sealed %d", n)
	}
	appendEvent(t, b.db, a)
	if err := asRole(ctx, conn, "elile_platform", "", "DELETE FROM audit_pending"); err != nil {
		t.Fatal(err)
	}
	if r, err := b.db.SealRound(ctx, signer); err != nil || r.Sealed != 0 {
		t.Fatalf("round = %+v, %v", r, err)
	}
	rep := verify(t, b.db, a.UUID(), signer, nil)
	if rep.Status != "tampered" || len(rep.Problems) == 0 || rep.Problems[0].Kind != "inserted" {
		t.Errorf("an event kept out of the seals: %+v, want reported", rep)
	}
}
