package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/tenant"
)

// DataKeys is the tenant keys the stores seal and open with (nil when the DB
// was opened without a keyring).
func (db *DB) DataKeys() *fieldcrypt.Keys { return db.keys }

// keyStore is fieldcrypt.DEKStore over tenant_keks and tenant_keys. Its
// reads run as AppRole on their own pooled connection: wrapped keys are
// not secret, and every tenant's may be needed (the audit writer seals
// many tenants' events at once).
type keyStore struct{ db *DB }

const dekCols = `k.key_id, k.tenant_id, k.purpose, k.kek_version, k.wrapped, e.provider, e.key_id, e.label, e.byok, e.destroyed_at IS NOT NULL`

func scanDEK(row pgx.Row) (fieldcrypt.DEK, fieldcrypt.KEKRecord, bool, error) {
	var (
		d         fieldcrypt.DEK
		rec       fieldcrypt.KEKRecord
		id        int64
		purpose   string
		destroyed bool
	)
	err := row.Scan(&id, &d.Tenant, &purpose, &d.KEKVersion, &d.Wrapped, &d.KEK.Provider, &d.KEK.ID, &d.KEK.Label, &rec.BYOK, &destroyed)
	d.ID, d.Purpose = uint32(id), fieldcrypt.Purpose(purpose) //nolint:gosec // key ids are positive int4
	rec.Tenant, rec.Version, rec.KEK = d.Tenant, d.KEKVersion, d.KEK
	return d, rec, destroyed, err
}

// TenantKeys implements fieldcrypt.DEKStore.
func (s keyStore) TenantKeys(ctx context.Context, t uuid.UUID) (fieldcrypt.TenantKeys, error) {
	conn, err := s.db.acquire(ctx)
	if err != nil {
		return fieldcrypt.TenantKeys{}, err
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, `SELECT `+dekCols+` FROM tenant_keys k
		JOIN tenant_keks e ON e.tenant_id = k.tenant_id AND e.version = k.kek_version
		WHERE k.tenant_id = $1 AND ((k.purpose = 'blind' AND k.retired_at IS NULL) OR k.key_id =
			(SELECT max(key_id) FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'data'))
		ORDER BY k.key_id DESC`, t)
	if err != nil {
		return fieldcrypt.TenantKeys{}, translate(err)
	}
	defer rows.Close()
	var tk fieldcrypt.TenantKeys
	n, blinds := 0, 0
	for rows.Next() {
		d, rec, destroyed, err := scanDEK(rows)
		if err != nil {
			return fieldcrypt.TenantKeys{}, translate(err)
		}
		if destroyed {
			return fieldcrypt.TenantKeys{}, fieldcrypt.ErrKeyDestroyed
		}
		n++
		switch {
		case d.Purpose == fieldcrypt.PurposeData:
			tk.Data, tk.KEK = d, rec
		case blinds == 0: // newest first
			tk.Blind = d
			blinds++
		default:
			tk.OldBlind = &d
			blinds++
		}
	}
	if err := rows.Err(); err != nil {
		return fieldcrypt.TenantKeys{}, translate(err)
	}
	if n == 0 {
		var erased bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM tenant_keks WHERE tenant_id = $1 AND destroyed_at IS NOT NULL)`, t).Scan(&erased); err != nil {
			return fieldcrypt.TenantKeys{}, translate(err)
		}
		if erased {
			return fieldcrypt.TenantKeys{}, fieldcrypt.ErrKeyDestroyed
		}
		return fieldcrypt.TenantKeys{}, fieldcrypt.ErrNoTenantKeys
	}
	if tk.Data.ID == 0 || blinds == 0 || blinds > 2 {
		return fieldcrypt.TenantKeys{}, fmt.Errorf("tenant %s: %d keys stored (%d blind), want a data key and one or two blind keys", t, n, blinds)
	}
	return tk, nil
}

// DEK implements fieldcrypt.DEKStore.
func (s keyStore) DEK(ctx context.Context, id uint32) (fieldcrypt.DEK, error) {
	conn, err := s.db.acquire(ctx)
	if err != nil {
		return fieldcrypt.DEK{}, err
	}
	defer conn.Release()
	d, _, destroyed, err := scanDEK(conn.QueryRow(ctx, `SELECT `+dekCols+` FROM tenant_keys k
		JOIN tenant_keks e ON e.tenant_id = k.tenant_id AND e.version = k.kek_version WHERE k.key_id = $1`, int64(id)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fieldcrypt.DEK{}, fmt.Errorf("%w: tenant key %d", fieldcrypt.ErrUnknownKey, id)
	case err != nil:
		return fieldcrypt.DEK{}, translate(err)
	case destroyed:
		return fieldcrypt.DEK{}, fieldcrypt.ErrKeyDestroyed
	}
	return d, nil
}

// SaveTenantKeys implements fieldcrypt.DEKStore.
func (s keyStore) SaveTenantKeys(ctx context.Context, tk fieldcrypt.TenantKeys) (fieldcrypt.TenantKeys, error) {
	err := s.db.runCold(ctx, PlatformRole, "", tenant.ID{}, func(tx *Tx) error {
		// The KEK row, and the ids of the two keys it wraps.
		// (Citus refuses nextval() in a RETURNING clause: a second statement.)
		var a, b int64
		err := tx.QueryRow(ctx, `INSERT INTO tenant_keks (tenant_id, version, provider, key_id, label, byok)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING version`,
			tk.KEK.Tenant, tk.KEK.Version, tk.KEK.KEK.Provider, tk.KEK.KEK.ID, tk.KEK.KEK.Label, tk.KEK.BYOK).Scan(new(int32))
		if errors.Is(err, pgx.ErrNoRows) {
			return fieldcrypt.ErrTenantKeysExist
		}
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT nextval('tenant_keys_id_seq'), nextval('tenant_keys_id_seq')`).Scan(&a, &b); err != nil {
			return err
		}
		tk.Data.ID, tk.Blind.ID = uint32(a), uint32(b) //nolint:gosec // key ids are positive int4
		queueTenantKeys(tx, tk, false)
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fieldcrypt.TenantKeys{}, fieldcrypt.ErrTenantKeysExist
	}
	return tk, err
}

// queueTenantKeys queues the rows of tk, whose key ids are reserved
// already (the KEK row too when withKEK).
func queueTenantKeys(tx *Tx, tk fieldcrypt.TenantKeys, withKEK bool) {
	if withKEK {
		tx.Queue(`INSERT INTO tenant_keks (tenant_id, version, provider, key_id, label, byok) VALUES ($1, $2, $3, $4, $5, $6)`,
			tk.KEK.Tenant, tk.KEK.Version, tk.KEK.KEK.Provider, tk.KEK.KEK.ID, tk.KEK.KEK.Label, tk.KEK.BYOK)
	}
	for _, d := range []fieldcrypt.DEK{tk.Data, tk.Blind} {
		tx.Queue(`INSERT INTO tenant_keys (key_id, tenant_id, purpose, kek_version, wrapped) VALUES ($1, $2, $3, $4, $5)`,
			int64(d.ID), d.Tenant, string(d.Purpose), d.KEKVersion, d.Wrapped)
	}
}

// provisionTenant makes the keys of a new tenant (a KEK in the provider,
// or byok, a key the tenant brings) and queues their rows in tx, the unit
// of work that creates the tenant. A KEK made here is destroyed when the
// unit of work fails: no half-made tenant survives, in the database or in
// the provider.
func (tx *Tx) provisionTenant(ctx context.Context, t uuid.UUID, byok *kms.KEK) error {
	keys := tx.db.keys
	if keys == nil {
		return errors.New("postgres: no keys configured")
	}
	tk, undo, err := keys.NewTenantKeys(ctx, t, byok)
	if err != nil {
		return err
	}
	tx.onAbort(undo)
	// The ids now, so that what the unit of work seals for the new tenant
	// (its audit event) uses these keys.
	var a, b int64
	if err := tx.QueryRow(ctx, `SELECT nextval('tenant_keys_id_seq'), nextval('tenant_keys_id_seq')`).Scan(&a, &b); err != nil {
		return err
	}
	tk.Data.ID, tk.Blind.ID = uint32(a), uint32(b) //nolint:gosec // key ids are positive int4
	keys.Adopt(tk)
	tx.onAbort(func(context.Context) { keys.Forget(t) })
	queueTenantKeys(tx, tk, true)
	return nil
}

// KEKVersion is one key-encryption key of a tenant, for keys status.
type KEKVersion struct {
	Tenant      uuid.UUID
	Version     int
	Provider    string
	KeyID       string
	Label       string
	BYOK        bool
	CreatedAt   time.Time
	DestroyedAt *time.Time
	DataKeys    int64 // DEKs wrapped under it
}

// KEKVersions lists every tenant's KEK versions with how many DEKs each
// wraps.
func (db *DB) KEKVersions(ctx context.Context) ([]KEKVersion, error) {
	var out []KEKVersion
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT e.tenant_id, e.version, e.provider, e.key_id, e.label, e.byok, e.created_at, e.destroyed_at,
				(SELECT count(*) FROM tenant_keys k WHERE k.tenant_id = e.tenant_id AND k.kek_version = e.version)
			FROM tenant_keks e ORDER BY e.tenant_id, e.version`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (KEKVersion, error) {
			var v KEKVersion
			err := r.Scan(&v.Tenant, &v.Version, &v.Provider, &v.KeyID, &v.Label, &v.BYOK, &v.CreatedAt, &v.DestroyedAt, &v.DataKeys)
			return v, err
		})
		return err
	})
	return out, err
}

// RotateDataKey gives tenant t (uuid.Nil: the platform) a new data key
// under its current KEK: new values are sealed with it at once (here; other
// servers within their key cache's meta TTL), and keys rotate moves the
// old values to it. The old key stays to open what it sealed. It returns
// the new key's id.
func (db *DB) RotateDataKey(ctx context.Context, t uuid.UUID) (uint32, error) {
	if _, err := db.keys.Active(ctx, t); err != nil { // the tenant's keys exist from here on
		return 0, err
	}
	cur, err := keyStore{db}.TenantKeys(ctx, t)
	if err != nil {
		return 0, err
	}
	d, err := db.keys.NewDataKey(ctx, cur.KEK)
	if err != nil {
		return 0, err
	}
	var id int64
	err = db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO tenant_keys (tenant_id, purpose, kek_version, wrapped) VALUES ($1, 'data', $2, $3) RETURNING key_id`,
			t, d.KEKVersion, d.Wrapped).Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	db.keys.Forget(t)
	return uint32(id), nil //nolint:gosec // key ids are positive int4
}
