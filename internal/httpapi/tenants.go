package httpapi

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// TenantOut is a tenant in responses.
type TenantOut struct {
	TenantID  string         `json:"tenant_id" format:"uuid"`
	Name      string         `json:"name" maxLength:"200"`
	Slug      string         `json:"slug" maxLength:"63" pattern:"^[a-z0-9-]{3,63}$"`
	Locale    string         `json:"locale" maxLength:"35" pattern:"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"`
	Active    bool           `json:"active"`
	Config    map[string]any `json:"config"`
	LegalHold bool           `json:"legal_hold" doc:"A legal hold blocks the tenant's erasure"`
	BYOK      bool           `json:"byok" doc:"The tenant's data keys are wrapped by a key it brought (byok_key)"`
	Erasing   *time.Time     `json:"erasure_started_at,omitempty" doc:"Set while the tenant is being erased"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

func tenantOut(t tenant.Tenant) TenantOut {
	cfg := t.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	out := TenantOut{TenantID: t.ID.String(), Name: t.Name, Slug: t.Slug, Locale: t.Locale, Active: t.Active,
		Config: cfg, LegalHold: t.LegalHold, BYOK: t.BYOK, CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC()}
	if !t.Erasing.IsZero() {
		e := t.Erasing.UTC()
		out.Erasing = &e
	}
	return out
}

type tenantOutput struct{ Body TenantOut }

type createTenantInput struct {
	Body struct {
		Name   string         `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Display name"`
		Slug   string         `json:"slug,omitempty" minLength:"3" maxLength:"63" pattern:"^[a-z0-9-]{3,63}$" doc:"3–63 of a-z, 0-9 and -; derived from the name when absent"`
		Locale string         `json:"locale,omitempty" default:"US" minLength:"2" maxLength:"35" pattern:"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"`
		Config map[string]any `json:"config,omitempty" doc:"Tenant settings (no personal data); at most 64 KiB as JSON"`
		BYOK   string         `json:"byok_key,omitempty" maxLength:"2048" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Bring your own key: a key the tenant controls in the key provider (a PKCS#11 key label, or a KMS key id, ARN or alias) that wraps its data keys from the start. Empty: a key elile makes."`
	}
}

func handleTenantCreate(svc *tenancy.Service) handlerFunc[createTenantInput, created[TenantOut]] {
	return func(ctx context.Context, in *createTenantInput) (*created[TenantOut], error) {
		c, err := svc.Create(ctx, tenancy.NewTenant{Name: in.Body.Name, Slug: in.Body.Slug, Locale: in.Body.Locale, Config: in.Body.Config,
			KEKRef: in.Body.BYOK})
		if err != nil {
			return nil, err
		}
		return &created[TenantOut]{Location: "/v1/tenants/" + c.Tenant.ID.String(), Body: tenantOut(c.Tenant)}, nil
	}
}

type tenantPath struct {
	TenantID string `path:"tenant_id" format:"uuid"`
}

func handleTenantGet(svc *tenancy.Service) handlerFunc[tenantPath, tenantOutput] {
	return func(ctx context.Context, in *tenantPath) (*tenantOutput, error) {
		id, err := tenant.ParseID(in.TenantID)
		if err != nil {
			return nil, tenant.ErrNotFound
		}
		t, err := svc.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}

type tenantListOutput struct{ Body Page[TenantOut] }

func handleTenantList(svc *tenancy.Service) handlerFunc[ListParams, tenantListOutput] {
	return func(ctx context.Context, in *ListParams) (*tenantListOutput, error) {
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		ts, err := svc.List(ctx, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		return &tenantListOutput{Body: page(ts, in.Limit, func(t tenant.Tenant) uuid.UUID { return t.ID.UUID() }, tenantOut)}, nil
	}
}

type updateTenantInput struct {
	TenantID string `path:"tenant_id" format:"uuid"`
	Body     struct {
		Name      *string        `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
		Locale    *string        `json:"locale,omitempty" minLength:"2" maxLength:"35" pattern:"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"`
		Active    *bool          `json:"active,omitempty" doc:"false deactivates the tenant: its credentials get 403 within a second"`
		Config    map[string]any `json:"config,omitempty" doc:"Replaces the whole config"`
		LegalHold *bool          `json:"legal_hold,omitempty" doc:"true blocks the tenant's erasure until set false again"`
		BYOK      *string        `json:"byok_key,omitempty" maxLength:"2048" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Bring your own key: a key the tenant controls in the key provider (a PKCS#11 key label, or a KMS key id, ARN or alias) that wraps its data keys from now on, re-wrapped online. Empty: back to a key elile makes. The tenant can then erase its data by destroying its key."`
	}
}

func handleTenantUpdate(svc *tenancy.Service, cache *tenantCache) handlerFunc[updateTenantInput, tenantOutput] {
	return func(ctx context.Context, in *updateTenantInput) (*tenantOutput, error) {
		id, err := tenant.ParseID(in.TenantID)
		if err != nil {
			return nil, tenant.ErrNotFound
		}
		b := in.Body
		t, err := svc.Update(ctx, id, tenant.Patch{Name: b.Name, Locale: b.Locale, Active: b.Active, Config: b.Config, LegalHold: b.LegalHold, KEKRef: b.BYOK})
		if err != nil {
			return nil, err
		}
		cache.forget(id)
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}

type eraseTenantInput struct {
	TenantID string `path:"tenant_id" format:"uuid"`
	Body     struct {
		Confirm string `json:"confirm" minLength:"3" maxLength:"63" pattern:"^[a-z0-9-]{3,63}$" doc:"The tenant's slug, to confirm the erasure"`
	}
}

// ErasureOut reports a tenant's erasure.
type ErasureOut struct {
	TenantID      string `json:"tenant_id" format:"uuid"`
	KeysDestroyed bool   `json:"keys_destroyed" doc:"The key provider destroyed the tenant's keys: no copy of its encrypted data can be decrypted any more. False with the local provider (development) or a key the tenant brought (the tenant destroys it)."`
	Done          bool   `json:"done" doc:"Every row is deleted; false: the server's sweeper deletes the rest"`
	RowsDeleted   int64  `json:"rows_deleted" minimum:"0" maximum:"9007199254740991"`
}

type erasureOutput struct{ Body ErasureOut }

func handleTenantErase(svc *tenancy.Service, cache *tenantCache) handlerFunc[eraseTenantInput, erasureOutput] {
	return func(ctx context.Context, in *eraseTenantInput) (*erasureOutput, error) {
		id, err := tenant.ParseID(in.TenantID)
		if err != nil {
			return nil, tenant.ErrNotFound
		}
		// Rows are deleted while the request's time lasts; the sweeper
		// finishes a large tenant.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		e, err := svc.Erase(rctx, id, in.Body.Confirm, "api")
		cache.forget(id)
		if err != nil {
			return nil, err
		}
		return &erasureOutput{Body: ErasureOut{TenantID: id.String(), KeysDestroyed: e.KeysDestroyed, Done: e.Done, RowsDeleted: e.RowsDeleted}}, nil
	}
}

type ownTenantInput struct{}

func handleOwnTenant(svc *tenancy.Service) handlerFunc[ownTenantInput, tenantOutput] {
	return func(ctx context.Context, _ *ownTenantInput) (*tenantOutput, error) {
		id, ok := tenant.ScopeFrom(ctx)
		if !ok {
			return nil, apperr.New(apperr.Internal, "NO_TENANT_SCOPE", "no tenant scope")
		}
		t, err := svc.Get(ctx, id.Tenant())
		if err != nil {
			return nil, err
		}
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}
