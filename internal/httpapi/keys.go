package httpapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
)

// KeyOut is an API key in responses; Secret only in the create response.
type KeyOut struct {
	KeyID      string     `json:"key_id" format:"uuid"`
	TenantID   *string    `json:"tenant_id" format:"uuid" doc:"null for a platform-admin key"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix" doc:"The secret's first characters, to recognise it"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Secret     string     `json:"secret,omitempty" doc:"Shown once, at creation; only its hash is stored"`
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
		Name      string     `json:"name" minLength:"1" maxLength:"200"`
		Scopes    []string   `json:"scopes" minItems:"1" maxItems:"20" uniqueItems:"true"`
		ExpiresAt *time.Time `json:"expires_at,omitempty" doc:"When the key stops working (RFC 3339, in the future)"`
	}
}

type keyOutput struct{ Body KeyOut }

func handleKeyCreate(d Deps) handlerFunc[createKeyInput, keyOutput] {
	return func(ctx context.Context, in *createKeyInput) (*keyOutput, error) {
		tid := scopeOf(ctx).Tenant()
		p, _ := auth.PrincipalFrom(ctx)
		var bad []ProblemItem
		for i, s := range in.Body.Scopes {
			switch {
			case !auth.ValidScope(s):
				bad = append(bad, ProblemItem{Location: fmt.Sprintf("body.scopes[%d]", i), Message: fmt.Sprintf("unknown scope %q; known: %s", s, strings.Join(auth.AllScopes(), ", "))})
			case s == auth.ScopePlatformAdmin:
				bad = append(bad, ProblemItem{Location: fmt.Sprintf("body.scopes[%d]", i), Message: "platform-admin keys are made with `elile apikey create --platform-admin`"})
			}
		}
		if in.Body.ExpiresAt != nil && !in.Body.ExpiresAt.After(time.Now()) {
			bad = append(bad, ProblemItem{Location: "body.expires_at", Message: "must be in the future"})
		}
		if len(bad) > 0 {
			return nil, invalidFields(bad...)
		}
		for _, s := range in.Body.Scopes {
			if !p.Has(s) {
				return nil, errPermission.Withf("cannot grant %s: the caller does not hold it", s)
			}
		}
		secret, hash, prefix := auth.NewKeySecret()
		k := auth.Key{ID: uuid.Must(uuid.NewV7()), Tenant: tid, Name: strings.TrimSpace(in.Body.Name), Prefix: prefix,
			Scopes: slices.Clone(in.Body.Scopes), CreatedBy: p.UserID()}
		if in.Body.ExpiresAt != nil {
			k.ExpiresAt = *in.Body.ExpiresAt
		}
		ev := audit.New(ctx, audit.APIKeyCreated, tid).With("api_key", k.ID.String(), uuid.Nil,
			map[string]any{"scopes": k.Scopes, "prefix": prefix})
		out, err := d.Keys.CreateKey(ctx, k, hash, ev)
		if err != nil {
			return nil, err
		}
		o := keyOut(out)
		o.Secret = secret
		return &keyOutput{Body: o}, nil
	}
}

type keyListOutput struct{ Body Page[KeyOut] }

func handleKeyList(d Deps) handlerFunc[ListParams, keyListOutput] {
	return func(ctx context.Context, in *ListParams) (*keyListOutput, error) {
		tid := scopeOf(ctx).Tenant()
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		ks, err := d.Keys.Keys(ctx, tid, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		outs := make([]KeyOut, len(ks))
		for i, k := range ks {
			outs[i] = keyOut(k)
		}
		return &keyListOutput{Body: page(outs, in.Limit, func(k KeyOut) uuid.UUID { return uuid.MustParse(k.KeyID) })}, nil
	}
}

type keyPath struct {
	KeyID string `path:"key_id" format:"uuid"`
}

type noContent struct{}

func handleKeyRevoke(d Deps) handlerFunc[keyPath, noContent] {
	return func(ctx context.Context, in *keyPath) (*noContent, error) {
		tid := scopeOf(ctx).Tenant()
		id, err := uuid.Parse(in.KeyID)
		if err != nil {
			return nil, auth.ErrKeyNotFound
		}
		ev := audit.New(ctx, audit.APIKeyRevoked, tid).With("api_key", id.String(), uuid.Nil, nil)
		if err := d.Keys.RevokeKey(ctx, tid, id, ev); err != nil {
			return nil, err
		}
		return &noContent{}, nil
	}
}
