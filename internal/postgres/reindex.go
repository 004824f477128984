package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/identifier"
)

// ReindexResult sums up a blind-key re-index.
type ReindexResult struct {
	NewKey  uint32 // the tenant's blind key from now on
	Indexed int    // entities indexed under it by this run
	Dropped int64  // blind indexes under the old key deleted
	Elapsed time.Duration
}

// Reindex gives tenant t (uuid.Nil: the platform's shared entities) a new,
// random blind-index key and indexes every unique identifier under it —
// what a tenant whose blind key was derived from the environment keyring
// needs to stop depending on BLIND_INDEX_KEY. Uniqueness holds throughout:
// from the moment the new key exists until the old one is retired, every
// server indexes and looks up new identifiers under both keys (once its
// key rows are re-read, within settle), so a duplicate is refused under
// one or the other. Interrupted, it continues when run again; the old key's
// indexes are deleted and the key retired only when every entity has its
// new ones. wait is called with how long to let the other servers see the
// new key before indexing starts.
func (db *DB) Reindex(ctx context.Context, t uuid.UUID, batch int, wait func(time.Duration) error, progress func(done int)) (ReindexResult, error) {
	start := time.Now()
	var res ReindexResult
	keys := db.keys
	if _, err := keys.Active(ctx, t); err != nil { // the tenant's keys exist from here on
		return res, err
	}
	tk, err := keyStore{db}.TenantKeys(ctx, t)
	if err != nil {
		return res, err
	}
	if tk.OldBlind == nil {
		nb, err := keys.NewBlindKey(ctx, tk.KEK)
		if err != nil {
			return res, err
		}
		if err := db.InPlatformTx(ctx, func(tx *Tx) error {
			return tx.QueryRow(ctx, `INSERT INTO tenant_keys (tenant_id, purpose, kek_version, wrapped) VALUES ($1, 'blind', $2, $3) RETURNING key_id`,
				t, nb.KEKVersion, nb.Wrapped).Scan(&nb.ID)
		}); err != nil {
			return res, err
		}
		keys.Forget(t)
	}
	var created time.Time
	if err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT key_id, created_at FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'blind' AND retired_at IS NULL
			ORDER BY key_id DESC LIMIT 1`, t).Scan(&res.NewKey, &created)
	}); err != nil {
		return res, err
	}
	if d := time.Until(created.Add(keys.MetaTTL() * 11 / 10)); d > 0 {
		if err := wait(d); err != nil {
			return res, err
		}
	}
	for {
		n, err := db.reindexBatch(ctx, t, res.NewKey, batch)
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
		res.Indexed += n
		if progress != nil {
			progress(res.Indexed)
		}
	}
	err = db.InPlatformTx(ctx, func(tx *Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM entity_identifiers WHERE tenant_id = $1 AND blind_key IS DISTINCT FROM $2`,
			t, int64(res.NewKey))
		if err != nil {
			return err
		}
		res.Dropped = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE tenant_keys SET retired_at = now() WHERE tenant_id = $1 AND purpose = 'blind' AND key_id <> $2 AND retired_at IS NULL`,
			t, int64(res.NewKey))
		return err
	})
	keys.Forget(t)
	res.Elapsed = time.Since(start)
	return res, err
}

// reindexBatch indexes up to limit of t's entities that have blind indexes
// but none under key yet, in one transaction, and reports how many.
func (db *DB) reindexBatch(ctx context.Context, t uuid.UUID, key uint32, limit int) (int, error) {
	n := 0
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT e.entity_id, e.identifiers FROM entities e
			WHERE e.tenant_id = $1
			  AND EXISTS (SELECT FROM entity_identifiers i WHERE i.tenant_id = $1 AND i.entity_id = e.entity_id)
			  AND NOT EXISTS (SELECT FROM entity_identifiers i WHERE i.tenant_id = $1 AND i.entity_id = e.entity_id AND i.blind_key = $2)
			ORDER BY e.entity_id LIMIT $3 FOR UPDATE OF e`, t, int64(key), limit)
		if err != nil {
			return err
		}
		type row struct {
			id uuid.UUID
			ct []byte
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.ct)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, x := range batch {
			plain, err := db.keys.Open(ctx, x.ct, identifiersColumn.AD(x.id, t))
			if err != nil {
				return fmt.Errorf("decrypt identifiers of entity %s: %w", x.id, err)
			}
			var ids map[string]string
			if err := json.Unmarshal(plain, &ids); err != nil {
				return err
			}
			var kinds []string
			var idx [][]byte
			var ks []int64
			var rowIDs []uuid.UUID
			for kind, v := range ids {
				if !identifier.Unique(kind) {
					continue
				}
				bs, err := db.keys.BlindIndexes(ctx, t, kind, v)
				if err != nil {
					return err
				}
				for _, b := range bs {
					if b.Key == key {
						kinds, idx, ks = append(kinds, kind), append(idx, b.Index), append(ks, int64(key))
						rowIDs = append(rowIDs, uuid.Must(uuid.NewV7()))
					}
				}
			}
			if len(kinds) == 0 {
				return fmt.Errorf("entity %s: the new blind key %d is not among the tenant's keys", x.id, key)
			}
			tag, err := tx.Exec(ctx, insertBlindSQL+` ON CONFLICT DO NOTHING`, rowIDs, x.id, t, kinds, idx, ks)
			if err != nil {
				return err
			}
			if int(tag.RowsAffected()) != len(kinds) {
				// Another entity holds one of these values under the new key
				// (or this one changed meanwhile): stop rather than leave a
				// value unindexed; running again retries it.
				return fmt.Errorf("entity %s: %d of its %d blind indexes conflict under the new key; run the re-index again",
					x.id, len(kinds)-int(tag.RowsAffected()), len(kinds))
			}
			n++
		}
		return nil
	})
	return n, err
}
