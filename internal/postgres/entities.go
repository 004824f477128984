package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/tenant"
)

//nolint:gochecknoglobals // immutable descriptions of the encrypted columns
var (
	identifiersColumn = EncryptedColumn{Table: "entities", Column: "identifiers", ID: "entity_id", Tenant: "tenant_id"}
	metadataColumn    = EncryptedColumn{Table: "entities", Column: "sealed_metadata", ID: "entity_id", Tenant: "tenant_id"}
)

// EntityStore keeps entities and their relations (entity.Store).
type EntityStore struct{ db *DB }

// Entities returns the store of entities and relations.
func (db *DB) Entities() *EntityStore { return &EntityStore{db: db} }

// entityTx is entity.Tx over a unit of work.
type entityTx struct {
	*Tx
	saved *entity.Entity // the last entity whose blind indexes were written
}

// InScope runs fn in one unit of work in scope sc. A unique identifier the
// tenant already uses comes back as a *entity.DuplicateError naming the
// entity that holds it.
func (s *EntityStore) InScope(ctx context.Context, sc tenant.Scope, fn func(entity.Tx) error) error {
	etx := &entityTx{}
	err := s.db.InScope(ctx, sc, func(tx *Tx) error { etx.Tx = tx; return fn(etx) })
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return err
	}
	switch {
	case pgErr.ConstraintName == "entity_identifiers_lookup" && etx.saved != nil:
		return s.db.duplicateOf(ctx, sc, *etx.saved)
	case pgErr.ConstraintName == "entities_external_id":
		return entity.ErrExternalIDTaken.Wrap(err)
	case pgErr.TableName == "entity_relations":
		return entity.ErrRelationExists.Wrap(err)
	}
	return err
}

func (db *DB) sealIdentifiers(ctx context.Context, e entity.Entity) ([]byte, error) {
	b, err := json.Marshal(e.Identifiers)
	if err != nil {
		return nil, err
	}
	return db.keys.Seal(ctx, b, identifiersColumn.AD(e.ID, e.Tenant.UUID()))
}

// blindRows are the blind-index rows of e's unique identifiers: one per
// identifier and blind key of its tenant (two keys during a re-index).
func (db *DB) blindRows(ctx context.Context, e entity.Entity) (kinds []string, indexes [][]byte, keys []int64, err error) {
	for _, k := range slices.Sorted(maps.Keys(e.Identifiers)) {
		if identifier.Unique(k) {
			bs, err := db.keys.BlindIndexes(ctx, e.Tenant.UUID(), k, e.Identifiers[k])
			if err != nil {
				return nil, nil, nil, err
			}
			for _, b := range bs {
				kinds, indexes, keys = append(kinds, k), append(indexes, b.Index), append(keys, int64(b.Key))
			}
		}
	}
	return kinds, indexes, keys, nil
}

const insertBlindSQL = `INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index, blind_key)
	SELECT id, $2, $3, kind, bi, bk FROM unnest($1::uuid[], $4::text[], $5::bytea[], $6::int[]) AS x(id, kind, bi, bk)`

// queueBlind queues the blind-index rows of e's unique identifiers.
func (t *entityTx) queueBlind(ctx context.Context, e *entity.Entity) error {
	t.saved = e
	kinds, idx, keys, err := t.db.blindRows(ctx, *e)
	if err != nil || len(kinds) == 0 {
		return err
	}
	ids := make([]uuid.UUID, len(kinds))
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	if t.db.onCitus() {
		// No INSERT … SELECT from unnest() on Citus (InsertAuditBatch).
		for i := range ids {
			t.Queue(`INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index, blind_key)
				VALUES ($1, $2, $3, $4, $5, $6)`, ids[i], e.ID, e.Tenant.UUID(), kinds[i], idx[i], keys[i])
		}
		return nil
	}
	t.Queue(insertBlindSQL, ids, e.ID, e.Tenant.UUID(), kinds, idx, keys)
	return nil
}

// duplicateOf finds which entity of e's tenant already holds one of e's
// unique identifiers.
func (db *DB) duplicateOf(ctx context.Context, sc tenant.Scope, e entity.Entity) error {
	kinds, idx, _, err := db.blindRows(ctx, e)
	if err != nil {
		return err
	}
	var dup entity.DuplicateError
	err = db.readRow(ctx, sc, `SELECT kind, entity_id FROM entity_identifiers
			WHERE tenant_id = $1 AND (kind, blind_index) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))
			  AND entity_id <> $4 ORDER BY kind LIMIT 1`, []any{e.Tenant.UUID(), kinds, idx, e.ID},
		func(row pgx.Row) error { return row.Scan(&dup.Kind, &dup.Existing) })
	if err != nil {
		// The other entity went away meanwhile: report a plain conflict.
		return apperr.New(apperr.Conflict, "ENTITY_DUPLICATE", "an entity with one of these identifiers exists").Wrap(err)
	}
	return &dup
}

// Insert queues e with its encrypted identifiers and their blind indexes;
// created_at and updated_at are filled in when the unit of work is sent.
func (t *entityTx) Insert(ctx context.Context, e *entity.Entity) error {
	sealed, err := t.db.sealIdentifiers(ctx, *e)
	if err != nil {
		return err
	}
	meta, err := t.db.sealMetadata(ctx, *e)
	if err != nil {
		return err
	}
	t.QueueRow(`INSERT INTO entities (entity_id, tenant_id, entity_type, external_id, sealed_metadata, identifiers)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at, updated_at`,
		[]any{e.ID, e.Tenant.UUID(), e.Type, nullString(e.ExternalID), meta, sealed},
		func(row pgx.Row) error { return row.Scan(&e.CreatedAt, &e.UpdatedAt) })
	return t.queueBlind(ctx, e)
}

// sealMetadata is e's metadata as stored: its JSON sealed under the
// tenant's key, bound to the row (nil when there is none).
func (db *DB) sealMetadata(ctx context.Context, e entity.Entity) ([]byte, error) {
	if len(e.Metadata) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(e.Metadata)
	if err != nil {
		return nil, err
	}
	return db.keys.Seal(ctx, b, metadataColumn.AD(e.ID, e.Tenant.UUID()))
}

const entityCols = "entity_id, tenant_id, entity_type, coalesce(external_id, ''), metadata, sealed_metadata, identifiers, created_at, updated_at"

func (db *DB) scanEntity(ctx context.Context, row pgx.Row) (entity.Entity, error) {
	var e entity.Entity
	var tid *uuid.UUID
	var meta, sealedMeta, sealed []byte
	if err := row.Scan(&e.ID, &tid, &e.Type, &e.ExternalID, &meta, &sealedMeta, &sealed, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return e, err
	}
	if tid != nil {
		e.Tenant = tenant.ID(*tid)
	}
	if len(sealedMeta) > 0 {
		plain, err := db.keys.Open(ctx, sealedMeta, metadataColumn.AD(e.ID, e.Tenant.UUID()))
		if err != nil {
			return e, fmt.Errorf("decrypt metadata of entity %s: %w", e.ID, err)
		}
		meta = plain
	}
	if err := json.Unmarshal(meta, &e.Metadata); err != nil {
		return e, err
	}
	e.Identifiers = map[string]string{}
	if len(sealed) > 0 {
		plain, err := db.keys.Open(ctx, sealed, identifiersColumn.AD(e.ID, e.Tenant.UUID()))
		if err != nil {
			return e, fmt.Errorf("decrypt identifiers of entity %s: %w", e.ID, err)
		}
		if err := json.Unmarshal(plain, &e.Identifiers); err != nil {
			return e, err
		}
	}
	return e, nil
}

// Entity returns an entity sc can see: its own or a platform-shared one.
// Anything else is entity.ErrNotFound.
func (s *EntityStore) Entity(ctx context.Context, sc tenant.Scope, id uuid.UUID) (entity.Entity, error) {
	var out entity.Entity
	var err error
	for _, owner := range ownThenShared(sc.Tenant().UUID()) {
		err = s.db.readRow(ctx, sc, `SELECT `+entityCols+` FROM entities WHERE tenant_id = $1 AND entity_id = $2`,
			[]any{owner, id}, func(row pgx.Row) error {
				var err error
				out, err = s.db.scanEntity(ctx, row)
				return err
			})
		if !errors.Is(err, ErrNotFound) {
			break
		}
	}
	if errors.Is(err, ErrNotFound) {
		return entity.Entity{}, entity.ErrNotFound.Wrap(err)
	}
	return out, err
}

// Entities lists the entities sc can see, newest first, after the cursor
// id.
//
// A page holds at most limit entities and at most PageBytes of stored
// payload; more reports that a next page exists.
func (s *EntityStore) Entities(ctx context.Context, sc tenant.Scope, f entity.Filter, after uuid.UUID, limit int) (out []entity.Entity, more bool, err error) {
	db := s.db
	// The scope's own entities and the platform's shared ones, newest
	// first: each tenant's page is read by a single-shard query (sizes
	// first, to cut the page at PageBytes before reading the rows), and the
	// two are merged.
	const where = `FROM entities
		WHERE tenant_id = $1 AND ($2 = '' OR entity_type = $2) AND ($3 = '' OR external_id = $3)
		  AND ($4::uuid IS NULL OR entity_id < $4) ORDER BY entity_id DESC LIMIT $5`
	type sized struct {
		id    uuid.UUID
		owner uuid.UUID
		size  int64
	}
	err = db.InScope(ctx, sc, func(tx *Tx) error {
		var cands []sized
		for _, owner := range ownThenShared(sc.Tenant().UUID()) {
			rows, err := tx.Query(ctx, `SELECT entity_id, tenant_id,
					coalesce(octet_length(identifiers), 0) + coalesce(octet_length(sealed_metadata), 0) + octet_length(metadata::text) `+where,
				owner, f.Type, f.ExternalID, nullUUID(after), limit+1)
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sized, error) {
				var c sized
				err := r.Scan(&c.id, &c.owner, &c.size)
				return c, err
			})
			if err != nil {
				return err
			}
			cands = append(cands, got...)
		}
		slices.SortFunc(cands, func(a, b sized) int { return newestFirst(a.id, b.id) })
		sizes := make([]int64, len(cands))
		for i, c := range cands {
			sizes[i] = c.size
		}
		n, m := fitSizes(sizes, limit)
		more = m
		byOwner := map[uuid.UUID][]uuid.UUID{}
		for _, c := range cands[:n] {
			byOwner[c.owner] = append(byOwner[c.owner], c.id)
		}
		for _, owner := range ownThenShared(sc.Tenant().UUID()) {
			if len(byOwner[owner]) == 0 {
				continue
			}
			rows, err := tx.Query(ctx, `SELECT `+entityCols+` FROM entities WHERE tenant_id = $1 AND entity_id = ANY($2)`, owner, byOwner[owner])
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Entity, error) { return db.scanEntity(ctx, r) })
			if err != nil {
				return err
			}
			out = append(out, got...)
		}
		slices.SortFunc(out, func(a, b entity.Entity) int { return newestFirst(a.ID, b.ID) })
		return nil
	})
	return out, more, err
}

// FindByIdentifier finds the entities sc can see whose unique identifier
// kind has the normalised value, through the blind indexes of its tenant
// and of shared data: nothing is decrypted to search.
func (s *EntityStore) FindByIdentifier(ctx context.Context, sc tenant.Scope, kind, value string) ([]entity.Entity, error) {
	db := s.db
	var out []entity.Entity
	indexes := func(t uuid.UUID) ([][]byte, error) {
		bs, err := db.keys.BlindIndexes(ctx, t, kind, value)
		out := make([][]byte, 0, len(bs))
		for _, b := range bs {
			out = append(out, b.Index)
		}
		return out, err
	}
	own, err := indexes(sc.Tenant().UUID())
	if err != nil {
		return nil, err
	}
	shared, err := indexes(uuid.Nil)
	if err != nil {
		return nil, err
	}
	// One query per tenant (the own, then the platform's): each stays on
	// one shard on Citus. Entity ids are time-ordered, and the own entities
	// and the shared ones are merged newest first.
	err = db.InScope(ctx, sc, func(tx *Tx) error {
		for _, owner := range ownThenShared(sc.Tenant().UUID()) {
			idx := own
			if owner == uuid.Nil {
				idx = shared
			}
			rows, err := tx.Query(ctx, `SELECT `+entityCols+` FROM entities WHERE tenant_id = $1 AND entity_id IN (
					SELECT entity_id FROM entity_identifiers WHERE tenant_id = $1 AND kind = $2 AND blind_index = ANY($3))`,
				owner, kind, idx)
			if err != nil {
				return err
			}
			found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Entity, error) { return db.scanEntity(ctx, r) })
			if err != nil {
				return err
			}
			out = append(out, found...)
		}
		slices.SortFunc(out, func(a, b entity.Entity) int { return newestFirst(a.ID, b.ID) })
		return nil
	})
	return out, err
}

// Lock returns an entity the scope can see; its own is locked FOR UPDATE.
// A platform-shared entity seen from a tenant's scope comes back unlocked
// (Tenant zero): row-level security applies UPDATE policies to locking
// reads, which would hide it, and the service refuses the change anyway.
func (t *entityTx) Lock(ctx context.Context, id uuid.UUID) (entity.Entity, error) {
	owner, err := entityOwner(ctx, t.Tx, t.tenant.UUID(), id)
	if err != nil {
		return entity.Entity{}, err
	}
	if owner == uuid.Nil && !t.tenant.IsZero() {
		return entity.Entity{ID: id}, nil
	}
	e, err := t.db.scanEntity(ctx, t.QueryRow(ctx, `SELECT `+entityCols+` FROM entities WHERE tenant_id = $1 AND entity_id = $2 FOR UPDATE`, owner, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, entity.ErrNotFound.Wrap(err)
	}
	return e, err
}

// SaveIdentifiers queues the re-encrypted identifiers of a locked entity
// and the replacement of its blind indexes; updated_at is filled in when
// the unit of work is sent.
func (t *entityTx) SaveIdentifiers(ctx context.Context, e *entity.Entity) error {
	sealed, err := t.db.sealIdentifiers(ctx, *e)
	if err != nil {
		return err
	}
	owner := e.Tenant.UUID()
	t.QueueRow(`UPDATE entities SET identifiers = $2, updated_at = now() WHERE tenant_id = $3 AND entity_id = $1 RETURNING updated_at`,
		[]any{e.ID, sealed, owner}, func(row pgx.Row) error { return row.Scan(&e.UpdatedAt) })
	t.Queue(`DELETE FROM entity_identifiers WHERE tenant_id = $2 AND entity_id = $1`, e.ID, owner)
	return t.queueBlind(ctx, e)
}

// SaveAttributes queues a locked entity's external id and metadata
// (sealed, as Insert seals it); updated_at is filled in when the unit of
// work is sent.
func (t *entityTx) SaveAttributes(ctx context.Context, e *entity.Entity) error {
	meta, err := t.db.sealMetadata(ctx, *e)
	if err != nil {
		return err
	}
	t.QueueRow(`UPDATE entities SET external_id = $2, sealed_metadata = $3, metadata = '{}', updated_at = now()
		WHERE tenant_id = $4 AND entity_id = $1 RETURNING updated_at`,
		[]any{e.ID, nullString(e.ExternalID), meta, e.Tenant.UUID()}, func(row pgx.Row) error { return row.Scan(&e.UpdatedAt) })
	return nil
}

// Erase deletes a locked entity; its identifiers, relations, profiles and
// cache rows go with it (foreign keys cascade). A platform-shared entity
// (erased in the platform's scope) also takes every tenant's profiles of
// it and relations to it, which no foreign key can reach across shards.
func (t *entityTx) Erase(ctx context.Context, id uuid.UUID) (entity.Erased, error) {
	var n entity.Erased
	owner := t.tenant.UUID()
	if err := t.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM entity_relations WHERE tenant_id = $2 AND (from_entity_id = $1 OR to_entity_id = $1)),
			(SELECT count(*) FROM entity_profiles WHERE tenant_id = $2 AND entity_id = $1),
			(SELECT count(*) FROM cached_data_sources WHERE tenant_id = $2 AND entity_id = $1)`, id, owner).Scan(&n.Relations, &n.Profiles, &n.CacheEntries); err != nil {
		return n, err
	}
	// Relations found in the entity's profiles lose that link (the foreign
	// key takes no action: Citus refuses SET NULL on a distributed key).
	t.Queue(`UPDATE entity_relations r SET discovered_in_profile_id = NULL FROM entity_profiles p
		WHERE r.tenant_id = $2 AND p.tenant_id = r.tenant_id AND p.profile_id = r.discovered_in_profile_id AND p.entity_id = $1`, id, owner)
	if owner == uuid.Nil {
		t.Queue(`UPDATE entity_relations r SET discovered_in_profile_id = NULL FROM entity_profiles p /* all tenants: links to every tenant's profiles of a shared entity */
			WHERE p.tenant_id = r.tenant_id AND p.profile_id = r.discovered_in_profile_id AND p.entity_shared AND p.entity_id = $1`, id)
		t.Queue(`DELETE FROM entity_relations /* all tenants: every tenant's relations to a shared entity */
			WHERE (from_shared AND from_entity_id = $1) OR (to_shared AND to_entity_id = $1)`, id)
		t.Queue(`DELETE FROM entity_profiles /* all tenants: every tenant's profiles of a shared entity */
			WHERE entity_shared AND entity_id = $1`, id)
	}
	t.Queue(`DELETE FROM entities WHERE tenant_id = $2 AND entity_id = $1`, id, owner)
	return n, nil
}

// ProfileVisible reports whether the scope can see a profile (foreign keys
// ignore row-level security, so the service checks before it links).
func (t *entityTx) ProfileVisible(ctx context.Context, id uuid.UUID) (bool, error) {
	var n int
	err := t.QueryRow(ctx, `SELECT count(*) FROM entity_profiles WHERE tenant_id = $2 AND profile_id = $1`, id, t.tenant.UUID()).Scan(&n)
	return n > 0, err
}

// InsertRelation queues r; created_at is filled in when the unit of work
// is sent.
func (t *entityTx) InsertRelation(_ context.Context, r *entity.Relation) error {
	t.QueueRow(`INSERT INTO entity_relations (relation_id, tenant_id, from_entity_id, to_entity_id, relation_type,
			confidence_score, discovered_in_profile_id, from_shared, to_shared, valid_from, valid_to)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING created_at`,
		[]any{r.ID, r.Tenant.UUID(), r.From, r.To, r.Type, r.Confidence, nullUUID(r.DiscoveredInProfile),
			t.sharedRef(r.Tenant.UUID(), r.From), t.sharedRef(r.Tenant.UUID(), r.To), nullDate(r.ValidFrom), nullDate(r.ValidTo)},
		func(row pgx.Row) error { return row.Scan(&r.CreatedAt) })
	return nil
}

func nullDate(d time.Time) *time.Time {
	if d.IsZero() {
		return nil
	}
	return &d
}

// LockRelation returns one of the unit's tenant's own relations, locked
// for change: entity.ErrRelationNotFound otherwise.
func (t *entityTx) LockRelation(ctx context.Context, id uuid.UUID) (entity.Relation, error) {
	r, err := scanRelation(t.QueryRow(ctx, `SELECT `+relationCols+` FROM entity_relations
		WHERE tenant_id = $1 AND relation_id = $2 FOR UPDATE`, t.tenant.UUID(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, entity.ErrRelationNotFound
	}
	return r, err
}

// UpdateRelation writes r's confidence and validity dates.
func (t *entityTx) UpdateRelation(ctx context.Context, r *entity.Relation) error {
	return t.QueryRow(ctx, `UPDATE entity_relations SET confidence_score = $3, valid_from = $4, valid_to = $5, updated_at = now()
		WHERE tenant_id = $1 AND relation_id = $2 RETURNING updated_at`,
		t.tenant.UUID(), r.ID, r.Confidence, nullDate(r.ValidFrom), nullDate(r.ValidTo)).Scan(&r.UpdatedAt)
}

// DeleteRelation queues the deletion of a locked relation.
func (t *entityTx) DeleteRelation(_ context.Context, id uuid.UUID) error {
	t.Queue(`DELETE FROM entity_relations WHERE tenant_id = $1 AND relation_id = $2`, t.tenant.UUID(), id)
	return nil
}
