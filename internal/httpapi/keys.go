package httpapi

import (
	"context"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenancy"
)

// KeyOut is an API key in responses; Secret only in the create response.
type KeyOut struct {
	KeyID      string     `json:"key_id" format:"uuid"`
	TenantID   *string    `json:"tenant_id" format:"uuid" doc:"null for a platform-admin key"`
	Name       string     `json:"name" maxLength:"200"`
	Prefix     string     `json:"prefix" pattern:"^elk_[A-Za-z0-9_-]{8}$" maxLength:"12" doc:"The secret's first characters, to recognise it"`
	Scopes     heldScopes `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Secret     string     `json:"secret,omitempty" pattern:"^elk_[A-Za-z0-9_-]{43}$" maxLength:"47" doc:"Shown once, at creation; only its hash is stored"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func keyOut(k auth.Key) KeyOut {
	o := KeyOut{KeyID: k.ID.String(), Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, CreatedAt: k.CreatedAt.UTC(),
		ExpiresAt: timePtr(k.ExpiresAt), LastUsedAt: timePtr(k.LastUsedAt), RevokedAt: timePtr(k.RevokedAt)}
	if !k.Tenant.IsZero() {
		s := k.Tenant.String()
		o.TenantID = &s
	}
	if o.Scopes == nil {
		o.Scopes = []string{}
	}
	return o
}

type createKeyInput struct {
	Body struct {
		Name      string      `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
		Scopes    grantScopes `json:"scopes"`
		ExpiresAt *time.Time  `json:"expires_at,omitempty" doc:"When the key stops working (RFC 3339, in the future)"`
	}
}

// grantScopes are the scopes a new key is given: any of a tenant's, each
// once (platform-admin keys are made with `elile apikey create
// --platform-admin`, never through the API).
type grantScopes []string

// Schema lists the scopes from the auth package, so the document cannot
// drift from what the server grants.
func (grantScopes) Schema(huma.Registry) *huma.Schema {
	return scopesSchema(auth.GrantableScopes(), 1, "The key's scopes; tenant:admin grants every scope of the tenant.")
}

// heldScopes are a key's scopes in responses: a platform-admin key holds
// platform:admin.
type heldScopes []string

// Schema lists every scope.
func (heldScopes) Schema(huma.Registry) *huma.Schema {
	return scopesSchema(auth.AllScopes(), 0, "")
}

func scopesSchema(scopes []string, minItems int, doc string) *huma.Schema {
	return enumListSchema(scopes, ptr(minItems), doc)
}

// enumListSchema is a list of distinct values from values (at least
// minItems when not nil): the bounds the document shows and huma enforces.
func enumListSchema(values []string, minItems *int, doc string) *huma.Schema {
	enum := make([]any, len(values))
	longest := 0
	for i, s := range values {
		enum[i] = s
		longest = max(longest, len(s))
	}
	return &huma.Schema{Type: huma.TypeArray, Description: doc, MinItems: minItems, MaxItems: ptr(len(values)), UniqueItems: true,
		Items: &huma.Schema{Type: huma.TypeString, Enum: enum, MaxLength: ptr(longest)}}
}

func handleKeyCreate(svc *tenancy.Service) handlerFunc[createKeyInput, created[KeyOut]] {
	return func(ctx context.Context, in *createKeyInput) (*created[KeyOut], error) {
		nk := tenancy.NewKey{Name: in.Body.Name, Scopes: in.Body.Scopes}
		if in.Body.ExpiresAt != nil {
			nk.ExpiresAt = *in.Body.ExpiresAt
		}
		k, secret, err := svc.CreateKey(ctx, scopeOf(ctx).Tenant(), nk)
		if err != nil {
			return nil, err
		}
		o := keyOut(k)
		o.Secret = secret
		// The key's own path is where it is revoked (DELETE); keys are
		// read through the list.
		return &created[KeyOut]{Location: "/v1/api-keys/" + k.ID.String(), Body: o}, nil
	}
}

type keyListOutput struct{ Body Page[KeyOut] }

func handleKeyList(svc *tenancy.Service) handlerFunc[ListParams, keyListOutput] {
	return func(ctx context.Context, in *ListParams) (*keyListOutput, error) {
		tid := scopeOf(ctx).Tenant()
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		ks, err := svc.Keys(ctx, tid, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		return &keyListOutput{Body: page(ks, in.Limit, func(k auth.Key) uuid.UUID { return k.ID }, keyOut)}, nil
	}
}

type keyPath struct {
	KeyID string `path:"key_id" format:"uuid"`
}

type noContent struct{}

func handleKeyRevoke(svc *tenancy.Service) handlerFunc[keyPath, noContent] {
	return func(ctx context.Context, in *keyPath) (*noContent, error) {
		tid := scopeOf(ctx).Tenant()
		id, err := uuid.Parse(in.KeyID)
		if err != nil {
			return nil, auth.ErrKeyNotFound
		}
		if err := svc.RevokeKey(ctx, tid, id); err != nil {
			return nil, err
		}
		return &noContent{}, nil
	}
}
