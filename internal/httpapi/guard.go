package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/request"
	"github.com/elile/elile/internal/tenant"
)

// Authenticator turns an Authorization header into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (auth.Principal, error)
	// NeedsLookup reports whether authenticating header would ask the
	// database (an API key not cached).
	NeedsLookup(header string) bool
}

// RateLimiter takes one request from a key's allowance.
type RateLimiter interface {
	Allow(ctx context.Context, key string, r kv.Rate) (kv.Decision, error)
}

// authenticate guards everything under /v1: a valid bearer credential or a
// 401 with WWW-Authenticate; then the credential's rate limit, with the
// RateLimit-* headers on every authenticated response and 429 beyond it.
//
// Every look-up of an API key that finds nothing (an unknown key) takes
// one from its client address's allowance (lookups, shared by instances
// through the limiter). An address past it is refused with 429 before any
// database work until its allowance recovers, so random keys cannot flood
// the database; known keys and cached ones never count.
// ratePolicy is the RateLimit-Policy of rate: its burst and the seconds
// in which the burst refills ("100;w=5" for 1,200 a minute, burst 100).
func ratePolicy(rate kv.Rate) string {
	w := 1
	if rate.Limit > 0 {
		w = max(int(math.Ceil(float64(rate.Burst)*rate.Period.Seconds()/float64(rate.Limit))), 1)
	}
	return strconv.Itoa(rate.Burst) + ";w=" + strconv.Itoa(w)
}

func authenticate(a Authenticator, limiter RateLimiter, rate, lookups kv.Rate, m *metrics, log *slog.Logger) func(http.Handler) http.Handler {
	guard := &lookupGuard{until: map[string]time.Time{}}
	policy := ratePolicy(rate)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1" || r.Method == http.MethodOptions {
				next.ServeHTTP(w, r)
				return
			}
			header := r.Header.Get("Authorization")
			ip := "unknown"
			if rc, ok := request.From(r.Context()); ok {
				ip = rc.ClientIP()
			}
			lookup := a.NeedsLookup(header)
			if lookup {
				if wait := guard.blockedFor(ip); wait > 0 {
					m.rateLimited.Inc()
					w.Header().Set("Retry-After", strconv.Itoa(max(kv.Seconds(wait), 1)))
					writeProblem(w, newProblem(r.Context(), errLookupsLimited).Problem)
					return
				}
			}
			p, err := a.Authenticate(r.Context(), header)
			if lookup && errors.Is(err, auth.ErrInvalid) {
				// A look-up that found nothing: count it against the address.
				if d, lerr := limiter.Allow(r.Context(), "authn:{"+ip+"}", lookups); lerr == nil && !d.Allowed {
					guard.block(ip, max(d.RetryAfter, time.Second))
				}
			}
			if err != nil {
				if apperr.KindOf(err) == apperr.Unauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="elile"`)
				} else {
					log.ErrorContext(r.Context(), "authentication unavailable", "err", err)
				}
				writeProblem(w, newProblem(r.Context(), err).Problem)
				return
			}
			d, err := limiter.Allow(r.Context(), "rl:{"+p.Credential()+"}", rate)
			if err != nil { // both stores failed: do not lock everyone out
				log.ErrorContext(r.Context(), "rate limiter failed; allowing", "err", err)
				d = kv.Decision{Allowed: true, Remaining: rate.Burst}
			}
			h := w.Header()
			// As draft-ietf-httpapi-ratelimit-headers means them: Limit is
			// the quota Remaining counts down from (the burst), Policy
			// says it and the seconds it takes to refill at the
			// per-minute pace.
			h.Set("RateLimit-Limit", strconv.Itoa(rate.Burst))
			h.Set("RateLimit-Policy", policy)
			h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
			h.Set("RateLimit-Reset", strconv.Itoa(kv.Seconds(d.ResetAfter)))
			if !d.Allowed {
				m.rateLimited.Inc()
				h.Set("Retry-After", strconv.Itoa(max(kv.Seconds(d.RetryAfter), 1)))
				writeProblem(w, newProblem(r.Context(), errRateLimited).Problem)
				return
			}
			if h := holderFrom(r.Context()); h != nil {
				h.tenant, h.user, h.actor = p.Tenant(), p.UserID(), p.Actor()
			}
			next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		})
	}
}

// lookupGuard remembers, on this instance, the addresses refused for
// failed credential look-ups and until when.
type lookupGuard struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (g *lookupGuard) blockedFor(ip string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.until[ip]
	if !ok {
		return 0
	}
	wait := time.Until(u)
	if wait <= 0 {
		delete(g.until, ip)
	}
	return wait
}

func (g *lookupGuard) block(ip string, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.until) > 100_000 { // bounded, whatever the addresses
		clear(g.until)
	}
	g.until[ip] = time.Now().Add(d)
}

var (
	errRateLimited    = apperr.New(apperr.RateLimited, "RATE_LIMITED", "too many requests for this credential; retry after the Retry-After seconds")
	errLookupsLimited = apperr.New(apperr.RateLimited, "RATE_LIMITED",
		"too many requests with credentials this server does not know from this address; retry after the Retry-After seconds")
)

// Tenant and permission errors.
var (
	errTenantRequired  = apperr.New(apperr.BadRequest, "TENANT_REQUIRED", "X-Tenant-ID header required for a credential not bound to one tenant")
	errTenantInvalid   = apperr.New(apperr.BadRequest, "TENANT_INVALID", "X-Tenant-ID is not a UUID")
	errTenantForbidden = apperr.New(apperr.Forbidden, "TENANT_FORBIDDEN", "this credential may not act in that tenant")
	errTenantInactive  = apperr.New(apperr.Forbidden, "TENANT_INACTIVE", "the tenant is deactivated")
	errPermission      = apperr.New(apperr.Forbidden, "PERMISSION_DENIED", "the credential lacks the scope this operation needs")
)

// access is what an operation demands beyond authentication.
type access struct {
	Scope  string // required scope; "" for any authenticated caller
	Tenant bool   // acts in a tenant: X-Tenant-ID, or the credential's own
}

// TenantLookup finds tenants to validate X-Tenant-ID.
type TenantLookup interface {
	Tenant(ctx context.Context, id tenant.ID) (tenant.Tenant, error)
}

// tenantCache remembers tenant lookups briefly: a deactivated tenant's
// credentials are refused within tenantCacheTTL on every instance.
type tenantCache struct {
	store TenantLookup
	now   func() time.Time
	mu    sync.Mutex
	items map[tenantIDKey]cachedTenant
	// lookups makes the requests in flight when an entry runs out share
	// one look-up instead of each asking the database.
	lookups singleflight.Group
}

type tenantIDKey = tenant.ID

type cachedTenant struct {
	t       tenant.Tenant
	err     error
	fetched time.Time
}

const tenantCacheTTL = 500 * time.Millisecond

func (c *tenantCache) get(ctx context.Context, id tenant.ID) (tenant.Tenant, error) {
	now := c.now()
	c.mu.Lock()
	it, ok := c.items[id]
	c.mu.Unlock()
	if ok && now.Sub(it.fetched) < tenantCacheTTL {
		return it.t, it.err
	}
	ch := c.lookups.DoChan(id.String(), func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		t, err := c.store.Tenant(lctx, id)
		if err != nil && apperr.KindOf(err) != apperr.NotFound {
			return nil, err // the store is down: not cached
		}
		it := cachedTenant{t: t, err: err, fetched: now}
		c.mu.Lock()
		if len(c.items) > 100_000 {
			clear(c.items)
		}
		c.items[id] = it
		c.mu.Unlock()
		return it, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return tenant.Tenant{}, r.Err
		}
		it := r.Val.(cachedTenant) //nolint:forcetypeassert // the function above returns only cachedTenant
		return it.t, it.err
	case <-ctx.Done():
		return tenant.Tenant{}, ctx.Err()
	}
}

func (c *tenantCache) forget(id tenant.ID) {
	c.mu.Lock()
	delete(c.items, id)
	c.mu.Unlock()
}

// authorize enforces each operation's access before anything acts on the
// request — idempotent replay included, so a replay can never answer for a
// tenant that was since deactivated or a credential that lost its scope.
// The operation is found by asking the mux which pattern the request
// matches; table maps patterns to the access registered with them. The
// tenant is X-Tenant-ID, or the credential's own tenant when it is bound
// to one and the header is absent; it must be a UUID (400 TENANT_*), an
// existing tenant the credential may act in (403 TENANT_FORBIDDEN) and
// active (403 TENANT_INACTIVE). Then the scope (403 PERMISSION_DENIED). The
// tenant goes into the context.
func authorize(mux *http.ServeMux, table map[string]access, tenants *tenantCache, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, authed := auth.PrincipalFrom(r.Context())
			if !authed {
				next.ServeHTTP(w, r)
				return
			}
			_, pattern := mux.Handler(r)
			a, ok := table[pattern]
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			if h := holderFrom(r.Context()); h != nil {
				h.pattern = pattern // refusals here are reported under their route
			}
			fail := func(err error) {
				if apperr.KindOf(err) == apperr.Internal || apperr.KindOf(err) == apperr.Unavailable {
					log.ErrorContext(r.Context(), "authorization failed", "err", err)
				}
				writeProblem(w, newProblem(r.Context(), err).Problem)
			}
			c := r.Context()
			if a.Tenant {
				id, err := requestTenant(r.Header.Get("X-Tenant-ID"), p)
				if err != nil {
					fail(err)
					return
				}
				t, err := tenants.get(c, id)
				switch {
				case apperr.KindOf(err) == apperr.NotFound:
					fail(errTenantForbidden)
					return
				case err != nil:
					fail(err)
					return
				case !t.Active:
					fail(errTenantInactive)
					return
				}
				c = tenant.WithScope(c, id)
				if h := holderFrom(c); h != nil {
					h.tenant = id
				}
			}
			if a.Scope != "" && !p.Has(a.Scope) {
				fail(errPermission.Withf("this operation needs the scope %s", a.Scope))
				return
			}
			next.ServeHTTP(w, r.WithContext(c))
		})
	}
}

// requestTenant is the tenant a request acts in: X-Tenant-ID when given
// (a platform admin must give it), else the credential's own tenant.
func requestTenant(raw string, p auth.Principal) (tenant.ID, error) {
	if raw == "" {
		if p.PlatformAdmin() || p.Tenant().IsZero() {
			return tenant.ID{}, errTenantRequired
		}
		return p.Tenant(), nil
	}
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return tenant.ID{}, headerError(errTenantInvalid, "X-Tenant-ID", "must be a UUID")
	}
	id := tenant.ID(u)
	if !p.PlatformAdmin() && p.Tenant() != id {
		return tenant.ID{}, errTenantForbidden
	}
	return id, nil
}

// cors answers preflights and marks responses for the configured origins
// only; other origins get no CORS headers (the browser then refuses).
func cors(origins []string) func(http.Handler) http.Handler {
	allowed := make(map[string]bool, len(origins))
	any := false
	for _, o := range origins {
		o = strings.TrimSpace(o)
		allowed[o] = true
		any = any || o == "*"
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" || (!allowed[origin] && !any) {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "X-Correlation-ID, RateLimit-Limit, RateLimit-Policy, RateLimit-Remaining, RateLimit-Reset, Retry-After, Idempotent-Replayed, Location")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Tenant-ID, X-Correlation-ID, Idempotency-Key, traceparent")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
