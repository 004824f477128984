package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

const tenantCols = `tenant_id, name, slug, locale, active, config, legal_hold, erasure_started_at, created_at, updated_at,
	coalesce((SELECT byok FROM tenant_keks k WHERE k.tenant_id = tenants.tenant_id AND k.destroyed_at IS NULL ORDER BY k.version DESC LIMIT 1), false)`

func scanTenant(row pgx.Row) (tenant.Tenant, error) {
	var t tenant.Tenant
	var id uuid.UUID
	var cfg []byte
	var erasing *time.Time
	if err := row.Scan(&id, &t.Name, &t.Slug, &t.Locale, &t.Active, &cfg, &t.LegalHold, &erasing, &t.CreatedAt, &t.UpdatedAt, &t.BYOK); err != nil {
		return tenant.Tenant{}, err
	}
	if erasing != nil {
		t.Erasing = *erasing
	}
	t.ID = tenant.ID(id)
	if err := json.Unmarshal(cfg, &t.Config); err != nil {
		return tenant.Tenant{}, err
	}
	return t, nil
}

// notPlatform leaves out the platform's own row (tenant_id = the nil UUID,
// migration 00009), which holds shared entities and the system audit
// chain: it is no tenant anyone can name, list, change or erase.
const notPlatform = "tenant_id <> '00000000-0000-0000-0000-000000000000'"

// Tenant returns a tenant by id through the platform path (it is used to
// validate X-Tenant-ID before any tenant scope exists).
func (db *DB) Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error) {
	var out tenant.Tenant
	err := db.readRow(ctx, tenant.Platform(), "SELECT "+tenantCols+" FROM tenants WHERE tenant_id = $1 AND "+notPlatform, []any{id.UUID()},
		func(row pgx.Row) error {
			var err error
			out, err = scanTenant(row)
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
			WHERE `+notPlatform+` AND ($1::uuid IS NULL OR tenant_id < $1) ORDER BY tenant_id DESC LIMIT $2`, nullUUID(after), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Tenant, error) { return scanTenant(r) })
		return err
	})
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

// KeyByHash finds a key by its secret's hash for authentication, through
// the platform path (no tenant is known yet), and notes its use at most
// once a minute.
func (db *DB) KeyByHash(ctx context.Context, hash []byte) (auth.Key, error) {
	var out auth.Key
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		out, err = scanKey(tx.QueryRow(ctx, "SELECT "+keyCols+" FROM api_keys WHERE secret_hash = $1 /* all tenants: authentication finds a key by its hash before any tenant is known */", hash))
		if err != nil {
			return err
		}
		if out.RevokedAt.IsZero() && (out.LastUsedAt.IsZero() || time.Since(out.LastUsedAt) > time.Minute) {
			_, err = tx.Exec(ctx, "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1 /* all tenants: the key found by its hash, whichever tenant's */", out.ID)
		}
		return err
	})
	if err != nil && apperr.KindOf(err) == apperr.NotFound {
		return auth.Key{}, auth.ErrKeyNotFound.Wrap(err)
	}
	return out, err
}

// TenancyStore keeps tenants and API keys (tenancy.Store).
type TenancyStore struct{ db *DB }

// Tenancy returns the store of tenants and API keys.
func (db *DB) Tenancy() *TenancyStore { return &TenancyStore{db: db} }

type tenancyTx struct{ *Tx }

// InScope runs fn in one unit of work in scope sc. A taken slug is
// tenant.ErrSlugTaken.
func (s *TenancyStore) InScope(ctx context.Context, sc tenant.Scope, fn func(tenancy.Tx) error) error {
	err := s.db.InScope(ctx, sc, func(tx *Tx) error { return fn(&tenancyTx{tx}) })
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "tenants" {
		return tenant.ErrSlugTaken.Wrap(err)
	}
	return err
}

// Tenant returns a tenant (tenancy.Store).
func (s *TenancyStore) Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error) {
	return s.db.Tenant(ctx, id)
}

// Tenants lists tenants (tenancy.Store).
func (s *TenancyStore) Tenants(ctx context.Context, after uuid.UUID, limit int) ([]tenant.Tenant, error) {
	return s.db.Tenants(ctx, after, limit)
}

// Keys lists a tenant's keys (tenancy.Store).
func (s *TenancyStore) Keys(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]auth.Key, error) {
	return s.db.Keys(ctx, t, after, limit)
}

// InsertTenant queues t and its keys (a KEK made in the key provider, a
// data key and a blind-index key wrapped by it); its timestamps are
// filled in when it is sent. If the unit of work fails, the KEK is
// destroyed again.
func (t *tenancyTx) InsertTenant(ctx context.Context, tn *tenant.Tenant, kekRef string) error {
	cfg, err := json.Marshal(nonNilMap(tn.Config))
	if err != nil {
		return err
	}
	var byok *kms.KEK
	if kekRef != "" {
		if t.db.keys == nil {
			return errors.New("postgres: no keys configured")
		}
		k, err := t.db.tenantKEK(ctx, kekRef)
		if err != nil {
			return err
		}
		byok = &k
	}
	if err := t.provisionTenant(ctx, tn.ID.UUID(), byok); err != nil {
		return err
	}
	tn.BYOK = byok != nil
	t.QueueRow(`INSERT INTO tenants (tenant_id, name, slug, locale, active, config)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at, updated_at`, []any{tn.ID.UUID(), tn.Name, tn.Slug, tn.Locale, tn.Active, cfg},
		func(row pgx.Row) error { return row.Scan(&tn.CreatedAt, &tn.UpdatedAt) })
	return nil
}

// UpdateTenant applies p (tenant.ErrNotFound if there is no such tenant).
func (t *tenancyTx) UpdateTenant(ctx context.Context, id tenant.ID, p tenant.Patch) (tenant.Tenant, error) {
	var cfg []byte
	if p.Config != nil {
		var err error
		if cfg, err = json.Marshal(p.Config); err != nil {
			return tenant.Tenant{}, err
		}
	}
	out, err := scanTenant(t.QueryRow(ctx, `UPDATE tenants SET
			name = coalesce($2, name), locale = coalesce($3, locale), active = coalesce($4, active),
			config = coalesce($5, config), legal_hold = coalesce($6, legal_hold), updated_at = now()
		WHERE tenant_id = $1 AND `+notPlatform+` RETURNING `+tenantCols, id.UUID(), p.Name, p.Locale, p.Active, cfg, p.LegalHold))
	if errors.Is(err, pgx.ErrNoRows) {
		return tenant.Tenant{}, tenant.ErrNotFound.Wrap(err)
	}
	return out, err
}

// InsertKey queues an API key (its hash, never the secret); created_at is
// filled in when it is sent.
func (t *tenancyTx) InsertKey(_ context.Context, k *auth.Key, hash []byte) error {
	var exp *time.Time
	if !k.ExpiresAt.IsZero() {
		exp = &k.ExpiresAt
	}
	t.QueueRow(`INSERT INTO api_keys (key_id, tenant_id, name, prefix, secret_hash, scopes, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at`,
		[]any{k.ID, nullUUID(k.Tenant.UUID()), k.Name, k.Prefix, hash, k.Scopes, nullUUID(k.CreatedBy), exp},
		func(row pgx.Row) error { return row.Scan(&k.CreatedAt) })
	return nil
}

// RevokeKey revokes a key of tenant tid, reporting whether it was revoked
// already; another tenant's key, or none, is auth.ErrKeyNotFound.
func (t *tenancyTx) RevokeKey(ctx context.Context, tid tenant.ID, id uuid.UUID) (bool, error) {
	var revokedBefore bool
	err := t.QueryRow(ctx, `WITH old AS (SELECT revoked_at IS NOT NULL AS was FROM api_keys WHERE key_id = $1 AND tenant_id = $2 FOR UPDATE)
		UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM old
		WHERE k.key_id = $1 AND k.tenant_id = $2 RETURNING old.was`, id, tid.UUID()).Scan(&revokedBefore)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, auth.ErrKeyNotFound.Wrap(err)
	}
	return revokedBefore, err
}
