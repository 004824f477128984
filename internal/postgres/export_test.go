package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/tenant"
)

// Raw exposes the unit of work's statements to this package's tests.
func (t *Tx) Raw() *Tx { return t }

// InNoTenantTx runs fn in a transaction as the runtime role with no tenant
// set: what a forgotten scope would look like.
func (db *DB) InNoTenantTx(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, AppRole, "", tenant.ID{}, fn)
}

// Translate exposes translate.
var Translate = translate //nolint:gochecknoglobals // test export

// ExecSession runs sql on a pooled connection outside any transaction:
// what a pooler or an earlier user of the connection might leave behind.
func (db *DB) ExecSession(ctx context.Context, sql string) error {
	_, err := db.pool.Exec(ctx, sql)
	return err
}

// ReadRow exposes readRow.
func (db *DB) ReadRow(ctx context.Context, sc tenant.Scope, sql string, args []any, scan func(pgx.Row) error) error {
	return db.readRow(ctx, sc, sql, args, scan)
}

// SessionSetting reads a setting on a pooled connection outside any
// transaction: what the connection carries from its last use.
func (db *DB) SessionSetting(ctx context.Context, name string) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, "SELECT coalesce(current_setting($1, true), '') || '/' || (current_user = session_user)::text", name).Scan(&v)
	return v, err
}
