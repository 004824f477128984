// Package pgtest gives tests their own freshly migrated PostgreSQL database
// on the real server: the schema is migrated once per run into a template
// database, and each test clones it (CREATE DATABASE ... TEMPLATE), which
// takes a few tens of milliseconds. Only test code may import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/postgres"
)

// DefaultAdminURL is used when ELILE_TEST_DATABASE_URL is unset. The user
// must be able to create databases and roles.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the URL of the test server's maintenance database.
func AdminURL() string {
	if u := os.Getenv("ELILE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// URLFor returns AdminURL with its database replaced by name.
func URLFor(name string) string {
	u, err := url.Parse(AdminURL())
	if err != nil {
		panic(fmt.Sprintf("pgtest: ELILE_TEST_DATABASE_URL is not a URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

type templateState struct {
	once sync.Once
	name string
	err  error
}

var tmpl templateState //nolint:gochecknoglobals // one template per test process

// templateName is derived from the migration files, so a changed migration
// gets a new template and a stale one is never reused.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(postgres.Migrations(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(postgres.Migrations(), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return "elile_tpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Template returns the name of the migrated template database, building it
// on first use. An advisory lock serialises concurrent test processes.
func Template(tb testing.TB) string {
	tb.Helper()
	tmpl.once.Do(func() { tmpl.name, tmpl.err = buildTemplate(context.Background()) })
	if tmpl.err != nil {
		tb.Fatalf("pgtest: template database: %v (is PostgreSQL running at %s?)", tmpl.err, redact(AdminURL()))
	}
	return tmpl.name
}

func buildTemplate(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	name, err := templateName()
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('elile_pgtest_template'))"); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext('elile_pgtest_template'))") //nolint:errcheck // closing the session releases it anyway

	var isTemplate *bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	if isTemplate != nil && *isTemplate {
		return name, nil
	}
	if isTemplate != nil { // a build that died halfway
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", err
		}
	}
	dropStaleTemplates(ctx, conn, name)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	m, err := postgres.NewMigrator(URLFor(name))
	if err != nil {
		return "", err
	}
	_, err = m.Up(ctx)
	m.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	// When it was built: another revision's test run drops it only once it
	// is old (see dropStaleTemplates).
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{name}.Sanitize()+" IS '"+strconv.FormatInt(time.Now().Unix(), 10)+"'"); err != nil {
		return "", err
	}
	return name, nil
}

// staleAfter is how old another migration set's template must be before a
// test run drops it: a run of another revision (a second checkout, CI
// beside a developer) may be creating databases from it right now.
const staleAfter = 24 * time.Hour

// dropStaleTemplates removes templates built from other migrations, once
// they are older than staleAfter (or carry no build time).
func dropStaleTemplates(ctx context.Context, conn *pgx.Conn, keep string) {
	rows, err := conn.Query(ctx, `SELECT d.datname FROM pg_database d
		LEFT JOIN pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass
		WHERE d.datname LIKE 'elile\_tpl\_%' AND d.datname <> $1
		  AND CASE WHEN c.description ~ '^[0-9]+$' THEN c.description::bigint < $2 ELSE true END`,
		keep, time.Now().Add(-staleAfter).Unix())
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		_, _ = conn.Exec(ctx, "ALTER DATABASE "+id+" WITH IS_TEMPLATE false")
		_, _ = conn.Exec(ctx, "DROP DATABASE "+id+" WITH (FORCE)")
	}
}

// DB creates a fresh, migrated database for one test and drops it when the
// test ends. It returns its URL, connecting as the admin user (the schema
// owner); postgres.Open on it runs queries as the runtime role.
func DB(tb testing.TB) string {
	tb.Helper()
	return CreateDB(tb, Template(tb))
}

// EmptyDB creates a fresh database with no schema, dropped when the test
// ends, and returns its URL.
func EmptyDB(tb testing.TB) string {
	tb.Helper()
	return CreateDB(tb, "template0")
}

// CreateDB creates a database from template, dropped when the test ends.
func CreateDB(tb testing.TB, template string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "elile_test_" + randomSuffix()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", redact(AdminURL()), err)
	}
	defer conn.Close(context.Background())
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		// 55006: the template is briefly in use by another clone.
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 50 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() { Drop(tb, name) })
	return URLFor(name)
}

// Drop drops the database name, closing its connections first.
func Drop(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Errorf("pgtest: drop %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		tb.Errorf("pgtest: drop %s: %v", name, err)
	}
}

// Exec runs statements on the database at dbURL as the admin user, failing
// the test on error. For fixtures and for simulating attacks with full
// database access.
func Exec(tb testing.TB, dbURL, sql string, args ...any) pgconn.CommandTag {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("pgtest: exec %q: %v", sql, err)
	}
	return tag
}

// DBName returns the database name in dbURL.
func DBName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

// AppLogin is the login role AppLoginURL connects as: not a superuser,
// owning nothing, member of the runtime roles — what a production
// DATABASE_URL holds, and so what an attacker who stole it holds.
const AppLogin = "elile_test_login"

var appLoginOnce sync.Once //nolint:gochecknoglobals // the role is cluster-wide; made once per test process

// AppLoginURL returns dbURL with its user replaced by AppLogin, creating
// the role (cluster-wide) if needed. The server's trust authentication on
// loopback lets it in without a password.
func AppLoginURL(tb testing.TB, dbURL string) string {
	tb.Helper()
	var err error
	appLoginOnce.Do(func() {
		ctx := context.Background()
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, AdminURL()); err != nil {
			return
		}
		defer conn.Close(ctx)
		// Other test processes may do the same at once: catalog updates
		// can then collide, so retry a few times.
		for attempt := range 10 {
			_, err = conn.Exec(ctx, `DO $$ BEGIN
				BEGIN
					CREATE ROLE `+AppLogin+` LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
				EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
				END;
				GRANT elile_app, elile_platform, elile_audit_writer TO `+AppLogin+`;
			END $$`)
			if err == nil {
				return
			}
			time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
		}
	})
	if err != nil {
		tb.Fatalf("pgtest: create %s: %v", AppLogin, err)
	}
	u, perr := url.Parse(dbURL)
	if perr != nil {
		tb.Fatalf("pgtest: %v", perr)
	}
	u.User = url.User(AppLogin)
	return u.String()
}

// PgBouncer returns the address of the PgBouncer in transaction mode that
// CI starts in front of the test server (ELILE_TEST_PGBOUNCER; locally
// scripts/pgbouncer.sh), skipping outside CI when there is none and
// failing in CI.
func PgBouncer(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("ELILE_TEST_PGBOUNCER")
	if addr == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("ELILE_TEST_PGBOUNCER is not set: CI must start PgBouncer (.ci/run)")
		}
		tb.Skip("ELILE_TEST_PGBOUNCER not set: start PgBouncer in transaction mode (scripts/pgbouncer.sh) to run this test")
	}
	return addr
}
