package sourcecache

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/compactjson"
	"github.com/elile/elile/internal/tenant"
)

// Store keeps cached provider results. postgres implements it.
type Store interface {
	// InScope runs fn in one unit of work in scope sc.
	InScope(ctx context.Context, sc tenant.Scope, fn func(Tx) error) error
	// Owner returns the tenant of an entity sc can see (zero: a
	// platform-shared entity); entity.ErrNotFound otherwise.
	Owner(ctx context.Context, sc tenant.Scope, entityID uuid.UUID) (tenant.ID, error)
	// Entries lists the entries of an entity sc may see, newest first,
	// after the cursor id; more reports a next page.
	Entries(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, f Filter, withRaw bool, after uuid.UUID, limit int) (es []Entry, more bool, err error)
	// Entry returns one entry of an entity sc may see: ErrNotFound otherwise.
	Entry(ctx context.Context, sc tenant.Scope, entityID, id uuid.UUID, withRaw bool) (Entry, error)
}

// Tx is the work a cache unit of work can do.
type Tx interface {
	// Owner is Store.Owner inside the unit of work.
	Owner(ctx context.Context, entityID uuid.UUID) (tenant.ID, error)
	// Insert stores e, its ciphertexts bound to the tenant that may read
	// them (created_at and the stored cost filled in when it is sent).
	Insert(ctx context.Context, e *Entry) error
	// AppendAudit records ev in the same transaction.
	AppendAudit(ctx context.Context, ev audit.Event) error
}

// Service owns the rules of cached provider results: freshness windows,
// costs, which tenant a result belongs to and who may add it.
type Service struct {
	store Store
	audit audit.Log
	now   func() time.Time
}

// NewService returns the provider-cache service.
func NewService(store Store, log audit.Log, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, audit: log, now: now}
}

// MaxNormalizedBytes bounds an entry's normalized_data, as compact JSON:
// with raw_response at its limit, an entry at this fits the API's 1 MiB
// request body.
const MaxNormalizedBytes = 256 << 10

// NewEntry is the input of Add.
type NewEntry struct {
	ProviderID     string
	CheckType      string
	Origin         string
	RawResponse    []byte
	NormalizedData map[string]any
	Cost           any    // decimal string, or a JSON number
	Currency       string // default USD
	AcquiredAt     *time.Time
	FreshUntil     *time.Time
	StaleUntil     *time.Time
}

var costRE = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,2})?$`) //nolint:gochecknoglobals // compiled once

// ParseCost parses a cost: a decimal string with at most 12 digits before
// and 2 after the point, or a JSON number that is a whole number of cents,
// from 0 to 10^12. It returns the cost with 2 decimals.
func ParseCost(v any) (string, bool) {
	switch c := v.(type) {
	case string:
		if !costRE.MatchString(c) {
			return "", false
		}
		f, err := strconv.ParseFloat(c, 64)
		return strconv.FormatFloat(f, 'f', 2, 64), err == nil
	case float64:
		cents := math.Round(c * 100)
		if c < 0 || c > 1e12 || math.IsNaN(c) || math.Abs(cents-c*100) > 1e-6 {
			return "", false
		}
		return strconv.FormatFloat(cents/100, 'f', 2, 64), true
	}
	return "", false
}

// Windows decides when an entry acquired at acquired stops being fresh and
// stale: the given times, else the check type's default window. A check
// type without a default must give both.
func Windows(checkType string, acquired time.Time, freshUntil, staleUntil *time.Time) (fresh time.Time, stale *time.Time, errs []apperr.Field) {
	w, known := DefaultWindow(checkType)
	switch {
	case freshUntil != nil:
		fresh = freshUntil.UTC()
	case known:
		fresh = acquired.Add(w.Fresh)
	default:
		errs = append(errs, apperr.Field{Path: "fresh_until", Message: fmt.Sprintf("required: %q has no default window", checkType)})
	}
	switch {
	case staleUntil != nil:
		s := staleUntil.UTC()
		stale = &s
	case known && w.Stale != Never:
		s := acquired.Add(w.Stale)
		stale = &s
	case known:
	default:
		errs = append(errs, apperr.Field{Path: "stale_until", Message: fmt.Sprintf("required: %q has no default window", checkType)})
	}
	if !fresh.IsZero() && fresh.Before(acquired) {
		errs = append(errs, apperr.Field{Path: "fresh_until", Message: "must not be before acquired_at"})
	}
	if stale != nil && !fresh.IsZero() && stale.Before(fresh) {
		errs = append(errs, apperr.Field{Path: "stale_until", Message: "must not be before fresh_until"})
	}
	return fresh, stale, errs
}

// Check reports every bad field of in that Add can tell without
// encoding normalized_data (its size is checked by Add): the HTTP layer
// runs it in the same pass as the schema.
func (in NewEntry) Check(now time.Time) []apperr.Field {
	_, errs := entryTimesOf(in, now)
	return errs
}

type entryTimes struct {
	cost            string
	acquired, fresh time.Time
	stale           *time.Time
}

// times validates in's cost and times, deriving the windows.
func entryTimesOf(in NewEntry, now time.Time) (entryTimes, []apperr.Field) {
	var errs []apperr.Field
	cost, ok := ParseCost(in.Cost)
	if !ok {
		errs = append(errs, apperr.Field{Path: "cost_incurred", Message: "a decimal >= 0 with at most 2 decimals, e.g. \"12.50\""})
	}
	acquired := now.UTC().Truncate(time.Microsecond)
	if in.AcquiredAt != nil {
		acquired = in.AcquiredAt.UTC().Truncate(time.Microsecond)
		if acquired.After(now.Add(5 * time.Minute)) {
			errs = append(errs, apperr.Field{Path: "acquired_at", Message: "cannot be in the future"})
		}
	}
	fresh, stale, werrs := Windows(in.CheckType, acquired, in.FreshUntil, in.StaleUntil)
	return entryTimes{cost: cost, acquired: acquired, fresh: fresh, stale: stale}, append(errs, werrs...)
}

// entry validates in into an entry of entityID.
func (s *Service) entry(entityID uuid.UUID, in NewEntry) (Entry, error) {
	t, errs := entryTimesOf(in, s.now())
	norm := []byte("{}")
	if in.NormalizedData != nil {
		var err error
		if norm, err = compactjson.Marshal(in.NormalizedData); err != nil || len(norm) > MaxNormalizedBytes {
			errs = append(errs, apperr.Field{Path: "normalized_data", Message: fmt.Sprintf("a JSON object of at most %d bytes as compact JSON", MaxNormalizedBytes)})
		}
	}
	if err := apperr.Fields(errs...); err != nil {
		return Entry{}, err
	}
	currency := in.Currency
	if currency == "" {
		currency = "USD"
	}
	return Entry{ID: uuid.Must(uuid.NewV7()), EntityID: entityID, ProviderID: in.ProviderID, CheckType: in.CheckType,
		Origin: in.Origin, RawResponse: in.RawResponse, NormalizedData: norm, Cost: t.cost, Currency: currency,
		AcquiredAt: t.acquired, FreshUntil: t.fresh, StaleUntil: t.stale}, nil
}

// writeScope is the scope an entry of origin runs in: sc, or the
// platform's when a platform admin adds paid_external data to a
// platform-shared entity.
func (s *Service) writeScope(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, origin string) (tenant.Scope, error) {
	if p, _ := auth.PrincipalFrom(ctx); origin != PaidExternal || !p.PlatformAdmin() {
		return sc, nil
	}
	owner, err := s.store.Owner(ctx, sc, entityID)
	if err != nil {
		return sc, err
	}
	if owner.IsZero() {
		return tenant.Platform(), nil
	}
	return sc, nil
}

// Add stores a provider result on an entity sc can see and records
// provider.query, in one transaction. paid_external data belongs to the
// entity's tenant (on a shared entity: everyone's, added by platform
// admins only); customer_provided data to the providing tenant alone.
// Errors: apperr.Invalid, entity.ErrNotFound, ErrSharedOrigin,
// ErrNoCustomer.
func (s *Service) Add(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, in NewEntry) (Entry, error) {
	e, err := s.entry(entityID, in)
	if err != nil {
		return Entry{}, err
	}
	ws, err := s.writeScope(ctx, sc, entityID, in.Origin)
	if err != nil {
		return Entry{}, err
	}
	ev := audit.New(ctx, audit.ProviderQuery, sc.Tenant()).With("cache_entry", e.ID.String(), entityID, map[string]any{
		"provider_id": e.ProviderID, "check_type": e.CheckType, "data_origin": e.Origin, "cost_incurred": e.Cost, "cost_currency": e.Currency})
	err = s.store.InScope(ctx, ws, func(tx Tx) error {
		owner, err := tx.Owner(ctx, entityID)
		if err != nil {
			return err
		}
		e.Owner = owner
		switch {
		case e.Origin == CustomerProvided && ws.IsPlatform():
			return ErrNoCustomer
		case e.Origin == CustomerProvided:
			e.Customer = ws.Tenant()
		case owner.IsZero() && !ws.IsPlatform():
			return ErrSharedOrigin
		}
		if err := tx.Insert(ctx, &e); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	})
	if err != nil {
		return Entry{}, err
	}
	e.RawResponse = nil
	return e, nil
}

// List returns a page of an entity's entries sc may see and records the
// read as cache.hit (some entry is not expired) or cache.miss. Raw
// responses are included only when withRaw (pii:read, checked by the
// caller).
func (s *Service) List(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, f Filter, withRaw bool, after uuid.UUID, limit int) ([]Entry, bool, error) {
	es, more, err := s.store.Entries(ctx, sc, entityID, f, withRaw, after, limit)
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	usable := 0
	for _, e := range es {
		if e.Freshness(now) != Expired {
			usable++
		}
	}
	typ := audit.CacheMiss
	if usable > 0 {
		typ = audit.CacheHit
	}
	ev := audit.New(ctx, typ, sc.Tenant()).With("cache_entry", "list", entityID, map[string]any{
		"check_type": f.CheckType, "provider_id": f.ProviderID, "returned": len(es), "usable": usable, "raw_included": withRaw})
	if err := s.audit.Write(ctx, ev); err != nil {
		return nil, false, err
	}
	return es, more, nil
}

// Get returns one entry sc may see and records the read as cache.hit, or
// cache.miss when it has expired.
func (s *Service) Get(ctx context.Context, sc tenant.Scope, entityID, id uuid.UUID, withRaw bool) (Entry, error) {
	e, err := s.store.Entry(ctx, sc, entityID, id, withRaw)
	if err != nil {
		return Entry{}, err
	}
	status := e.Freshness(s.now())
	typ := audit.CacheHit
	if status == Expired {
		typ = audit.CacheMiss
	}
	ev := audit.New(ctx, typ, sc.Tenant()).With("cache_entry", id.String(), entityID,
		map[string]any{"freshness_status": status, "raw_included": withRaw})
	if err := s.audit.Write(ctx, ev); err != nil {
		return Entry{}, err
	}
	return e, nil
}
