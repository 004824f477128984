package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/elile/elile/internal/tenant"
)

// setScopeSQL sets, for the current transaction only, the role it runs as
// and its tenant (empty: none). Nothing a unit of work does depends on
// session state: not a RESET ROLE earlier on the connection, not a
// transaction-mode pooler handing the connection over between transactions.
// The function runs SET LOCAL (migration 00008), which Citus propagates to
// its workers and set_config() is not.
const setScopeSQL = "SELECT elile_set_scope($1, $2)"

// Tx is a unit of work in one scope: a tenant, the platform, or the audit
// writer. It talks to PostgreSQL as little as the work allows.
//
// Statements whose results nothing waits for are queued (Queue, QueueRow)
// and go out with the next statement that must be answered, or at the
// end. A unit of work that only queues costs one round trip: the role and
// tenant setting, the statements and the commit travel as one pipeline,
// which PostgreSQL runs as one implicit transaction (it commits at the
// pipeline's end, or rolls everything back at the first error). A unit of
// work that must read before it writes opens an explicit transaction with
// its first read (BEGIN, the settings, what is queued and the read: one
// round trip) and sends COMMIT with what is queued last.
type Tx struct {
	db      *DB
	conn    *pgxpool.Conn
	role    string
	setting string    // app.tenant_id: a canonical UUID or empty
	tenant  tenant.ID // zero outside a tenant unit of work
	begun   bool      // an explicit transaction is open
	pending []queued
	aborts  []func(context.Context)
	commits []func()                // run once the unit committed (afterCommit)
	owners  map[uuid.UUID]uuid.UUID // entity -> its tenant, as looked up in this unit (entityOwner)
}

// afterCommit registers fn to run once the unit of work committed (it
// must not block: it runs before the caller gets its answer).
func (t *Tx) afterCommit(fn func()) { t.commits = append(t.commits, fn) }

// onAbort registers fn to undo, outside the database, what the unit of
// work did there (a KEK made in the key provider) if the unit fails.
func (t *Tx) onAbort(fn func(context.Context)) { t.aborts = append(t.aborts, fn) }

type queued struct {
	sql  string
	args []any
	scan func(pgx.Row) error
}

// Tenant returns the tenant the unit of work is scoped to (zero if none).
func (t *Tx) Tenant() tenant.ID { return t.tenant }

// Queue adds a statement to send with the next one that must be answered
// (or at the end). Its failure fails the unit of work.
func (t *Tx) Queue(sql string, args ...any) {
	t.pending = append(t.pending, queued{sql: sql, args: args})
}

// QueueRow is Queue for a statement that returns one row (an INSERT ...
// RETURNING), read by scan when the pipeline is answered. scan must not
// fail for a row the statement returned: the statements after it (the
// commit among them) run whatever scan decides.
func (t *Tx) QueueRow(sql string, args []any, scan func(pgx.Row) error) {
	t.pending = append(t.pending, queued{sql: sql, args: args, scan: scan})
}

// send sends what is queued, then what add queues: in the explicit
// transaction (opening it first) unless final is set and none is open, in
// which case the pipeline is the whole unit of work.
func (t *Tx) send(ctx context.Context, final bool, add func(*pgx.Batch)) error {
	if final && !t.begun && len(t.pending) == 0 && add == nil {
		return nil // nothing was ever asked of the database
	}
	// On Citus the pipeline is wrapped in BEGIN … COMMIT (still one round
	// trip): it propagates SET LOCAL to the workers only inside a
	// transaction block, and an implicit one is not — a worker would see
	// no tenant, and row-level security there would return nothing.
	wrap := final && !t.begun && t.db.onCitus()
	implicit := final && !t.begun && !wrap
	var b pgx.Batch
	if !t.begun {
		if !implicit {
			b.Queue("BEGIN")
		}
		b.Queue(setScopeSQL, t.role, t.setting)
	}
	for _, q := range t.pending {
		qq := b.Queue(q.sql, q.args...)
		if q.scan != nil {
			qq.QueryRow(q.scan)
		}
	}
	t.pending = t.pending[:0]
	if add != nil {
		add(&b)
	}
	if final && (t.begun || wrap) {
		b.Queue("COMMIT")
	}
	if !implicit {
		t.begun = true
	}
	return t.conn.SendBatch(ctx, &b).Close()
}

// direct reports whether a statement must go by itself, not in a
// pipeline: its arguments start with a pgx.QueryExecMode (a pipeline runs
// in the connection's default mode only).
func direct(args []any) bool {
	if len(args) == 0 {
		return false
	}
	_, ok := args[0].(pgx.QueryExecMode)
	return ok
}

// open sends what is queued, opening the explicit transaction first, so a
// statement can then go by itself.
func (t *Tx) open(ctx context.Context) error {
	if t.begun && len(t.pending) == 0 {
		return nil
	}
	return t.send(ctx, false, nil)
}

// Exec runs a statement now, after what is queued.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if direct(args) {
		if err := t.open(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.conn.Exec(ctx, sql, args...)
	}
	var tag pgconn.CommandTag
	err := t.send(ctx, false, func(b *pgx.Batch) {
		b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	})
	return tag, err
}

// QueryRow returns a row that runs its statement, after what is queued,
// when it is scanned.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &lazyRow{t: t, ctx: ctx, sql: sql, args: args}
}

type lazyRow struct {
	t    *Tx
	ctx  context.Context //nolint:containedctx // the row is scanned within its caller's call
	sql  string
	args []any
}

func (r *lazyRow) Scan(dest ...any) error {
	if direct(r.args) {
		if err := r.t.open(r.ctx); err != nil {
			return err
		}
		return r.t.conn.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...)
	}
	return r.t.send(r.ctx, false, func(b *pgx.Batch) {
		b.Queue(r.sql, r.args...).QueryRow(func(row pgx.Row) error { return row.Scan(dest...) })
	})
}

// Query runs a statement that returns rows, after what is queued. The rows
// must be read (or closed) before the next statement.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.open(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

// run runs fn in a unit of work as role with app.tenant_id = setting.
func (db *DB) run(ctx context.Context, role, setting string, id tenant.ID, fn func(*Tx) error) (err error) {
	db.warmKeys(ctx, role, id)
	return db.runCold(ctx, role, setting, id, fn)
}

// runCold is run without warming keys: for the key store itself.
func (db *DB) runCold(ctx context.Context, role, setting string, id tenant.ID, fn func(*Tx) error) (err error) {
	conn, err := db.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx := &Tx{db: db, conn: conn, role: role, setting: setting, tenant: id}
	defer func() {
		if p := recover(); p != nil {
			tx.abort(ctx)
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		tx.abort(ctx)
		return translate(err)
	}
	if err := tx.send(ctx, true, nil); err != nil {
		tx.abort(ctx)
		return translate(err)
	}
	for _, fn := range tx.commits {
		fn()
	}
	return nil
}

// warmKeys brings the keys a unit of work in a tenant's scope (or the
// platform's) seals and opens with into memory before it takes a
// connection, so that sealing inside it does not wait for a second one.
// It costs a map look-up when they are there. Best effort: a tenant whose
// keys cannot be had (erased, provider down) still gets its unit of work,
// which fails only if it needs them.
func (db *DB) warmKeys(ctx context.Context, role string, id tenant.ID) {
	if db.keys == nil || role == AuditWriterRole {
		return
	}
	if !id.IsZero() {
		_, _ = db.keys.Active(ctx, id.UUID())
	}
	_, _ = db.keys.Active(ctx, uuid.Nil) // shared rows, visible to every tenant
}

// abort rolls back an open or failed transaction so the connection goes
// back to the pool clean; a connection that cannot be cleaned is closed
// (the pool then drops it).
func (t *Tx) abort(ctx context.Context) {
	pc := t.conn.Conn().PgConn()
	if pc.IsClosed() {
		// Whether the unit committed is unknown: undoing could destroy the
		// KEK of a tenant that exists. A KEK nothing uses is harmless.
		return
	}
	defer t.undo(ctx)
	endTx(ctx, t.conn)
}

// endTx rolls back a transaction left open on conn (a failed one), so the
// connection goes back to the pool clean; one that cannot be cleaned is
// closed (the pool then drops it).
func endTx(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
	}
}

// undo runs what onAbort registered, newest first.
func (t *Tx) undo(ctx context.Context) {
	for i := len(t.aborts) - 1; i >= 0; i-- {
		t.aborts[i](context.WithoutCancel(ctx))
	}
}
