package httpapi

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
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenant"
)

// EntityStore keeps entities, relations, profiles and cached provider data.
type EntityStore interface {
	CreateEntity(ctx context.Context, e entity.Entity, ev audit.Event) (entity.Entity, error)
	Entity(ctx context.Context, t tenant.ID, id uuid.UUID) (entity.Entity, error)
	Entities(ctx context.Context, t tenant.ID, f entity.Filter, after uuid.UUID, limit int) ([]entity.Entity, bool, error)
	FindByIdentifier(ctx context.Context, t tenant.ID, kind, value string) ([]entity.Entity, error)
	UpdateIdentifiers(ctx context.Context, t tenant.ID, id uuid.UUID, changes map[string]*string, ev func(entity.Entity) audit.Event) (entity.Entity, error)
	DeleteEntity(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error
	CreateRelation(ctx context.Context, r entity.Relation, ev audit.Event) (entity.Relation, error)
	Relations(ctx context.Context, t tenant.ID, id, after uuid.UUID, limit int) ([]entity.Relation, error)
	CreateProfile(ctx context.Context, p entity.Profile, ev func(entity.Profile) audit.Event) (entity.Profile, error)
	Profiles(ctx context.Context, t tenant.ID, entityID uuid.UUID, before, limit int) ([]entity.Profile, bool, error)
	Profile(ctx context.Context, t tenant.ID, entityID uuid.UUID, version int) (entity.Profile, error)
	CreateCacheEntry(ctx context.Context, t tenant.ID, e sourcecache.Entry, ev audit.Event) (sourcecache.Entry, error)
	CacheEntries(ctx context.Context, t tenant.ID, entityID uuid.UUID, f sourcecache.Filter, withRaw bool, after uuid.UUID, limit int) ([]sourcecache.Entry, bool, error)
	CacheEntry(ctx context.Context, t tenant.ID, entityID, id uuid.UUID, withRaw bool) (sourcecache.Entry, error)
}

// EntityOut is an entity in responses; identifiers masked unless revealed.
type EntityOut struct {
	EntityID             string            `json:"entity_id" format:"uuid"`
	EntityType           string            `json:"entity_type" enum:"individual,organization,address"`
	TenantID             *string           `json:"tenant_id" format:"uuid" doc:"null for a platform-shared entity"`
	ExternalID           *string           `json:"external_id"`
	Metadata             map[string]string `json:"metadata"`
	CanonicalIdentifiers map[string]string `json:"canonical_identifiers" doc:"Masked unless revealed"`
	CreatedAt            time.Time         `json:"created_at"`
	UpdatedAt            time.Time         `json:"updated_at"`
}

func entityOut(e entity.Entity, reveal bool) EntityOut {
	ids := e.Masked()
	if reveal {
		ids = e.Identifiers
	}
	meta := e.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	o := EntityOut{EntityID: e.ID.String(), EntityType: e.Type, Metadata: meta, CanonicalIdentifiers: ids,
		CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(), ExternalID: optString(e.ExternalID)}
	if !e.Tenant.IsZero() {
		s := e.Tenant.String()
		o.TenantID = &s
	}
	return o
}

type entityBody struct {
	EntityType           string            `json:"entity_type" enum:"individual,organization,address"`
	CanonicalIdentifiers map[string]string `json:"canonical_identifiers" doc:"kind -> value; kinds lower_snake_case, values at most 1024 characters"`
	ExternalID           string            `json:"external_id,omitempty" minLength:"1" maxLength:"255" doc:"Your own reference, unique per tenant"`
	Metadata             map[string]string `json:"metadata,omitempty" doc:"At most 50 non-personal labels"`
}

type createEntityInput struct{ Body entityBody }

type entityOutput struct{ Body EntityOut }

func fieldItems(errs []entity.FieldError) []ProblemItem {
	items := make([]ProblemItem, len(errs))
	for i, e := range errs {
		items[i] = ProblemItem{Location: "body." + e.Field, Message: e.Message}
	}
	return items
}

func (d Deps) now() time.Time { return d.Now() }

func newEntity(d Deps, t tenant.ID, b entityBody) (entity.Entity, error) {
	ids, errs := entity.NormalizeIdentifiers(b.CanonicalIdentifiers, d.now())
	errs = append(errs, entity.ValidateMetadata(b.Metadata)...)
	if len(errs) > 0 {
		return entity.Entity{}, invalidFields(fieldItems(errs)...)
	}
	return entity.Entity{ID: uuid.Must(uuid.NewV7()), Tenant: t, Type: b.EntityType, ExternalID: b.ExternalID,
		Metadata: b.Metadata, Identifiers: ids}, nil
}

func handleEntityCreate(d Deps, shared bool) handlerFunc[createEntityInput, entityOutput] {
	return func(ctx context.Context, in *createEntityInput) (*entityOutput, error) {
		var tid tenant.ID
		if shared {
			ctx = tenant.WithPlatform(ctx) // the route demands platform:admin
		} else {
			tid, _ = tenant.ScopeFrom(ctx)
		}
		e, err := newEntity(d, tid, in.Body)
		if err != nil {
			return nil, err
		}
		ev := audit.New(ctx, audit.EntityCreated, tid).With("entity", e.ID.String(), e.ID,
			map[string]any{"entity_type": e.Type, "identifier_kinds": e.Kinds(), "shared": shared})
		out, err := d.Entities.CreateEntity(ctx, e, ev)
		if err != nil {
			return nil, dupErr(err)
		}
		return &entityOutput{Body: entityOut(out, false)}, nil
	}
}

// writeScope is the tenant a change to entity id runs in: the caller's
// tenant, or the platform path (zero, with ctx marked tenant.WithPlatform)
// when a platform admin changes a platform-shared entity, which only
// platform admins may.
func writeScope(ctx context.Context, d Deps, id uuid.UUID) (context.Context, tenant.ID, error) {
	tid, _ := tenant.ScopeFrom(ctx)
	p, _ := auth.PrincipalFrom(ctx)
	if !p.PlatformAdmin() {
		return ctx, tid, nil
	}
	e, err := d.Entities.Entity(ctx, tid, id)
	if err != nil {
		return ctx, tid, err
	}
	if e.Shared() {
		return tenant.WithPlatform(ctx), tenant.ID{}, nil
	}
	return ctx, tid, nil
}

// dupErr turns an entity.DuplicateError into its 409.
func dupErr(err error) error {
	if de, ok := err.(interface{ AppErr() *apperr.Error }); ok {
		return de.AppErr()
	}
	return err
}

type entityPath struct {
	EntityID string `path:"entity_id" format:"uuid"`
}

func (p entityPath) id() (uuid.UUID, error) {
	id, err := uuid.Parse(p.EntityID)
	if err != nil {
		return uuid.Nil, entity.ErrNotFound
	}
	return id, nil
}

type getEntityInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Reveal   bool   `query:"reveal" doc:"Show identifiers unmasked; needs pii:read, and is audited as such"`
}

func handleEntityGet(d Deps) handlerFunc[getEntityInput, entityOutput] {
	return func(ctx context.Context, in *getEntityInput) (*entityOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		p, _ := auth.PrincipalFrom(ctx)
		if in.Reveal && !p.Has(auth.ScopePIIRead) {
			return nil, errPermission.Withf("reveal=true needs the scope pii:read")
		}
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		e, err := d.Entities.Entity(ctx, tid, id)
		if err != nil {
			return nil, err
		}
		ev := audit.New(ctx, audit.DataAccessed, tid).With("entity", id.String(), id, map[string]any{"revealed": in.Reveal})
		if in.Reveal {
			ev.Severity = audit.Warning
		}
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return &entityOutput{Body: entityOut(e, in.Reveal)}, nil
	}
}

type listEntitiesInput struct {
	EntityType string `query:"entity_type" enum:"individual,organization,address"`
	ExternalID string `query:"external_id" maxLength:"255"`
	ListParams
}

type entityListOutput struct{ Body Page[EntityOut] }

func handleEntityList(d Deps) handlerFunc[listEntitiesInput, entityListOutput] {
	return func(ctx context.Context, in *listEntitiesInput) (*entityListOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		es, more, err := d.Entities.Entities(ctx, tid, entity.Filter{Type: in.EntityType, ExternalID: in.ExternalID}, after, in.Limit)
		if err != nil {
			return nil, err
		}
		outs := make([]EntityOut, len(es))
		for i, e := range es {
			outs[i] = entityOut(e, false)
		}
		pg := pageOf(outs, more, func(e EntityOut) uuid.UUID { return uuid.MustParse(e.EntityID) })
		ev := audit.New(ctx, audit.DataAccessed, tid).With("entity", "list", uuid.Nil,
			map[string]any{"returned": len(pg.Data), "entity_type": in.EntityType, "by_external_id": in.ExternalID != ""})
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return &entityListOutput{Body: pg}, nil
	}
}

type searchInput struct {
	Body struct {
		Kind  string `json:"kind" enum:"ssn,ein,passport,national_id,email" doc:"A unique identifier kind"`
		Value string `json:"value" minLength:"1" maxLength:"1024"`
	}
}

type entitySearchOutput struct {
	Body struct {
		Data []EntityOut `json:"data"`
	}
}

func handleEntitySearch(d Deps) handlerFunc[searchInput, entitySearchOutput] {
	return func(ctx context.Context, in *searchInput) (*entitySearchOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		v, err := identifier.Normalize(in.Body.Kind, in.Body.Value, d.now())
		if err != nil {
			return nil, invalidFields(ProblemItem{Location: "body.value", Message: err.Error()})
		}
		es, err := d.Entities.FindByIdentifier(ctx, tid, in.Body.Kind, v)
		if err != nil {
			return nil, err
		}
		out := &entitySearchOutput{}
		out.Body.Data = make([]EntityOut, len(es))
		for i, e := range es {
			out.Body.Data[i] = entityOut(e, false)
		}
		// The event names the kind searched, never the value.
		ev := audit.New(ctx, audit.DataAccessed, tid).With("entity", "search", uuid.Nil,
			map[string]any{"search_kind": in.Body.Kind, "matches": len(es)})
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return out, nil
	}
}

type patchEntityInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Body     struct {
		CanonicalIdentifiers map[string]any `json:"canonical_identifiers" doc:"kind -> new value, or null to remove"`
	}
}

func handleEntityPatch(d Deps) handlerFunc[patchEntityInput, entityOutput] {
	return func(ctx context.Context, in *patchEntityInput) (*entityOutput, error) {
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		ctx, tid, err := writeScope(ctx, d, id)
		if err != nil {
			return nil, err
		}
		changes := map[string]*string{}
		var items []ProblemItem
		tooMany := ProblemItem{Location: "body.canonical_identifiers", Message: "an entity holds at most 100 identifiers"}
		if len(in.Body.CanonicalIdentifiers) > 2*entity.MaxIdentifiers { // cannot fit, whatever it removes
			return nil, invalidFields(tooMany)
		}
		for _, k := range slices.Sorted(maps.Keys(in.Body.CanonicalIdentifiers)) {
			loc := "body.canonical_identifiers." + k
			switch v := in.Body.CanonicalIdentifiers[k].(type) {
			case nil:
				if !identifier.ValidKind(k) {
					items = append(items, ProblemItem{Location: loc, Message: "kind must be lower_snake_case"})
				}
				changes[k] = nil
			case string:
				n, err := identifier.Normalize(k, v, d.now())
				if err != nil {
					items = append(items, ProblemItem{Location: loc, Message: err.Error()})
					continue
				}
				changes[k] = &n
			default:
				items = append(items, ProblemItem{Location: loc, Message: "a value is a string, or null to remove"})
			}
		}
		if len(changes) == 0 && len(items) == 0 {
			items = append(items, ProblemItem{Location: "body.canonical_identifiers", Message: "give at least one identifier to set or remove"})
		}
		if len(items) > 0 {
			return nil, invalidFields(items...)
		}
		var set, removed []string
		for k, v := range changes {
			if v == nil {
				removed = append(removed, k)
			} else {
				set = append(set, k)
			}
		}
		e, err := d.Entities.UpdateIdentifiers(ctx, tid, id, changes, func(e entity.Entity) audit.Event {
			return audit.New(ctx, audit.EntityUpdated, tid).With("entity", id.String(), id,
				map[string]any{"set_kinds": entity.SortKinds(set), "removed_kinds": entity.SortKinds(removed)})
		})
		if errors.Is(err, entity.ErrTooManyIdentifiers) {
			return nil, invalidFields(tooMany)
		}
		if err != nil {
			return nil, dupErr(err)
		}
		return &entityOutput{Body: entityOut(e, false)}, nil
	}
}

func handleEntityDelete(d Deps) handlerFunc[entityPath, noContent] {
	return func(ctx context.Context, in *entityPath) (*noContent, error) {
		id, err := in.id()
		if err != nil {
			return nil, err
		}
		ctx, tid, err := writeScope(ctx, d, id)
		if err != nil {
			return nil, err
		}
		ev := audit.New(ctx, audit.DataErased, tid).With("entity", id.String(), id, nil)
		ev.Severity = audit.Warning
		if err := d.Entities.DeleteEntity(ctx, tid, id, ev); err != nil {
			return nil, err
		}
		return &noContent{}, nil
	}
}

// RelationOut is a relation in responses.
type RelationOut struct {
	RelationID            string    `json:"relation_id" format:"uuid"`
	TenantID              *string   `json:"tenant_id" format:"uuid"`
	FromEntityID          string    `json:"from_entity_id" format:"uuid"`
	ToEntityID            string    `json:"to_entity_id" format:"uuid"`
	RelationType          string    `json:"relation_type"`
	ConfidenceScore       float64   `json:"confidence_score"`
	DiscoveredInProfileID *string   `json:"discovered_in_profile_id" format:"uuid"`
	CreatedAt             time.Time `json:"created_at"`
}

func relationOut(r entity.Relation) RelationOut {
	o := RelationOut{RelationID: r.ID.String(), FromEntityID: r.From.String(), ToEntityID: r.To.String(), RelationType: r.Type,
		ConfidenceScore: r.Confidence, DiscoveredInProfileID: optUUID(r.DiscoveredInProfile), CreatedAt: r.CreatedAt.UTC()}
	if !r.Tenant.IsZero() {
		s := r.Tenant.String()
		o.TenantID = &s
	}
	return o
}

type createRelationInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Body     struct {
		ToEntityID            string  `json:"to_entity_id" format:"uuid"`
		RelationType          string  `json:"relation_type" pattern:"^[a-z][a-z0-9_]{0,62}$" doc:"lower_snake_case, e.g. employer, director_of"`
		ConfidenceScore       float64 `json:"confidence_score" minimum:"0" maximum:"1"`
		DiscoveredInProfileID string  `json:"discovered_in_profile_id,omitempty" format:"uuid"`
	}
}

type relationOutput struct{ Body RelationOut }

func handleRelationCreate(d Deps) handlerFunc[createRelationInput, relationOutput] {
	return func(ctx context.Context, in *createRelationInput) (*relationOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		from, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		to := uuid.MustParse(in.Body.ToEntityID)
		if to == from {
			return nil, invalidFields(ProblemItem{Location: "body.to_entity_id", Message: "an entity cannot be related to itself"})
		}
		r := entity.Relation{ID: uuid.Must(uuid.NewV7()), Tenant: tid, From: from, To: to, Type: in.Body.RelationType,
			Confidence: in.Body.ConfidenceScore}
		if in.Body.DiscoveredInProfileID != "" {
			r.DiscoveredInProfile = uuid.MustParse(in.Body.DiscoveredInProfileID)
		}
		ev := audit.New(ctx, audit.EntityRelated, tid).With("relation", r.ID.String(), from,
			map[string]any{"to_entity_id": to.String(), "relation_type": r.Type, "confidence_score": r.Confidence})
		out, err := d.Entities.CreateRelation(ctx, r, ev)
		if err != nil {
			return nil, err
		}
		return &relationOutput{Body: relationOut(out)}, nil
	}
}

type relationListOutput struct{ Body Page[RelationOut] }

type listRelationsInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	ListParams
}

func handleRelationList(d Deps) handlerFunc[listRelationsInput, relationListOutput] {
	return func(ctx context.Context, in *listRelationsInput) (*relationListOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		rs, err := d.Entities.Relations(ctx, tid, id, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		outs := make([]RelationOut, len(rs))
		for i, r := range rs {
			outs[i] = relationOut(r)
		}
		return &relationListOutput{Body: page(outs, in.Limit, func(r RelationOut) uuid.UUID { return uuid.MustParse(r.RelationID) })}, nil
	}
}
