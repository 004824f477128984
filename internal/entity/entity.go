// Package entity is the domain of the people, organisations and addresses
// being screened: their identifiers, relations and versioned risk profiles.
package entity

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/tenant"
)

// Types of entity.
const (
	Individual   = "individual"
	Organization = "organization"
	Address      = "address"
)

// Entity is a screened subject. Tenant zero: platform-shared.
type Entity struct {
	ID          uuid.UUID
	Tenant      tenant.ID
	Type        string
	ExternalID  string
	Metadata    map[string]string
	Identifiers map[string]string // kind -> normalised value
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Shared reports whether every tenant can read the entity.
func (e Entity) Shared() bool { return e.Tenant.IsZero() }

// Masked returns the identifiers as they are shown without pii:read.
func (e Entity) Masked() map[string]string {
	out := make(map[string]string, len(e.Identifiers))
	for k, v := range e.Identifiers {
		out[k] = identifier.Mask(k, v)
	}
	return out
}

// Kinds lists the identifier kinds present, sorted (what audit events
// record instead of values).
func (e Entity) Kinds() []string { return slices.Sorted(maps.Keys(e.Identifiers)) }

// Errors of entity operations.
var (
	ErrNotFound         = apperr.New(apperr.NotFound, "ENTITY_NOT_FOUND", "entity not found")
	ErrExternalIDTaken  = apperr.New(apperr.Conflict, "EXTERNAL_ID_TAKEN", "another entity of this tenant has this external_id")
	ErrSharedReadOnly   = apperr.New(apperr.Forbidden, "PERMISSION_DENIED", "platform-shared entities are changed only by platform admins")
	ErrRelationExists   = apperr.New(apperr.Conflict, "RELATION_EXISTS", "this relation exists")
	ErrRelationNotFound = apperr.New(apperr.NotFound, "RELATION_NOT_FOUND", "no such relation of this entity")
	ErrProfileNotFound  = apperr.New(apperr.NotFound, "PROFILE_NOT_FOUND", "profile not found")
)

// MaxIdentifiers is how many identifiers one entity may hold, whether they
// arrive with the create or with later changes.
const MaxIdentifiers = 100

// ErrTooManyIdentifiers is a change that would leave an entity with more
// than MaxIdentifiers identifiers.
var ErrTooManyIdentifiers = apperr.New(apperr.Invalid, "VALIDATION_FAILED", "an entity holds at most 100 identifiers")

// DuplicateError reports that a unique identifier already belongs to an
// entity of the tenant.
type DuplicateError struct {
	Kind     string
	Existing uuid.UUID
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("ENTITY_DUPLICATE: %s already identifies entity %s", e.Kind, e.Existing)
}

// Unwrap returns its apperr form (409 ENTITY_DUPLICATE naming the
// existing entity), so the HTTP layer maps it like any other error.
func (e *DuplicateError) Unwrap() error {
	return apperr.New(apperr.Conflict, "ENTITY_DUPLICATE", fmt.Sprintf("an entity with this %s exists: %s", e.Kind, e.Existing)).
		Wrap(&apperr.ConflictWith{Kind: "entity", ID: e.Existing.String()})
}

// NormalizeIdentifiers validates and normalises every identifier, returning
// one apperr.Field per bad one.
func NormalizeIdentifiers(ids map[string]string, now time.Time) (map[string]string, []apperr.Field) {
	out := make(map[string]string, len(ids))
	var errs []apperr.Field
	keys := slices.Sorted(maps.Keys(ids))
	for _, k := range keys {
		n, err := identifier.Normalize(k, ids[k], now)
		if err != nil {
			errs = append(errs, apperr.Field{Path: "canonical_identifiers." + k, Message: err.Error()})
			continue
		}
		out[k] = n
	}
	switch {
	case len(ids) == 0:
		errs = append(errs, apperr.Field{Path: "canonical_identifiers", Message: "give at least one identifier"})
	case len(ids) > MaxIdentifiers:
		errs = append(errs, apperr.Field{Path: "canonical_identifiers", Message: "at most 100 identifiers"})
	}
	return out, errs
}

// Limits of the non-personal labels (metadata), in characters.
const (
	MaxLabels     = 50
	MaxLabelKey   = 64
	MaxLabelValue = 256
)

// ValidateMetadata checks the non-personal labels: at most 50 keys of 1 to
// 64 characters, values of at most 256, neither with control characters.
func ValidateMetadata(m map[string]string) []apperr.Field {
	var errs []apperr.Field
	if len(m) > MaxLabels {
		errs = append(errs, apperr.Field{Path: "metadata", Message: fmt.Sprintf("at most %d keys", MaxLabels)})
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if n := utf8.RuneCountInString(k); n == 0 || n > MaxLabelKey || hasControl(k) {
			errs = append(errs, apperr.Field{Path: "metadata." + k, Message: fmt.Sprintf("keys are 1 to %d characters, without control characters", MaxLabelKey)})
		}
		if utf8.RuneCountInString(m[k]) > MaxLabelValue || hasControl(m[k]) {
			errs = append(errs, apperr.Field{Path: "metadata." + k, Message: fmt.Sprintf("values are at most %d characters, without control characters", MaxLabelValue)})
		}
	}
	return errs
}

// hasControl reports whether s holds a C0 control character or DEL.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Filter narrows a list of entities; zero fields do not filter.
type Filter struct {
	Type       string
	ExternalID string
}

// Relation links two entities.
type Relation struct {
	ID                  uuid.UUID
	Tenant              tenant.ID
	From, To            uuid.UUID
	Type                string
	Confidence          float64
	DiscoveredInProfile uuid.UUID
	ValidFrom, ValidTo  time.Time // calendar dates (UTC midnight); zero: open
	CreatedAt           time.Time
	UpdatedAt           time.Time // zero: never changed
}

// RelationPatch changes a relation; nil fields stay. A date pointing at
// the zero time clears it (the relation is open on that side).
type RelationPatch struct {
	Confidence         *float64
	ValidFrom, ValidTo *time.Time
}

// Profile is one immutable version of an entity's risk profile.
type Profile struct {
	ID               uuid.UUID
	EntityID         uuid.UUID
	Tenant           tenant.ID
	Version          int
	TriggerType      string
	TriggerID        uuid.UUID
	Findings         []json.RawMessage
	Connections      []json.RawMessage
	RiskScore        map[string]any
	DataSourcesUsed  []json.RawMessage
	StaleDataUsed    []json.RawMessage
	EvolutionSignals []json.RawMessage
	Delta            *Delta
	CreatedAt        time.Time
}

// Delta is how a profile differs from the version before it.
type Delta struct {
	RiskScoreChange       float64           `json:"risk_score_change"`
	ConnectionCountChange int               `json:"connection_count_change"`
	NewFindings           []json.RawMessage `json:"new_findings"`
	ResolvedFindings      []json.RawMessage `json:"resolved_findings"`
}

// ComputeDelta compares p with prev: findings are matched by their "id"
// field when they have one, else by their whole content.
func ComputeDelta(prev, p Profile) Delta {
	key := func(f json.RawMessage) string {
		var obj map[string]any
		if json.Unmarshal(f, &obj) == nil {
			if id, ok := obj["id"]; ok {
				b, _ := json.Marshal(id)
				return "id:" + string(b)
			}
			b, _ := json.Marshal(obj) // canonical: keys sorted
			return "content:" + string(b)
		}
		return "raw:" + string(f)
	}
	before := map[string]bool{}
	for _, f := range prev.Findings {
		before[key(f)] = true
	}
	now := map[string]bool{}
	d := Delta{NewFindings: []json.RawMessage{}, ResolvedFindings: []json.RawMessage{}}
	for _, f := range p.Findings {
		k := key(f)
		now[k] = true
		if !before[k] {
			d.NewFindings = append(d.NewFindings, f)
		}
	}
	for _, f := range prev.Findings {
		if !now[key(f)] {
			d.ResolvedFindings = append(d.ResolvedFindings, f)
		}
	}
	d.RiskScoreChange = round6(Overall(p.RiskScore) - Overall(prev.RiskScore))
	d.ConnectionCountChange = len(p.Connections) - len(prev.Connections)
	return d
}

// FirstDelta is the delta of a first version: everything is new.
func FirstDelta(p Profile) Delta {
	d := Delta{NewFindings: p.Findings, ResolvedFindings: []json.RawMessage{}, RiskScoreChange: Overall(p.RiskScore),
		ConnectionCountChange: len(p.Connections)}
	if d.NewFindings == nil {
		d.NewFindings = []json.RawMessage{}
	}
	return d
}

// Overall is the risk score's "overall" value (0 if absent).
func Overall(score map[string]any) float64 {
	v, _ := score["overall"].(float64)
	return v
}

func round6(f float64) float64 {
	const p = 1e6
	if f < 0 {
		return -float64(int64(-f*p+0.5)) / p
	}
	return float64(int64(f*p+0.5)) / p
}

// SortKinds is for stable output.
func SortKinds(kinds []string) []string { sort.Strings(kinds); return kinds }
