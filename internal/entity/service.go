package entity

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/tenant"
)

// Store keeps entities and their relations. postgres implements it.
type Store interface {
	// InScope runs fn in one unit of work (one transaction) in scope sc.
	InScope(ctx context.Context, sc tenant.Scope, fn func(Tx) error) error
	// Entity returns an entity sc can see (its own or a platform-shared
	// one): ErrNotFound otherwise.
	Entity(ctx context.Context, sc tenant.Scope, id uuid.UUID) (Entity, error)
	// Entities lists the entities sc can see, newest first, after the
	// cursor id; more reports that a next page exists.
	Entities(ctx context.Context, sc tenant.Scope, f Filter, after uuid.UUID, limit int) (es []Entity, more bool, err error)
	// FindByIdentifier finds the entities sc can see whose unique
	// identifier kind has the normalised value.
	FindByIdentifier(ctx context.Context, sc tenant.Scope, kind, value string) ([]Entity, error)
	// Relations lists relations of an entity sc can see (ErrNotFound
	// otherwise), both directions, newest first, after the cursor id.
	Relations(ctx context.Context, sc tenant.Scope, id, after uuid.UUID, limit int) ([]Relation, error)
}

// Tx is the work a unit of work can do. Methods that return only an error
// may be queued and sent with the next read or at commit: their errors
// (a duplicate identifier, say) can surface from a later call or from
// InScope itself.
type Tx interface {
	// Insert stores a new entity with its encrypted identifiers and the
	// blind indexes of its unique ones. A unique identifier the tenant
	// already uses fails the unit of work with a *DuplicateError.
	Insert(ctx context.Context, e *Entity) error
	// Lock returns an entity the scope can see, locked for change when it
	// is the scope's own; ErrNotFound if it cannot see it.
	Lock(ctx context.Context, id uuid.UUID) (Entity, error)
	// SaveIdentifiers re-encrypts e's identifiers and replaces its blind
	// indexes (a *DuplicateError as for Insert).
	SaveIdentifiers(ctx context.Context, e *Entity) error
	// SaveAttributes writes a locked entity's external id and metadata
	// (encrypted); an external id another entity of the tenant has fails
	// the unit of work with ErrExternalIDTaken.
	SaveAttributes(ctx context.Context, e *Entity) error
	// Erase deletes a locked entity and everything hanging off it,
	// returning how many rows of each kind went.
	Erase(ctx context.Context, id uuid.UUID) (Erased, error)
	// Visible fails with ErrNotFound unless the scope can see every id.
	Visible(ctx context.Context, ids ...uuid.UUID) error
	// ProfileVisible reports whether the scope can see a profile.
	ProfileVisible(ctx context.Context, id uuid.UUID) (bool, error)
	// InsertRelation stores r; one that exists fails with
	// ErrRelationExists.
	InsertRelation(ctx context.Context, r *Relation) error
	// LockRelation returns one of the scope's own relations, locked for
	// change: ErrRelationNotFound otherwise.
	LockRelation(ctx context.Context, id uuid.UUID) (Relation, error)
	// UpdateRelation writes a locked relation's confidence and dates.
	UpdateRelation(ctx context.Context, r *Relation) error
	// DeleteRelation deletes a locked relation.
	DeleteRelation(ctx context.Context, id uuid.UUID) error
	// AppendAudit records ev in the same transaction as the change.
	AppendAudit(ctx context.Context, ev audit.Event) error
}

// Erased counts what an erasure removed besides the entity.
type Erased struct {
	Relations, Profiles, CacheEntries int64
}

// Service owns the rules of entities and relations: validation and
// normalisation, who may change what (platform-shared entities only by
// platform admins), duplicates, and the audit event of every operation.
type Service struct {
	store Store
	audit audit.Log
	now   func() time.Time
}

// NewService returns the entity service.
func NewService(store Store, log audit.Log, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, audit: log, now: now}
}

// NewEntity is the input of Create.
type NewEntity struct {
	Type        string
	ExternalID  string
	Metadata    map[string]string
	Identifiers map[string]string // kind -> value as given
}

// Create validates and stores a new entity of sc (tenant.Platform(): a
// platform-shared one) and records entity.created with it. Errors:
// apperr.Invalid (every bad field), *DuplicateError (409 naming the
// existing entity), ErrExternalIDTaken.
func (s *Service) Create(ctx context.Context, sc tenant.Scope, in NewEntity) (Entity, error) {
	ids, errs := NormalizeIdentifiers(in.Identifiers, s.now())
	errs = append(errs, ValidateMetadata(in.Metadata)...)
	if err := apperr.Fields(errs...); err != nil {
		return Entity{}, err
	}
	e := Entity{ID: uuid.Must(uuid.NewV7()), Tenant: sc.Tenant(), Type: in.Type, ExternalID: in.ExternalID,
		Metadata: in.Metadata, Identifiers: ids}
	ev := audit.New(ctx, audit.EntityCreated, sc.Tenant()).With("entity", e.ID.String(), e.ID,
		map[string]any{"entity_type": e.Type, "identifier_kinds": e.Kinds(), "shared": sc.IsPlatform()})
	err := s.store.InScope(ctx, sc, func(tx Tx) error {
		if err := tx.Insert(ctx, &e); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	})
	if errors.Is(err, ErrExternalIDTaken) {
		return Entity{}, s.externalIDTaken(ctx, sc, in.ExternalID, err)
	}
	if err != nil {
		return Entity{}, err
	}
	return e, nil
}

// externalIDTaken names the entity that holds external id ext (err as it
// is when it cannot be found: erased meanwhile).
func (s *Service) externalIDTaken(ctx context.Context, sc tenant.Scope, ext string, err error) error {
	es, _, lerr := s.store.Entities(ctx, sc, Filter{ExternalID: ext}, uuid.Nil, 10)
	if lerr != nil {
		return err
	}
	for _, e := range es {
		if e.Tenant == sc.Tenant() {
			return ErrExternalIDTaken.Wrap(&apperr.ConflictWith{Kind: "entity", ID: e.ID.String()})
		}
	}
	return err
}

// relationExists names the relation r duplicates (err as it is when it
// cannot be found).
func (s *Service) relationExists(ctx context.Context, sc tenant.Scope, r Relation, err error) error {
	after := uuid.Nil
	for range 100 { // at most 100,000 relations looked through
		rs, lerr := s.store.Relations(ctx, sc, r.From, after, 1000)
		if lerr != nil || len(rs) == 0 {
			return err
		}
		for _, x := range rs {
			if x.From == r.From && x.To == r.To && x.Type == r.Type {
				return ErrRelationExists.Wrap(&apperr.ConflictWith{Kind: "relation", ID: x.ID.String()})
			}
		}
		after = rs[len(rs)-1].ID
	}
	return err
}

// Get returns an entity sc can see and records that it was read
// (data.accessed; a warning when revealed unmasked, which needs pii:read).
func (s *Service) Get(ctx context.Context, sc tenant.Scope, id uuid.UUID, reveal bool) (Entity, error) {
	e, err := s.store.Entity(ctx, sc, id)
	if err != nil {
		return Entity{}, err
	}
	ev := audit.New(ctx, audit.DataAccessed, sc.Tenant()).With("entity", id.String(), id, map[string]any{"revealed": reveal})
	if reveal {
		ev.Severity = audit.Warning
	}
	if err := s.audit.Write(ctx, ev); err != nil {
		return Entity{}, err
	}
	return e, nil
}

// List returns a page of the entities sc can see and records the read.
func (s *Service) List(ctx context.Context, sc tenant.Scope, f Filter, after uuid.UUID, limit int) ([]Entity, bool, error) {
	es, more, err := s.store.Entities(ctx, sc, f, after, limit)
	if err != nil {
		return nil, false, err
	}
	ev := audit.New(ctx, audit.DataAccessed, sc.Tenant()).With("entity", "list", uuid.Nil,
		map[string]any{"returned": len(es), "entity_type": f.Type, "by_external_id": f.ExternalID != ""})
	if err := s.audit.Write(ctx, ev); err != nil {
		return nil, false, err
	}
	return es, more, nil
}

// Search finds entities sc can see by a unique identifier, through the
// blind indexes, and records the search (its kind, never the value).
func (s *Service) Search(ctx context.Context, sc tenant.Scope, kind, value string) ([]Entity, error) {
	v, err := identifier.Normalize(kind, value, s.now())
	if err != nil {
		return nil, apperr.Fields(apperr.Field{Path: "value", Message: err.Error()})
	}
	es, err := s.store.FindByIdentifier(ctx, sc, kind, v)
	if err != nil {
		return nil, err
	}
	ev := audit.New(ctx, audit.DataAccessed, sc.Tenant()).With("entity", "search", uuid.Nil,
		map[string]any{"search_kind": kind, "matches": len(es)})
	if err := s.audit.Write(ctx, ev); err != nil {
		return nil, err
	}
	return es, nil
}

// IdentifierPatch changes identifiers: a value sets (normalised), nil
// removes. Anything else is invalid.
type IdentifierPatch map[string]any

// Check reports every bad field of in, as Create does: the HTTP layer
// runs it in the same pass as the schema, so a request learns all that is
// wrong with it at once.
func (in NewEntity) Check(now time.Time) []apperr.Field {
	_, errs := NormalizeIdentifiers(in.Identifiers, now)
	return append(errs, ValidateMetadata(in.Metadata)...)
}

// Check reports every bad field of p, as Update does.
func (p Patch) Check(now time.Time) []apperr.Field {
	_, errs := p.validate(now)
	return errs
}

// validate checks p and normalises its identifier changes.
func (p Patch) validate(now time.Time) (map[string]*string, []apperr.Field) {
	var changes map[string]*string
	var errs []apperr.Field
	if len(p.Identifiers) > 0 || p.Metadata == nil && p.ExternalID == nil { // an empty PATCH is refused there
		changes, errs = identifierChanges(p.Identifiers, now)
	}
	if p.Metadata != nil {
		errs = append(errs, ValidateMetadata(*p.Metadata)...)
	}
	return changes, errs
}

// identifierChanges validates p into normalised changes.
func identifierChanges(p IdentifierPatch, now time.Time) (map[string]*string, []apperr.Field) {
	const loc = "canonical_identifiers"
	tooMany := apperr.Field{Path: loc, Message: "an entity holds at most 100 identifiers"}
	if len(p) > 2*MaxIdentifiers { // cannot fit, whatever it removes
		return nil, []apperr.Field{tooMany}
	}
	changes := map[string]*string{}
	var errs []apperr.Field
	for _, k := range slices.Sorted(maps.Keys(p)) {
		path := loc + "." + k
		switch v := p[k].(type) {
		case nil:
			// Any well-formed kind may be removed: one stored before the
			// vocabulary was closed too.
			if !identifier.ValidKind(k) {
				errs = append(errs, apperr.Field{Path: path, Message: "kind must be lower_snake_case"})
			}
			changes[k] = nil
		case string:
			n, err := identifier.Normalize(k, v, now)
			if err != nil {
				errs = append(errs, apperr.Field{Path: path, Message: err.Error()})
				continue
			}
			changes[k] = &n
		default:
			errs = append(errs, apperr.Field{Path: path, Message: "a value is a string, or null to remove"})
		}
	}
	if len(changes) == 0 && len(errs) == 0 {
		errs = append(errs, apperr.Field{Path: loc, Message: "give at least one identifier to set or remove"})
	}
	return changes, errs
}

// writeScope is the scope a change to entity id runs in: sc, or the
// platform's when a platform admin changes a platform-shared entity (only
// platform admins may change those).
func (s *Service) writeScope(ctx context.Context, sc tenant.Scope, id uuid.UUID) (tenant.Scope, error) {
	if p, _ := auth.PrincipalFrom(ctx); !p.PlatformAdmin() {
		return sc, nil
	}
	e, err := s.store.Entity(ctx, sc, id)
	if err != nil {
		return sc, err
	}
	if e.Shared() {
		return tenant.Platform(), nil
	}
	return sc, nil
}

// lockOwn locks entity id for change in scope ws: a shared entity seen
// from a tenant's scope is ErrSharedReadOnly.
func lockOwn(ctx context.Context, tx Tx, ws tenant.Scope, id uuid.UUID) (Entity, error) {
	e, err := tx.Lock(ctx, id)
	if err != nil {
		return Entity{}, err
	}
	if e.Shared() && !ws.IsPlatform() {
		return Entity{}, ErrSharedReadOnly
	}
	return e, nil
}

// Patch changes an entity; nil fields stay.
type Patch struct {
	Identifiers IdentifierPatch    // kind -> value, nil value removes; nil: none
	Metadata    *map[string]string // replaces the whole metadata (empty: none)
	ExternalID  *string            // "" removes it
}

// Update applies p to an entity the scope may change, in one unit of
// work — re-encrypting the identifiers and keeping their blind indexes in
// step when they change — and records entity.updated (the kinds set and removed, whether the
// metadata or the external id changed; never their values). Errors:
// apperr.Invalid (every bad field at once), *DuplicateError,
// ErrExternalIDTaken (naming the holder), ErrNotFound, ErrSharedReadOnly.
func (s *Service) Update(ctx context.Context, sc tenant.Scope, id uuid.UUID, p Patch) (Entity, error) {
	changes, errs := p.validate(s.now())
	if err := apperr.Fields(errs...); err != nil {
		return Entity{}, err
	}
	ws, err := s.writeScope(ctx, sc, id)
	if err != nil {
		return Entity{}, err
	}
	var set, removed []string
	for k, v := range changes {
		if v == nil {
			removed = append(removed, k)
		} else {
			set = append(set, k)
		}
	}
	data := map[string]any{"set_kinds": SortKinds(set), "removed_kinds": SortKinds(removed)}
	var e Entity // filled in by the unit of work (updated_at when it commits)
	err = s.store.InScope(ctx, ws, func(tx Tx) error {
		var err error
		if e, err = lockOwn(ctx, tx, ws, id); err != nil {
			return err
		}
		if len(changes) > 0 || p.Metadata == nil && p.ExternalID == nil {
			applyChanges(e.Identifiers, changes)
			if len(e.Identifiers) > MaxIdentifiers {
				return apperr.Fields(apperr.Field{Path: "canonical_identifiers", Message: "an entity holds at most 100 identifiers"})
			}
			if err := tx.SaveIdentifiers(ctx, &e); err != nil {
				return err
			}
		}
		if p.Metadata != nil || p.ExternalID != nil {
			if p.Metadata != nil {
				e.Metadata, data["metadata_changed"] = *p.Metadata, true
			}
			if p.ExternalID != nil {
				e.ExternalID, data["external_id_changed"] = *p.ExternalID, true
			}
			if err := tx.SaveAttributes(ctx, &e); err != nil {
				return err
			}
		}
		return tx.AppendAudit(ctx, audit.New(ctx, audit.EntityUpdated, sc.Tenant()).With("entity", id.String(), id, data))
	})
	if errors.Is(err, ErrExternalIDTaken) && p.ExternalID != nil {
		return Entity{}, s.externalIDTaken(ctx, ws, *p.ExternalID, err)
	}
	if err != nil {
		return Entity{}, err
	}
	return e, nil
}

// applyChanges merges changes into ids: a value sets, nil removes.
func applyChanges(ids map[string]string, changes map[string]*string) {
	for k, v := range changes {
		if v == nil {
			delete(ids, k)
		} else {
			ids[k] = *v
		}
	}
}

// Erase deletes an entity sc may change with its identifiers, relations,
// profiles and cache entries, and records data.erased (a warning, ids and
// counts only), in one transaction.
func (s *Service) Erase(ctx context.Context, sc tenant.Scope, id uuid.UUID) error {
	ws, err := s.writeScope(ctx, sc, id)
	if err != nil {
		return err
	}
	return s.store.InScope(ctx, ws, func(tx Tx) error {
		if _, err := lockOwn(ctx, tx, ws, id); err != nil {
			return err
		}
		n, err := tx.Erase(ctx, id)
		if err != nil {
			return err
		}
		ev := audit.New(ctx, audit.DataErased, sc.Tenant()).With("entity", id.String(), id,
			map[string]any{"relations": n.Relations, "profiles": n.Profiles, "cache_entries": n.CacheEntries})
		ev.Severity = audit.Warning
		return tx.AppendAudit(ctx, ev)
	})
}

// NewRelation is the input of Relate.
type NewRelation struct {
	From, To            uuid.UUID
	Type                string
	Confidence          float64
	DiscoveredInProfile uuid.UUID // uuid.Nil: none
	ValidFrom, ValidTo  time.Time // calendar dates; zero: open
}

// Relate links two entities sc can see and records entity.related.
// Errors: apperr.Invalid (an entity related to itself), ErrNotFound,
// ErrProfileNotFound, ErrRelationExists.
func (s *Service) Relate(ctx context.Context, sc tenant.Scope, in NewRelation) (Relation, error) {
	var errs []apperr.Field
	if in.From == in.To {
		errs = append(errs, apperr.Field{Path: "to_entity_id", Message: "an entity cannot be related to itself"})
	}
	errs = append(errs, CheckValidity(in.ValidFrom, in.ValidTo)...)
	if err := apperr.Fields(errs...); err != nil {
		return Relation{}, err
	}
	r := Relation{ID: uuid.Must(uuid.NewV7()), Tenant: sc.Tenant(), From: in.From, To: in.To, Type: in.Type,
		Confidence: in.Confidence, DiscoveredInProfile: in.DiscoveredInProfile, ValidFrom: in.ValidFrom, ValidTo: in.ValidTo}
	ev := audit.New(ctx, audit.EntityRelated, sc.Tenant()).With("relation", r.ID.String(), r.From,
		map[string]any{"to_entity_id": r.To.String(), "relation_type": r.Type, "confidence_score": r.Confidence})
	err := s.store.InScope(ctx, sc, func(tx Tx) error {
		if err := tx.Visible(ctx, r.From, r.To); err != nil {
			return err
		}
		if r.DiscoveredInProfile != uuid.Nil {
			ok, err := tx.ProfileVisible(ctx, r.DiscoveredInProfile)
			if err != nil {
				return err
			}
			if !ok {
				return ErrProfileNotFound.Withf("discovered_in_profile_id: no such profile")
			}
		}
		if err := tx.InsertRelation(ctx, &r); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	})
	if errors.Is(err, ErrRelationExists) {
		return Relation{}, s.relationExists(ctx, sc, r, err)
	}
	if err != nil {
		return Relation{}, err
	}
	return r, nil
}

// CheckValidity: an end on or after the start.
func CheckValidity(from, to time.Time) []apperr.Field {
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return []apperr.Field{{Path: "valid_to", Message: "must be on or after valid_from"}}
	}
	return nil
}

// UpdateRelation changes one of the scope's own relations of entity id
// (its confidence, its validity dates) and records relation.updated.
// Errors: ErrRelationNotFound (not the scope's, or not the entity's),
// apperr.Invalid (an end before the start).
func (s *Service) UpdateRelation(ctx context.Context, sc tenant.Scope, id, relationID uuid.UUID, p RelationPatch) (Relation, error) {
	var out Relation
	err := s.store.InScope(ctx, sc, func(tx Tx) error {
		r, err := tx.LockRelation(ctx, relationID)
		if err != nil {
			return err
		}
		if r.From != id && r.To != id {
			return ErrRelationNotFound
		}
		data := map[string]any{}
		if p.Confidence != nil {
			r.Confidence, data["confidence_score"] = *p.Confidence, *p.Confidence
		}
		if p.ValidFrom != nil {
			r.ValidFrom, data["valid_from"] = *p.ValidFrom, dateOrNil(*p.ValidFrom)
		}
		if p.ValidTo != nil {
			r.ValidTo, data["valid_to"] = *p.ValidTo, dateOrNil(*p.ValidTo)
		}
		if err := apperr.Fields(CheckValidity(r.ValidFrom, r.ValidTo)...); err != nil {
			return err
		}
		if err := tx.UpdateRelation(ctx, &r); err != nil {
			return err
		}
		out = r
		return tx.AppendAudit(ctx, audit.New(ctx, audit.RelationUpdated, sc.Tenant()).With("relation", r.ID.String(), r.From, data))
	})
	return out, err
}

// DeleteRelation deletes one of the scope's own relations of entity id
// and records relation.deleted: ErrRelationNotFound otherwise.
func (s *Service) DeleteRelation(ctx context.Context, sc tenant.Scope, id, relationID uuid.UUID) error {
	return s.store.InScope(ctx, sc, func(tx Tx) error {
		r, err := tx.LockRelation(ctx, relationID)
		if err != nil {
			return err
		}
		if r.From != id && r.To != id {
			return ErrRelationNotFound
		}
		if err := tx.DeleteRelation(ctx, r.ID); err != nil {
			return err
		}
		ev := audit.New(ctx, audit.RelationDeleted, sc.Tenant()).With("relation", r.ID.String(), r.From,
			map[string]any{"to_entity_id": r.To.String(), "relation_type": r.Type})
		ev.Severity = audit.Warning
		return tx.AppendAudit(ctx, ev)
	})
}

func dateOrNil(d time.Time) any {
	if d.IsZero() {
		return nil
	}
	return d.Format(time.DateOnly)
}

// Relations lists relations of an entity sc can see.
func (s *Service) Relations(ctx context.Context, sc tenant.Scope, id, after uuid.UUID, limit int) ([]Relation, error) {
	return s.store.Relations(ctx, sc, id, after, limit)
}
