package auth_test

import (
	"context"
	"errors"
	"strings"
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
