// Package sourcecache is the domain of cached provider results: how long a
// result of each check type stays fresh and then stale, and which tenants
// may see it.
package sourcecache

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/tenant"
)

// Data origins.
const (
	PaidExternal     = "paid_external"     // shared with every tenant that can see the entity
	CustomerProvided = "customer_provided" // the providing tenant only
)

// Freshness states, computed at read time.
const (
	Fresh   = "fresh"
	Stale   = "stale"
	Expired = "expired"
)

// Window is how long a result is fresh, then stale, from its acquisition.
// Stale < 0 means it never expires.
type Window struct{ Fresh, Stale time.Duration }

const day = 24 * time.Hour

// Never marks a window that never expires.
const Never time.Duration = -1

// CheckType is a check type with a default window.
type CheckType struct {
	Name string
	Window
}

// CheckTypes lists the check types with default windows, in the order
// the reference shows them. Other types are accepted with explicit
// fresh_until and stale_until.
func CheckTypes() []CheckType {
	return []CheckType{
		{"sanctions", Window{0, 0}},
		{"criminal", Window{7 * day, 30 * day}},
		{"adverse_media", Window{24 * time.Hour, 7 * day}},
		{"civil_litigation", Window{14 * day, 60 * day}},
		{"credit", Window{30 * day, 90 * day}},
		{"corporate_registry", Window{30 * day, 90 * day}},
		{"osint", Window{30 * day, 90 * day}},
		{"employment", Window{90 * day, 180 * day}},
		{"behavioral", Window{90 * day, 180 * day}},
		{"education", Window{365 * day, Never}},
	}
}

// DefaultWindow returns the default window of a check type, and false for
// an unknown type (which must then give explicit windows).
func DefaultWindow(checkType string) (Window, bool) {
	for _, c := range CheckTypes() {
		if c.Name == checkType {
			return c.Window, true
		}
	}
	return Window{}, false
}

// Entry is one cached provider result.
type Entry struct {
	ID             uuid.UUID
	EntityID       uuid.UUID
	Owner          tenant.ID // the entity's tenant; zero for a shared entity
	Customer       tenant.ID // the providing tenant of customer_provided data
	ProviderID     string
	CheckType      string
	Origin         string
	RawResponse    []byte
	NormalizedData json.RawMessage
	Cost           string // decimal, 2 places
	Currency       string
	AcquiredAt     time.Time
	FreshUntil     time.Time
	StaleUntil     *time.Time // nil: never expires
	CreatedAt      time.Time
}

// Freshness is the entry's state at now: fresh until fresh_until, stale
// until stale_until, expired after.
func (e Entry) Freshness(now time.Time) string {
	switch {
	case now.Before(e.FreshUntil):
		return Fresh
	case e.StaleUntil == nil || now.Before(*e.StaleUntil):
		return Stale
	default:
		return Expired
	}
}

// Filter narrows a cache listing; zero fields do not filter.
type Filter struct{ CheckType, ProviderID string }

// Errors of cache operations.
var (
	ErrNotFound     = apperr.New(apperr.NotFound, "CACHE_ENTRY_NOT_FOUND", "cache entry not found")
	ErrSharedOrigin = apperr.New(apperr.Forbidden, "PERMISSION_DENIED", "paid_external data on a platform-shared entity is added by platform admins only")
	ErrNoCustomer   = apperr.New(apperr.Invalid, "VALIDATION_FAILED", "customer_provided data belongs to a tenant; a platform admin adds paid_external data")
)
