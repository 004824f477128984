package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/postgres"
)

// TestCatalog_DistributionRules holds the schema, on plain PostgreSQL, to
// the rules that let `migrate up` lay it out on Citus (distribute.go,
// docs/scaling.md). A new table or key that breaks them fails here, not on
// a cluster CI cannot run:
//
//   - every table is a reference table or a distributed one, never both;
//   - a distributed table has tenant_id NOT NULL, in its primary key and in
//     every unique constraint and unique index;
//   - a foreign key between distributed tables pairs tenant_id with
//     tenant_id (a row can only reference a row of its own tenant);
//   - a foreign key from a reference table never points at a distributed
//     one (Citus refuses it).
func TestCatalog_DistributionRules(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, p := range distributionProblems(t, conn) {
		t.Error(p)
	}

	// The rules catch what they are for (each change in a transaction
	// rolled back).
	for name, ddl := range map[string]string{
		"an unlisted table":              "CREATE TABLE widgets (id int PRIMARY KEY)",
		"a key without the tenant":       "ALTER TABLE entity_profiles DROP CONSTRAINT entity_profiles_pkey CASCADE, ADD PRIMARY KEY (profile_id)",
		"a unique index without it":      "CREATE UNIQUE INDEX bad_unique ON entities (entity_id)",
		"a nullable tenant":              "ALTER TABLE entities DROP CONSTRAINT entities_pkey CASCADE; ALTER TABLE entities ALTER COLUMN tenant_id DROP NOT NULL",
		"a key across tenants":           "ALTER TABLE entity_relations ADD FOREIGN KEY (tenant_id, relation_id) REFERENCES entities (entity_id, tenant_id)",
		"a reference table pointing out": "ALTER TABLE api_keys ADD COLUMN e uuid, ADD FOREIGN KEY (tenant_id, e) REFERENCES entities (tenant_id, entity_id)",
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(distributionProblems(t, tx.Conn())) == 0 {
			t.Errorf("%s (%s) broke no rule", name, ddl)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// distributionProblems lists how the schema breaks the rules.
func distributionProblems(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	ctx := context.Background()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	distributed := map[string]bool{}
	for _, n := range postgres.DistributedTables {
		distributed[n] = true
	}
	reference := map[string]bool{}
	for _, n := range postgres.ReferenceTables {
		if distributed[n] {
			bad("%s is both a reference and a distributed table", n)
		}
		reference[n] = true
	}
	// The job queue's tables stay on the coordinator, outside the tenant
	// rules (River's schema, River's queries).
	local := map[string]bool{}
	for _, n := range postgres.JobTables() {
		if distributed[n] || reference[n] {
			bad("%s is a job queue table and a tenant or reference table", n)
		}
		local[n] = true
	}
	all := query[string](t, conn, `SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND c.relname <> 'goose_db_version' ORDER BY 1`)
	for _, n := range all {
		if !distributed[n] && !reference[n] && !local[n] {
			bad("table %s is in neither postgres.ReferenceTables nor postgres.DistributedTables (nor postgres.JobTables)", n)
		}
	}
	for n := range distributed {
		if !slices.Contains(all, n) {
			bad("postgres.DistributedTables names %s, which does not exist", n)
		}
	}

	for _, n := range postgres.DistributedTables {
		notNull := query[bool](t, conn, `SELECT a.attnotnull FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.attname = $2`, n, postgres.DistributionColumn)
		if len(notNull) != 1 || !notNull[0] {
			bad("%s: %s missing or nullable", n, postgres.DistributionColumn)
		}
		// Primary keys, unique constraints and unique indexes alike.
		for _, idx := range query[string](t, conn, `SELECT i.indexrelid::regclass::text FROM pg_index i
			WHERE i.indrelid = $1::regclass AND i.indisunique
			  AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = $2 AND a.attnum = ANY(i.indkey))`,
			n, postgres.DistributionColumn) {
			bad("%s: unique index %s does not include %s", n, idx, postgres.DistributionColumn)
		}
		if pk := query[string](t, conn, `SELECT conname::text FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, n); len(pk) != 1 {
			bad("%s: no primary key", n)
		}
	}

	type fk struct {
		Name, From, To string
		FromCols       []string
		ToCols         []string
	}
	rows, err := conn.Query(ctx, `SELECT c.conname::text, c.conrelid::regclass::text, c.confrelid::regclass::text,
			(SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
			   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
			(SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
			   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n)
		FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace AND c.conparentid = 0`)
	if err != nil {
		t.Fatal(err)
	}
	fks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fk])
	if err != nil {
		t.Fatal(err)
	}
	if len(fks) < 5 {
		t.Fatalf("read %d foreign keys, expected the schema's", len(fks))
	}
	for _, f := range fks {
		switch {
		case reference[f.From] && distributed[f.To]:
			bad("%s: reference table %s points at distributed %s", f.Name, f.From, f.To)
		case distributed[f.From] && distributed[f.To]:
			i := slices.Index(f.FromCols, postgres.DistributionColumn)
			if i < 0 || i >= len(f.ToCols) || f.ToCols[i] != postgres.DistributionColumn {
				bad("%s: %s(%s) -> %s(%s) does not pair %s with %[6]s", f.Name, f.From, strings.Join(f.FromCols, ", "),
					f.To, strings.Join(f.ToCols, ", "), postgres.DistributionColumn)
			}
		}
	}
	return problems
}

func query[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) []T {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}
