package httpapi

import (
	"context"
	"encoding/json"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/sourcecache"
)

// CacheOut is a cached provider result in responses.
type CacheOut struct {
	CacheID         string          `json:"cache_id" format:"uuid"`
	EntityID        string          `json:"entity_id" format:"uuid"`
	ProviderID      string          `json:"provider_id" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$"`
	CheckType       string          `json:"check_type" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$"`
	DataOrigin      string          `json:"data_origin" enum:"paid_external,customer_provided"`
	NormalizedData  json.RawMessage `json:"normalized_data"`
	RawResponse     []byte          `json:"raw_response,omitempty" maxLength:"700000" pattern:"^[A-Za-z0-9+/]*={0,2}$" doc:"Base64; only with include_raw=true and pii:read"`
	CostIncurred    string          `json:"cost_incurred" maxLength:"15" pattern:"^[0-9]{1,12}\\.[0-9]{2}$" doc:"Decimal string with two decimals"`
	CostCurrency    string          `json:"cost_currency" maxLength:"3" pattern:"^[A-Z]{3}$"`
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
		ProviderID     string         `json:"provider_id" minLength:"1" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$"`
		CheckType      string         `json:"check_type" minLength:"1" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$" doc:"Known types have default freshness windows; others must give fresh_until and stale_until"`
		DataOrigin     string         `json:"data_origin" enum:"paid_external,customer_provided"`
		RawResponse    []byte         `json:"raw_response" doc:"The provider's response, base64 (at most 525,000 bytes)" maxLength:"700000" pattern:"^[A-Za-z0-9+/]*={0,2}$"`
		NormalizedData map[string]any `json:"normalized_data"`
		CostIncurred   cost           `json:"cost_incurred"`
		CostCurrency   string         `json:"cost_currency,omitempty" default:"USD" minLength:"3" maxLength:"3" pattern:"^[A-Z]{3}$"`
		AcquiredAt     *time.Time     `json:"acquired_at,omitempty" doc:"Default: now"`
		FreshUntil     *time.Time     `json:"fresh_until,omitempty"`
		StaleUntil     *time.Time     `json:"stale_until,omitempty"`
	}
}

type cacheOutput struct{ Body CacheOut }

// cost is cost_incurred as sent: a decimal string or a JSON number.
type cost struct{ raw json.RawMessage }

// UnmarshalJSON keeps the value as sent, for the service to parse.
func (c *cost) UnmarshalJSON(b []byte) error {
	c.raw = append(c.raw[:0], b...)
	return nil
}

// value is the string or number sent (nil when it is neither).
func (c cost) value() any {
	var v any
	if json.Unmarshal(c.raw, &v) != nil {
		return nil
	}
	return v
}

// Schema is either form: the service checks the decimals of a number.
func (cost) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Description: "A decimal string with at most 2 decimals (a JSON number is accepted too), from 0 to 999999999999.99",
		AnyOf: []*huma.Schema{
			{Type: huma.TypeString, MaxLength: ptr(15), Pattern: `^[0-9]{1,12}(\.[0-9]{1,2})?$`},
			{Type: huma.TypeNumber, Minimum: ptr(0.0), Maximum: ptr(999999999999.99)},
		}}
}

func handleCacheCreate(svc *sourcecache.Service, now func() time.Time) handlerFunc[createCacheInput, created[CacheOut]] {
	return func(ctx context.Context, in *createCacheInput) (*created[CacheOut], error) {
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		b := in.Body
		e, err := svc.Add(ctx, scopeOf(ctx), eid, sourcecache.NewEntry{ProviderID: b.ProviderID, CheckType: b.CheckType,
			Origin: b.DataOrigin, RawResponse: b.RawResponse, NormalizedData: b.NormalizedData, Cost: b.CostIncurred.value(),
			Currency: b.CostCurrency, AcquiredAt: b.AcquiredAt, FreshUntil: b.FreshUntil, StaleUntil: b.StaleUntil})
		if err != nil {
			return nil, err
		}
		return &created[CacheOut]{Location: "/v1/entities/" + eid.String() + "/cache/" + e.ID.String(), Body: cacheOut(e, now())}, nil
	}
}

type listCacheInput struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	CheckType  string `query:"check_type" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$"`
	ProviderID string `query:"provider_id" maxLength:"100" pattern:"^[a-z0-9_.-]{1,100}$"`
	IncludeRaw bool   `query:"include_raw" doc:"Include raw_response; needs pii:read"`
	ListParams
}

type cacheListOutput struct{ Body Page[CacheOut] }

func handleCacheList(svc *sourcecache.Service, now func() time.Time) handlerFunc[listCacheInput, cacheListOutput] {
	return func(ctx context.Context, in *listCacheInput) (*cacheListOutput, error) {
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
		es, more, err := svc.List(ctx, scopeOf(ctx), eid, sourcecache.Filter{CheckType: in.CheckType, ProviderID: in.ProviderID}, in.IncludeRaw, after, in.Limit)
		if err != nil {
			return nil, err
		}
		at := now()
		return &cacheListOutput{Body: pageOf(es, more, func(e sourcecache.Entry) uuid.UUID { return e.ID },
			func(e sourcecache.Entry) CacheOut { return cacheOut(e, at) })}, nil
	}
}

type getCacheInput struct {
	EntityID   string `path:"entity_id" format:"uuid"`
	CacheID    string `path:"cache_id" format:"uuid"`
	IncludeRaw bool   `query:"include_raw" doc:"Include raw_response; needs pii:read"`
}

func handleCacheGet(svc *sourcecache.Service, now func() time.Time) handlerFunc[getCacheInput, cacheOutput] {
	return func(ctx context.Context, in *getCacheInput) (*cacheOutput, error) {
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
		e, err := svc.Get(ctx, scopeOf(ctx), eid, cid, in.IncludeRaw)
		if err != nil {
			return nil, err
		}
		return &cacheOutput{Body: cacheOut(e, now())}, nil
	}
}
