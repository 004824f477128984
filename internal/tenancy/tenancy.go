// Package tenancy is the lifecycle of tenants and their API keys: creating
// a tenant (with its first admin key, atomically), changing and
// deactivating it, creating and revoking keys, and the audit event of
// each. The HTTP API and the CLI both call its Service. (It is not part of
// package tenant because audit and auth, which it uses, import tenant.)
package tenancy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// Store keeps tenants and API keys. postgres implements it.
type Store interface {
	// InScope runs fn in one unit of work in scope sc (tenant.Platform()
	// for tenants themselves and platform keys).
	InScope(ctx context.Context, sc tenant.Scope, fn func(Tx) error) error
	// Tenant returns a tenant: tenant.ErrNotFound otherwise.
	Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error)
	// Tenants lists tenants after the cursor id, at most limit.
	Tenants(ctx context.Context, after uuid.UUID, limit int) ([]tenant.Tenant, error)
	// Keys lists a tenant's keys newest first, after the cursor id.
	Keys(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]auth.Key, error)
}

// Tx is the work a tenancy unit of work can do.
type Tx interface {
	// InsertTenant stores t (timestamps filled in when it is sent); a
	// taken slug fails the unit of work with tenant.ErrSlugTaken.
	InsertTenant(ctx context.Context, t *tenant.Tenant) error
	// UpdateTenant applies p: tenant.ErrNotFound if there is no such tenant.
	UpdateTenant(ctx context.Context, id tenant.ID, p tenant.Patch) (tenant.Tenant, error)
	// InsertKey stores k with the hash of its secret (never the secret).
	InsertKey(ctx context.Context, k *auth.Key, hash []byte) error
	// RevokeKey revokes a key of tenant t, reporting whether it was
	// revoked already: auth.ErrKeyNotFound if t has no such key.
	RevokeKey(ctx context.Context, t tenant.ID, id uuid.UUID) (already bool, err error)
	// AppendAudit records ev in the same transaction.
	AppendAudit(ctx context.Context, ev audit.Event) error
}

// Service owns the rules of tenants and keys.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService returns the tenancy service.
func NewService(store Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now}
}

// MaxConfigBytes bounds a tenant's config, as JSON.
const MaxConfigBytes = 64 << 10

var (
	slugRE    = regexp.MustCompile(`^[a-z0-9-]{3,63}$`) //nolint:gochecknoglobals // compiled once
	slugStrip = regexp.MustCompile(`[^a-z0-9]+`)        //nolint:gochecknoglobals // compiled once
)

// SlugFor derives a slug from a name: lower case, runs of anything else
// become "-", at most 50 characters; shorter than 3, and a random suffix
// makes it long enough.
func SlugFor(name string, random func([]byte)) string {
	s := strings.Trim(slugStrip.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	if len(s) < 3 {
		b := make([]byte, 3)
		random(b)
		s = strings.Trim(s+"-"+hex.EncodeToString(b), "-")
	}
	return s
}

func randomBytes(b []byte) { _, _ = rand.Read(b) }

// NewTenant is the input of Create.
type NewTenant struct {
	ID     tenant.ID // zero: a new one
	Name   string
	Slug   string // empty: derived from the name
	Locale string // empty: US
	Config map[string]any
	// AdminKey also creates the tenant's first tenant:admin key, in the
	// same transaction.
	AdminKey bool
	Via      string // recorded in the audit events ("cli"), empty for the API
}

// Created is what Create made; Secret is the admin key's, shown once.
type Created struct {
	Tenant tenant.Tenant
	Key    auth.Key
	Secret string
}

func checkConfig(cfg map[string]any) []apperr.Field {
	if cfg == nil {
		return nil
	}
	if b, err := json.Marshal(cfg); err != nil || len(b) > MaxConfigBytes {
		return []apperr.Field{{Path: "config", Message: "config must be a JSON object of at most 64 KiB"}}
	}
	return nil
}

// Create makes a tenant and records tenant.created in its log; with
// AdminKey, also its first tenant:admin key and api_key.created, in the
// same transaction. Errors: apperr.Invalid, tenant.ErrSlugTaken.
func (s *Service) Create(ctx context.Context, in NewTenant) (Created, error) {
	t := tenant.Tenant{ID: in.ID, Name: strings.TrimSpace(in.Name), Slug: in.Slug, Locale: in.Locale, Active: true, Config: in.Config}
	if t.ID.IsZero() {
		t.ID = tenant.NewID()
	}
	if t.Slug == "" {
		t.Slug = SlugFor(t.Name, randomBytes)
	}
	if t.Locale == "" {
		t.Locale = "US"
	}
	errs := checkConfig(in.Config)
	if t.Name == "" || len(t.Name) > 200 {
		errs = append(errs, apperr.Field{Path: "name", Message: "1 to 200 characters"})
	}
	if !slugRE.MatchString(t.Slug) {
		errs = append(errs, apperr.Field{Path: "slug", Message: "3 to 63 characters of a-z, 0-9 and -"})
	}
	if err := apperr.Fields(errs...); err != nil {
		return Created{}, err
	}
	data := map[string]any{"slug": t.Slug, "locale": t.Locale}
	if in.Via != "" {
		data["via"] = in.Via
	}
	out := Created{Tenant: t}
	err := s.store.InScope(ctx, tenant.Platform(), func(tx Tx) error {
		if err := tx.InsertTenant(ctx, &out.Tenant); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, audit.New(ctx, audit.TenantCreated, t.ID).With("tenant", t.ID.String(), uuid.Nil, data)); err != nil {
			return err
		}
		if !in.AdminKey {
			return nil
		}
		var err error
		out.Key, out.Secret, err = s.insertKey(ctx, tx, auth.Key{Tenant: t.ID, Name: "initial admin key", Scopes: []string{auth.ScopeTenantAdmin}}, in.Via)
		return err
	})
	if err != nil {
		return Created{}, err
	}
	return out, nil
}

// insertKey gives k an id and a secret and stores it with its event.
func (s *Service) insertKey(ctx context.Context, tx Tx, k auth.Key, via string) (auth.Key, string, error) {
	secret, hash, prefix := auth.NewKeySecret()
	k.ID, k.Prefix = uuid.Must(uuid.NewV7()), prefix
	data := map[string]any{"scopes": k.Scopes, "prefix": prefix}
	if via != "" {
		data["via"] = via
	}
	if err := tx.InsertKey(ctx, &k, hash); err != nil {
		return auth.Key{}, "", err
	}
	err := tx.AppendAudit(ctx, audit.New(ctx, audit.APIKeyCreated, k.Tenant).With("api_key", k.ID.String(), uuid.Nil, data))
	return k, secret, err
}

// Get returns a tenant.
func (s *Service) Get(ctx context.Context, id tenant.ID) (tenant.Tenant, error) {
	return s.store.Tenant(ctx, id)
}

// List lists tenants after the cursor id.
func (s *Service) List(ctx context.Context, after uuid.UUID, limit int) ([]tenant.Tenant, error) {
	return s.store.Tenants(ctx, after, limit)
}

// Update applies p to a tenant and records config.changed (a warning when
// it deactivates the tenant). Errors: apperr.Invalid, tenant.ErrNotFound.
func (s *Service) Update(ctx context.Context, id tenant.ID, p tenant.Patch) (tenant.Tenant, error) {
	if p.Name == nil && p.Locale == nil && p.Active == nil && p.Config == nil {
		return tenant.Tenant{}, apperr.Fields(apperr.Field{Path: "", Message: "give at least one of name, locale, active, config"})
	}
	if err := apperr.Fields(checkConfig(p.Config)...); err != nil {
		return tenant.Tenant{}, err
	}
	var changed []string
	for name, set := range map[string]bool{"name": p.Name != nil, "locale": p.Locale != nil, "active": p.Active != nil, "config": p.Config != nil} {
		if set {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	data := map[string]any{"changed": changed}
	if p.Active != nil {
		data["active"] = *p.Active
	}
	ev := audit.New(ctx, audit.ConfigChanged, id).With("tenant", id.String(), uuid.Nil, data)
	if p.Active != nil && !*p.Active {
		ev.Severity = audit.Warning
	}
	var out tenant.Tenant
	err := s.store.InScope(ctx, tenant.Platform(), func(tx Tx) error {
		var err error
		if out, err = tx.UpdateTenant(ctx, id, p); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	})
	return out, err
}

// NewKey is the input of CreateKey.
type NewKey struct {
	Name      string
	Scopes    []string
	ExpiresAt time.Time // zero: never
	Via       string
}

// CreateKey makes an API key of tenant t (zero: a platform-admin key, which
// only the CLI makes) with what the creator in ctx may grant: a principal
// grants only scopes it holds (the CLI, without one, any). Errors:
// apperr.Invalid, apperr.Forbidden.
func (s *Service) CreateKey(ctx context.Context, t tenant.ID, in NewKey) (auth.Key, string, error) {
	var errs []apperr.Field
	for i, sc := range in.Scopes {
		path := fmt.Sprintf("scopes[%d]", i)
		switch {
		case !auth.ValidScope(sc):
			errs = append(errs, apperr.Field{Path: path, Message: fmt.Sprintf("unknown scope %q; known: %s", sc, strings.Join(auth.AllScopes(), ", "))})
		case sc == auth.ScopePlatformAdmin && !t.IsZero():
			errs = append(errs, apperr.Field{Path: path, Message: "platform-admin keys are made with `elile apikey create --platform-admin`"})
		}
	}
	if !in.ExpiresAt.IsZero() && !in.ExpiresAt.After(s.now()) {
		errs = append(errs, apperr.Field{Path: "expires_at", Message: "must be in the future"})
	}
	if err := apperr.Fields(errs...); err != nil {
		return auth.Key{}, "", err
	}
	p, human := auth.PrincipalFrom(ctx)
	if human {
		for _, sc := range in.Scopes {
			if !p.Has(sc) {
				return auth.Key{}, "", ErrCannotGrant.Withf("cannot grant %s: the caller does not hold it", sc)
			}
		}
	}
	k := auth.Key{Tenant: t, Name: strings.TrimSpace(in.Name), Scopes: slices.Clone(in.Scopes), CreatedBy: p.UserID(), ExpiresAt: in.ExpiresAt}
	sc := tenant.Of(t)
	if t.IsZero() {
		sc = tenant.Platform()
	}
	var secret string
	err := s.store.InScope(ctx, sc, func(tx Tx) error {
		var err error
		k, secret, err = s.insertKey(ctx, tx, k, in.Via)
		return err
	})
	if err != nil {
		return auth.Key{}, "", err
	}
	return k, secret, nil
}

// ErrCannotGrant is a key with a scope its creator does not hold.
var ErrCannotGrant = apperr.New(apperr.Forbidden, "PERMISSION_DENIED", "cannot grant a scope the caller does not hold") //nolint:gochecknoglobals // sentinel

// Keys lists tenant t's keys.
func (s *Service) Keys(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]auth.Key, error) {
	return s.store.Keys(ctx, t, after, limit)
}

// RevokeKey revokes a key of tenant t and records api_key.revoked; revoking
// a revoked key changes and records nothing. Another tenant's key, or none,
// is auth.ErrKeyNotFound.
func (s *Service) RevokeKey(ctx context.Context, t tenant.ID, id uuid.UUID) error {
	return s.store.InScope(ctx, tenant.Of(t), func(tx Tx) error {
		already, err := tx.RevokeKey(ctx, t, id)
		if err != nil || already {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(ctx, audit.APIKeyRevoked, t).With("api_key", id.String(), uuid.Nil, nil))
	})
}
