package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// BeginErasure deactivates a tenant and marks its erasure as started
// (tenancy.Tx); a tenant under a legal hold is tenancy.ErrLegalHold.
func (t *tenancyTx) BeginErasure(ctx context.Context, id tenant.ID) error {
	var hold bool
	err := t.QueryRow(ctx, `UPDATE tenants SET active = false, erasure_started_at = coalesce(erasure_started_at, now()), updated_at = now()
		WHERE tenant_id = $1 AND `+notPlatform+` RETURNING legal_hold`, id.UUID()).Scan(&hold)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return tenant.ErrNotFound.Wrap(err)
	case err != nil:
		return err
	case hold:
		return tenancy.ErrLegalHold
	}
	return nil
}

// DeleteTenant deletes the tenant's row (tenancy.Tx).
func (t *tenancyTx) DeleteTenant(ctx context.Context, id tenant.ID) error {
	_, err := t.Exec(ctx, `DELETE FROM tenants WHERE tenant_id = $1 AND `+notPlatform, id.UUID())
	return err
}

// DestroyTenantKeys destroys the tenant's KEKs in the provider, then marks
// them destroyed (tenancy.Store). In that order: if marking fails, running
// it again finds the KEKs gone (ErrKEKNotFound) and marks them.
func (s *TenancyStore) DestroyTenantKeys(ctx context.Context, id tenant.ID) (bool, error) {
	destroyed, err := s.db.destroyKEKs(ctx, id.UUID(), math.MaxInt32, true)
	s.db.keys.Forget(id.UUID())
	return destroyed, err
}

// destroyKEKs destroys t's KEK versions below `below` in the provider, then
// marks them destroyed — those the provider destroyed (or no longer has):
// a key the tenant brought is marked only; one the provider cannot destroy
// (local) is marked only when erasing, when the rows go too. It reports
// whether the provider destroyed every one of them.
func (db *DB) destroyKEKs(ctx context.Context, t uuid.UUID, below int, erasing bool) (bool, error) {
	if db.keys == nil {
		return false, errors.New("postgres: no keys configured")
	}
	type kek struct {
		version   int
		k         kms.KEK
		byok      bool
		destroyed bool
	}
	var keks []kek
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT version, provider, key_id, label, byok, destroyed_at IS NOT NULL FROM tenant_keks
			WHERE tenant_id = $1 AND version < $2`, t, below)
		if err != nil {
			return err
		}
		keks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (kek, error) {
			var k kek
			err := r.Scan(&k.version, &k.k.Provider, &k.k.ID, &k.k.Label, &k.byok, &k.destroyed)
			return k, err
		})
		return err
	})
	if err != nil {
		return false, err
	}
	p := db.keys.Provider()
	byProvider := len(keks) > 0
	var gone []int
	for _, k := range keks {
		if k.byok {
			byProvider = false // the tenant's own key: the tenant destroys it
			gone = append(gone, k.version)
			continue
		}
		if k.destroyed {
			continue
		}
		err := p.DestroyKEK(ctx, k.k)
		switch {
		case err == nil, errors.Is(err, kms.ErrKEKNotFound):
			gone = append(gone, k.version)
		case errors.Is(err, kms.ErrCannotDestroy):
			byProvider = false
			if erasing {
				gone = append(gone, k.version) // the rows go: the record says the tenant's keys are gone
			}
		default:
			return false, fmt.Errorf("destroy KEK %s of tenant %s: %w", k.k.ID, t, err)
		}
	}
	err = db.InPlatformTx(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenant_keks SET destroyed_at = now() WHERE tenant_id = $1 AND version = ANY($2) AND destroyed_at IS NULL`,
			t, gone)
		return err
	})
	return byProvider, err
}

// eraseSQL deletes a batch of one kind of the tenant's rows each, in an
// order foreign keys allow (webhook deliveries first: a tenant being
// erased is inactive, so nothing is delivered to it meanwhile); deleting an entity cascades to its
// identifiers, profiles, relations and cached data.
//
//nolint:gochecknoglobals // read-only
var eraseSQL = []string{
	`DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND (endpoint_id, event_id) IN (SELECT endpoint_id, event_id FROM webhook_deliveries WHERE tenant_id = $1 LIMIT $2)`,
	`DELETE FROM webhook_events WHERE tenant_id = $1 AND event_id IN (SELECT event_id FROM webhook_events WHERE tenant_id = $1 LIMIT $2)`,
	`DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id IN (SELECT endpoint_id FROM webhook_endpoints WHERE tenant_id = $1 LIMIT $2)`,
	`DELETE FROM cached_data_sources WHERE cache_id IN (SELECT cache_id FROM cached_data_sources WHERE customer_id = $1 OR tenant_id = $1 LIMIT $2)`,
	`DELETE FROM entity_relations WHERE relation_id IN (SELECT relation_id FROM entity_relations WHERE tenant_id = $1 LIMIT $2)`,
	`DELETE FROM entities WHERE entity_id IN (SELECT entity_id FROM entities WHERE tenant_id = $1 LIMIT $2)`,
	`DELETE FROM api_keys WHERE key_id IN (SELECT key_id FROM api_keys WHERE tenant_id = $1 LIMIT $2)`,
}

// DeleteTenantRows deletes at most limit of the tenant's rows of one kind
// (plus what cascades from them), in a transaction of its own
// (tenancy.Store); 0 when none is left.
func (s *TenancyStore) DeleteTenantRows(ctx context.Context, id tenant.ID, limit int) (int64, error) {
	var n int64
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		for _, q := range eraseSQL {
			tag, err := tx.Exec(ctx, q, id.UUID(), limit)
			if err != nil {
				return err
			}
			if n = tag.RowsAffected(); n > 0 {
				return nil
			}
		}
		return nil
	})
	return n, err
}

// Erased reports whether the tenant's keys were destroyed (tenancy.Store).
func (s *TenancyStore) Erased(ctx context.Context, id tenant.ID) (bool, error) {
	var erased bool
	err := s.db.readRow(ctx, tenant.Platform(), `SELECT EXISTS (SELECT FROM tenant_keks WHERE tenant_id = $1)
			AND NOT EXISTS (SELECT FROM tenant_keks WHERE tenant_id = $1 AND destroyed_at IS NULL)`,
		[]any{id.UUID()}, func(row pgx.Row) error { return row.Scan(&erased) })
	return erased, err
}

// PendingErasures lists the tenants whose erasure started and did not
// finish.
func (s *TenancyStore) PendingErasures(ctx context.Context) ([]tenant.ID, error) {
	var out []tenant.ID
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT tenant_id FROM tenants WHERE erasure_started_at IS NOT NULL ORDER BY erasure_started_at`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.ID, error) {
			var u uuid.UUID
			err := r.Scan(&u)
			return tenant.ID(u), err
		})
		return err
	})
	return out, err
}
