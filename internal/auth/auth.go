// Package auth decides who is calling: API keys (opaque "elk_" secrets,
// stored only as hashes) and HS256 JWTs, resolved to an immutable Principal
// with a tenant and scopes.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/tenant"
)

// Scopes. tenant:admin holds every tenant scope; platform:admin holds
// everything and may act in any active tenant.
const (
	ScopeEntitiesRead  = "entities:read"
	ScopeEntitiesWrite = "entities:write"
	ScopeEntitiesErase = "entities:erase"
	ScopePIIRead       = "pii:read"
	ScopeProfilesRead  = "profiles:read"
	ScopeProfilesWrite = "profiles:write"
	ScopeCacheRead     = "cache:read"
	ScopeCacheWrite    = "cache:write"
	ScopeAuditRead     = "audit:read"
	ScopeKeysManage    = "keys:manage"
	ScopeWebhooks      = "webhooks:manage"
	ScopeTenantAdmin   = "tenant:admin"
	ScopePlatformAdmin = "platform:admin"
)

// TenantScopes are the scopes tenant:admin implies.
func TenantScopes() []string {
	return []string{ScopeEntitiesRead, ScopeEntitiesWrite, ScopeEntitiesErase, ScopePIIRead, ScopeProfilesRead, ScopeProfilesWrite,
		ScopeCacheRead, ScopeCacheWrite, ScopeAuditRead, ScopeKeysManage, ScopeWebhooks}
}

// GrantableScopes lists the scopes a tenant's key may be given through
// the API: every tenant scope and tenant:admin.
func GrantableScopes() []string { return append(TenantScopes(), ScopeTenantAdmin) }

// AllScopes lists every scope, for validation and documentation.
func AllScopes() []string { return append(TenantScopes(), ScopeTenantAdmin, ScopePlatformAdmin) }

// ScopeDoc says what scope s grants, for the reference (every scope has
// one; a test checks).
func ScopeDoc(s string) string {
	return map[string]string{
		ScopeEntitiesRead:  "read, list and search entities and their relations (identifiers masked)",
		ScopeEntitiesWrite: "create and change entities; create, change and delete relations",
		ScopeEntitiesErase: "erase an entity for good (`DELETE /v1/entities/{id}`): irreversible, so a scope of its own",
		ScopePIIRead:       "see identifiers unmasked (`reveal=true`, `include_raw=true`); every such read is audited as a warning",
		ScopeProfilesRead:  "read risk profiles and their deltas",
		ScopeProfilesWrite: "create profile versions",
		ScopeCacheRead:     "read cached provider results",
		ScopeCacheWrite:    "add provider results to the cache",
		ScopeAuditRead:     "read, export and verify the tenant's audit log",
		ScopeKeysManage:    "create, list and revoke the tenant's API keys (never with more scopes than the caller holds)",
		ScopeWebhooks:      "manage the tenant's webhook endpoints, their secrets and deliveries",
		ScopeTenantAdmin:   "every scope above, in the credential's own tenant — including `pii:read` and `entities:erase`: give it to people and programs that need all of it",
		ScopePlatformAdmin: "everything, in any active tenant (with `X-Tenant-ID`), plus the tenant routes and platform-shared entities; API keys only by `elile apikey create --platform-admin`, JWTs only when `JWT_ALLOW_PLATFORM_ADMIN` is set",
	}[s]
}

// ValidScope reports whether s is a known scope.
func ValidScope(s string) bool { return slices.Contains(AllScopes(), s) }

// ActorType says what kind of actor a principal is.
type ActorType string

// Actor types.
const (
	ActorHuman   ActorType = "human"   // a user, by JWT
	ActorService ActorType = "service" // a program, by API key
	ActorSystem  ActorType = "system"  // elile itself
)

// Principal is an authenticated caller. It is immutable.
type Principal struct {
	credential string
	keyID      uuid.UUID
	userID     uuid.UUID
	actor      ActorType
	tenant     tenant.ID
	scopes     []string
	expires    time.Time
}

// NewPrincipal returns a principal; scopes are copied.
func NewPrincipal(credential string, keyID, userID uuid.UUID, actor ActorType, t tenant.ID, scopes []string, expires time.Time) Principal {
	return Principal{credential: credential, keyID: keyID, userID: userID, actor: actor, tenant: t,
		scopes: slices.Clone(scopes), expires: expires}
}

// Credential identifies the credential (not the user): rate limits and
// idempotency keys are scoped to it.
func (p Principal) Credential() string { return p.credential }

// KeyID is the API key's id (uuid.Nil for a JWT).
func (p Principal) KeyID() uuid.UUID { return p.keyID }

// UserID is the JWT's subject, or the key's id for an API key.
func (p Principal) UserID() uuid.UUID { return p.userID }

// Actor is human for JWTs, service for API keys.
func (p Principal) Actor() ActorType { return p.actor }

// Tenant is the credential's tenant (zero for a platform-admin key).
func (p Principal) Tenant() tenant.ID { return p.tenant }

// Scopes returns a copy of the granted scopes.
func (p Principal) Scopes() []string { return slices.Clone(p.scopes) }

// Expires is when the credential stops working (zero: never).
func (p Principal) Expires() time.Time { return p.expires }

// PlatformAdmin reports whether the principal holds platform:admin.
func (p Principal) PlatformAdmin() bool { return slices.Contains(p.scopes, ScopePlatformAdmin) }

// Has reports whether the principal holds scope, directly or through
// tenant:admin or platform:admin.
func (p Principal) Has(scope string) bool {
	if slices.Contains(p.scopes, scope) || p.PlatformAdmin() {
		return true
	}
	return slices.Contains(p.scopes, ScopeTenantAdmin) && slices.Contains(TenantScopes(), scope)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// KeyPrefix starts every API key secret.
const KeyPrefix = "elk_"

// NewKeySecret returns a fresh API key secret, the hash stored in its
// place, and its display prefix.
func NewKeySecret() (secret string, hash []byte, prefix string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	secret = KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret), secret[:len(KeyPrefix)+8]
}

// HashSecret is the stored form of an API key secret. The secrets are 256
// random bits, so a plain SHA-256 is as strong as a slow hash here.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// looksLikeKey reports whether a bearer token has the shape of our keys.
func looksLikeKey(tok string) bool {
	return strings.HasPrefix(tok, KeyPrefix) && len(tok) == len(KeyPrefix)+43
}

// Errors Authenticate returns. All are 401s; their messages say why
// without telling an attacker which keys exist.
var (
	ErrMissing   = apperr.New(apperr.Unauthorized, "AUTH_REQUIRED", "missing bearer credential")
	ErrMalformed = apperr.New(apperr.Unauthorized, "AUTH_INVALID", "malformed bearer credential")
	ErrInvalid   = apperr.New(apperr.Unauthorized, "AUTH_INVALID", "invalid credential")
	ErrExpired   = apperr.New(apperr.Unauthorized, "AUTH_EXPIRED", "credential expired")
	ErrRevoked   = apperr.New(apperr.Unauthorized, "AUTH_REVOKED", "credential revoked")
)
