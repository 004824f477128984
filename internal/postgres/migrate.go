package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return sub
}

// Migrator applies the embedded schema migrations. It connects as the
// DATABASE_URL user (the schema owner), not as the runtime role.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
	// Distributed reports whether the last Up laid the schema out on a
	// Citus cluster (false on plain PostgreSQL, or when it already was).
	Distributed bool
}

// NewMigrator opens a connection for migrations. A session-level advisory
// lock keeps two instances from migrating at once.
func NewMigrator(databaseURL string) (*Migrator, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redactParseError(err))
	}
	db := stdlib.OpenDB(*cfg)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations(), goose.WithSessionLocker(locker),
		goose.WithGoMigrations(goMigrations()...))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close closes the migration connection.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration and returns the versions applied.
// On a Citus coordinator it then distributes the schema (Distribute),
// which does nothing once done.
func (m *Migrator) Up(ctx context.Context) ([]int64, error) {
	res, err := m.provider.Up(ctx)
	if err != nil {
		return versions(res), err
	}
	m.Distributed = false
	citus, err := OnCitus(ctx, m.db)
	if err != nil || !citus {
		return versions(res), err
	}
	m.Distributed, err = Distribute(ctx, m.db)
	return versions(res), err
}

// Down rolls back the latest migration and returns its version (0 if none).
func (m *Migrator) Down(ctx context.Context) (int64, error) {
	res, err := m.provider.Down(ctx)
	if err != nil {
		if errors.Is(err, goose.ErrNoNextVersion) {
			return 0, nil
		}
		return 0, err
	}
	return res.Source.Version, nil
}

// DownTo rolls back every migration above version (0: all of them).
func (m *Migrator) DownTo(ctx context.Context, version int64) ([]int64, error) {
	res, err := m.provider.DownTo(ctx, version)
	return versions(res), err
}

// Versions returns the schema's current version and the latest embedded one.
func (m *Migrator) Versions(ctx context.Context) (current, latest int64, err error) {
	return m.provider.GetVersions(ctx)
}

// MigrationStatus is one migration's state.
type MigrationStatus struct {
	Version int64
	Name    string
	Applied bool
	At      string // RFC 3339, empty when pending
}

// Status lists every embedded migration with its state.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		name := nameOf(s.Source.Path)
		if s.Source.Type == goose.TypeGo {
			name = fmt.Sprintf("%05d_river_schema.go (River's schema, version %d)", s.Source.Version, riverVersion)
		}
		ms := MigrationStatus{Version: s.Source.Version, Name: name, Applied: s.State == goose.StateApplied}
		if ms.Applied {
			ms.At = s.AppliedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		out = append(out, ms)
	}
	return out, nil
}

func nameOf(path string) string {
	i := strings.LastIndex(path, "/")
	return path[i+1:]
}

func versions(res []*goose.MigrationResult) []int64 {
	out := make([]int64, 0, len(res))
	for _, r := range res {
		out = append(out, r.Source.Version)
	}
	return out
}

// LatestVersion is the highest migration version, SQL or Go.
func LatestVersion() int64 {
	var latest int64
	for _, m := range goMigrations() {
		latest = max(latest, m.Version)
	}
	entries, _ := fs.ReadDir(Migrations(), ".")
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// SchemaVersion returns the version the database's schema is at, read
// through the runtime role (0 before the first migration).
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.pool.QueryRow(ctx, "SELECT coalesce(max(version_id), 0) FROM goose_db_version").Scan(&v)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return 0, nil
		}
		return 0, translate(err)
	}
	return v, nil
}

// EnsureDatabase creates the database named in databaseURL when it does not
// exist, connecting to the server's "postgres" database with the same
// credentials. It reports whether it created it. For development only.
func EnsureDatabase(ctx context.Context, databaseURL string) (bool, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return false, errors.New("parse database url: invalid connection string")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return false, errors.New("database url names no database")
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return false, fmt.Errorf("connect to the postgres database: %w", translate(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created meanwhile by another process
			return false, nil
		}
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}
