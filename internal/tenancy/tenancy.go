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
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/compactjson"
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
	// DestroyTenantKeys destroys every KEK of t in the key provider (a
	// key the tenant brought is only marked: the tenant destroys it) and
	// marks them destroyed; it reports whether the provider destroyed them
	// (false with the local provider, which cannot).
	DestroyTenantKeys(ctx context.Context, t tenant.ID) (bool, error)
	// DeleteTenantRows deletes at most limit of t's rows (entities and
	// everything under them, cached data, API keys), reporting how many.
	DeleteTenantRows(ctx context.Context, t tenant.ID, limit int) (int64, error)
	// Erased reports whether t's keys were destroyed (its erasure ran).
	Erased(ctx context.Context, t tenant.ID) (bool, error)
	// SetTenantKEK gives t a new KEK version — ref, a key it brings, or a
	// key made for it when ref is "" — and re-wraps its data keys under it
	// (ErrKEKNotUsable when ref cannot be found or used).
	SetTenantKEK(ctx context.Context, t tenant.ID, ref string) error
}

// Tx is the work a tenancy unit of work can do.
type Tx interface {
	// InsertTenant stores t with its keys — wrapped by kekRef, a key the
	// tenant brings, when not empty (ErrKEKNotUsable if the provider cannot
	// use it) — timestamps filled in when it is sent; a taken slug fails the
	// unit of work with tenant.ErrSlugTaken.
	InsertTenant(ctx context.Context, t *tenant.Tenant, kekRef string) error
	// UpdateTenant applies p: tenant.ErrNotFound if there is no such tenant.
	UpdateTenant(ctx context.Context, id tenant.ID, p tenant.Patch) (tenant.Tenant, error)
	// InsertKey stores k with the hash of its secret (never the secret).
	InsertKey(ctx context.Context, k *auth.Key, hash []byte) error
	// RevokeKey revokes a key of tenant t, reporting whether it was
	// revoked already: auth.ErrKeyNotFound if t has no such key.
	RevokeKey(ctx context.Context, t tenant.ID, id uuid.UUID) (already bool, err error)
	// AppendAudit records ev in the same transaction.
	AppendAudit(ctx context.Context, ev audit.Event) error
	// BeginErasure deactivates t and marks its erasure as started (kept if
	// it was): ErrLegalHold when t is under a legal hold.
	BeginErasure(ctx context.Context, t tenant.ID) error
	// DeleteTenant deletes t's row (its other rows must be gone).
	DeleteTenant(ctx context.Context, t tenant.ID) error
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
	// KEKRef is a key the tenant brings (BYOK) to wrap its data keys from
	// the start; empty: a key elile makes.
	KEKRef string
}

// Created is what Create made; Secret is the admin key's, shown once.
type Created struct {
	Tenant tenant.Tenant
	Key    auth.Key
	Secret string
}

// CheckConfig reports what is wrong with a tenant's config (its size as
// JSON), as Create and Update do: the HTTP layer runs it with the schema.
func CheckConfig(cfg map[string]any) []apperr.Field { return checkConfig(cfg) }

func checkConfig(cfg map[string]any) []apperr.Field {
	if cfg == nil {
		return nil
	}
	if b, err := compactjson.Marshal(cfg); err != nil || len(b) > MaxConfigBytes {
		return []apperr.Field{{Path: "config", Message: fmt.Sprintf("a JSON object of at most %d bytes as compact JSON", MaxConfigBytes)}}
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
		if err := tx.InsertTenant(ctx, &out.Tenant, in.KEKRef); err != nil {
			if errors.Is(err, ErrKEKNotUsable) {
				return apperr.Fields(apperr.Field{Path: "byok_key", Message: err.Error()})
			}
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
	if p.Name == nil && p.Locale == nil && p.Active == nil && p.Config == nil && p.LegalHold == nil && p.KEKRef == nil {
		return tenant.Tenant{}, apperr.Fields(apperr.Field{Path: "", Message: "give at least one of name, locale, active, config, legal_hold, byok_key"})
	}
	if p.Active != nil && *p.Active {
		if cur, err := s.store.Tenant(ctx, id); err == nil && !cur.Erasing.IsZero() {
			return tenant.Tenant{}, ErrErasing
		}
	}
	if err := apperr.Fields(checkConfig(p.Config)...); err != nil {
		return tenant.Tenant{}, err
	}
	var changed []string
	for name, set := range map[string]bool{"name": p.Name != nil, "locale": p.Locale != nil, "active": p.Active != nil, "config": p.Config != nil,
		"legal_hold": p.LegalHold != nil, "byok_key": p.KEKRef != nil} {
		if set {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	data := map[string]any{"changed": changed}
	if p.Active != nil {
		data["active"] = *p.Active
	}
	if p.LegalHold != nil {
		data["legal_hold"] = *p.LegalHold
	}
	if p.KEKRef != nil {
		// The key is the tenant's from here on: its data keys are re-wrapped
		// under it before anything else changes (online; data is not
		// re-encrypted). A key that cannot be used changes nothing.
		if err := s.store.SetTenantKEK(ctx, id, *p.KEKRef); err != nil {
			if errors.Is(err, ErrKEKNotUsable) {
				return tenant.Tenant{}, apperr.Fields(apperr.Field{Path: "byok_key", Message: err.Error()})
			}
			return tenant.Tenant{}, err
		}
		data["byok_key"] = *p.KEKRef
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

// Errors of erasure.
var (
	ErrLegalHold = apperr.New(apperr.Conflict, "LEGAL_HOLD", "the tenant is under a legal hold: lift it (PATCH legal_hold=false) before erasing")
	ErrErasing   = apperr.New(apperr.Conflict, "TENANT_ERASING", "the tenant is being erased and cannot be reactivated")
	// ErrKEKNotUsable: a key a tenant brings that the provider cannot find
	// or use.
	ErrKEKNotUsable = apperr.New(apperr.Invalid, "KEK_NOT_USABLE", "the key-encryption key cannot be found or used by the key provider")
)

// Erasure reports a tenant's erasure.
type Erasure struct {
	Tenant        tenant.ID
	KeysDestroyed bool  // the provider destroyed the KEKs (false: local provider, or a key the tenant brought)
	RowsDeleted   int64 // by this call
	Done          bool  // every row is gone; false: run it again (or wait for the server's sweeper)
}

// EraseBatch is how many rows one step of an erasure deletes.
const EraseBatch = 5000

// Erase erases tenant id, in an order that survives interruption: the
// tenant is deactivated and its erasure recorded (platform audit chain),
// its KEKs are destroyed — from then on nothing encrypted for it can be
// decrypted, in this database or any copy of it — and its rows are deleted
// in batches, then the tenant itself. confirm must be the tenant's slug.
// Running it again continues an interrupted erasure (rows stops early
// when ctx ends: Done is false then); on an erased tenant it reports Done.
func (s *Service) Erase(ctx context.Context, id tenant.ID, confirm, via string) (Erasure, error) {
	out := Erasure{Tenant: id}
	t, err := s.store.Tenant(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		if erased, eerr := s.store.Erased(ctx, id); eerr == nil && erased {
			out.Done = true
			return out, nil
		}
	}
	if err != nil {
		return out, err
	}
	if confirm != t.Slug {
		return out, apperr.Fields(apperr.Field{Path: "confirm", Message: "must be the tenant's slug, to confirm the erasure"})
	}
	if t.LegalHold {
		return out, ErrLegalHold
	}
	data := map[string]any{"stage": "started", "slug": t.Slug}
	if via != "" {
		data["via"] = via
	}
	ev := audit.New(ctx, audit.TenantErased, tenant.ID{}).With("tenant", id.String(), uuid.Nil, data)
	ev.Severity = audit.Warning
	if err := s.store.InScope(ctx, tenant.Platform(), func(tx Tx) error {
		if err := tx.BeginErasure(ctx, id); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	}); err != nil {
		return out, err
	}
	if out.KeysDestroyed, err = s.store.DestroyTenantKeys(ctx, id); err != nil {
		return out, fmt.Errorf("destroy the tenant's keys (run the erasure again): %w", err)
	}
	return s.finishErasure(ctx, id, out)
}

func (s *Service) finishErasure(ctx context.Context, id tenant.ID, out Erasure) (Erasure, error) {
	for ctx.Err() == nil {
		n, err := s.store.DeleteTenantRows(ctx, id, EraseBatch)
		if err != nil {
			return out, err
		}
		out.RowsDeleted += n
		if n > 0 {
			continue
		}
		ev := audit.New(ctx, audit.TenantErased, tenant.ID{}).With("tenant", id.String(), uuid.Nil,
			map[string]any{"stage": "done", "keys_destroyed_by_provider": out.KeysDestroyed})
		ev.Severity = audit.Warning
		err = s.store.InScope(ctx, tenant.Platform(), func(tx Tx) error {
			if err := tx.DeleteTenant(ctx, id); err != nil {
				return err
			}
			return tx.AppendAudit(ctx, ev)
		})
		out.Done = err == nil
		return out, err
	}
	return out, nil
}

// FinishErasures continues every erasure that started and did not finish
// (the server's sweeper, under a leader lock): their keys are destroyed
// already, what is left is deleting rows.
func (s *Service) FinishErasures(ctx context.Context, pending func(context.Context) ([]tenant.ID, error)) error {
	ids, err := pending(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		destroyed, err := s.store.DestroyTenantKeys(ctx, id) // idempotent: an interrupted erasure may have stopped before
		if err != nil {
			return err
		}
		if _, err := s.finishErasure(ctx, id, Erasure{Tenant: id, KeysDestroyed: destroyed}); err != nil {
			return err
		}
	}
	return nil
}
