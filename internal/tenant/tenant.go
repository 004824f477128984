// Package tenant defines tenant identity: the ID every tenant-scoped row,
// query and request carries.
package tenant

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
)

// ID identifies a tenant. The zero ID is "no tenant".
type ID uuid.UUID

// ParseID parses a tenant ID in UUID form.
func ParseID(s string) (ID, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("parse tenant id: %w", err)
	}
	return ID(u), nil
}

// NewID returns a fresh, time-ordered (UUIDv7) tenant ID.
func NewID() ID { return ID(uuid.Must(uuid.NewV7())) }

// String returns the canonical UUID form.
func (id ID) String() string { return uuid.UUID(id).String() }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// UUID returns id as a uuid.UUID.
func (id ID) UUID() uuid.UUID { return uuid.UUID(id) }

// Tenant is a customer organisation.
type Tenant struct {
	ID        ID
	Name      string
	Slug      string
	Locale    string
	Active    bool
	Config    map[string]any
	LegalHold bool      // blocks erasure
	BYOK      bool      // its data keys are wrapped by a key it brought
	Erasing   time.Time // when its erasure started (zero: not being erased)
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Patch changes some of a tenant's fields; nil leaves a field as it is.
type Patch struct {
	Name      *string
	Locale    *string
	Active    *bool
	Config    map[string]any
	LegalHold *bool
	// KEKRef, when set, is a key the tenant brings (BYOK: a PKCS#11 key
	// label, a KMS key id, ARN or alias); "" returns to a key elile makes.
	KEKRef *string
}

// Errors of tenant operations.
var (
	ErrNotFound  = apperr.New(apperr.NotFound, "TENANT_NOT_FOUND", "tenant not found")
	ErrSlugTaken = apperr.New(apperr.Conflict, "TENANT_SLUG_TAKEN", "a tenant with this slug exists")
)

// Scope is what a unit of work acts for: one tenant, or the platform
// itself (platform-shared data, changed by a platform admin; credential
// look-ups before a tenant is known). Make one with Of or Platform. The zero
// Scope acts for nobody: stores refuse it (postgres.ErrNoTenant), so a
// tenant that went missing on the way never turns into platform access.
type Scope struct {
	id       ID
	platform bool
}

// Of is the scope of tenant id. Of(zero ID) is the zero Scope, which acts
// for nobody.
func Of(id ID) Scope { return Scope{id: id} }

// Platform is the scope of the platform itself.
func Platform() Scope { return Scope{platform: true} }

// Valid reports whether s acts for a tenant or the platform.
func (s Scope) Valid() bool { return s.platform || !s.id.IsZero() }

// IsPlatform reports whether s is Platform().
func (s Scope) IsPlatform() bool { return s.platform }

// Tenant is the tenant s acts for: zero for the platform (whose rows carry
// no tenant) and for the zero Scope.
func (s Scope) Tenant() ID { return s.id }

// String names the scope, for logs and errors.
func (s Scope) String() string {
	switch {
	case s.platform:
		return "platform"
	case s.id.IsZero():
		return "none"
	default:
		return "tenant " + s.id.String()
	}
}

type scopeKey struct{}

// WithScope returns ctx carrying the tenant a request acts in, validated
// against the credential by the HTTP layer.
func WithScope(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, scopeKey{}, id)
}

// ScopeFrom returns the scope of the tenant ctx carries; without one, the
// zero Scope and false.
func ScopeFrom(ctx context.Context) (Scope, bool) {
	id, _ := ctx.Value(scopeKey{}).(ID)
	return Of(id), !id.IsZero()
}
