package httpapi

import (
	"fmt"
	"sort"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/identifier"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenancy"
)

// Bounds. Every string, array, map and integer of the document declares
// how large it may be, and the server enforces what it declares: huma
// validates the schema (422 located at the field), the services the
// rules a schema cannot state (x-max-bytes below). The bounds are sized
// with the body cap: a request whose every field is at its limit is
// smaller than maxBody (TestBounds_RequestAtLimitsFitsTheBodyCap), so it
// is never a 413. TestBounds_Walk sends the limit and the limit + 1 of
// every bounded field of every operation.

// textPattern admits any text on one line: no control characters (C0 and
// DEL), which have no place in a name or a label and let a value forge
// lines in a log or a terminal.
const textPattern = `^[^\x00-\x1F\x7F]*$`

// formatLengths are the longest strings each format admits; a string of
// that format declares it as its maxLength. RFC 3339 with nanoseconds and
// an offset: 2006-01-02T15:04:05.999999999+07:00.
//
//nolint:gochecknoglobals // read-only table
var formatLengths = map[string]int{"uuid": 36, "date-time": 35, "ip": 45}

// maxBytesExtension names the byte budget of a free-form JSON value (a
// map or an array of any JSON): the size of its compact encoding, which
// the service that owns the value enforces with a 422 at the field.
const maxBytesExtension = "x-max-bytes"

// byteBudgets are the free-form values' budgets, by schema and property.
// A tenant's config, a provider's normalised data and a profile's arrays
// together stay under the body cap with every other field at its limit.
//
//nolint:gochecknoglobals // read-only table
var byteBudgets = map[string]int{
	"CreateTenantInputBody.config":             tenancy.MaxConfigBytes,
	"UpdateTenantInputBody.config":             tenancy.MaxConfigBytes,
	"CreateCacheInputBody.normalized_data":     sourcecache.MaxNormalizedBytes,
	"CreateProfileInputBody.risk_score":        entity.MaxScoreBytes,
	"CreateProfileInputBody.findings":          entity.MaxFindingsBytes,
	"CreateProfileInputBody.connections":       entity.MaxConnectionsBytes,
	"CreateProfileInputBody.data_sources_used": entity.MaxListBytes,
	"CreateProfileInputBody.stale_data_used":   entity.MaxListBytes,
	"CreateProfileInputBody.evolution_signals": entity.MaxListBytes,
}

// declareBounds completes the document's bounds where tags cannot state
// them: the lengths of formatted strings, the byte budgets of free-form
// values. It changes the schemas huma validates with, so what it declares
// is enforced (formats by huma, budgets by the services), and it panics
// when a budget names a property the document does not have: the table
// and the types must not drift apart.
func declareBounds(o *huma.OpenAPI) {
	seen := map[*huma.Schema]bool{}
	var walk func(s *huma.Schema)
	walk = func(s *huma.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		if n, ok := formatLengths[s.Format]; ok && s.Type == huma.TypeString && s.MaxLength == nil {
			s.MaxLength = &n
			s.PrecomputeMessages()
		}
		walk(s.Items)
		if ap, ok := s.AdditionalProperties.(*huma.Schema); ok {
			walk(ap)
		}
		for _, p := range s.Properties {
			walk(p)
		}
		for _, subs := range [][]*huma.Schema{s.OneOf, s.AnyOf, s.AllOf} {
			for _, sub := range subs {
				walk(sub)
			}
		}
	}
	for _, s := range o.Components.Schemas.Map() {
		walk(s)
	}
	eachOperation(o, func(_, _ string, op *huma.Operation) {
		for _, p := range op.Parameters {
			walk(p.Schema)
		}
		for _, r := range op.Responses {
			for _, h := range r.Headers {
				walk(h.Schema)
			}
		}
	})
	names := make([]string, 0, len(byteBudgets))
	for name := range byteBudgets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		schema, prop, _ := strings.Cut(name, ".")
		s := o.Components.Schemas.Map()[schema]
		if s == nil || s.Properties[prop] == nil {
			panic(fmt.Sprintf("httpapi: byte budget for %s: no such property in the document", name))
		}
		p := s.Properties[prop]
		if p.Extensions == nil {
			p.Extensions = map[string]any{}
		}
		p.Extensions[maxBytesExtension] = byteBudgets[name]
		p.Description = strings.TrimSpace(p.Description + fmt.Sprintf(" At most %d bytes as compact JSON (%s).", byteBudgets[name], maxBytesExtension))
	}
}

// Maps of the API whose keys and values are bounded: the schema says so
// with maxProperties, propertyNames (declared as an extension: huma does
// not validate it; the entity service does) and the value's schema.

// identifiers are an entity's identifiers, kind -> value.
type identifiers map[string]string

// Schema declares the entity service's limits.
func (identifiers) Schema(huma.Registry) *huma.Schema {
	s := boundedMap("kind -> value: at least one, at most 100. Kinds are the known ones ("+strings.Join(knownKinds(), ", ")+
		") or your own under x_ (always masked, never unique); each known kind's format is in docs/reference.md#identifier-kinds",
		entity.MaxIdentifiers, acceptedKinds(), &huma.Schema{Type: huma.TypeString, MinLength: ptr(1), MaxLength: ptr(identifier.MaxValueLen), Pattern: textPattern})
	s.MinProperties = ptr(1)
	ex := map[string]any{}
	for _, k := range identifier.Kinds() {
		if k.Name == identifier.SSN || k.Name == identifier.Email || k.Name == identifier.FullName || k.Name == identifier.DateOfBirth {
			ex[k.Name] = k.Example
		}
	}
	s.Examples = []any{ex}
	return s
}

func knownKinds() []string {
	var out []string
	for _, k := range identifier.Kinds() {
		out = append(out, k.Name)
	}
	return out
}

// acceptedKinds are the names a new identifier may have: a known kind, or
// a custom one (x_…).
func acceptedKinds() *huma.Schema {
	return &huma.Schema{Type: huma.TypeString, MinLength: ptr(1), MaxLength: ptr(identifier.MaxKindLen),
		Pattern: "^(" + strings.Join(knownKinds(), "|") + ")$|^x(_[a-z0-9]+)+$"}
}

// searchKind is a kind entities are searched by: a unique one.
type searchKind string

// Schema lists the unique kinds, from the vocabulary's table.
func (searchKind) Schema(huma.Registry) *huma.Schema {
	var enum []any
	for _, k := range identifier.UniqueKinds() {
		enum = append(enum, k)
	}
	return &huma.Schema{Type: huma.TypeString, Enum: enum, Description: "A unique identifier kind (only those are searchable)"}
}

// maskedIdentifiers are identifiers in responses: masking an e-mail
// address can make it up to three characters longer than stored.
type maskedIdentifiers map[string]string

// Schema declares the stored limits, plus masking's three characters.
func (maskedIdentifiers) Schema(huma.Registry) *huma.Schema {
	return boundedMap("kind -> value, masked unless revealed", entity.MaxIdentifiers, kindNames(),
		&huma.Schema{Type: huma.TypeString, MaxLength: ptr(identifier.MaxValueLen + 3)})
}

// identifierPatch sets (a value) or removes (null) identifiers.
type identifierPatch map[string]any

// Schema declares the entity service's limits; null removes.
func (identifierPatch) Schema(huma.Registry) *huma.Schema {
	return boundedMap("kind -> new value (a known kind or x_…), or null to remove (any kind held, one stored before the vocabulary was closed too)", 2*entity.MaxIdentifiers, kindNames(),
		&huma.Schema{Type: huma.TypeString, Nullable: true, MinLength: ptr(1), MaxLength: ptr(identifier.MaxValueLen), Pattern: textPattern})
}

// labels are an entity's metadata: non-personal labels.
type labels map[string]string

// Schema declares the entity service's limits.
func (labels) Schema(huma.Registry) *huma.Schema {
	return boundedMap("Non-personal labels: at most 50, keys of 1 to 64 characters, values of at most 256", entity.MaxLabels,
		&huma.Schema{Type: huma.TypeString, MinLength: ptr(1), MaxLength: ptr(entity.MaxLabelKey), Pattern: textPattern},
		&huma.Schema{Type: huma.TypeString, MaxLength: ptr(entity.MaxLabelValue), Pattern: textPattern})
}

func kindNames() *huma.Schema {
	return &huma.Schema{Type: huma.TypeString, MinLength: ptr(1), MaxLength: ptr(identifier.MaxKindLen), Pattern: identifier.KindPattern}
}

func boundedMap(doc string, maxProps int, names, values *huma.Schema) *huma.Schema {
	values.PrecomputeMessages()
	return &huma.Schema{Type: huma.TypeObject, Description: doc, MaxProperties: ptr(maxProps), AdditionalProperties: values,
		Extensions: map[string]any{"propertyNames": names}}
}
