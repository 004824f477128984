package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

// TenantStore keeps tenants.
type TenantStore interface {
	CreateTenant(ctx context.Context, t tenant.Tenant, ev audit.Event) (tenant.Tenant, error)
	Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error)
	Tenants(ctx context.Context, after uuid.UUID, limit int) ([]tenant.Tenant, error)
	UpdateTenant(ctx context.Context, id tenant.ID, p tenant.Patch, ev audit.Event) (tenant.Tenant, error)
}

// KeyStore keeps API keys.
type KeyStore interface {
	CreateKey(ctx context.Context, k auth.Key, hash []byte, ev audit.Event) (auth.Key, error)
	Keys(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]auth.Key, error)
	RevokeKey(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error
}

// TenantOut is a tenant in responses.
type TenantOut struct {
	TenantID  string         `json:"tenant_id" format:"uuid"`
	Name      string         `json:"name"`
	Slug      string         `json:"slug"`
	Locale    string         `json:"locale"`
	Active    bool           `json:"active"`
	Config    map[string]any `json:"config"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

func tenantOut(t tenant.Tenant) TenantOut {
	cfg := t.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	return TenantOut{TenantID: t.ID.String(), Name: t.Name, Slug: t.Slug, Locale: t.Locale, Active: t.Active,
		Config: cfg, CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC()}
}

type tenantOutput struct{ Body TenantOut }

type createTenantInput struct {
	Body struct {
		Name   string         `json:"name" minLength:"1" maxLength:"200" doc:"Display name"`
		Slug   string         `json:"slug,omitempty" pattern:"^[a-z0-9-]{3,63}$" doc:"3–63 of a-z, 0-9 and -; derived from the name when absent"`
		Locale string         `json:"locale,omitempty" default:"US" minLength:"2" maxLength:"35" pattern:"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"`
		Config map[string]any `json:"config,omitempty" doc:"Tenant settings (no personal data); at most 64 KiB as JSON"`
	}
}

const maxConfigBytes = 64 << 10

func checkConfig(cfg map[string]any) error {
	if cfg == nil {
		return nil
	}
	b, err := json.Marshal(cfg)
	if err != nil || len(b) > maxConfigBytes {
		return invalidFields(ProblemItem{Location: "body.config", Message: "config must be a JSON object of at most 64 KiB"})
	}
	return nil
}

var slugStrip = regexp.MustCompile(`[^a-z0-9]+`) //nolint:gochecknoglobals // compiled once

// slugFor derives a slug from a name: lower case, runs of anything else
// become "-"; too short, and a random suffix makes it long enough.
func slugFor(name string) string {
	s := strings.Trim(slugStrip.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	if len(s) < 3 {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		s = strings.Trim(s+"-"+hex.EncodeToString(b), "-")
	}
	return s
}

func handleTenantCreate(d Deps) handlerFunc[createTenantInput, tenantOutput] {
	return func(ctx context.Context, in *createTenantInput) (*tenantOutput, error) {
		if err := checkConfig(in.Body.Config); err != nil {
			return nil, err
		}
		t := tenant.Tenant{ID: tenant.NewID(), Name: strings.TrimSpace(in.Body.Name), Slug: in.Body.Slug,
			Locale: in.Body.Locale, Active: true, Config: in.Body.Config}
		if t.Slug == "" {
			t.Slug = slugFor(t.Name)
		}
		if t.Locale == "" {
			t.Locale = "US"
		}
		ev := audit.New(ctx, audit.TenantCreated, t.ID).With("tenant", t.ID.String(), uuid.Nil,
			map[string]any{"slug": t.Slug, "locale": t.Locale})
		out, err := d.Tenants.CreateTenant(ctx, t, ev)
		if err != nil {
			return nil, err
		}
		return &tenantOutput{Body: tenantOut(out)}, nil
	}
}

type tenantPath struct {
	TenantID string `path:"tenant_id" format:"uuid"`
}

func handleTenantGet(d Deps) handlerFunc[tenantPath, tenantOutput] {
	return func(ctx context.Context, in *tenantPath) (*tenantOutput, error) {
		id, err := tenant.ParseID(in.TenantID)
		if err != nil {
			return nil, tenant.ErrNotFound
		}
		t, err := d.Tenants.Tenant(ctx, id)
		if err != nil {
			return nil, err
		}
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}

type tenantListOutput struct{ Body Page[TenantOut] }

func handleTenantList(d Deps) handlerFunc[ListParams, tenantListOutput] {
	return func(ctx context.Context, in *ListParams) (*tenantListOutput, error) {
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		ts, err := d.Tenants.Tenants(ctx, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		outs := make([]TenantOut, len(ts))
		for i, t := range ts {
			outs[i] = tenantOut(t)
		}
		return &tenantListOutput{Body: page(outs, in.Limit, func(t TenantOut) uuid.UUID { return uuid.MustParse(t.TenantID) })}, nil
	}
}

type updateTenantInput struct {
	TenantID string `path:"tenant_id" format:"uuid"`
	Body     struct {
		Name   *string        `json:"name,omitempty" minLength:"1" maxLength:"200"`
		Locale *string        `json:"locale,omitempty" minLength:"2" maxLength:"35" pattern:"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"`
		Active *bool          `json:"active,omitempty" doc:"false deactivates the tenant: its credentials get 403 within a second"`
		Config map[string]any `json:"config,omitempty" doc:"Replaces the whole config"`
	}
}

func handleTenantUpdate(d Deps, cache *tenantCache) handlerFunc[updateTenantInput, tenantOutput] {
	return func(ctx context.Context, in *updateTenantInput) (*tenantOutput, error) {
		id, err := tenant.ParseID(in.TenantID)
		if err != nil {
			return nil, tenant.ErrNotFound
		}
		b := in.Body
		if b.Name == nil && b.Locale == nil && b.Active == nil && b.Config == nil {
			return nil, invalidFields(ProblemItem{Location: "body", Message: "give at least one of name, locale, active, config"})
		}
		if err := checkConfig(b.Config); err != nil {
			return nil, err
		}
		var changed []string
		data := map[string]any{}
		for name, set := range map[string]bool{"name": b.Name != nil, "locale": b.Locale != nil, "active": b.Active != nil, "config": b.Config != nil} {
			if set {
				changed = append(changed, name)
			}
		}
		slices.Sort(changed)
		data["changed"] = changed
		if b.Active != nil {
			data["active"] = *b.Active
		}
		ev := audit.New(ctx, audit.ConfigChanged, id).With("tenant", id.String(), uuid.Nil, data)
		if b.Active != nil && !*b.Active {
			ev.Severity = audit.Warning
		}
		t, err := d.Tenants.UpdateTenant(ctx, id, tenant.Patch{Name: b.Name, Locale: b.Locale, Active: b.Active, Config: b.Config}, ev)
		if err != nil {
			return nil, err
		}
		cache.forget(id)
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}

type ownTenantInput struct{}

func handleOwnTenant(d Deps) handlerFunc[ownTenantInput, tenantOutput] {
	return func(ctx context.Context, _ *ownTenantInput) (*tenantOutput, error) {
		id, ok := tenant.ScopeFrom(ctx)
		if !ok {
			return nil, apperr.New(apperr.Internal, "NO_TENANT_SCOPE", "no tenant scope")
		}
		t, err := d.Tenants.Tenant(ctx, id.Tenant())
		if err != nil {
			return nil, err
		}
		return &tenantOutput{Body: tenantOut(t)}, nil
	}
}
