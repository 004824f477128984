package httpapi

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The tenant rule (the scale-out issue): a statement against a tenant
// table names its one tenant (tenant_id = $n; reading shared rows is a
// second query, for the platform's tenant), or says that
// it spans tenants with a comment /* all tenants: why */. Row-level
// security filters either way, but only a tenant predicate lets a
// distributed database route the statement to one shard. Every test
// server's pool reports its statements here (setup), and a test fails on
// a statement that breaks the rule.

var (
	ruleTables    = regexp.MustCompile(`(?is)\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_][a-z0-9_]*)`)
	rulePredicate = regexp.MustCompile(`(?is)\btenant_id\s*=`)
	ruleInsert    = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+[a-z_]+\s*\(([^)]*)\)`)
	ruleSpans     = regexp.MustCompile(`/\*\s*all tenants:[^*]+\*/`)
)

// tenantTables are the tables with a tenant_id column, read once from the
// catalog of a migrated test database.
var (
	tenantTablesOnce sync.Once
	tenantTablesSet  map[string]bool
	tenantTablesErr  error
)

func tenantTables(url string) (map[string]bool, error) {
	tenantTablesOnce.Do(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			tenantTablesErr = err
			return
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(context.Background(), `SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE a.attname = 'tenant_id' AND n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition`)
		if err != nil {
			tenantTablesErr = err
			return
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		tenantTablesSet, tenantTablesErr = map[string]bool{}, err
		for _, n := range names {
			tenantTablesSet[n] = true
		}
	})
	return tenantTablesSet, tenantTablesErr
}

// breaksTenantRule says why sql breaks the rule ("" when it keeps it).
func breaksTenantRule(sql string, tables map[string]bool) string {
	if ruleSpans.MatchString(sql) {
		return ""
	}
	var hit []string
	for _, m := range ruleTables.FindAllStringSubmatch(sql, -1) {
		if tables[strings.ToLower(m[1])] {
			hit = append(hit, m[1])
		}
	}
	if len(hit) == 0 {
		return ""
	}
	if m := ruleInsert.FindStringSubmatch(sql); m != nil {
		if strings.Contains(m[1], "tenant_id") {
			return ""
		}
		return "an insert into " + hit[0] + " without tenant_id"
	}
	if rulePredicate.MatchString(sql) {
		return ""
	}
	return "no tenant_id predicate on " + strings.Join(hit, ", ")
}

// tenantRule collects the statements of one test's server and fails the
// test, at its end, on those that break the rule.
type tenantRule struct {
	mu  sync.Mutex
	bad map[string]string // statement -> why
}

func (r *tenantRule) seen(tables map[string]bool) func(string) {
	return func(sql string) {
		if why := breaksTenantRule(sql, tables); why != "" {
			r.mu.Lock()
			if r.bad == nil {
				r.bad = map[string]string{}
			}
			r.bad[strings.Join(strings.Fields(sql), " ")] = why
			r.mu.Unlock()
		}
	}
}

func (r *tenantRule) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for sql, why := range r.bad {
		lines = append(lines, why+": "+sql)
	}
	sort.Strings(lines)
	for _, l := range lines {
		t.Errorf("tenant rule: %.400s", l)
	}
}

func TestBreaksTenantRule(t *testing.T) {
	t.Parallel()
	tables := map[string]bool{"entities": true, "audit_events": true}
	for sql, want := range map[string]bool{
		"SELECT * FROM entities WHERE entity_id = $1":                                            false,
		"SELECT * FROM entities WHERE tenant_id = $1 AND entity_id = $2":                         true,
		"SELECT * FROM entities WHERE tenant_id IN ($1, '00000000-0000-0000-0000-000000000000')": false,
		"SELECT * FROM entities WHERE tenant_id IS NULL":                                         false,
		"SELECT * FROM entities WHERE tenant_id IS NOT DISTINCT FROM $1":                         false,
		"INSERT INTO entities (entity_id, tenant_id) VALUES ($1, $2)":                            true,
		"INSERT INTO entities (entity_id) VALUES ($1)":                                           false,
		"SELECT count(*) FROM audit_events /* all tenants: the sealer reads every chain */":      true,
		"SELECT 1 FROM tenants": true,
	} {
		if got := breaksTenantRule(sql, tables) == ""; got != want {
			t.Errorf("%q keeps the rule: %v, want %v", sql, got, want)
		}
	}
}
