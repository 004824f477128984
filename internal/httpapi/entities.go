package httpapi

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/tenant"
)

// EntityOut is an entity in responses; identifiers masked unless revealed.
type EntityOut struct {
	EntityID             string            `json:"entity_id" format:"uuid"`
	EntityType           string            `json:"entity_type" enum:"individual,organization,address"`
	TenantID             *string           `json:"tenant_id" format:"uuid" doc:"null for a platform-shared entity"`
	ExternalID           *string           `json:"external_id" maxLength:"255"`
	Metadata             labels            `json:"metadata"`
	CanonicalIdentifiers maskedIdentifiers `json:"canonical_identifiers"`
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
	EntityType           string      `json:"entity_type" enum:"individual,organization,address"`
	CanonicalIdentifiers identifiers `json:"canonical_identifiers"`
	ExternalID           string      `json:"external_id,omitempty" minLength:"1" maxLength:"255" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Your own reference, unique per tenant"`
	Metadata             labels      `json:"metadata,omitempty"`
}

type createEntityInput struct{ Body entityBody }

type entityOutput struct{ Body EntityOut }

// created is a 201's output: the new resource, and in Location where it
// can be read (RFC 9110, section 15.3.2) — or, for a relation, changed
// and deleted.
type created[T any] struct {
	Location string `header:"Location" maxLength:"200" pattern:"^/v1/[a-z0-9/-]+$" doc:"The path of the created resource"`
	Body     T
}

// scopeOf is the tenant scope the request in ctx acts in (set by
// authorize for every tenant route).
func scopeOf(ctx context.Context) tenant.Scope {
	sc, _ := tenant.ScopeFrom(ctx)
	return sc
}

func handleEntityCreate(svc *entity.Service, shared bool) handlerFunc[createEntityInput, created[EntityOut]] {
	return func(ctx context.Context, in *createEntityInput) (*created[EntityOut], error) {
		sc := scopeOf(ctx)
		if shared {
			sc = tenant.Platform() // the route demands platform:admin
		}
		b := in.Body
		e, err := svc.Create(ctx, sc, entity.NewEntity{Type: b.EntityType, ExternalID: b.ExternalID, Metadata: b.Metadata,
			Identifiers: b.CanonicalIdentifiers})
		if err != nil {
			return nil, err
		}
		return &created[EntityOut]{Location: "/v1/entities/" + e.ID.String(), Body: entityOut(e, false)}, nil
	}
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

func handleEntityGet(svc *entity.Service) handlerFunc[getEntityInput, entityOutput] {
	return func(ctx context.Context, in *getEntityInput) (*entityOutput, error) {
		p, _ := auth.PrincipalFrom(ctx)
		if in.Reveal && !p.Has(auth.ScopePIIRead) {
			return nil, errPermission.Withf("reveal=true needs the scope pii:read")
		}
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		e, err := svc.Get(ctx, scopeOf(ctx), id, in.Reveal)
		if err != nil {
			return nil, err
		}
		return &entityOutput{Body: entityOut(e, in.Reveal)}, nil
	}
}

type listEntitiesInput struct {
	EntityType string `query:"entity_type" enum:"individual,organization,address"`
	ExternalID string `query:"external_id" maxLength:"255" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	ListParams
}

type entityListOutput struct{ Body Page[EntityOut] }

func handleEntityList(svc *entity.Service) handlerFunc[listEntitiesInput, entityListOutput] {
	return func(ctx context.Context, in *listEntitiesInput) (*entityListOutput, error) {
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		es, more, err := svc.List(ctx, scopeOf(ctx), entity.Filter{Type: in.EntityType, ExternalID: in.ExternalID}, after, in.Limit)
		if err != nil {
			return nil, err
		}
		return &entityListOutput{Body: pageOf(es, more, func(e entity.Entity) uuid.UUID { return e.ID },
			func(e entity.Entity) EntityOut { return entityOut(e, false) })}, nil
	}
}

type searchInput struct {
	Body struct {
		Kind  searchKind `json:"kind"`
		Value string     `json:"value" minLength:"2" maxLength:"254" doc:"The identifier: 2 characters (a national id) to 254 (an e-mail address)" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	}
}

type entitySearchOutput struct {
	Body struct {
		Data []EntityOut `json:"data" nullable:"false" maxItems:"2" doc:"The tenant's entity with this identifier and a platform-shared one, when they exist"`
	}
}

func handleEntitySearch(svc *entity.Service) handlerFunc[searchInput, entitySearchOutput] {
	return func(ctx context.Context, in *searchInput) (*entitySearchOutput, error) {
		es, err := svc.Search(ctx, scopeOf(ctx), string(in.Body.Kind), in.Body.Value)
		if err != nil {
			return nil, err
		}
		out := &entitySearchOutput{}
		out.Body.Data = make([]EntityOut, len(es))
		for i, e := range es {
			out.Body.Data[i] = entityOut(e, false)
		}
		return out, nil
	}
}

type patchEntityInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Body     struct {
		CanonicalIdentifiers identifierPatch `json:"canonical_identifiers,omitempty"`
		ExternalID           *string         `json:"external_id,omitempty" maxLength:"255" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Your own reference, unique per tenant; an empty string removes it"`
		Metadata             *labels         `json:"metadata,omitempty" doc:"Replaces the whole metadata; {} removes it"`
	}
}

func handleEntityPatch(svc *entity.Service) handlerFunc[patchEntityInput, entityOutput] {
	return func(ctx context.Context, in *patchEntityInput) (*entityOutput, error) {
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		p := entity.Patch{Identifiers: entity.IdentifierPatch(in.Body.CanonicalIdentifiers), ExternalID: in.Body.ExternalID}
		if in.Body.Metadata != nil {
			m := map[string]string(*in.Body.Metadata)
			p.Metadata = &m
		}
		e, err := svc.Update(ctx, scopeOf(ctx), id, p)
		if err != nil {
			return nil, err
		}
		return &entityOutput{Body: entityOut(e, false)}, nil
	}
}

func handleEntityDelete(svc *entity.Service) handlerFunc[entityPath, noContent] {
	return func(ctx context.Context, in *entityPath) (*noContent, error) {
		id, err := in.id()
		if err != nil {
			return nil, err
		}
		if err := svc.Erase(ctx, scopeOf(ctx), id); err != nil {
			return nil, err
		}
		return &noContent{}, nil
	}
}

// RelationOut is a relation in responses.
type RelationOut struct {
	RelationID            string     `json:"relation_id" format:"uuid"`
	TenantID              *string    `json:"tenant_id" format:"uuid"`
	FromEntityID          string     `json:"from_entity_id" format:"uuid"`
	ToEntityID            string     `json:"to_entity_id" format:"uuid"`
	RelationType          string     `json:"relation_type" maxLength:"63" pattern:"^[a-z][a-z0-9_]{0,62}$"`
	ConfidenceScore       float64    `json:"confidence_score" minimum:"0" maximum:"1"`
	DiscoveredInProfileID *string    `json:"discovered_in_profile_id" format:"uuid"`
	ValidFrom             *string    `json:"valid_from" maxLength:"10" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"First day the relation holds (employment's start); null: open"`
	ValidTo               *string    `json:"valid_to" maxLength:"10" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"Last day it holds (employment's end); null: open"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             *time.Time `json:"updated_at" doc:"Last change (PATCH); null: never changed"`
}

func optDate(d time.Time) *string {
	if d.IsZero() {
		return nil
	}
	s := d.Format(time.DateOnly)
	return &s
}

func relationOut(r entity.Relation) RelationOut {
	o := RelationOut{RelationID: r.ID.String(), FromEntityID: r.From.String(), ToEntityID: r.To.String(), RelationType: r.Type,
		ConfidenceScore: r.Confidence, DiscoveredInProfileID: optUUID(r.DiscoveredInProfile), CreatedAt: r.CreatedAt.UTC(),
		ValidFrom: optDate(r.ValidFrom), ValidTo: optDate(r.ValidTo), UpdatedAt: timePtr(r.UpdatedAt)}
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
		RelationType          string  `json:"relation_type" minLength:"1" maxLength:"63" pattern:"^[a-z][a-z0-9_]{0,62}$" doc:"lower_snake_case, e.g. employer, director_of"`
		ConfidenceScore       float64 `json:"confidence_score" minimum:"0" maximum:"1"`
		DiscoveredInProfileID string  `json:"discovered_in_profile_id,omitempty" format:"uuid"`
		ValidFrom             string  `json:"valid_from,omitempty" maxLength:"10" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"First day the relation holds (YYYY-MM-DD); absent: open"`
		ValidTo               string  `json:"valid_to,omitempty" maxLength:"10" pattern:"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" doc:"Last day it holds, on or after valid_from; absent: open"`
	}
}

type relationOutput struct{ Body RelationOut }

// parseDates reads YYYY-MM-DD dates by field name ("" is the zero time),
// reporting every one that is not a day of the calendar.
func parseDates(dates map[string]string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	var errs []apperr.Field
	for _, name := range slices.Sorted(maps.Keys(dates)) {
		if dates[name] == "" {
			out[name] = time.Time{}
			continue
		}
		d, err := time.Parse(time.DateOnly, dates[name])
		if err != nil {
			errs = append(errs, apperr.Field{Path: name, Message: "not a day of the calendar"})
			continue
		}
		out[name] = d
	}
	return out, apperr.Fields(errs...)
}

func handleRelationCreate(svc *entity.Service) handlerFunc[createRelationInput, created[RelationOut]] {
	return func(ctx context.Context, in *createRelationInput) (*created[RelationOut], error) {
		from, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		ds, err := parseDates(map[string]string{"valid_from": in.Body.ValidFrom, "valid_to": in.Body.ValidTo})
		if err != nil {
			return nil, err
		}
		nr := entity.NewRelation{From: from, To: uuid.MustParse(in.Body.ToEntityID), Type: in.Body.RelationType,
			Confidence: in.Body.ConfidenceScore, ValidFrom: ds["valid_from"], ValidTo: ds["valid_to"]}
		if in.Body.DiscoveredInProfileID != "" {
			nr.DiscoveredInProfile = uuid.MustParse(in.Body.DiscoveredInProfileID)
		}
		r, err := svc.Relate(ctx, scopeOf(ctx), nr)
		if err != nil {
			return nil, err
		}
		// Its path, where it is changed (PATCH) and deleted.
		return &created[RelationOut]{Location: "/v1/entities/" + from.String() + "/relations/" + r.ID.String(), Body: relationOut(r)}, nil
	}
}

type relationPath struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	RelationID string `path:"relation_id" format:"uuid"`
}

// ids parses the path; a malformed relation id is a relation not found.
func (p relationPath) ids() (uuid.UUID, uuid.UUID, error) {
	id, err := entityPath{p.EntityID}.id()
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	rid, err := uuid.Parse(p.RelationID)
	if err != nil {
		return uuid.Nil, uuid.Nil, entity.ErrRelationNotFound
	}
	return id, rid, nil
}

type updateRelationInput struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	RelationID string `path:"relation_id" format:"uuid"`
	Body       struct {
		ConfidenceScore *float64 `json:"confidence_score,omitempty" minimum:"0" maximum:"1"`
		ValidFrom       *string  `json:"valid_from,omitempty" maxLength:"10" pattern:"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$" doc:"YYYY-MM-DD; an empty string removes it (open start)"`
		ValidTo         *string  `json:"valid_to,omitempty" maxLength:"10" pattern:"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$" doc:"YYYY-MM-DD, on or after valid_from (employment ended); an empty string removes it"`
	}
}

// dates are the validity dates the change gives, parsed by field name
// ("": the date removed).
func (in *updateRelationInput) dates() (map[string]time.Time, error) {
	given := map[string]string{}
	if in.Body.ValidFrom != nil {
		given["valid_from"] = *in.Body.ValidFrom
	}
	if in.Body.ValidTo != nil {
		given["valid_to"] = *in.Body.ValidTo
	}
	return parseDates(given)
}

func handleRelationUpdate(svc *entity.Service) handlerFunc[updateRelationInput, relationOutput] {
	return func(ctx context.Context, in *updateRelationInput) (*relationOutput, error) {
		id, rid, err := relationPath{in.EntityID, in.RelationID}.ids()
		if err != nil {
			return nil, err
		}
		ds, err := in.dates()
		if err != nil {
			return nil, err
		}
		p := entity.RelationPatch{Confidence: in.Body.ConfidenceScore}
		if d, ok := ds["valid_from"]; ok {
			p.ValidFrom = &d
		}
		if d, ok := ds["valid_to"]; ok {
			p.ValidTo = &d
		}
		r, err := svc.UpdateRelation(ctx, scopeOf(ctx), id, rid, p)
		if err != nil {
			return nil, err
		}
		return &relationOutput{Body: relationOut(r)}, nil
	}
}

func handleRelationDelete(svc *entity.Service) handlerFunc[relationPath, noContent] {
	return func(ctx context.Context, in *relationPath) (*noContent, error) {
		id, rid, err := in.ids()
		if err != nil {
			return nil, err
		}
		return &noContent{}, svc.DeleteRelation(ctx, scopeOf(ctx), id, rid)
	}
}

type relationListOutput struct{ Body Page[RelationOut] }

type listRelationsInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	ListParams
}

func handleRelationList(svc *entity.Service) handlerFunc[listRelationsInput, relationListOutput] {
	return func(ctx context.Context, in *listRelationsInput) (*relationListOutput, error) {
		id, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		rs, err := svc.Relations(ctx, scopeOf(ctx), id, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		return &relationListOutput{Body: page(rs, in.Limit, func(r entity.Relation) uuid.UUID { return r.ID }, relationOut)}, nil
	}
}
