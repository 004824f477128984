package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
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

// visible checks that every id is an entity t can see.
func visible(ctx context.Context, tx *Tx, t tenant.ID, ids ...uuid.UUID) error {
	var n int
	if err := tx.tx.QueryRow(ctx, `SELECT count(*) FROM entities WHERE entity_id = ANY($1) AND (tenant_id = $2 OR tenant_id IS NULL)`,
		ids, nullUUID(t.UUID())).Scan(&n); err != nil {
		return err
	}
	if n != len(ids) {
		return entity.ErrNotFound
	}
	return nil
}

// CreateRelation links two entities t can see and records ev.
func (db *DB) CreateRelation(ctx context.Context, r entity.Relation, ev audit.Event) (entity.Relation, error) {
	err := db.scope(ctx, r.Tenant, func(tx *Tx) error {
		if err := visible(ctx, tx, r.Tenant, r.From, r.To); err != nil {
			return err
		}
		if r.DiscoveredInProfile != uuid.Nil {
			// Foreign keys ignore row-level security: check visibility here.
			var n int
			if err := tx.tx.QueryRow(ctx, `SELECT count(*) FROM entity_profiles WHERE profile_id = $1`, r.DiscoveredInProfile).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return entity.ErrProfileNotFound.Withf("discovered_in_profile_id: no such profile")
			}
		}
		err := tx.tx.QueryRow(ctx, `INSERT INTO entity_relations (relation_id, tenant_id, from_entity_id, to_entity_id, relation_type,
			confidence_score, discovered_in_profile_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`,
			r.ID, nullUUID(r.Tenant.UUID()), r.From, r.To, r.Type, r.Confidence, nullUUID(r.DiscoveredInProfile)).Scan(&r.CreatedAt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return entity.ErrRelationExists.Wrap(err)
		}
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx.tx, ev)
	})
	return r, err
}

// Relations lists the relations of an entity t can see, in both
// directions, newest first, after the cursor id, at most limit.
func (db *DB) Relations(ctx context.Context, t tenant.ID, id, after uuid.UUID, limit int) ([]entity.Relation, error) {
	var out []entity.Relation
	err := db.scope(ctx, t, func(tx *Tx) error {
		if err := visible(ctx, tx, t, id); err != nil {
			return err
		}
		rows, err := tx.tx.Query(ctx, `SELECT relation_id, tenant_id, from_entity_id, to_entity_id, relation_type, confidence_score,
				discovered_in_profile_id, created_at FROM entity_relations
			WHERE (tenant_id = $2 OR tenant_id IS NULL) AND from_entity_id = $1 AND ($3::uuid IS NULL OR relation_id < $3)
			UNION ALL
			SELECT relation_id, tenant_id, from_entity_id, to_entity_id, relation_type, confidence_score,
				discovered_in_profile_id, created_at FROM entity_relations
			WHERE (tenant_id = $2 OR tenant_id IS NULL) AND to_entity_id = $1 AND ($3::uuid IS NULL OR relation_id < $3)
			ORDER BY relation_id DESC LIMIT $4`, id, nullUUID(t.UUID()), nullUUID(after), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Relation, error) {
			var rel entity.Relation
			var tid, prof *uuid.UUID
			err := r.Scan(&rel.ID, &tid, &rel.From, &rel.To, &rel.Type, &rel.Confidence, &prof, &rel.CreatedAt)
			if tid != nil {
				rel.Tenant = tenant.ID(*tid)
			}
			if prof != nil {
				rel.DiscoveredInProfile = *prof
			}
			return rel, err
		})
		return err
	})
	return out, err
}

func (db *DB) sealJSON(c EncryptedColumn, id uuid.UUID, t uuid.UUID, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return db.ring.Seal(b, c.AD(id, t))
}

func (db *DB) openJSON(c EncryptedColumn, id uuid.UUID, t uuid.UUID, ct []byte, v any) error {
	if len(ct) == 0 {
		return nil
	}
	b, err := db.ring.Open(ct, c.AD(id, t))
	if err != nil {
		return fmt.Errorf("decrypt %s.%s of %s: %w", c.Table, c.Column, id, err)
	}
	return json.Unmarshal(b, v)
}

const profileCols = `profile_id, entity_id, tenant_id, version, trigger_type, trigger_id, findings, connections, delta,
	risk_score, data_sources_used, stale_data_used, evolution_signals, created_at`

func (db *DB) scanProfile(row pgx.Row) (entity.Profile, error) {
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
		if err := db.openJSON(x.c, p.ID, tid, x.ct, x.v); err != nil {
			return p, err
		}
	}
	if len(delta) > 0 {
		p.Delta = &entity.Delta{}
		if err := db.openJSON(deltaColumn, p.ID, tid, delta, p.Delta); err != nil {
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

// CreateProfile stores the next version of an entity's profile for t:
// versions of one (entity, tenant) are serialised by a transaction-scoped
// advisory lock, so concurrent creates all succeed with consecutive
// versions. The delta against the previous version is computed here.
func (db *DB) CreateProfile(ctx context.Context, p entity.Profile, ev func(entity.Profile) audit.Event) (entity.Profile, error) {
	err := db.InTx(ctx, p.Tenant, func(tx *Tx) error {
		if err := visible(ctx, tx, p.Tenant, p.EntityID); err != nil {
			return err
		}
		if _, err := tx.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 42))`, p.Tenant.String()+"/"+p.EntityID.String()); err != nil {
			return err
		}
		prev, err := db.scanProfile(tx.tx.QueryRow(ctx, `SELECT `+profileCols+` FROM entity_profiles
			WHERE entity_id = $1 AND tenant_id = $2 ORDER BY version DESC LIMIT 1`, p.EntityID, p.Tenant.UUID()))
		var d entity.Delta
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			p.Version = 1
			d = entity.FirstDelta(p)
		case err != nil:
			return err
		default:
			p.Version = prev.Version + 1
			d = entity.ComputeDelta(prev, p)
		}
		p.Delta = &d
		tid := p.Tenant.UUID()
		findings, err := db.sealJSON(findingsColumn, p.ID, tid, nonNilRaw(p.Findings))
		if err != nil {
			return err
		}
		conns, err := db.sealJSON(connectionsColumn, p.ID, tid, nonNilRaw(p.Connections))
		if err != nil {
			return err
		}
		delta, err := db.sealJSON(deltaColumn, p.ID, tid, d)
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
		err = tx.tx.QueryRow(ctx, `INSERT INTO entity_profiles (profile_id, entity_id, tenant_id, version, previous_version, trigger_type,
			trigger_id, findings, connections, delta, risk_score, connection_count, data_sources_used, stale_data_used, evolution_signals)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING created_at`,
			p.ID, p.EntityID, tid, p.Version, prevVersion, p.TriggerType, nullUUID(p.TriggerID), findings, conns, delta,
			score, len(p.Connections), used, stale, signals).Scan(&p.CreatedAt)
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx.tx, ev(p))
	})
	return p, err
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
func (db *DB) Profiles(ctx context.Context, t tenant.ID, entityID uuid.UUID, before, limit int) (out []entity.Profile, more bool, err error) {
	err = db.InTx(ctx, t, func(tx *Tx) error {
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
		rows, err := tx.tx.Query(ctx, `SELECT `+profileCols+` `+where, entityID, t.UUID(), before, n)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (entity.Profile, error) { return db.scanProfile(r) })
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
	rows, err := tx.tx.Query(ctx, sizeQuery, args...)
	if err != nil {
		return 0, false, err
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, false, err
	}
	n, total := 0, int64(0)
	for _, sz := range sizes {
		if n == limit || n > 0 && total+sz > PageBytes {
			break
		}
		n++
		total += sz
	}
	return n, len(sizes) > n, nil
}

// Profile returns version v of t's profile of an entity (0: the latest).
func (db *DB) Profile(ctx context.Context, t tenant.ID, entityID uuid.UUID, v int) (entity.Profile, error) {
	var out entity.Profile
	err := db.InTx(ctx, t, func(tx *Tx) error {
		if err := visible(ctx, tx, t, entityID); err != nil {
			return err
		}
		var err error
		out, err = db.scanProfile(tx.tx.QueryRow(ctx, `SELECT `+profileCols+` FROM entity_profiles
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

func (db *DB) scanCache(row pgx.Row, withRaw bool) (sourcecache.Entry, error) {
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
	plain, err := db.ring.Open(norm, normalizedColumn.AD(e.ID, bound))
	if err != nil {
		return e, fmt.Errorf("decrypt normalized_data of %s: %w", e.ID, err)
	}
	e.NormalizedData = plain
	if withRaw {
		if e.RawResponse, err = db.ring.Open(raw, rawColumn.AD(e.ID, bound)); err != nil {
			return e, fmt.Errorf("decrypt raw_response of %s: %w", e.ID, err)
		}
	}
	return e, nil
}

// CreateCacheEntry stores a provider result on an entity t can see, with
// its ciphertexts bound to the tenant that may read them, and records ev.
// A zero t is the platform path: paid_external data on shared entities.
func (db *DB) CreateCacheEntry(ctx context.Context, t tenant.ID, e sourcecache.Entry, ev audit.Event) (sourcecache.Entry, error) {
	err := db.scope(ctx, t, func(tx *Tx) error {
		var owner *uuid.UUID
		err := tx.tx.QueryRow(ctx, `SELECT tenant_id FROM entities WHERE entity_id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)`,
			e.EntityID, nullUUID(t.UUID())).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			return entity.ErrNotFound.Wrap(err)
		}
		if err != nil {
			return err
		}
		bound := uuid.Nil
		if owner != nil {
			e.Owner = tenant.ID(*owner)
			bound = *owner
		}
		switch {
		case e.Origin == sourcecache.CustomerProvided && t.IsZero():
			return sourcecache.ErrNoCustomer
		case e.Origin == sourcecache.CustomerProvided:
			e.Customer = t
			bound = t.UUID()
		case owner == nil && !t.IsZero():
			return sourcecache.ErrSharedOrigin
		}
		raw, err := db.ring.Seal(e.RawResponse, rawColumn.AD(e.ID, bound))
		if err != nil {
			return err
		}
		norm, err := db.ring.Seal(e.NormalizedData, normalizedColumn.AD(e.ID, bound))
		if err != nil {
			return err
		}
		err = tx.tx.QueryRow(ctx, `INSERT INTO cached_data_sources (cache_id, entity_id, tenant_id, customer_id, provider_id, check_type,
			data_origin, raw_response, normalized_data, cost_incurred, cost_currency, acquired_at, fresh_until, stale_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::numeric, $11, $12, $13, $14) RETURNING created_at, cost_incurred::text`,
			e.ID, e.EntityID, owner, nullUUID(e.Customer.UUID()), e.ProviderID, e.CheckType, e.Origin, raw, norm, e.Cost, e.Currency,
			e.AcquiredAt, e.FreshUntil, e.StaleUntil).Scan(&e.CreatedAt, &e.Cost)
		if err != nil {
			return err
		}
		return db.appendAudit(ctx, tx.tx, ev)
	})
	return e, err
}

// CacheEntries lists the entries of an entity that t may see: every
// paid_external one and its own customer_provided ones, newest first,
// after the cursor id, at most limit.
//
// A page holds at most limit entries and at most PageBytes of stored
// payload (raw responses counted only when included); more reports that a
// next page exists.
func (db *DB) CacheEntries(ctx context.Context, t tenant.ID, entityID uuid.UUID, f sourcecache.Filter, withRaw bool, after uuid.UUID, limit int) (out []sourcecache.Entry, more bool, err error) {
	err = db.InTx(ctx, t, func(tx *Tx) error {
		if err := visible(ctx, tx, t, entityID); err != nil {
			return err
		}
		const where = `FROM cached_data_sources
			WHERE entity_id = $1 AND ($2 = '' OR check_type = $2) AND ($3 = '' OR provider_id = $3)
			  AND (customer_id IS NULL OR customer_id = $4) AND ($5::uuid IS NULL OR cache_id < $5) ORDER BY cache_id DESC LIMIT $6`
		args := []any{entityID, f.CheckType, f.ProviderID, t.UUID(), nullUUID(after), limit + 1}
		n, m, err := fit(ctx, tx, `SELECT octet_length(normalized_data) + CASE WHEN $7 THEN octet_length(raw_response) * 4 / 3 ELSE 0 END `+where,
			limit, append(args, withRaw)...)
		if err != nil || n == 0 {
			return err
		}
		more = m
		args[5] = n
		rows, err := tx.tx.Query(ctx, `SELECT `+cacheCols+` `+where, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (sourcecache.Entry, error) { return db.scanCache(r, withRaw) })
		return err
	})
	return out, more, err
}

// CacheEntry returns one entry of an entity that t may see.
func (db *DB) CacheEntry(ctx context.Context, t tenant.ID, entityID, id uuid.UUID, withRaw bool) (sourcecache.Entry, error) {
	var out sourcecache.Entry
	err := db.InTx(ctx, t, func(tx *Tx) error {
		var err error
		out, err = db.scanCache(tx.tx.QueryRow(ctx, `SELECT `+cacheCols+` FROM cached_data_sources
			WHERE cache_id = $1 AND entity_id = $2 AND (customer_id IS NULL OR customer_id = $3)`, id, entityID, t.UUID()), withRaw)
		if errors.Is(err, pgx.ErrNoRows) {
			return sourcecache.ErrNotFound.Wrap(err)
		}
		return err
	})
	return out, err
}

var (
	_ = apperr.Internal
	_ = time.Time{}
)
