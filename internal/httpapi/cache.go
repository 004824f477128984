package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenant"
)

// CacheOut is a cached provider result in responses.
type CacheOut struct {
	CacheID         string          `json:"cache_id" format:"uuid"`
	EntityID        string          `json:"entity_id" format:"uuid"`
	ProviderID      string          `json:"provider_id"`
	CheckType       string          `json:"check_type"`
	DataOrigin      string          `json:"data_origin" enum:"paid_external,customer_provided"`
	NormalizedData  json.RawMessage `json:"normalized_data"`
	RawResponse     []byte          `json:"raw_response,omitempty" doc:"Base64; only with include_raw=true and pii:read"`
	CostIncurred    string          `json:"cost_incurred" doc:"Decimal string"`
	CostCurrency    string          `json:"cost_currency"`
	AcquiredAt      time.Time       `json:"acquired_at"`
	FreshUntil      time.Time       `json:"fresh_until"`
	StaleUntil      *time.Time      `json:"stale_until" doc:"null: never expires"`
	FreshnessStatus string          `json:"freshness_status" enum:"fresh,stale,expired" doc:"Computed at read time"`
	CreatedAt       time.Time       `json:"created_at"`
}

func cacheOut(e sourcecache.Entry, now time.Time) CacheOut {
	o := CacheOut{CacheID: e.ID.String(), EntityID: e.EntityID.String(), ProviderID: e.ProviderID, CheckType: e.CheckType,
		DataOrigin: e.Origin, NormalizedData: e.NormalizedData, RawResponse: e.RawResponse, CostIncurred: e.Cost,
		CostCurrency: e.Currency, AcquiredAt: e.AcquiredAt.UTC(), FreshUntil: e.FreshUntil.UTC(), FreshnessStatus: e.Freshness(now),
		CreatedAt: e.CreatedAt.UTC()}
	if e.StaleUntil != nil {
		s := e.StaleUntil.UTC()
		o.StaleUntil = &s
	}
	return o
}

type createCacheInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Body     struct {
		ProviderID     string         `json:"provider_id" pattern:"^[a-z0-9_.-]{1,100}$"`
		CheckType      string         `json:"check_type" pattern:"^[a-z0-9_.-]{1,100}$" doc:"Known types have default freshness windows; others must give fresh_until and stale_until"`
		DataOrigin     string         `json:"data_origin" enum:"paid_external,customer_provided"`
		RawResponse    []byte         `json:"raw_response" doc:"The provider's response, base64" maxLength:"700000"`
		NormalizedData map[string]any `json:"normalized_data"`
		CostIncurred   any            `json:"cost_incurred" doc:"Decimal string with at most 2 decimals (a JSON number is accepted too), >= 0"`
		CostCurrency   string         `json:"cost_currency,omitempty" default:"USD" pattern:"^[A-Z]{3}$"`
		AcquiredAt     *time.Time     `json:"acquired_at,omitempty" doc:"Default: now"`
		FreshUntil     *time.Time     `json:"fresh_until,omitempty"`
		StaleUntil     *time.Time     `json:"stale_until,omitempty"`
	}
}

var costRE = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,2})?$`) //nolint:gochecknoglobals // compiled once

// parseCost accepts "12.50" or 12.5 and returns the canonical decimal.
func parseCost(v any) (string, bool) {
	switch c := v.(type) {
	case string:
		if !costRE.MatchString(c) {
			return "", false
		}
		f, err := strconv.ParseFloat(c, 64)
		return strconv.FormatFloat(f, 'f', 2, 64), err == nil
	case float64:
		cents := math.Round(c * 100)
		if c < 0 || c > 1e12 || math.Abs(cents-c*100) > 1e-6 {
			return "", false
		}
		return strconv.FormatFloat(cents/100, 'f', 2, 64), true
	}
	return "", false
}

type cacheOutput struct{ Body CacheOut }

func handleCacheCreate(d Deps) handlerFunc[createCacheInput, cacheOutput] {
	return func(ctx context.Context, in *createCacheInput) (*cacheOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		b := in.Body
		var items []ProblemItem
		cost, ok := parseCost(b.CostIncurred)
		if !ok {
			items = append(items, ProblemItem{Location: "body.cost_incurred", Message: "a decimal >= 0 with at most 2 decimals, e.g. \"12.50\""})
		}
		acquired := d.now().UTC().Truncate(time.Microsecond)
		if b.AcquiredAt != nil {
			acquired = b.AcquiredAt.UTC().Truncate(time.Microsecond)
			if acquired.After(d.now().Add(5 * time.Minute)) {
				items = append(items, ProblemItem{Location: "body.acquired_at", Message: "cannot be in the future"})
			}
		}
		w, known := sourcecache.DefaultWindow(b.CheckType)
		var fresh time.Time
		var stale *time.Time
		switch {
		case b.FreshUntil != nil:
			fresh = b.FreshUntil.UTC()
		case known:
			fresh = acquired.Add(w.Fresh)
		default:
			items = append(items, ProblemItem{Location: "body.fresh_until", Message: fmt.Sprintf("required: %q has no default window", b.CheckType)})
		}
		switch {
		case b.StaleUntil != nil:
			s := b.StaleUntil.UTC()
			stale = &s
		case known && w.Stale != sourcecache.Never:
			s := acquired.Add(w.Stale)
			stale = &s
		case known:
		default:
			items = append(items, ProblemItem{Location: "body.stale_until", Message: fmt.Sprintf("required: %q has no default window", b.CheckType)})
		}
		if !fresh.IsZero() && fresh.Before(acquired) {
			items = append(items, ProblemItem{Location: "body.fresh_until", Message: "must not be before acquired_at"})
		}
		if stale != nil && !fresh.IsZero() && stale.Before(fresh) {
			items = append(items, ProblemItem{Location: "body.stale_until", Message: "must not be before fresh_until"})
		}
		if len(items) > 0 {
			return nil, invalidFields(items...)
		}
		norm, _ := json.Marshal(b.NormalizedData)
		if b.NormalizedData == nil {
			norm = []byte("{}")
		}
		currency := b.CostCurrency
		if currency == "" {
			currency = "USD"
		}
		e := sourcecache.Entry{ID: uuid.Must(uuid.NewV7()), EntityID: eid, ProviderID: b.ProviderID, CheckType: b.CheckType,
			Origin: b.DataOrigin, RawResponse: b.RawResponse, NormalizedData: norm, Cost: cost, Currency: currency,
			AcquiredAt: acquired, FreshUntil: fresh, StaleUntil: stale}
		scope := tid
		if b.DataOrigin == sourcecache.PaidExternal {
			// paid_external data on a shared entity: the platform path.
			if ctx, scope, err = writeScope(ctx, d, eid); err != nil {
				return nil, err
			}
		}
		ev := audit.New(ctx, audit.ProviderQuery, tid).With("cache_entry", e.ID.String(), eid, map[string]any{
			"provider_id": e.ProviderID, "check_type": e.CheckType, "data_origin": e.Origin, "cost_incurred": cost, "cost_currency": currency})
		out, err := d.Entities.CreateCacheEntry(ctx, scope, e, ev)
		if err != nil {
			return nil, err
		}
		out.RawResponse = nil
		return &cacheOutput{Body: cacheOut(out, d.now())}, nil
	}
}

type listCacheInput struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	CheckType  string `query:"check_type" maxLength:"100"`
	ProviderID string `query:"provider_id" maxLength:"100"`
	IncludeRaw bool   `query:"include_raw" doc:"Include raw_response; needs pii:read"`
	ListParams
}

type cacheListOutput struct{ Body Page[CacheOut] }

func handleCacheList(d Deps) handlerFunc[listCacheInput, cacheListOutput] {
	return func(ctx context.Context, in *listCacheInput) (*cacheListOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		p, _ := auth.PrincipalFrom(ctx)
		if in.IncludeRaw && !p.Has(auth.ScopePIIRead) {
			return nil, errPermission.Withf("include_raw=true needs the scope pii:read")
		}
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		es, more, err := d.Entities.CacheEntries(ctx, tid, eid, sourcecache.Filter{CheckType: in.CheckType, ProviderID: in.ProviderID}, in.IncludeRaw, after, in.Limit)
		if err != nil {
			return nil, err
		}
		now := d.now()
		outs := make([]CacheOut, len(es))
		for i, e := range es {
			outs[i] = cacheOut(e, now)
		}
		out := &cacheListOutput{Body: pageOf(outs, more, func(c CacheOut) uuid.UUID { return uuid.MustParse(c.CacheID) })}
		usable := 0
		for _, c := range out.Body.Data {
			if c.FreshnessStatus != sourcecache.Expired {
				usable++
			}
		}
		typ := audit.CacheMiss
		if usable > 0 {
			typ = audit.CacheHit
		}
		ev := audit.New(ctx, typ, tid).With("cache_entry", "list", eid, map[string]any{
			"check_type": in.CheckType, "provider_id": in.ProviderID, "returned": len(out.Body.Data), "usable": usable, "raw_included": in.IncludeRaw})
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return out, nil
	}
}

type getCacheInput struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	CacheID    string `path:"cache_id" format:"uuid"`
	IncludeRaw bool   `query:"include_raw" doc:"Include raw_response; needs pii:read"`
}

func handleCacheGet(d Deps) handlerFunc[getCacheInput, cacheOutput] {
	return func(ctx context.Context, in *getCacheInput) (*cacheOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		p, _ := auth.PrincipalFrom(ctx)
		if in.IncludeRaw && !p.Has(auth.ScopePIIRead) {
			return nil, errPermission.Withf("include_raw=true needs the scope pii:read")
		}
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		cid, err := uuid.Parse(in.CacheID)
		if err != nil {
			return nil, sourcecache.ErrNotFound
		}
		e, err := d.Entities.CacheEntry(ctx, tid, eid, cid, in.IncludeRaw)
		if err != nil {
			return nil, err
		}
		o := cacheOut(e, d.now())
		typ := audit.CacheHit
		if o.FreshnessStatus == sourcecache.Expired {
			typ = audit.CacheMiss
		}
		ev := audit.New(ctx, typ, tid).With("cache_entry", cid.String(), eid, map[string]any{"freshness_status": o.FreshnessStatus, "raw_included": in.IncludeRaw})
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return &cacheOutput{Body: o}, nil
	}
}
