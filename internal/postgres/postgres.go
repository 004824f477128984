// Package postgres is elile's only user of PostgreSQL: the connection pool,
// the embedded migrations, transactions scoped to a tenant, error
// translation and the stores. Nothing outside it imports pgx.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/tenant"
)

// The roles the migrations create. The server's connections SET ROLE to
// AppRole right after connecting; the platform-admin path and the audit
// group-commit writer switch role for one transaction only.
const (
	AppRole         = "elile_app"
	PlatformRole    = "elile_platform"
	AuditWriterRole = "elile_audit_writer"
)

// Errors returned by the transaction helpers and stores.
var (
	ErrNotFound    = apperr.New(apperr.NotFound, "NOT_FOUND", "not found")
	ErrConflict    = apperr.New(apperr.Conflict, "CONFLICT", "conflicts with stored data")
	ErrUnavailable = apperr.New(apperr.Unavailable, "DATABASE_UNAVAILABLE", "the database is unavailable; retry later")
	ErrNoTenant    = apperr.New(apperr.Internal, "NO_TENANT", "tenant transaction without a tenant")
	// ErrInvalidValue is a value the database refused although validation
	// let it through: a 422 rather than a 500, and a validation gap to close.
	ErrInvalidValue = apperr.New(apperr.Invalid, "INVALID_VALUE", "a value was not accepted")
)

// Options configure the pool.
type Options struct {
	URL            string
	MaxConns       int32         // pool size + overflow
	MinConns       int32         // kept open even when idle
	AcquireTimeout time.Duration // longest wait for a free connection; 0: the request's deadline
	// Keyring is the environment keyring. Alone (KMS nil) it is the root
	// of the local key provider, for development and tests; with a KMS it
	// only opens what was sealed before envelope encryption. Nil: the
	// stores cannot seal (migrations, schema tools).
	Keyring *fieldcrypt.Keyring
	// KMS keeps the tenants' key-encryption keys (nil: kms.Local from
	// Keyring).
	KMS kms.Provider
	// KMSCache keeps unwrapped data keys in memory (nil: 15 minutes, at
	// most 10,000).
	KMSCache *kms.Cache
	// PlatformKEK, when set, wraps the platform's own data keys.
	PlatformKEK *kms.KEK
	// KeyMetaTTL is how long key rows read from the database are trusted
	// (0: a minute).
	KeyMetaTTL time.Duration
	// Tracer, when set, makes a span for each statement and pipeline of a
	// traced request.
	Tracer trace.Tracer
	// Statements, when set, is called with the text of every statement
	// the pool sends (tests check that each names its tenant).
	Statements func(sql string)
	// TransactionPooler says URL reaches PostgreSQL through a pooler in
	// transaction mode (PgBouncer): no session state is set on a
	// connection (it would be carried to whichever client the pooler
	// hands the server connection to next; every unit of work sets its
	// role and tenant for its own transaction), and statements are not
	// prepared by name (ExecMode must not be cache_statement).
	TransactionPooler bool
	// ExecMode is how pgx sends statements (empty: cache_statement, or
	// cache_describe behind a transaction pooler).
	ExecMode string
	// DirectURL reaches PostgreSQL without a transaction pooler, for the
	// session advisory locks of leader election (empty: URL, which must
	// then not pass through a transaction pooler).
	DirectURL string
}

// ExecModes are the pgx query execution modes a pool can use.
//
//nolint:gochecknoglobals // read-only table
var ExecModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// execMode is o's query execution mode.
func (o Options) execMode() (pgx.QueryExecMode, error) {
	name := o.ExecMode
	if name == "" {
		name = "cache_statement"
		if o.TransactionPooler {
			name = "cache_describe"
		}
	}
	m, ok := ExecModes[name]
	if !ok {
		return 0, fmt.Errorf("exec mode %q: want one of cache_statement, cache_describe, describe_exec, exec, simple_protocol", name)
	}
	if o.TransactionPooler && m == pgx.QueryExecModeCacheStatement {
		return 0, errors.New("exec mode cache_statement prepares named statements, which a transaction pooler does not keep")
	}
	return m, nil
}

// DB is the pool the server runs its queries through, as AppRole.
type DB struct {
	pool           *pgxpool.Pool
	acquireTimeout time.Duration
	directURL      string                          // leader election's sessions; empty: the pool
	url            string                          // the pool's, for the job queue's own pool
	pooled         bool                            // url passes through a transaction pooler
	webhookHook    atomic.Pointer[func(tenant.ID)] // OnWebhookEvent
	endpoints      endpointCache                   // which tenants have an enabled webhook endpoint
	keys           *fieldcrypt.Keys
	forgedSeals    atomic.Int64
	citus          atomic.Int32 // 0: not yet known, 1: plain PostgreSQL, 2: a Citus coordinator
}

// onCitus reports whether the database is a Citus coordinator, as the
// pool's first connection found (AfterConnect): every unit of work holds a
// connection, so it is known before any statement is sent.
func (db *DB) onCitus() bool { return db.citus.Load() == 2 }

// Open creates the pool. It does not wait for the server: use Ping or
// WaitReady for that.
func Open(ctx context.Context, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redactParseError(err))
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.MinConns = min(o.MinConns, cfg.MaxConns)
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 15 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "elile"
	if o.Tracer != nil || o.Statements != nil {
		cfg.ConnConfig.Tracer = pgTracer{t: o.Tracer, seen: o.Statements}
	}
	mode, err := o.execMode()
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	db := &DB{acquireTimeout: o.AcquireTimeout, directURL: o.DirectURL, url: o.URL, pooled: o.TransactionPooler}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if db.citus.Load() == 0 {
			// Whether this is a Citus coordinator, asked on the first
			// connection (onCitus).
			var on bool
			if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')`).Scan(&on); err != nil {
				return err
			}
			db.citus.Store(map[bool]int32{false: 1, true: 2}[on])
		}
		if o.TransactionPooler {
			return nil
		}
		// Defence in depth on a connection of our own: anything outside a
		// unit of work runs as the application role too.
		_, err := c.Exec(ctx, "SET ROLE "+AppRole)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	db.pool = pool
	if o.KMS == nil && o.Keyring != nil {
		local, err := kms.NewLocal(fieldcrypt.LocalMaster(o.Keyring))
		if err != nil {
			pool.Close()
			return nil, err
		}
		o.KMS = local
	}
	if o.KMS != nil {
		if o.KMSCache == nil {
			o.KMSCache = kms.NewCache(o.KMS, 15*time.Minute, 10000, nil)
		}
		db.keys = fieldcrypt.NewKeys(fieldcrypt.KeysConfig{Provider: o.KMS, Cache: o.KMSCache, Store: keyStore{db},
			Legacy: o.Keyring, PlatformKEK: o.PlatformKEK, MetaTTL: o.KeyMetaTTL})
	}
	return db, nil
}

// redactParseError keeps a connection string (which may hold a password)
// out of error messages.
func redactParseError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string")
	}
	return err
}

// Close closes every connection.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that a connection can be had and answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return translate(err)
	}
	return nil
}

// WaitReady pings until the database answers or timeout passes, so a server
// that starts together with its database does not fail for nothing. It
// returns the last error when it gives up.
func (db *DB) WaitReady(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.pool.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		log.WarnContext(ctx, "database not reachable yet", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("database unreachable after %s: %w", timeout, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrUnsafeLogin is a login role the server must not run as outside
// development.
var ErrUnsafeLogin = apperr.New(apperr.Internal, "UNSAFE_DATABASE_LOGIN", "the database login is too powerful for the server")

// CheckLogin refuses a login role that would make row-level security and
// the audit log's protections moot if its URL leaked or a query escaped
// its role: a superuser, a role with BYPASSRLS, or the owner of any table
// of the schema (owners can disable triggers and policies). Migrations
// run with a separate owner credential (MIGRATION_DATABASE_URL).
func (db *DB) CheckLogin(ctx context.Context) error {
	var name string
	var super, bypass bool
	var owned int
	err := db.pool.QueryRow(ctx, `SELECT r.rolname, r.rolsuper, r.rolbypassrls,
			(SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = r.oid)
		FROM pg_roles r WHERE r.rolname = session_user`).Scan(&name, &super, &bypass, &owned)
	if err != nil {
		return translate(err)
	}
	var why []string
	if super {
		why = append(why, "is a superuser")
	}
	if bypass {
		why = append(why, "has BYPASSRLS")
	}
	if owned > 0 {
		why = append(why, fmt.Sprintf("owns %d tables or other relations of the schema", owned))
	}
	if len(why) > 0 {
		return ErrUnsafeLogin.Withf("the login role %q %s: give DATABASE_URL a login that only holds %s, %s and %s, and run migrations with MIGRATION_DATABASE_URL",
			name, strings.Join(why, ", "), AppRole, PlatformRole, AuditWriterRole)
	}
	return nil
}

// Stats reports the pool's counters.
func (db *DB) Stats() *pgxpool.Stat { return db.pool.Stat() }

// InTx runs fn in a unit of work scoped to tenant id (InScope with
// tenant.Of(id)); a zero id is ErrNoTenant.
func (db *DB) InTx(ctx context.Context, id tenant.ID, fn func(*Tx) error) error {
	return db.InScope(ctx, tenant.Of(id), fn)
}

// InScope runs fn in a unit of work in scope sc: as AppRole with
// app.tenant_id set for this transaction only (set_config(..., true)) for
// a tenant, so row-level security shows and accepts only that tenant's
// rows (and shared ones where the schema says so), and a pooled connection
// never carries it further; as PlatformRole, which sees every tenant's
// rows, for tenant.Platform(). The zero Scope is ErrNoTenant. fn's error
// rolls the unit back and is returned as is; database errors are
// translated to apperr kinds.
func (db *DB) InScope(ctx context.Context, sc tenant.Scope, fn func(*Tx) error) error {
	role, tenantID, err := scopeOf(sc)
	if err != nil {
		return err
	}
	return db.run(ctx, role, tenantID, sc.Tenant(), fn)
}

// InPlatformTx runs fn in a unit of work as PlatformRole: InScope with
// tenant.Platform().
func (db *DB) InPlatformTx(ctx context.Context, fn func(*Tx) error) error {
	return db.InScope(ctx, tenant.Platform(), fn)
}

// InAuditWriterTx runs fn in a unit of work as AuditWriterRole, which may
// insert audit events of any tenant and do nothing else.
func (db *DB) InAuditWriterTx(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, AuditWriterRole, "", tenant.ID{}, fn)
}

// acquire takes a pooled connection, waiting at most the acquire timeout:
// past it, ErrUnavailable (503 with Retry-After).
func (db *DB) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	actx := ctx
	if db.acquireTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, db.acquireTimeout)
		defer cancel()
	}
	conn, err := db.pool.Acquire(actx)
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			return nil, ErrUnavailable.Withf("no database connection free within %s; retry later", db.acquireTimeout).Wrap(err)
		}
		return nil, translate(err)
	}
	return conn, nil
}

// scopeOf is the role and tenant setting of scope sc; the zero Scope is
// ErrNoTenant.
func scopeOf(sc tenant.Scope) (role, tenantID string, err error) {
	switch {
	case sc.IsPlatform():
		return PlatformRole, "", nil
	case sc.Valid():
		return AppRole, sc.Tenant().String(), nil
	default:
		return "", "", ErrNoTenant
	}
}

// readRow runs one read-only single-row query in scope sc in one round
// trip: the role and tenant setting and the query go in one pipeline,
// which PostgreSQL runs as one implicit transaction, so the settings
// (local to it) apply to the query and end with it. Errors are translated
// like InScope's.
func (db *DB) readRow(ctx context.Context, sc tenant.Scope, sql string, args []any, scan func(pgx.Row) error) error {
	role, tenantID, err := scopeOf(sc)
	if err != nil {
		return err
	}
	conn, err := db.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var b pgx.Batch
	citus := db.onCitus() // a transaction block, as Tx.send explains
	if citus {
		b.Queue("BEGIN")
	}
	b.Queue(setScopeSQL, role, tenantID)
	b.Queue(sql, args...).QueryRow(scan)
	if citus {
		b.Queue("COMMIT")
	}
	err = conn.SendBatch(ctx, &b).Close()
	if err != nil && !conn.Conn().PgConn().IsClosed() {
		endTx(ctx, conn)
	}
	return translate(err)
}

// translate turns driver errors into apperr kinds, once, at the edge.
// Errors that already carry a kind pass through unchanged.
func translate(err error) error {
	if err == nil || apperr.As(err) != nil {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound.Wrap(err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return ErrConflict.Wrap(err)
		case "57P01", "57P02", "57P03", "53300": // admin shutdown, crash shutdown, cannot connect now, too many connections
			return ErrUnavailable.Wrap(err)
		case "57014": // query_canceled: the request's deadline passed
			return ErrUnavailable.Withf("the database did not answer in time").Wrap(err)
		case "23503": // foreign_key_violation
			return ErrInvalidValue.Withf("a referenced object does not exist").Wrap(err)
		}
		if strings.HasPrefix(pgErr.Code, "22") || pgErr.Code == "23514" { // data exception, check violation
			return ErrInvalidValue.Wrap(err)
		}
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ErrUnavailable.Wrap(err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrUnavailable.Withf("the database did not answer in time").Wrap(err)
	}
	return err
}
