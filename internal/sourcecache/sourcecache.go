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

// DefaultWindow returns the default window of a check type, and false for
// an unknown type (which must then give explicit windows).
func DefaultWindow(checkType string) (Window, bool) {
	w, ok := map[string]Window{
		"sanctions":          {0, 0},
		"criminal":           {7 * day, 30 * day},
		"adverse_media":      {24 * time.Hour, 7 * day},
		"civil_litigation":   {14 * day, 60 * day},
		"credit":             {30 * day, 90 * day},
		"corporate_registry": {30 * day, 90 * day},
		"osint":              {30 * day, 90 * day},
		"employment":         {90 * day, 180 * day},
		"behavioral":         {90 * day, 180 * day},
		"education":          {365 * day, Never},
	}[checkType]
	return w, ok
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
