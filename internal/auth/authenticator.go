package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/tenant"
)

// Key is a stored API key (never its secret).
type Key struct {
	ID         uuid.UUID
	Tenant     tenant.ID // zero: platform-admin key
	Name       string
	Prefix     string // the secret's first characters, for recognising it
	Scopes     []string
	CreatedBy  uuid.UUID
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: not revoked
}

// ErrKeyNotFound is returned for a key that does not exist in the tenant.
var ErrKeyNotFound = apperr.New(apperr.NotFound, "API_KEY_NOT_FOUND", "API key not found")

// KeyStore finds keys by the hash of their secret.
type KeyStore interface {
	// KeyByHash returns the key with that secret hash; apperr NotFound if none.
	KeyByHash(ctx context.Context, hash []byte) (Key, error)
}

// CacheTTL bounds how long a key lookup is reused: a revoked key is refused
// on every instance within this time.
const CacheTTL = 500 * time.Millisecond

// JWTPolicy is what a JWT must satisfy beyond its signature and expiry.
type JWTPolicy struct {
	Issuer   string // required iss ("" : not checked; config requires it outside development)
	Audience string // required member of aud ("" : not checked)
	// MaxLifetime bounds exp - iat, and exp - now (0: DefaultJWTMaxLifetime).
	MaxLifetime time.Duration
	// AllowPlatformAdmin lets a JWT carry platform:admin; off, the scope
	// is dropped from every JWT.
	AllowPlatformAdmin bool
}

// DefaultJWTMaxLifetime bounds a JWT's lifetime unless configured.
const DefaultJWTMaxLifetime = time.Hour

// Authenticator turns a bearer token into a Principal.
type Authenticator struct {
	keys      KeyStore
	jwtSecret []byte
	now       func() time.Time
	policy    JWTPolicy

	mu    sync.Mutex
	cache map[string]cachedKey // by hash

	// lookups makes concurrent requests with one key share one look-up
	// when its cache entry runs out: without it, every request in flight
	// at that moment asks the database, each waiting for a connection
	// behind the others (seen as the create p99 at c=100).
	lookups singleflight.Group
}

type cachedKey struct {
	key     Key
	err     error
	fetched time.Time
}

// NewAuthenticator returns an authenticator over keys, verifying JWTs with
// jwtSecret (the bytes of API_SECRET_KEY).
func NewAuthenticator(keys KeyStore, jwtSecret []byte, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{keys: keys, jwtSecret: jwtSecret, now: now, cache: make(map[string]cachedKey),
		policy: JWTPolicy{MaxLifetime: DefaultJWTMaxLifetime}}
}

// WithJWTPolicy sets what JWTs must satisfy and returns a.
func (a *Authenticator) WithJWTPolicy(p JWTPolicy) *Authenticator {
	if p.MaxLifetime <= 0 {
		p.MaxLifetime = DefaultJWTMaxLifetime
	}
	a.policy = p
	return a
}

// NeedsLookup reports whether authenticating header would ask the key
// store (an API key not cached, or cached longer ago than CacheTTL): the
// work an unauthenticated client can make the database do.
func (a *Authenticator) NeedsLookup(header string) bool {
	_, tok, ok := strings.Cut(header, " ")
	if !ok || !looksLikeKey(tok) {
		return false
	}
	hash := HashSecret(tok)
	a.mu.Lock()
	c, hit := a.cache[string(hash)]
	a.mu.Unlock()
	return !hit || a.now().Sub(c.fetched) >= CacheTTL
}

// Authenticate checks an Authorization header value. Errors are
// Unauthorized apperrs (ErrMissing, ErrMalformed, ErrInvalid, ErrExpired,
// ErrRevoked), or Unavailable when the key store cannot answer.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	if header == "" {
		return Principal{}, ErrMissing
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return Principal{}, ErrMalformed
	}
	if strings.HasPrefix(tok, KeyPrefix) {
		return a.apiKey(ctx, tok)
	}
	return a.jwt(tok)
}

func (a *Authenticator) apiKey(ctx context.Context, secret string) (Principal, error) {
	if !looksLikeKey(secret) {
		return Principal{}, ErrMalformed
	}
	hash := HashSecret(secret)
	now := a.now()
	a.mu.Lock()
	c, hit := a.cache[string(hash)]
	a.mu.Unlock()
	if !hit || now.Sub(c.fetched) >= CacheTTL {
		var err error
		if c, err = a.lookup(ctx, hash, now); err != nil {
			return Principal{}, err
		}
	}
	switch {
	case c.err != nil:
		return Principal{}, ErrInvalid
	case !c.key.RevokedAt.IsZero():
		return Principal{}, ErrRevoked
	case !c.key.ExpiresAt.IsZero() && !now.Before(c.key.ExpiresAt):
		return Principal{}, ErrExpired
	}
	return NewPrincipal("key:"+c.key.ID.String(), c.key.ID, c.key.ID, ActorService, c.key.Tenant, c.key.Scopes, c.key.ExpiresAt), nil
}

// lookupTimeout bounds a shared key look-up, which runs on behalf of
// every request waiting for it, whichever of them started it.
const lookupTimeout = 5 * time.Second

// lookup asks the store for the key with hash and caches the answer; the
// requests that need the same key meanwhile wait for this one look-up
// (each no longer than its own context allows). A store failure is
// returned, not cached: it is not the caller's fault.
func (a *Authenticator) lookup(ctx context.Context, hash []byte, now time.Time) (cachedKey, error) {
	ch := a.lookups.DoChan(string(hash), func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		k, err := a.keys.KeyByHash(lctx, hash)
		if err != nil && apperr.KindOf(err) != apperr.NotFound {
			return nil, err
		}
		c := cachedKey{key: k, err: err, fetched: now}
		a.mu.Lock()
		if len(a.cache) > 100_000 { // bound memory under a flood of random keys
			clear(a.cache)
		}
		a.cache[string(hash)] = c
		a.mu.Unlock()
		return c, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return cachedKey{}, r.Err
		}
		return r.Val.(cachedKey), nil //nolint:forcetypeassert // the function above returns only cachedKey
	case <-ctx.Done():
		return cachedKey{}, ctx.Err()
	}
}

// Claims are the JWT claims elile reads.
type Claims struct {
	TenantID string `json:"tenant_id"`
	Scope    string `json:"scope"`
	jwt.RegisteredClaims
}

func (a *Authenticator) jwt(tok string) (Principal, error) {
	if len(a.jwtSecret) == 0 {
		return Principal{}, ErrInvalid
	}
	var claims Claims
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(a.now),
		jwt.WithLeeway(5 * time.Second)}
	if a.policy.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.policy.Issuer))
	}
	if a.policy.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.policy.Audience))
	}
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return a.jwtSecret, nil }, opts...)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, ErrExpired
		}
		if errors.Is(err, jwt.ErrTokenMalformed) {
			return Principal{}, ErrMalformed
		}
		return Principal{}, ErrInvalid
	}
	sub, err := uuid.Parse(claims.Subject)
	if err != nil {
		return Principal{}, ErrInvalid.Withf("token subject is not a UUID")
	}
	tid, err := tenant.ParseID(claims.TenantID)
	if err != nil || tid.IsZero() {
		return Principal{}, ErrInvalid.Withf("token tenant_id is not a tenant's UUID")
	}
	exp := claims.ExpiresAt.Time // required above
	limit := a.policy.MaxLifetime + 5*time.Second
	if exp.Sub(a.now()) > limit || claims.IssuedAt != nil && exp.Sub(claims.IssuedAt.Time) > limit {
		return Principal{}, ErrInvalid.Withf("token lives longer than %s", a.policy.MaxLifetime)
	}
	var scopes []string
	for _, s := range strings.Fields(claims.Scope) {
		if ValidScope(s) && (s != ScopePlatformAdmin || a.policy.AllowPlatformAdmin) {
			scopes = append(scopes, s)
		}
	}
	return NewPrincipal("jwt:"+sub.String()+":"+tid.String(), uuid.Nil, sub, ActorHuman, tid, scopes, exp), nil
}

// SignJWT makes an HS256 token; for tests, tools and development.
func SignJWT(secret []byte, sub uuid.UUID, t tenant.ID, scopes []string, exp time.Time) (string, error) {
	c := Claims{TenantID: t.String(), Scope: strings.Join(scopes, " "), RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub.String(), ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(time.Now()),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
