package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

const tenantCols = "tenant_id, name, slug, locale, active, config, created_at, updated_at"

func scanTenant(row pgx.Row) (tenant.Tenant, error) {
	var t tenant.Tenant
	var id uuid.UUID
	var cfg []byte
	if err := row.Scan(&id, &t.Name, &t.Slug, &t.Locale, &t.Active, &cfg, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return tenant.Tenant{}, err
	}
	t.ID = tenant.ID(id)
	if err := json.Unmarshal(cfg, &t.Config); err != nil {
		return tenant.Tenant{}, err
	}
	return t, nil
}

// CreateTenant stores a new tenant and its tenant.created event (in that
// tenant's log), through the platform path. A taken slug is
// tenant.ErrSlugTaken.
func (db *DB) CreateTenant(ctx context.Context, t tenant.Tenant, ev audit.Event) (tenant.Tenant, error) {
	var out tenant.Tenant
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		cfg, err := json.Marshal(nonNilMap(t.Config))
		if err != nil {
			return err
		}
		out, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO tenants (tenant_id, name, slug, locale, active, config)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+tenantCols, t.ID.UUID(), t.Name, t.Slug, t.Locale, t.Active, cfg))
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if errors.Is(err, ErrConflict) {
		return tenant.Tenant{}, tenant.ErrSlugTaken.Wrap(err)
	}
	return out, err
}

// Tenant returns a tenant by id through the platform path (it is used to
// validate X-Tenant-ID before any tenant scope exists).
func (db *DB) Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error) {
	var out tenant.Tenant
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		out, err = scanTenant(tx.QueryRow(ctx, "SELECT "+tenantCols+" FROM tenants WHERE tenant_id = $1", id.UUID()))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return tenant.Tenant{}, tenant.ErrNotFound.Wrap(err)
	}
	return out, err
}

// Tenants lists tenants newest first, after the cursor id (uuid.Nil: from
// the newest), at most limit.
func (db *DB) Tenants(ctx context.Context, after uuid.UUID, limit int) ([]tenant.Tenant, error) {
	var out []tenant.Tenant
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+tenantCols+` FROM tenants
			WHERE ($1::uuid IS NULL OR tenant_id < $1) ORDER BY tenant_id DESC LIMIT $2`, nullUUID(after), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Tenant, error) { return scanTenant(r) })
		return err
	})
	return out, err
}

// UpdateTenant applies p and records ev (config.changed) in the same
// transaction.
func (db *DB) UpdateTenant(ctx context.Context, id tenant.ID, p tenant.Patch, ev audit.Event) (tenant.Tenant, error) {
	var out tenant.Tenant
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var cfg []byte
		if p.Config != nil {
			var err error
			if cfg, err = json.Marshal(p.Config); err != nil {
				return err
			}
		}
		var err error
		out, err = scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET
				name = coalesce($2, name), locale = coalesce($3, locale), active = coalesce($4, active),
				config = coalesce($5, config), updated_at = now()
			WHERE tenant_id = $1 RETURNING `+tenantCols, id.UUID(), p.Name, p.Locale, p.Active, cfg))
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if errors.Is(err, ErrNotFound) {
		return tenant.Tenant{}, tenant.ErrNotFound.Wrap(err)
	}
	return out, err
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

const keyCols = "key_id, tenant_id, name, prefix, scopes, created_by, created_at, expires_at, last_used_at, revoked_at"

func scanKey(row pgx.Row) (auth.Key, error) {
	var k auth.Key
	var tid, by *uuid.UUID
	var exp, used, revoked *time.Time
	if err := row.Scan(&k.ID, &tid, &k.Name, &k.Prefix, &k.Scopes, &by, &k.CreatedAt, &exp, &used, &revoked); err != nil {
		return auth.Key{}, err
	}
	if tid != nil {
		k.Tenant = tenant.ID(*tid)
	}
	if by != nil {
		k.CreatedBy = *by
	}
	for dst, src := range map[*time.Time]*time.Time{&k.ExpiresAt: exp, &k.LastUsedAt: used, &k.RevokedAt: revoked} {
		if src != nil {
			*dst = *src
		}
	}
	return k, nil
}

// CreateKey stores an API key (its hash, never the secret) and records ev.
// A key with a zero tenant is a platform-admin key, stored through the
// platform path; others are stored in their tenant's scope.
func (db *DB) CreateKey(ctx context.Context, k auth.Key, hash []byte, ev audit.Event) (auth.Key, error) {
	var out auth.Key
	fn := func(tx *Tx) error {
		var exp *time.Time
		if !k.ExpiresAt.IsZero() {
			exp = &k.ExpiresAt
		}
		var err error
		out, err = scanKey(tx.QueryRow(ctx, `INSERT INTO api_keys (key_id, tenant_id, name, prefix, secret_hash, scopes, created_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+keyCols,
			k.ID, nullUUID(k.Tenant.UUID()), k.Name, k.Prefix, hash, k.Scopes, nullUUID(k.CreatedBy), exp))
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx, ev)
	}
	if k.Tenant.IsZero() {
		return out, db.InPlatformTx(ctx, fn)
	}
	return out, db.InTx(ctx, k.Tenant, fn)
}

// Keys lists a tenant's keys newest first, after the cursor id.
func (db *DB) Keys(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]auth.Key, error) {
	var out []auth.Key
	err := db.InTx(ctx, t, func(tx *Tx) error {
		rows, err := tx.Query(ctx, "SELECT "+keyCols+` FROM api_keys
			WHERE tenant_id = $1 AND ($2::uuid IS NULL OR key_id < $2) ORDER BY key_id DESC LIMIT $3`, t.UUID(), nullUUID(after), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.Key, error) { return scanKey(r) })
		return err
	})
	return out, err
}

// RevokeKey marks a tenant's key revoked and records ev. Revoking a revoked
// key changes nothing and records nothing. Another tenant's key, or none,
// is auth.ErrKeyNotFound.
func (db *DB) RevokeKey(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error {
	err := db.InTx(ctx, t, func(tx *Tx) error {
		var revokedBefore bool
		err := tx.QueryRow(ctx, `WITH old AS (SELECT revoked_at IS NOT NULL AS was FROM api_keys WHERE key_id = $1 AND tenant_id = $2 FOR UPDATE)
			UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM old
			WHERE k.key_id = $1 AND k.tenant_id = $2 RETURNING old.was`, id, t.UUID()).Scan(&revokedBefore)
		if err != nil {
			return err
		}
		if revokedBefore {
			return nil
		}
		return db.appendAudit(ctx, tx, ev)
	})
	if errors.Is(err, ErrNotFound) {
		return auth.ErrKeyNotFound.Wrap(err)
	}
	return err
}

// KeyByHash finds a key by its secret's hash for authentication, through
// the platform path (no tenant is known yet), and notes its use at most
// once a minute.
func (db *DB) KeyByHash(ctx context.Context, hash []byte) (auth.Key, error) {
	var out auth.Key
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		out, err = scanKey(tx.QueryRow(ctx, "SELECT "+keyCols+" FROM api_keys WHERE secret_hash = $1", hash))
		if err != nil {
			return err
		}
		if out.RevokedAt.IsZero() && (out.LastUsedAt.IsZero() || time.Since(out.LastUsedAt) > time.Minute) {
			_, err = tx.Exec(ctx, "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1", out.ID)
		}
		return err
	})
	if err != nil && apperr.KindOf(err) == apperr.NotFound {
		return auth.Key{}, auth.ErrKeyNotFound.Wrap(err)
	}
	return out, err
}
