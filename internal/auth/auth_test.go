package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

var secret = []byte("fuzz-secret-fuzz-secret-fuzz-secret!") //nolint:gochecknoglobals // fixture

// noKeys is a key store holding no keys: these tests exercise parsing and
// JWT checks, which never reach a store.
type noKeys struct{}

func (noKeys) KeyByHash(context.Context, []byte) (auth.Key, error) {
	return auth.Key{}, auth.ErrKeyNotFound
}

func TestPrincipal_Scopes(t *testing.T) {
	t.Parallel()
	tid := tenant.NewID()
	admin := auth.NewPrincipal("c", uuid.Nil, uuid.New(), auth.ActorHuman, tid, []string{auth.ScopeTenantAdmin}, time.Time{})
	if !admin.Has(auth.ScopePIIRead) || admin.Has(auth.ScopePlatformAdmin) || admin.PlatformAdmin() {
		t.Error("tenant:admin implies every tenant scope and nothing more")
	}
	plat := auth.NewPrincipal("c", uuid.Nil, uuid.New(), auth.ActorService, tenant.ID{}, []string{auth.ScopePlatformAdmin}, time.Time{})
	if !plat.Has(auth.ScopeKeysManage) || !plat.PlatformAdmin() {
		t.Error("platform:admin holds everything")
	}
	reader := auth.NewPrincipal("c", uuid.Nil, uuid.New(), auth.ActorService, tid, []string{auth.ScopeEntitiesRead}, time.Time{})
	if reader.Has(auth.ScopeEntitiesWrite) || !reader.Has(auth.ScopeEntitiesRead) {
		t.Error("plain scopes")
	}
	s := reader.Scopes()
	s[0] = "mutated"
	if reader.Scopes()[0] != auth.ScopeEntitiesRead {
		t.Error("Scopes leaks its backing array")
	}
	sec, hash, prefix := auth.NewKeySecret()
	if !strings.HasPrefix(sec, "elk_") || len(sec) != 47 || len(hash) != 32 || !strings.HasPrefix(sec, prefix) || string(auth.HashSecret(sec)) != string(hash) {
		t.Errorf("NewKeySecret = %q %x %q", sec, hash, prefix)
	}
}

func TestAuthenticate_JWT(t *testing.T) {
	t.Parallel()
	a := auth.NewAuthenticator(noKeys{}, secret, nil)
	sub, tid := uuid.New(), tenant.NewID()
	tok, _ := auth.SignJWT(secret, sub, tid, []string{"entities:read", "bogus"}, time.Now().Add(time.Minute))
	p, err := a.Authenticate(context.Background(), "Bearer "+tok)
	if err != nil || p.UserID() != sub || p.Tenant() != tid || p.Actor() != auth.ActorHuman || len(p.Scopes()) != 1 {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if _, err := auth.NewAuthenticator(noKeys{}, nil, nil).Authenticate(context.Background(), "Bearer "+tok); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("no secret configured: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), "Bearer elk_"+strings.Repeat("A", 43)); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("unknown key: %v", err)
	}
	badSub, _ := auth.SignJWT(secret, uuid.Nil, tid, nil, time.Now().Add(time.Minute))
	if _, err := a.Authenticate(context.Background(), "Bearer "+strings.Replace(badSub, "", "", 1)); err != nil && apperr.KindOf(err) != apperr.Unauthorized {
		t.Errorf("kind = %v", apperr.KindOf(err))
	}
}

// FuzzAuthenticate: no header makes the authenticator panic or accept
// something that is not a token signed with the secret.
func FuzzAuthenticate(f *testing.F) {
	// Fixed claims: every fuzz worker must compute the same token.
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "0190a000-0000-7000-8000-000000000001",
		"tenant_id": "0190a000-0000-7000-8000-000000000002", "scope": "entities:read", "exp": 4102444800}).SignedString(secret)
	for _, s := range []string{"", "Bearer", "Bearer x.y.z", "Basic abc", "bearer " + good, "Bearer elk_short", "Bearer  " + good} {
		f.Add(s)
	}
	a := auth.NewAuthenticator(noKeys{}, secret, nil)
	f.Fuzz(func(t *testing.T, h string) {
		p, err := a.Authenticate(context.Background(), h)
		if err == nil && !strings.Contains(h, good) {
			t.Fatalf("accepted %q as %+v", h, p)
		}
		if err != nil && apperr.KindOf(err) != apperr.Unauthorized {
			t.Fatalf("header %q: error of kind %v", h, apperr.KindOf(err))
		}
	})
}

func signClaims(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// Finding 6 of the hardening review: an HS256 token with tenant A and
// platform:admin listed tenants and read tenant B's data; no iss/aud, no
// lifetime cap.
func TestAuthenticate_JWTPolicy(t *testing.T) {
	t.Parallel()
	now := time.Now()
	sub, tid := uuid.NewString(), tenant.NewID().String()
	strict := auth.NewAuthenticator(noKeys{}, secret, nil).WithJWTPolicy(auth.JWTPolicy{Issuer: "https://idp.example", Audience: "elile", MaxLifetime: time.Hour})
	good := jwt.MapClaims{"sub": sub, "tenant_id": tid, "scope": "entities:read platform:admin", "iss": "https://idp.example",
		"aud": []string{"elile", "other"}, "iat": now.Unix(), "exp": now.Add(30 * time.Minute).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	p, err := strict.Authenticate(context.Background(), signClaims(t, good))
	if err != nil {
		t.Fatalf("good token: %v", err)
	}
	if p.PlatformAdmin() || p.Has(auth.ScopePlatformAdmin) || !p.Has(auth.ScopeEntitiesRead) {
		t.Errorf("platform:admin granted through a JWT without JWT_ALLOW_PLATFORM_ADMIN: %v", p.Scopes())
	}
	for name, c := range map[string]jwt.MapClaims{
		"no issuer":         with("iss", nil),
		"other issuer":      with("iss", "https://evil.example"),
		"no audience":       with("aud", nil),
		"other audience":    with("aud", "someone-else"),
		"lives a year":      with("exp", now.Add(365*24*time.Hour).Unix()),
		"issued long ago":   with("iat", now.Add(-48*time.Hour).Unix()),
		"nil tenant":        with("tenant_id", uuid.Nil.String()),
		"no exp":            with("exp", nil),
		"tenant not a uuid": with("tenant_id", "a"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := strict.Authenticate(context.Background(), signClaims(t, c)); apperr.KindOf(err) != apperr.Unauthorized {
				t.Errorf("Authenticate = %v, want 401", err)
			}
		})
	}
	allowed := auth.NewAuthenticator(noKeys{}, secret, nil).WithJWTPolicy(auth.JWTPolicy{AllowPlatformAdmin: true})
	if p, err := allowed.Authenticate(context.Background(), signClaims(t, good)); err != nil || !p.PlatformAdmin() {
		t.Errorf("with JWT_ALLOW_PLATFORM_ADMIN: %v %v", p.Scopes(), err)
	}
	// The default lifetime cap applies without any policy set.
	if _, err := auth.NewAuthenticator(noKeys{}, secret, nil).Authenticate(context.Background(), signClaims(t, with("exp", now.Add(30*24*time.Hour).Unix()))); err == nil {
		t.Error("a 30-day token accepted by default")
	}
}

// slowKeys answers look-ups only when released, counting them.
type slowKeys struct {
	release chan struct{}
	calls   atomic.Int32
	key     auth.Key
}

func (s *slowKeys) KeyByHash(ctx context.Context, _ []byte) (auth.Key, error) {
	s.calls.Add(1)
	select {
	case <-s.release:
		return s.key, nil
	case <-ctx.Done():
		return auth.Key{}, ctx.Err()
	}
}

// When a key's cache entry is missing or runs out, the requests in flight
// with that key share one look-up instead of each asking the database; a
// waiter that gives up does not cancel the look-up the others wait for.
func TestAuthenticate_OneLookupForConcurrentRequests(t *testing.T) {
	t.Parallel()
	secretKey, _, _ := auth.NewKeySecret()
	store := &slowKeys{release: make(chan struct{}), key: auth.Key{ID: uuid.New(), Tenant: tenant.NewID(), Scopes: []string{auth.ScopeEntitiesRead}}}
	a := auth.NewAuthenticator(store, secret, nil)
	header := "Bearer " + secretKey

	impatient, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { _, err := a.Authenticate(impatient, header); gaveUp <- err }()

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := a.Authenticate(context.Background(), header)
			if err == nil && p.KeyID() != store.key.ID {
				err = errors.New("wrong key")
			}
			errs <- err
		}()
	}
	for store.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter whose request ended = %v, want its context's error", err)
	}
	time.Sleep(20 * time.Millisecond) // let every request reach the look-up
	close(store.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Authenticate = %v", err)
		}
	}
	if got := store.calls.Load(); got != 1 {
		t.Errorf("%d look-ups for %d concurrent requests with one key, want 1", got, n+1)
	}
}

// TestScopeDoc: every scope says what it grants (the reference lists them).
func TestScopeDoc(t *testing.T) {
	t.Parallel()
	for _, s := range auth.AllScopes() {
		if auth.ScopeDoc(s) == "" {
			t.Errorf("%s has no documentation", s)
		}
	}
	if auth.ScopeDoc("nope:read") != "" {
		t.Error("an unknown scope is documented")
	}
}
