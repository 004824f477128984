package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/tenant"
)

//nolint:gochecknoglobals // immutable descriptions of the encrypted columns
var (
	identifiersColumn = EncryptedColumn{Table: "entities", Column: "identifiers", ID: "entity_id", Tenant: "tenant_id"}
)

// scope runs fn in t's scope, or through the platform path when t is zero
// and ctx was explicitly marked tenant.WithPlatform (scopeOf).
func (db *DB) scope(ctx context.Context, t tenant.ID, fn func(*Tx) error) error {
	role, tenantID, err := scopeOf(ctx, t)
	if err != nil {
		return err
	}
	return db.inTx(ctx, role, tenantID, func(tx pgx.Tx) error { return fn(&Tx{tx: tx, tenant: t}) })
}

func (db *DB) sealIdentifiers(e entity.Entity) ([]byte, error) {
	b, err := json.Marshal(e.Identifiers)
	if err != nil {
		return nil, err
	}
	return db.ring.Seal(b, identifiersColumn.AD(e.ID, e.Tenant.UUID()))
}

// blindRows are the blind-index rows of e's unique identifiers.
func (db *DB) blindRows(e entity.Entity) (kinds []string, indexes [][]byte) {
	for _, k := range slices.Sorted(maps.Keys(e.Identifiers)) {
		if identifier.Unique(k) {
			kinds = append(kinds, k)
			indexes = append(indexes, db.ring.BlindIndex(e.Tenant.UUID(), k, e.Identifiers[k]))
		}
	}
	return kinds, indexes
}

// errDupIdentifier marks a unique-identifier violation inside a
// transaction; the existing entity is looked up after the rollback.
type errDupIdentifier struct{ constraint string }

func (e errDupIdentifier) Error() string { return "duplicate identifier: " + e.constraint }

func classifyUnique(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return err
	}
	switch pgErr.ConstraintName {
	case "entity_identifiers_lookup":
		return errDupIdentifier{pgErr.ConstraintName}
	case "entities_external_id":
		return entity.ErrExternalIDTaken.Wrap(err)
	}
	return err
}

const insertBlindSQL = `INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index)
	SELECT id, $2, $3, kind, bi FROM unnest($1::uuid[], $4::text[], $5::bytea[]) AS x(id, kind, bi)`

// blindArgs are insertBlindSQL's arguments for e's unique identifiers
// (nil when it has none).
func (db *DB) blindArgs(e entity.Entity) []any {
	kinds, idx := db.blindRows(e)
	if len(kinds) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(kinds))
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	return []any{ids, e.ID, nullUUID(e.Tenant.UUID()), kinds, idx}
}

func (db *DB) insertBlind(ctx context.Context, tx *Tx, e entity.Entity) error {
	args := db.blindArgs(e)
	if args == nil {
		return nil
	}
	_, err := tx.tx.Exec(ctx, insertBlindSQL, args...)
	return classifyUnique(err)
}

// duplicateOf finds which entity of t already holds one of e's unique
// identifiers.
func (db *DB) duplicateOf(ctx context.Context, e entity.Entity) error {
	kinds, idx := db.blindRows(e)
	var dup *entity.DuplicateError
	err := db.scope(ctx, e.Tenant, func(tx *Tx) error {
		var kind string
		var id uuid.UUID
		err := tx.tx.QueryRow(ctx, `SELECT kind, entity_id FROM entity_identifiers
			WHERE tenant_id IS NOT DISTINCT FROM $1 AND (kind, blind_index) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))
			  AND entity_id <> $4 ORDER BY kind LIMIT 1`, nullUUID(e.Tenant.UUID()), kinds, idx, e.ID).Scan(&kind, &id)
		if err != nil {
			return err
		}
		dup = &entity.DuplicateError{Kind: kind, Existing: id}
		return nil
	})
	if err != nil {
		// The other entity went away meanwhile: report a plain conflict.
		return apperr.New(apperr.Conflict, "ENTITY_DUPLICATE", "an entity with one of these identifiers exists").Wrap(err)
	}
	return dup.AppErr()
}

// CreateEntity stores e with its encrypted identifiers, their blind
// indexes and ev (entity.created), in one transaction. A unique identifier
// already used in the tenant is a 409 naming the existing entity: the
// database's unique index decides, also between concurrent creates.
func (db *DB) CreateEntity(ctx context.Context, e entity.Entity, ev audit.Event) (entity.Entity, error) {
	var out entity.Entity
	err := db.scope(ctx, e.Tenant, func(tx *Tx) error {
		sealed, err := db.sealIdentifiers(e)
		if err != nil {
			return err
		}
		meta, _ := json.Marshal(nonNilStrMap(e.Metadata))
		var ext *string
		if e.ExternalID != "" {
			ext = &e.ExternalID
		}
		auditRow, err := db.auditArgs(ev)
		if err != nil {
			return err
		}
		// The entity, its blind indexes and its audit event depend on no
		// result of each other: one round trip for the three.
		var b pgx.Batch
		b.Queue(`INSERT INTO entities (entity_id, tenant_id, entity_type, external_id, metadata, identifiers)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at, updated_at`,
			e.ID, nullUUID(e.Tenant.UUID()), e.Type, ext, meta, sealed).QueryRow(func(row pgx.Row) error {
			return row.Scan(&e.CreatedAt, &e.UpdatedAt)
		})
		if args := db.blindArgs(e); args != nil {
			b.Queue(insertBlindSQL, args...)
		}
		b.Queue(insertAuditSQL, auditRow...)
		if err := tx.tx.SendBatch(ctx, &b).Close(); err != nil {
			return classifyUnique(err)
		}
		out = e
		return nil
	})
	var dup errDupIdentifier
	if errors.As(err, &dup) {
		return entity.Entity{}, db.duplicateOf(ctx, e)
	}
	return out, err
}

const entityCols = "entity_id, tenant_id, entity_type, coalesce(external_id, ''), metadata, identifiers, created_at, updated_at"

func (db *DB) scanEntity(row pgx.Row) (entity.Entity, error) {
	var e entity.Entity
	var tid *uuid.UUID
	var meta, sealed []byte
	if err := row.Scan(&e.ID, &tid, &e.Type, &e.ExternalID, &meta, &sealed, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return e, err
	}
	if tid != nil {
		e.Tenant = tenant.ID(*tid)
	}
	if err := json.Unmarshal(meta, &e.Metadata); err != nil {
		return e, err
	}
	e.Identifiers = map[string]string{}
	if len(sealed) > 0 {
		plain, err := db.ring.Open(sealed, identifiersColumn.AD(e.ID, e.Tenant.UUID()))
		if err != nil {
			return e, fmt.Errorf("decrypt identifiers of entity %s: %w", e.ID, err)
		}
		if err := json.Unmarshal(plain, &e.Identifiers); err != nil {
			return e, err
		}
	}
	return e, nil
}

// Entity returns an entity t can see: its own or a platform-shared one.
// Anything else is entity.ErrNotFound.
func (db *DB) Entity(ctx context.Context, t tenant.ID, id uuid.UUID) (entity.Entity, error) {
	var out entity.Entity
	err := db.readRow(ctx, t, `SELECT `+entityCols+` FROM entities WHERE entity_id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)`,
		[]any{id, nullUUID(t.UUID())}, func(row pgx.Row) error {
			var err error
			out, err = db.scanEntity(row)
			return err
		})
	if errors.Is(err, ErrNotFound) {
		return entity.Entity{}, entity.ErrNotFound.Wrap(err)
	}
	return out, err
}

// Entities lists the entities t can see, newest first, after the cursor id.
//
// A page holds at most limit entities and at most PageBytes of stored
// payload; more reports that a next page exists.
func (db *DB) Entities(ctx context.Context, t tenant.ID, f entity.Filter, after uuid.UUID, limit int) (out []entity.Entity, more bool, err error) {
	err = db.scope(ctx, t, func(tx *Tx) error {
		const where = `FROM entities
			WHERE (tenant_id = $1 OR tenant_id IS NULL) AND ($2 = '' OR entity_type = $2) AND ($3 = '' OR external_id = $3)
			  AND ($4::uuid IS NULL OR entity_id < $4) ORDER BY entity_id DESC LIMIT $5`
		args := []any{nullUUID(t.UUID()), f.Type, f.ExternalID, nullUUID(after), limit + 1}
		n, m, err := fit(ctx, tx, `SELECT coalesce(octet_length(identifiers), 0) + octet_length(metadata::text) `+where, limit, args...)
		if err != nil || n == 0 {
			return err
		}
		more = m
		args[4] = n
		rows, err := tx.tx.Query(ctx, `SELECT `+entityCols+` `+where, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Entity, error) { return db.scanEntity(r) })
		return err
	})
	return out, more, err
}

// FindByIdentifier finds the entities t can see whose unique identifier
// kind has the normalised value, through the blind indexes of t and of
// shared data: nothing is decrypted to search.
func (db *DB) FindByIdentifier(ctx context.Context, t tenant.ID, kind, value string) ([]entity.Entity, error) {
	var out []entity.Entity
	own := db.ring.BlindIndex(t.UUID(), kind, value)
	shared := db.ring.BlindIndex(uuid.Nil, kind, value)
	err := db.scope(ctx, t, func(tx *Tx) error {
		rows, err := tx.tx.Query(ctx, `SELECT `+entityCols+` FROM entities WHERE entity_id IN (
				SELECT entity_id FROM entity_identifiers WHERE tenant_id = $1 AND kind = $2 AND blind_index = $3
				UNION ALL
				SELECT entity_id FROM entity_identifiers WHERE tenant_id IS NULL AND kind = $2 AND blind_index = $4)
			ORDER BY entity_id DESC`, nullUUID(t.UUID()), kind, own, shared)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Entity, error) { return db.scanEntity(r) })
		return err
	})
	return out, err
}

// lockOwn locks an entity of t for change; a shared one is
// ErrSharedReadOnly, an invisible one ErrNotFound.
func (db *DB) lockOwn(ctx context.Context, tx *Tx, t tenant.ID, id uuid.UUID) (entity.Entity, error) {
	// Row-level security applies UPDATE policies to locking reads, which
	// would hide a shared entity: look first, then lock what is ours.
	var owner *uuid.UUID
	err := tx.tx.QueryRow(ctx, `SELECT tenant_id FROM entities WHERE entity_id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)`,
		id, nullUUID(t.UUID())).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return entity.Entity{}, entity.ErrNotFound.Wrap(err)
	}
	if err != nil {
		return entity.Entity{}, err
	}
	if owner == nil && !t.IsZero() {
		return entity.Entity{}, entity.ErrSharedReadOnly
	}
	e, err := db.scanEntity(tx.tx.QueryRow(ctx, `SELECT `+entityCols+` FROM entities WHERE entity_id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, entity.ErrNotFound.Wrap(err)
	}
	return e, err
}

// UpdateIdentifiers merges changes into an entity's identifiers (a value
// sets, nil removes), re-encrypts them, keeps the blind indexes in step
// and records ev, in one transaction.
func (db *DB) UpdateIdentifiers(ctx context.Context, t tenant.ID, id uuid.UUID, changes map[string]*string, ev func(entity.Entity) audit.Event) (entity.Entity, error) {
	var out, merged entity.Entity
	err := db.scope(ctx, t, func(tx *Tx) error {
		e, err := db.lockOwn(ctx, tx, t, id)
		if err != nil {
			return err
		}
		for k, v := range changes {
			if v == nil {
				delete(e.Identifiers, k)
			} else {
				e.Identifiers[k] = *v
			}
		}
		if len(e.Identifiers) > entity.MaxIdentifiers {
			return entity.ErrTooManyIdentifiers
		}
		sealed, err := db.sealIdentifiers(e)
		if err != nil {
			return err
		}
		if err := tx.tx.QueryRow(ctx, `UPDATE entities SET identifiers = $2, updated_at = now() WHERE entity_id = $1 RETURNING updated_at`,
			id, sealed).Scan(&e.UpdatedAt); err != nil {
			return err
		}
		if _, err := tx.tx.Exec(ctx, `DELETE FROM entity_identifiers WHERE entity_id = $1`, id); err != nil {
			return err
		}
		merged = e
		if err := db.insertBlind(ctx, tx, e); err != nil {
			return err
		}
		out = e
		return db.appendAudit(ctx, tx.tx, ev(e))
	})
	var dup errDupIdentifier
	if errors.As(err, &dup) {
		return entity.Entity{}, db.duplicateOf(ctx, merged)
	}
	return out, err
}

// DeleteEntity erases an entity of t with its identifiers, relations,
// profiles and cache rows (foreign keys cascade), and records ev
// (data.erased, which keeps ids only), in one transaction.
func (db *DB) DeleteEntity(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error {
	return db.scope(ctx, t, func(tx *Tx) error {
		if _, err := db.lockOwn(ctx, tx, t, id); err != nil {
			return err
		}
		var counts [3]int64
		if err := tx.tx.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM entity_relations WHERE from_entity_id = $1 OR to_entity_id = $1),
				(SELECT count(*) FROM entity_profiles WHERE entity_id = $1),
				(SELECT count(*) FROM cached_data_sources WHERE entity_id = $1)`, id).Scan(&counts[0], &counts[1], &counts[2]); err != nil {
			return err
		}
		if _, err := tx.tx.Exec(ctx, `DELETE FROM entities WHERE entity_id = $1`, id); err != nil {
			return err
		}
		ev.Data = map[string]any{"relations": counts[0], "profiles": counts[1], "cache_entries": counts[2]}
		return db.appendAudit(ctx, tx.tx, ev)
	})
}

func nonNilStrMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
