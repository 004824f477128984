package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/fieldcrypt"
)

// EncryptedColumn names a column holding fieldcrypt ciphertexts and how its
// associated data is made: AD{Table, Column, Row: the id column, Tenant:
// the tenant expression (uuid.Nil when NULL)}.
type EncryptedColumn struct {
	Table, Column string
	ID            string // the row id column
	Tenant        string // SQL expression for the tenant the value is bound to
	Rotatable     bool   // false: append-only, never rewritten
}

// EncryptedColumns lists every encrypted column of the schema. Stores seal
// with AD built the same way (AD below), so rotation re-encrypts exactly
// what they wrote.
func EncryptedColumns() []EncryptedColumn {
	return []EncryptedColumn{
		{"entities", "identifiers", "entity_id", "tenant_id", true},
		{"entities", "sealed_metadata", "entity_id", "tenant_id", true},
		{"entity_profiles", "findings", "profile_id", "tenant_id", true},
		{"entity_profiles", "connections", "profile_id", "tenant_id", true},
		{"entity_profiles", "delta", "profile_id", "tenant_id", true},
		{"cached_data_sources", "raw_response", "cache_id", "coalesce(customer_id, tenant_id)", true},
		{"cached_data_sources", "normalized_data", "cache_id", "coalesce(customer_id, tenant_id)", true},
		{"webhook_endpoints", "secret", "endpoint_id", "tenant_id", true},
		{"webhook_endpoints", "previous_secret", "endpoint_id", "tenant_id", true},
		// Audit events are append-only and sealed over their ciphertext:
		// they keep the key they were written with, so that key must stay
		// in the keyring for as long as they are retained.
		{"audit_events", "event_data", "audit_id", "tenant_id", false},
	}
}

// stale is the condition on a row of c's table that its value is not
// under its tenant's active data key.
func (c EncryptedColumn) stale() string {
	col := pgx.Identifier{c.Column}.Sanitize()
	return fmt.Sprintf("%[1]s IS NOT NULL AND substring(%[1]s from 2 for 4) IS DISTINCT FROM elile_active_key(coalesce(%[2]s, '00000000-0000-0000-0000-000000000000'::uuid))", col, c.Tenant)
}

// AD returns the associated data for a value of column c in row id of tenant
// (uuid.Nil for shared rows).
func (c EncryptedColumn) AD(id, tenant uuid.UUID) fieldcrypt.AD {
	return fieldcrypt.AD{Table: c.Table, Column: c.Column, Row: id, Tenant: tenant}
}

// KeyUsage counts the values of one column by key version.
type KeyUsage struct {
	Table, Column string
	Version       uint32
	Count         int64
}

// KeyUsage counts every encrypted value by the key version it was sealed
// with, so an operator knows which versions are still needed.
func (db *DB) KeyUsage(ctx context.Context) ([]KeyUsage, error) {
	var out []KeyUsage
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		for _, c := range EncryptedColumns() {
			rows, err := tx.Query(ctx, fmt.Sprintf(`
				SELECT (get_byte(%[1]s, 1)::bigint << 24) | (get_byte(%[1]s, 2) << 16) | (get_byte(%[1]s, 3) << 8) | get_byte(%[1]s, 4), count(*)
				FROM %[2]s WHERE octet_length(%[1]s) >= 5 GROUP BY 1 ORDER BY 1`,
				pgx.Identifier{c.Column}.Sanitize(), pgx.Identifier{c.Table}.Sanitize()))
			if err != nil {
				return err
			}
			for rows.Next() {
				u := KeyUsage{Table: c.Table, Column: c.Column}
				var v int64
				if err := rows.Scan(&v, &u.Count); err != nil {
					rows.Close()
					return err
				}
				u.Version = uint32(v) //nolint:gosec // four bytes
				out = append(out, u)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// RotationProgress reports a rotation as it goes.
type RotationProgress struct {
	Table, Column string
	Done, Total   int64 // values rewritten (or failed) and to rewrite, over all columns
	Failed        int64
	Elapsed       time.Duration
}

// RotationFailure is a value that could not be re-encrypted.
type RotationFailure struct {
	Table, Column string
	ID            uuid.UUID
	Err           error
}

// RotationResult sums up a rotation.
type RotationResult struct {
	Rotated  int64
	Failures []RotationFailure
	Elapsed  time.Duration
}

// RotateKeys re-encrypts every rotatable encrypted value not yet under its
// tenant's active data key (values sealed by the environment keyring
// included: this is also the move to envelope encryption), batch by batch, each batch in its own transaction,
// so the server keeps serving. A value changed concurrently is left alone
// (compare-and-set) and picked up by the next run; running again after an
// interruption continues where it stopped, and running when everything is
// current does nothing. progress is called after each batch.
func (db *DB) RotateKeys(ctx context.Context, batch int, progress func(RotationProgress)) (RotationResult, error) {
	start := time.Now()
	if db.keys == nil {
		return RotationResult{}, errors.New("rotate keys: no keys configured")
	}
	var res RotationResult
	cols := make([]EncryptedColumn, 0, 8)
	for _, c := range EncryptedColumns() {
		if c.Rotatable {
			cols = append(cols, c)
		}
	}
	total, err := db.countStale(ctx, cols)
	if err != nil {
		return res, fmt.Errorf("count values to rotate: %w", err)
	}
	plain, err := db.countPlainMetadata(ctx)
	if err != nil {
		return res, fmt.Errorf("count metadata to seal: %w", err)
	}
	total += plain
	var sealedMeta int64
	for {
		n, err := db.sealMetadataBatch(ctx, batch)
		if err != nil {
			return res, fmt.Errorf("seal entities.metadata: %w", err)
		}
		if n == 0 {
			break
		}
		sealedMeta += int64(n)
		res.Rotated += int64(n)
		if progress != nil {
			progress(RotationProgress{Table: "entities", Column: "metadata", Done: sealedMeta, Total: max(total, sealedMeta), Elapsed: time.Since(start)})
		}
	}
	done := sealedMeta
	for _, c := range cols {
		after := uuid.Nil
		for {
			scanned, n, last, failures, err := db.rotateBatch(ctx, c, after, batch)
			if err != nil {
				return res, fmt.Errorf("rotate %s.%s: %w", c.Table, c.Column, err)
			}
			if scanned == 0 {
				break
			}
			res.Rotated += int64(n)
			res.Failures = append(res.Failures, failures...)
			done += int64(n + len(failures))
			after = last
			if progress != nil {
				progress(RotationProgress{Table: c.Table, Column: c.Column, Done: done, Total: max(total, done),
					Failed: int64(len(res.Failures)), Elapsed: time.Since(start)})
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// StaleValues counts the values not under their tenant's active data key
// (append-only audit data excluded): what keys rotate would re-encrypt.
func (db *DB) StaleValues(ctx context.Context) (int64, error) {
	var cols []EncryptedColumn
	for _, c := range EncryptedColumns() {
		if c.Rotatable {
			cols = append(cols, c)
		}
	}
	return db.countStale(ctx, cols)
}

// countPlainMetadata counts entities whose metadata is still in clear
// (written before it was sealed).
func (db *DB) countPlainMetadata(ctx context.Context) (int64, error) {
	var n int64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM entities WHERE metadata <> '{}'::jsonb /* all tenants: key rotation seals every tenant's clear metadata */`).Scan(&n)
	})
	return n, err
}

// sealMetadataBatch moves up to limit entities' clear metadata into
// sealed_metadata under their tenant's data key (compare-and-set on the
// old value), in one transaction; 0 when none is left.
func (db *DB) sealMetadataBatch(ctx context.Context, limit int) (int, error) {
	var n int
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT entity_id, tenant_id, metadata::text
			FROM entities WHERE metadata <> '{}'::jsonb /* all tenants: key rotation seals every tenant's clear metadata */ ORDER BY entity_id LIMIT $1`, limit)
		if err != nil {
			return err
		}
		type row struct {
			id, tenant uuid.UUID
			meta       string
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.tenant, &x.meta)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, x := range batch {
			ct, err := db.keys.Seal(ctx, []byte(x.meta), metadataColumn.AD(x.id, x.tenant))
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE entities SET sealed_metadata = $2, metadata = '{}' WHERE entity_id = $1 AND metadata::text = $3`, x.id, ct, x.meta)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	return n, err
}

func (db *DB) countStale(ctx context.Context, cols []EncryptedColumn) (int64, error) {
	var total int64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		for _, c := range cols {
			var n int64
			q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", pgx.Identifier{c.Table}.Sanitize(), c.stale())
			if err := tx.QueryRow(ctx, q).Scan(&n); err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

func (db *DB) rotateBatch(ctx context.Context, c EncryptedColumn, after uuid.UUID, limit int) (int, int, uuid.UUID, []RotationFailure, error) {
	var scanned, rotated int
	var last uuid.UUID
	var failures []RotationFailure
	table, col, id := pgx.Identifier{c.Table}.Sanitize(), pgx.Identifier{c.Column}.Sanitize(), pgx.Identifier{c.ID}.Sanitize()
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rotated, failures = 0, nil
		rows, err := tx.Query(ctx, fmt.Sprintf(`
			SELECT %[3]s, coalesce(%[4]s, '00000000-0000-0000-0000-000000000000'::uuid), %[2]s FROM %[1]s
			WHERE %[3]s > $1 AND %[5]s
			ORDER BY %[3]s LIMIT $2`, table, col, id, c.Tenant, c.stale()), after, limit)
		if err != nil {
			return err
		}
		type row struct {
			id, tenant uuid.UUID
			ct         []byte
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.tenant, &x.ct)
			return x, err
		})
		if err != nil {
			return err
		}
		scanned = len(batch)
		ids := make([]uuid.UUID, 0, len(batch))
		olds := make([][]byte, 0, len(batch))
		news := make([][]byte, 0, len(batch))
		for _, x := range batch {
			last = x.id
			nct, changed, err := db.keys.Reseal(ctx, x.ct, c.AD(x.id, x.tenant))
			if err != nil {
				failures = append(failures, RotationFailure{Table: c.Table, Column: c.Column, ID: x.id, Err: err})
				continue
			}
			if changed {
				ids, olds, news = append(ids, x.id), append(olds, x.ct), append(news, nct)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, fmt.Sprintf(`
			UPDATE %[1]s t SET %[2]s = v.new
			FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS v(id, old, new)
			WHERE t.%[3]s = v.id AND t.%[2]s = v.old`, table, col, id), ids, olds, news)
		rotated = int(tag.RowsAffected())
		return err
	})
	return scanned, rotated, last, failures, err
}
