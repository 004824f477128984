package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// NewKEKVersion gives tenant t (uuid.Nil: the platform) a new KEK version —
// a key made in the provider, or, with ref, an existing key the tenant
// brings (BYOK: a PKCS#11 key label, a KMS key id, ARN or alias, checked to
// wrap and unwrap) — and re-wraps the tenant's data keys under it. The data
// keys themselves do not change, so no value is re-encrypted, and the
// server keeps serving throughout. Older KEK versions are kept (a backup
// taken before still needs them); erasure destroys them all.
func (db *DB) NewKEKVersion(ctx context.Context, t uuid.UUID, ref string) (int, error) {
	v, _, err := db.newKEKVersion(ctx, t, ref)
	return v, err
}

// tenantKEK resolves a key a tenant brings (BYOK) in the provider:
// tenancy.ErrKEKNotUsable when it cannot be found or used.
func (db *DB) tenantKEK(ctx context.Context, ref string) (kms.KEK, error) {
	k, err := db.keys.Provider().FindKEK(ctx, ref)
	if err != nil {
		return kms.KEK{}, tenancy.ErrKEKNotUsable.Withf("the key %q cannot be used: %v", ref, err).Wrap(err)
	}
	return k, nil
}

func (db *DB) newKEKVersion(ctx context.Context, t uuid.UUID, ref string) (int, int, error) {
	keys := db.keys
	if keys == nil {
		return 0, 0, errors.New("postgres: no keys configured")
	}
	if _, err := keys.Active(ctx, t); err != nil { // the tenant's keys exist from here on
		return 0, 0, err
	}
	p := keys.Provider()
	rec := fieldcrypt.KEKRecord{Tenant: t}
	undo := func() {}
	if ref != "" {
		k, err := db.tenantKEK(ctx, ref)
		if err != nil {
			return 0, 0, err
		}
		rec.KEK, rec.BYOK = k, true
	} else {
		k, err := p.CreateKEK(ctx, fieldcrypt.KEKLabel(t))
		if err != nil {
			return 0, 0, fieldcrypt.ErrKeyUnavailable.Wrap(err)
		}
		rec.KEK = k
		undo = func() { _ = p.DestroyKEK(context.WithoutCancel(ctx), k) }
	}
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO tenant_keks (tenant_id, version, provider, key_id, label, byok)
			SELECT $1, max(version) + 1, $2, $3, $4, $5 FROM tenant_keks WHERE tenant_id = $1 AND destroyed_at IS NULL
			HAVING count(*) > 0 RETURNING version`,
			t, rec.KEK.Provider, rec.KEK.ID, rec.KEK.Label, rec.BYOK).Scan(&rec.Version)
	})
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, ErrNotFound) {
		undo()
		return 0, 0, fieldcrypt.ErrKeyDestroyed
	}
	if err != nil {
		undo()
		return 0, 0, err
	}
	moved, err := db.rewrapTenant(ctx, t)
	if err != nil {
		return rec.Version, moved, fmt.Errorf("re-wrap the data keys under KEK version %d (run again to finish): %w", rec.Version, err)
	}
	if rec.BYOK {
		// The tenant's key alone guards its data from now on, backups
		// included: the KEKs elile made before are destroyed, so a backup
		// from before the switch, whose data keys are wrapped only by them,
		// is unreadable — the control the tenant asked for.
		if _, err := db.destroyKEKs(ctx, t, rec.Version, false); err != nil {
			return rec.Version, moved, fmt.Errorf("destroy the tenant's earlier KEKs: %w", err)
		}
	}
	return rec.Version, moved, nil
}

// rewrapTenant re-wraps every data key of t not under its newest KEK
// version, each with a compare-and-set on its old version, and reports how
// many it moved. Running it again after an interruption finishes the rest.
func (db *DB) rewrapTenant(ctx context.Context, t uuid.UUID) (int, error) {
	var (
		newest fieldcrypt.KEKRecord
		stale  []fieldcrypt.DEK
	)
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version, provider, key_id, label, byok FROM tenant_keks
				WHERE tenant_id = $1 AND destroyed_at IS NULL ORDER BY version DESC LIMIT 1`, t).
			Scan(&newest.Version, &newest.KEK.Provider, &newest.KEK.ID, &newest.KEK.Label, &newest.BYOK); err != nil {
			return err
		}
		newest.Tenant = t
		rows, err := tx.Query(ctx, `SELECT `+dekCols+` FROM tenant_keys k
			JOIN tenant_keks e ON e.tenant_id = k.tenant_id AND e.version = k.kek_version
			WHERE k.tenant_id = $1 AND k.kek_version <> $2 ORDER BY k.key_id`, t, newest.Version)
		if err != nil {
			return err
		}
		stale, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (fieldcrypt.DEK, error) {
			d, _, _, err := scanDEK(r)
			return d, err
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, d := range stale {
		nd, err := db.keys.Rewrap(ctx, d, newest)
		if err != nil {
			return moved, fmt.Errorf("data key %d: %w", d.ID, err)
		}
		err = db.InPlatformTx(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, `UPDATE tenant_keys SET kek_version = $2, wrapped = $3 WHERE key_id = $1 AND kek_version = $4`,
				int64(d.ID), nd.KEKVersion, nd.Wrapped, d.KEKVersion)
			return err
		})
		if err != nil {
			return moved, err
		}
		moved++
	}
	db.keys.Forget(t)
	return moved, nil
}

// KEKRotationProgress reports elile keys rotate-kek as it goes.
type KEKRotationProgress struct {
	Tenant      uuid.UUID
	Done, Total int
	Elapsed     time.Duration
}

// KEKRotationResult sums up a KEK rotation.
type KEKRotationResult struct {
	Rotated  int // tenants given a new KEK version
	Finished int // tenants whose interrupted re-wrap was finished
	Rewraps  int // data keys re-wrapped
	Elapsed  time.Duration
}

// RotateKEKs gives every tenant (and the platform) whose newest KEK
// version is older than olderThan a new one from the provider and re-wraps
// its data keys under it; tenants with a key of their own (BYOK) and
// erased tenants are left alone. A data key still under an older version
// (an interrupted run) is re-wrapped whatever its age, so running it again
// continues, and running it again at once does nothing more.
func (db *DB) RotateKEKs(ctx context.Context, olderThan time.Duration, progress func(KEKRotationProgress)) (KEKRotationResult, error) {
	start := time.Now()
	var res KEKRotationResult
	type due struct {
		t              uuid.UUID
		old, unwrapped bool
	}
	var todo []due
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT e.tenant_id, e.created_at < now() - $1::interval AND NOT e.byok,
				EXISTS (SELECT FROM tenant_keys k WHERE k.tenant_id = e.tenant_id AND k.kek_version <> e.version)
			FROM tenant_keks e
			WHERE e.destroyed_at IS NULL AND e.version = (SELECT max(version) FROM tenant_keks x WHERE x.tenant_id = e.tenant_id)
			ORDER BY e.tenant_id`, olderThan)
		if err != nil {
			return err
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (due, error) {
			var d due
			err := r.Scan(&d.t, &d.old, &d.unwrapped)
			return d, err
		})
		for _, d := range all {
			if d.old || d.unwrapped {
				todo = append(todo, d)
			}
		}
		return err
	})
	if err != nil {
		return res, err
	}
	for i, d := range todo {
		if d.unwrapped {
			n, err := db.rewrapTenant(ctx, d.t)
			if err != nil {
				return res, fmt.Errorf("tenant %s: %w", d.t, err)
			}
			res.Finished++
			res.Rewraps += n
		} else {
			_, n, err := db.newKEKVersion(ctx, d.t, "")
			if err != nil {
				return res, fmt.Errorf("tenant %s: %w", d.t, err)
			}
			res.Rotated++
			res.Rewraps += n
		}
		if progress != nil {
			progress(KEKRotationProgress{Tenant: d.t, Done: i + 1, Total: len(todo), Elapsed: time.Since(start)})
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// SetTenantKEK is bring-your-own-key for tenant t (tenancy.Store): ref
// names a key the tenant controls in the provider (empty: back to a key
// elile makes); the tenant's data keys are re-wrapped under it online.
func (s *TenancyStore) SetTenantKEK(ctx context.Context, t tenant.ID, ref string) error {
	_, err := s.db.NewKEKVersion(ctx, t.UUID(), ref)
	return err
}
