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
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Patch changes some of a tenant's fields; nil leaves a field as it is.
type Patch struct {
	Name   *string
	Locale *string
	Active *bool
	Config map[string]any
}

// Errors of tenant operations.
var (
	ErrNotFound  = apperr.New(apperr.NotFound, "TENANT_NOT_FOUND", "tenant not found")
	ErrSlugTaken = apperr.New(apperr.Conflict, "TENANT_SLUG_TAKEN", "a tenant with this slug exists")
)

type scopeKey struct{}

// WithScope returns ctx scoped to tenant id: the tenant a request acts in,
// validated against the credential.
func WithScope(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, scopeKey{}, id)
}

// ScopeFrom returns the tenant ctx is scoped to.
func ScopeFrom(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(scopeKey{}).(ID)
	return id, ok && !id.IsZero()
}

type platformKey struct{}

// WithPlatform returns ctx marked as acting for the platform itself
// (platform-shared data, changed by a platform admin). Stores reach
// platform data only with this mark: a zero tenant id alone never means
// "the platform", so a tenant that went missing on the way can never turn
// into platform access.
func WithPlatform(ctx context.Context) context.Context {
	return context.WithValue(ctx, platformKey{}, true)
}

// ActsForPlatform reports whether ctx was marked by WithPlatform.
func ActsForPlatform(ctx context.Context) bool {
	v, _ := ctx.Value(platformKey{}).(bool)
	return v
}
