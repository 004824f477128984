package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// JobsRole is the role the job queue (River) works as: its own tables and
// nothing else. The server's login must be a member of it.
const JobsRole = "elile_jobs"

// riverVersion is the River schema version migration 00012 installs: the
// version of the River release in go.mod. Upgrading River to a release
// with a newer schema takes a new migration with its version, so that only
// `elile migrate up` changes the schema, as with every other table.
const (
	riverMigration = 12
	riverVersion   = 8
)

// JobTables are River's tables. They are neither tenant nor reference
// tables: on Citus they stay on the coordinator (Distribute leaves them
// alone), and the tenant rules do not apply to them.
func JobTables() []string {
	return []string{"river_job", "river_leader", "river_migration", "river_notification", "river_queue"}
}

// goMigrations are the migrations written in Go: River's schema, which
// River's own migrator writes, each of its versions in a transaction of
// its own (a later one uses an enum value an earlier one adds, which
// PostgreSQL refuses in the same transaction). A run cut short resumes
// where it stopped: River records each version it applied.
func goMigrations() []*goose.Migration {
	river := func(direction rivermigrate.Direction, target int) func(context.Context, *sql.DB) error {
		return func(ctx context.Context, db *sql.DB) error {
			m, err := rivermigrate.New(riverdatabasesql.New(db), nil)
			if err != nil {
				return err
			}
			if _, err := m.Migrate(ctx, direction, &rivermigrate.MigrateOpts{TargetVersion: target}); err != nil {
				return fmt.Errorf("river schema: %w", err)
			}
			if direction == rivermigrate.DirectionDown {
				return nil
			}
			_, err = db.ExecContext(ctx, `
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_jobs') THEN
    CREATE ROLE elile_jobs NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  EXECUTE format('GRANT elile_jobs TO %I', current_user);
END
$$;
GRANT USAGE ON SCHEMA public TO elile_jobs;
GRANT SELECT, INSERT, UPDATE, DELETE ON river_job, river_leader, river_queue, river_notification TO elile_jobs;
GRANT SELECT ON river_migration TO elile_jobs;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO elile_jobs;
REVOKE ALL ON river_job, river_leader, river_queue, river_notification, river_migration FROM elile_app, elile_platform, elile_audit_writer;`)
			return err
		}
	}
	return []*goose.Migration{goose.NewGoMigration(riverMigration,
		&goose.GoFunc{RunDB: river(rivermigrate.DirectionUp, riverVersion)},
		&goose.GoFunc{RunDB: river(rivermigrate.DirectionDown, -1)})}
}

// JobsOptions configures the job queue's client.
type JobsOptions struct {
	MaxConns int32 // its own pool (default 6)
	Config   *river.Config
}

// Jobs starts nothing: it returns a River client on a pool of its own
// (the queue's fetches and leader election must not wait behind
// requests, nor requests behind them), working as JobsRole. Behind a
// transaction pooler LISTEN/NOTIFY cannot work: the client polls
// (PollOnly) and sets no session role (the login's membership of
// JobsRole gives it the rights). Close the returned function after the
// client stopped.
func (db *DB) Jobs(ctx context.Context, o JobsOptions) (*river.Client[pgx.Tx], func(), error) {
	cfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return nil, nil, fmt.Errorf("parse database url: %w", redactParseError(err))
	}
	cfg.MaxConns = 6
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "elile-jobs"
	rc := *o.Config
	if db.pooled {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		rc.PollOnly = true
	} else {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE "+JobsRole)
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("create job pool: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &rc)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("job queue: %w", err)
	}
	return client, pool.Close, nil
}
