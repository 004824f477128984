package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenant"
)

//nolint:gochecknoglobals // immutable descriptions of the encrypted columns
var (
	findingsColumn    = EncryptedColumn{Table: "entity_profiles", Column: "findings", ID: "profile_id", Tenant: "tenant_id"}
	connectionsColumn = EncryptedColumn{Table: "entity_profiles", Column: "connections", ID: "profile_id", Tenant: "tenant_id"}
	deltaColumn       = EncryptedColumn{Table: "entity_profiles", Column: "delta", ID: "profile_id", Tenant: "tenant_id"}
	rawColumn         = EncryptedColumn{Table: "cached_data_sources", Column: "raw_response", ID: "cache_id", Tenant: "coalesce(customer_id, tenant_id)"}
	normalizedColumn  = EncryptedColumn{Table: "cached_data_sources", Column: "normalized_data", ID: "cache_id", Tenant: "coalesce(customer_id, tenant_id)"}
)

// ownThenShared lists the tenants whose entities scope t sees, its own
// first: t and the platform (shared entities), or the platform alone. They
// are read by one query each, so on Citus every query stays on one shard.
func ownThenShared(t uuid.UUID) []uuid.UUID {
	if t == uuid.Nil {
		return []uuid.UUID{uuid.Nil}
	}
	return []uuid.UUID{t, uuid.Nil}
}

// newestFirst orders time-ordered (UUIDv7) ids newest first: how pages
// read from the tenant's shard and the platform's are merged.
func newestFirst(a, b uuid.UUID) int { return bytes.Compare(b[:], a[:]) }

// entityOwner returns the tenant of entity id as scope t sees it: t, or
// the platform (uuid.Nil) for a shared entity; entity.ErrNotFound when
// neither has it. The owner is remembered for the rest of the unit of work
// (sharedRef).
func entityOwner(ctx context.Context, tx *Tx, t, id uuid.UUID) (uuid.UUID, error) {
	if owner, ok := tx.owners[id]; ok {
		return owner, nil
	}
	for _, owner := range ownThenShared(t) {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM entities WHERE tenant_id = $1 AND entity_id = $2`, owner, id).Scan(&n); err != nil {
			return uuid.Nil, err
		}
		if n > 0 {
			if tx.owners == nil {
				tx.owners = map[uuid.UUID]uuid.UUID{}
			}
			tx.owners[id] = owner
			return owner, nil
		}
	}
	return uuid.Nil, entity.ErrNotFound
}

// sharedRef reports whether a row of tenant t naming entity id names a
// platform-shared entity (the row's foreign key then skips it); the owner
// was looked up by visible or entityOwner in this unit of work.
func (t *Tx) sharedRef(rowTenant, id uuid.UUID) bool {
	owner, ok := t.owners[id]
	return ok && owner == uuid.Nil && rowTenant != uuid.Nil
}

// visible checks that every id is an entity t can see.
func visible(ctx context.Context, tx *Tx, t tenant.ID, ids ...uuid.UUID) error {
	for _, id := range ids {
		if _, err := entityOwner(ctx, tx, t.UUID(), id); err != nil {
			return err
		}
	}
	return nil
}

// Relations lists the relations of an entity sc can see, in both
// directions, newest first, after the cursor id, at most limit.
func (s *EntityStore) Relations(ctx context.Context, sc tenant.Scope, id, after uuid.UUID, limit int) ([]entity.Relation, error) {
	var out []entity.Relation
	t := sc.Tenant()
	err := s.db.InScope(ctx, sc, func(tx *Tx) error {
		owner, err := entityOwner(ctx, tx, t.UUID(), id)
		if err != nil {
			return err
		}
		// The scope's own relations, and for a shared entity the
		// platform's too: one single-shard query per tenant, merged.
		chains := []uuid.UUID{t.UUID()}
		if owner == uuid.Nil && t.UUID() != uuid.Nil {
			chains = append(chains, uuid.Nil)
		}
		for _, c := range chains {
			rows, err := tx.Query(ctx, `SELECT `+relationCols+` FROM entity_relations
				WHERE tenant_id = $2 AND from_entity_id = $1 AND ($3::uuid IS NULL OR relation_id < $3)
				UNION ALL
				SELECT `+relationCols+` FROM entity_relations
				WHERE tenant_id = $2 AND to_entity_id = $1 AND ($3::uuid IS NULL OR relation_id < $3)
				ORDER BY relation_id DESC LIMIT $4`, id, c, nullUUID(after), limit)
			if err != nil {
				return err
			}
			rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Relation, error) { return scanRelation(r) })
			if err != nil {
				return err
			}
			out = append(out, rels...)
		}
		slices.SortFunc(out, func(a, b entity.Relation) int { return newestFirst(a.ID, b.ID) })
		out = out[:min(len(out), limit)]
		return nil
	})
	return out, err
}

func (db *DB) sealJSON(ctx context.Context, c EncryptedColumn, id uuid.UUID, t uuid.UUID, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return db.keys.Seal(ctx, b, c.AD(id, t))
}

func (db *DB) openJSON(ctx context.Context, c EncryptedColumn, id uuid.UUID, t uuid.UUID, ct []byte, v any) error {
	if len(ct) == 0 {
		return nil
	}
	b, err := db.keys.Open(ctx, ct, c.AD(id, t))
	if err != nil {
		return fmt.Errorf("decrypt %s.%s of %s: %w", c.Table, c.Column, id, err)
	}
	return json.Unmarshal(b, v)
}

const profileCols = `profile_id, entity_id, tenant_id, version, trigger_type, trigger_id, findings, connections, delta,
	risk_score, data_sources_used, stale_data_used, evolution_signals, created_at`

func (db *DB) scanProfile(ctx context.Context, row pgx.Row) (entity.Profile, error) {
	var p entity.Profile
	var tid uuid.UUID
	var trig *uuid.UUID
	var findings, conns, delta, score, used, stale, signals []byte
	if err := row.Scan(&p.ID, &p.EntityID, &tid, &p.Version, &p.TriggerType, &trig, &findings, &conns, &delta,
		&score, &used, &stale, &signals, &p.CreatedAt); err != nil {
		return p, err
	}
	p.Tenant = tenant.ID(tid)
	if trig != nil {
		p.TriggerID = *trig
	}
	for _, x := range []struct {
		c  EncryptedColumn
		ct []byte
		v  any
	}{{findingsColumn, findings, &p.Findings}, {connectionsColumn, conns, &p.Connections}} {
		if err := db.openJSON(ctx, x.c, p.ID, tid, x.ct, x.v); err != nil {
			return p, err
		}
	}
	if len(delta) > 0 {
		p.Delta = &entity.Delta{}
		if err := db.openJSON(ctx, deltaColumn, p.ID, tid, delta, p.Delta); err != nil {
			return p, err
		}
	}
	for _, x := range []struct {
		b []byte
		v any
	}{{score, &p.RiskScore}, {used, &p.DataSourcesUsed}, {stale, &p.StaleDataUsed}, {signals, &p.EvolutionSignals}} {
		if err := json.Unmarshal(x.b, x.v); err != nil {
			return p, err
		}
	}
	return p, nil
}

// ProfileStore keeps the versioned risk profiles (entity.ProfileStore).
type ProfileStore struct{ db *DB }

// Profiles returns the store of risk profiles.
func (db *DB) Profiles() *ProfileStore { return &ProfileStore{db: db} }

type profileTx struct{ *Tx }

// InScope runs fn in one unit of work in scope sc.
func (s *ProfileStore) InScope(ctx context.Context, sc tenant.Scope, fn func(entity.ProfileTx) error) error {
	return s.db.InScope(ctx, sc, func(tx *Tx) error { return fn(&profileTx{tx}) })
}

// Latest takes a transaction-scoped advisory lock on the (tenant, entity)
// history, so concurrent creates all succeed with consecutive versions,
// and returns the newest version; the lock and the read are one round trip.
func (t *profileTx) Latest(ctx context.Context, entityID uuid.UUID) (entity.Profile, bool, error) {
	t.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 42))`, t.tenant.String()+"/"+entityID.String())
	prev, err := t.db.scanProfile(ctx, t.QueryRow(ctx, `SELECT `+profileCols+` FROM entity_profiles
		WHERE entity_id = $1 AND tenant_id = $2 ORDER BY version DESC LIMIT 1`, entityID, t.tenant.UUID()))
	if errors.Is(err, pgx.ErrNoRows) {
		return entity.Profile{}, false, nil
	}
	return prev, err == nil, err
}

// InsertProfile queues p with its encrypted findings, connections and
// delta; created_at is filled in when the unit of work is sent.
func (t *profileTx) InsertProfile(ctx context.Context, p *entity.Profile) error {
	db := t.db
	tid := p.Tenant.UUID()
	findings, err := db.sealJSON(ctx, findingsColumn, p.ID, tid, nonNilRaw(p.Findings))
	if err != nil {
		return err
	}
	conns, err := db.sealJSON(ctx, connectionsColumn, p.ID, tid, nonNilRaw(p.Connections))
	if err != nil {
		return err
	}
	delta, err := db.sealJSON(ctx, deltaColumn, p.ID, tid, p.Delta)
	if err != nil {
		return err
	}
	var prevVersion *int
	if p.Version > 1 {
		v := p.Version - 1
		prevVersion = &v
	}
	score, _ := json.Marshal(p.RiskScore)
	used, _ := json.Marshal(nonNilRaw(p.DataSourcesUsed))
	stale, _ := json.Marshal(nonNilRaw(p.StaleDataUsed))
	signals, _ := json.Marshal(nonNilRaw(p.EvolutionSignals))
	t.QueueRow(`INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, previous_version, trigger_type,
		trigger_id, findings, connections, delta, risk_score, connection_count, data_sources_used, stale_data_used, evolution_signals,
		entity_shared) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING created_at`,
		[]any{p.ID, p.EntityID, tid, p.Version, prevVersion, p.TriggerType, nullUUID(p.TriggerID), findings, conns, delta,
			score, len(p.Connections), used, stale, signals, t.sharedRef(tid, p.EntityID)}, func(row pgx.Row) error { return row.Scan(&p.CreatedAt) })
	return nil
}

func nonNilRaw(v []json.RawMessage) []json.RawMessage {
	if v == nil {
		return []json.RawMessage{}
	}
	return v
}

// Profiles lists t's profiles of an entity, newest version first, below
// the version before (0: from the newest).
//
// A page holds at most limit profiles and at most PageBytes of stored
// payload (always at least one profile); more reports that a next page
// exists.
func (s *ProfileStore) Profiles(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, before, limit int) (out []entity.Profile, more bool, err error) {
	db, t := s.db, sc.Tenant()
	err = db.InScope(ctx, sc, func(tx *Tx) error {
		if err := visible(ctx, tx, t, entityID); err != nil {
			return err
		}
		const where = `FROM entity_profiles WHERE entity_id = $1 AND tenant_id = $2 AND ($3 = 0 OR version < $3) ORDER BY version DESC LIMIT $4`
		n, m, err := fit(ctx, tx, `SELECT octet_length(findings) + octet_length(connections) + coalesce(octet_length(delta), 0)
			+ octet_length(risk_score::text) + octet_length(data_sources_used::text) + octet_length(stale_data_used::text)
			+ octet_length(evolution_signals::text) `+where, limit, entityID, t.UUID(), before, limit+1)
		if err != nil || n == 0 {
			return err
		}
		more = m
		rows, err := tx.Query(ctx, `SELECT `+profileCols+` `+where, entityID, t.UUID(), before, n)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Profile, error) { return db.scanProfile(ctx, r) })
		return err
	})
	return out, more, err
}

// PageBytes bounds the stored payload one list page reads, decrypts and
// renders, whatever its limit: a thousand large profiles must not take
// gigabytes of one request. A page ends early (with a cursor) instead.
const PageBytes = 4 << 20

// fit runs sizeQuery (one row per candidate item, in page order, each its
// stored payload size; args include the LIMIT of limit+1) and returns how
// many items the page takes — at most limit, at most PageBytes, at least
// one — and whether more items follow.
func fit(ctx context.Context, tx *Tx, sizeQuery string, limit int, args ...any) (int, bool, error) {
	rows, err := tx.Query(ctx, sizeQuery, args...)
	if err != nil {
		return 0, false, err
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, false, err
	}
	n, more := fitSizes(sizes, limit)
	return n, more, nil
}

// fitSizes is how many of the rows, in order, a page takes: at most limit,
// and at most PageBytes of stored payload (at least one row); and whether
// rows are left.
func fitSizes(sizes []int64, limit int) (int, bool) {
	n, total := 0, int64(0)
	for _, sz := range sizes {
		if n == limit || n > 0 && total+sz > PageBytes {
			break
		}
		n++
		total += sz
	}
	return n, len(sizes) > n
}

// Profile returns version v of t's profile of an entity (0: the latest).
func (s *ProfileStore) Profile(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, v int) (entity.Profile, error) {
	db, t := s.db, sc.Tenant()
	var out entity.Profile
	err := db.InScope(ctx, sc, func(tx *Tx) error {
		if err := visible(ctx, tx, t, entityID); err != nil {
			return err
		}
		var err error
		out, err = db.scanProfile(ctx, tx.QueryRow(ctx, `SELECT `+profileCols+` FROM entity_profiles
			WHERE entity_id = $1 AND tenant_id = $2 AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1`, entityID, t.UUID(), v))
		if errors.Is(err, pgx.ErrNoRows) {
			return entity.ErrProfileNotFound.Wrap(err)
		}
		return err
	})
	return out, err
}

const cacheCols = `cache_id, entity_id, tenant_id, customer_id, provider_id, check_type, data_origin, raw_response, normalized_data,
	cost_incurred::text, cost_currency, acquired_at, fresh_until, stale_until, created_at`

func (db *DB) scanCache(ctx context.Context, row pgx.Row, withRaw bool) (sourcecache.Entry, error) {
	var e sourcecache.Entry
	var owner, customer *uuid.UUID
	var raw, norm []byte
	if err := row.Scan(&e.ID, &e.EntityID, &owner, &customer, &e.ProviderID, &e.CheckType, &e.Origin, &raw, &norm,
		&e.Cost, &e.Currency, &e.AcquiredAt, &e.FreshUntil, &e.StaleUntil, &e.CreatedAt); err != nil {
		return e, err
	}
	bound := uuid.Nil
	if owner != nil {
		e.Owner = tenant.ID(*owner)
		bound = *owner
	}
	if customer != nil {
		e.Customer = tenant.ID(*customer)
		bound = *customer
	}
	plain, err := db.keys.Open(ctx, norm, normalizedColumn.AD(e.ID, bound))
	if err != nil {
		return e, fmt.Errorf("decrypt normalized_data of %s: %w", e.ID, err)
	}
	e.NormalizedData = plain
	if withRaw {
		if e.RawResponse, err = db.keys.Open(ctx, raw, rawColumn.AD(e.ID, bound)); err != nil {
			return e, fmt.Errorf("decrypt raw_response of %s: %w", e.ID, err)
		}
	}
	return e, nil
}

// CacheStore keeps cached provider results (sourcecache.Store).
type CacheStore struct{ db *DB }

// Cache returns the store of cached provider results.
func (db *DB) Cache() *CacheStore { return &CacheStore{db: db} }

type cacheTx struct{ *Tx }

// InScope runs fn in one unit of work in scope sc.
func (s *CacheStore) InScope(ctx context.Context, sc tenant.Scope, fn func(sourcecache.Tx) error) error {
	return s.db.InScope(ctx, sc, func(tx *Tx) error { return fn(&cacheTx{tx}) })
}

// Owner returns the tenant of an entity sc can see (zero: shared).
func (s *CacheStore) Owner(ctx context.Context, sc tenant.Scope, entityID uuid.UUID) (tenant.ID, error) {
	var owner uuid.UUID
	err := s.db.InScope(ctx, sc, func(tx *Tx) error {
		var err error
		owner, err = entityOwner(ctx, tx, sc.Tenant().UUID(), entityID)
		return err
	})
	return tenant.ID(owner), err
}

// Owner returns the tenant of an entity the unit of work can see.
func (t *cacheTx) Owner(ctx context.Context, entityID uuid.UUID) (tenant.ID, error) {
	owner, err := entityOwner(ctx, t.Tx, t.tenant.UUID(), entityID)
	return tenant.ID(owner), err
}

// Insert queues e with its ciphertexts bound to the tenant that may read
// them: the providing customer's, else the entity's (none when shared).
func (t *cacheTx) Insert(ctx context.Context, e *sourcecache.Entry) error {
	bound := e.Owner.UUID()
	if !e.Customer.IsZero() {
		bound = e.Customer.UUID()
	}
	raw, err := t.db.keys.Seal(ctx, e.RawResponse, rawColumn.AD(e.ID, bound))
	if err != nil {
		return err
	}
	norm, err := t.db.keys.Seal(ctx, e.NormalizedData, normalizedColumn.AD(e.ID, bound))
	if err != nil {
		return err
	}
	t.QueueRow(`INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, customer_id, provider_id, check_type,
		data_origin, raw_response, normalized_data, cost_incurred, cost_currency, acquired_at, fresh_until, stale_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::numeric, $11, $12, $13, $14) RETURNING created_at, cost_incurred::text`,
		[]any{e.ID, e.EntityID, e.Owner.UUID(), nullUUID(e.Customer.UUID()), e.ProviderID, e.CheckType, e.Origin, raw, norm,
			e.Cost, e.Currency, e.AcquiredAt, e.FreshUntil, e.StaleUntil},
		func(row pgx.Row) error { return row.Scan(&e.CreatedAt, &e.Cost) })
	return nil
}

// CacheEntries lists the entries of an entity that t may see: every
// paid_external one and its own customer_provided ones, newest first,
// after the cursor id, at most limit.
//
// A page holds at most limit entries and at most PageBytes of stored
// payload (raw responses counted only when included); more reports that a
// next page exists.
func (s *CacheStore) Entries(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, f sourcecache.Filter, withRaw bool, after uuid.UUID, limit int) (out []sourcecache.Entry, more bool, err error) {
	db, t := s.db, sc.Tenant()
	err = db.InScope(ctx, sc, func(tx *Tx) error {
		// A cache row lives with its entity (its tenant is the entity's
		// owner): one shard on Citus.
		owner, err := entityOwner(ctx, tx, t.UUID(), entityID)
		if err != nil {
			return err
		}
		const where = `FROM cached_data_sources
			WHERE tenant_id = $7 AND entity_id = $1 AND ($2 = '' OR check_type = $2) AND ($3 = '' OR provider_id = $3)
			  AND (customer_id IS NULL OR customer_id = $4) AND ($5::uuid IS NULL OR cache_id < $5) ORDER BY cache_id DESC LIMIT $6`
		args := []any{entityID, f.CheckType, f.ProviderID, t.UUID(), nullUUID(after), limit + 1, owner}
		n, m, err := fit(ctx, tx, `SELECT octet_length(normalized_data) + CASE WHEN $8 THEN octet_length(raw_response) * 4 / 3 ELSE 0 END `+where,
			limit, append(args, withRaw)...)
		if err != nil || n == 0 {
			return err
		}
		more = m
		args[5] = n
		rows, err := tx.Query(ctx, `SELECT `+cacheCols+` `+where, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (sourcecache.Entry, error) { return db.scanCache(ctx, r, withRaw) })
		return err
	})
	return out, more, err
}

// CacheEntry returns one entry of an entity that t may see.
func (s *CacheStore) Entry(ctx context.Context, sc tenant.Scope, entityID, id uuid.UUID, withRaw bool) (sourcecache.Entry, error) {
	db, t := s.db, sc.Tenant()
	var out sourcecache.Entry
	err := db.InScope(ctx, sc, func(tx *Tx) error {
		owner, err := entityOwner(ctx, tx, t.UUID(), entityID)
		if errors.Is(err, entity.ErrNotFound) {
			return sourcecache.ErrNotFound.Wrap(err)
		}
		if err != nil {
			return err
		}
		out, err = db.scanCache(ctx, tx.QueryRow(ctx, `SELECT `+cacheCols+` FROM cached_data_sources
			WHERE tenant_id = $4 AND cache_id = $1 AND entity_id = $2 AND (customer_id IS NULL OR customer_id = $3)`, id, entityID, t.UUID(), owner), withRaw)
		if errors.Is(err, pgx.ErrNoRows) {
			return sourcecache.ErrNotFound.Wrap(err)
		}
		return err
	})
	return out, err
}

const relationCols = `relation_id, tenant_id, from_entity_id, to_entity_id, relation_type, confidence_score,
	discovered_in_profile_id, valid_from, valid_to, created_at, updated_at`

func scanRelation(row pgx.Row) (entity.Relation, error) {
	var rel entity.Relation
	var tid uuid.UUID
	var prof *uuid.UUID
	var from, to, updated *time.Time
	err := row.Scan(&rel.ID, &tid, &rel.From, &rel.To, &rel.Type, &rel.Confidence, &prof, &from, &to, &rel.CreatedAt, &updated)
	rel.Tenant = tenant.ID(tid)
	if prof != nil {
		rel.DiscoveredInProfile = *prof
	}
	for _, x := range []struct {
		src *time.Time
		dst *time.Time
	}{{from, &rel.ValidFrom}, {to, &rel.ValidTo}, {updated, &rel.UpdatedAt}} {
		if x.src != nil {
			*x.dst = *x.src
		}
	}
	return rel, err
}
