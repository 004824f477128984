// Package tenant defines tenant identity: the ID every tenant-scoped row,
// query and request carries.
package tenant

import (
	"fmt"

	"github.com/google/uuid"
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
