package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The schema's layout on a Citus cluster (docs/scaling.md). Every table of
// the schema is in exactly one list (TestCatalog_DistributionRules checks
// it on plain PostgreSQL, with the rules each list must keep).
//
// ReferenceTables are replicated to every node: small, read by key before
// any tenant is known (an API key by its hash, a tenant's wrapped keys) or
// by every tenant. Listed in the order they are made reference tables.
//
// DistributedTables are sharded by tenant_id and co-located with the
// first, so one tenant's rows of every table live on one node and a query
// that names its tenant runs there whole.
//
//nolint:gochecknoglobals // fixed layout, read by Distribute and the catalog test
var (
	ReferenceTables   = []string{"tenants", "api_keys", "tenant_keks", "tenant_keys", "audit_retention", "audit_retention_floor", "key_fingerprints", "server_instances"}
	DistributedTables = []string{"entities", "entity_identifiers", "entity_profiles", "entity_relations", "cached_data_sources", "audit_events", "audit_seals", "audit_pending",
		"webhook_endpoints", "webhook_events", "webhook_deliveries"}
)

// DistributionColumn is the column every distributed table is sharded by.
const DistributionColumn = "tenant_id"

// OnCitus reports whether the database has the citus extension (a Citus
// coordinator).
func OnCitus(ctx context.Context, db *sql.DB) (bool, error) {
	var on bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')`).Scan(&on)
	return on, err
}

// Distributed reports how many of the schema's tables are Citus tables
// already (reference or distributed).
func distributedCount(ctx context.Context, tx *sql.Tx) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text = ANY($1)`,
		append(append([]string{}, ReferenceTables...), DistributedTables...)).Scan(&n)
	return n, err
}

// Distribute lays the schema out on a Citus coordinator: reference tables,
// then tables distributed by tenant_id and co-located, with the settings
// elile needs on every connection to the database. It is idempotent (a
// table already distributed is left alone) and runs in one transaction: a
// failure leaves the schema as it was.
//
// Citus cannot make a table a reference or distributed table while a
// foreign key ties it to a plain table, so the foreign keys among these
// tables are dropped first and added back, unchanged, once every table is
// laid out.
//
// The runtime roles need LOGIN on the workers: Citus opens its worker
// connections as the current role, which is elile_app or another NOLOGIN
// role reached by SET ROLE on the coordinator. On the workers they get
// LOGIN; the workers' pg_hba.conf must accept them from the coordinator
// only (docs/scaling.md). They keep NOLOGIN on the coordinator.
func Distribute(ctx context.Context, db *sql.DB) (changed bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	n, err := distributedCount(ctx, tx)
	if err != nil {
		return false, err
	}
	var steps []string
	if n < len(ReferenceTables)+len(DistributedTables) {
		steps = layoutSteps()
	}
	steps = append(steps,
		// Every session on this database: SET LOCAL (the role and tenant of
		// a unit of work) reaches the workers, and the triggers of
		// partitions made later (audit_ensure_partitions) are allowed.
		`DO $$ BEGIN
			EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', current_database(), 'local');
			EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
		END $$`)
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return false, fmt.Errorf("distribute the schema: %w (in %.80q)", err, s)
		}
	}
	// Worker connections are opened as the runtime roles; a worker added
	// since the last run gets the roles without LOGIN (rerun migrate up).
	for _, role := range []string{"elile_app", "elile_platform", "elile_audit_writer"} {
		if err := onWorkers(ctx, tx, `format('ALTER ROLE %I LOGIN', $1::text)`, role); err != nil {
			return false, fmt.Errorf("give %s LOGIN on the workers: %w", role, err)
		}
	}
	// Citus serialises writes to a reference table by locking it, and the
	// reference tables it points at, on the first worker; that lock asks
	// for write privileges on each of them, which the runtime roles do not
	// have on tenants (elile_app only reads it). On the workers, where
	// only the coordinator connects, the check is off.
	if err := onWorkers(ctx, tx, `format('ALTER DATABASE %I SET citus.skip_advisory_lock_permission_checks = on', current_database())`); err != nil {
		return false, fmt.Errorf("set the workers' lock checks: %w", err)
	}
	return len(steps) > 1, tx.Commit()
}

// onWorkers runs on every worker the command that the SQL expression
// command (with args) evaluates to, with Citus's DDL propagation off there
// (Citus refuses role and database changes made on a worker otherwise),
// and fails naming each worker where it failed.
func onWorkers(ctx context.Context, tx *sql.Tx, command string, args ...any) error {
	var failed string
	err := tx.QueryRowContext(ctx, `SELECT coalesce(string_agg(nodename || ':' || nodeport || ': ' || result, '; '), '')
		FROM run_command_on_workers('SET citus.enable_ddl_propagation TO off; ' || `+command+`) WHERE NOT success`, args...).Scan(&failed)
	if err == nil && failed != "" {
		err = errors.New(failed)
	}
	return err
}

// layoutSteps makes the reference and distributed tables, the foreign
// keys set aside meanwhile.
func layoutSteps() []string {
	steps := []string{
		// DDL on distributed tables in one transaction must not open
		// parallel connections to the workers after a write.
		`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`,
		// The append-only, stamping and reference-checking triggers.
		`SET LOCAL citus.enable_unsafe_triggers = on`,
		`CREATE TEMP TABLE elile_fks ON COMMIT DROP AS
			SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
			FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace AND conparentid = 0`,
		`DO $$ DECLARE r record; BEGIN
			FOR r IN SELECT * FROM elile_fks LOOP
				EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', r.tbl, r.conname);
			END LOOP; END $$`,
		// Rows already there (a database moved onto Citus) are copied into
		// the shards as they are: the insert triggers would restamp events,
		// queue sealed ones again, or look for entities not yet distributed.
		`CREATE TEMP TABLE elile_triggers ON COMMIT DROP AS
			SELECT t.tgrelid::regclass::text AS tbl, t.tgname::text AS name FROM pg_trigger t
			JOIN pg_class c ON c.oid = t.tgrelid
			WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND c.relnamespace = 'public'::regnamespace AND NOT c.relispartition
			  AND t.tgtype & 4 <> 0 /* INSERT */`,
		`DO $$ DECLARE r record; BEGIN
			FOR r IN SELECT * FROM elile_triggers LOOP
				EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', r.tbl, r.name);
			END LOOP; END $$`,
	}
	for _, t := range ReferenceTables {
		steps = append(steps, fmt.Sprintf(`SELECT create_reference_table(%s) WHERE NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = %[1]s::regclass)`, quoteLiteral(t)))
	}
	for i, t := range DistributedTables {
		colocate := "'none'"
		if i > 0 {
			colocate = quoteLiteral(DistributedTables[0])
		}
		steps = append(steps, fmt.Sprintf(`SELECT create_distributed_table(%s, %s, colocate_with => %s)
			WHERE NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = %[1]s::regclass)`, quoteLiteral(t), quoteLiteral(DistributionColumn), colocate))
	}
	return append(steps, `DO $$ DECLARE r record; BEGIN
			FOR r IN SELECT * FROM elile_fks LOOP
				EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', r.tbl, r.conname, r.def);
			END LOOP;
			FOR r IN SELECT * FROM elile_triggers LOOP
				EXECUTE format('ALTER TABLE %I ENABLE TRIGGER %I', r.tbl, r.name);
			END LOOP; END $$`)
}

func quoteLiteral(s string) string { return "'" + s + "'" }
