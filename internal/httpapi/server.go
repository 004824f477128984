// Package httpapi is elile's HTTP API: the middleware every request passes
// through, the routes (registered with huma, which generates the OpenAPI
// document from the handlers' Go types and validates input against it), and
// the mapping of errors to RFC 9457 problems.
package httpapi

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/webhook"
)

// Deps is what the server needs.
type Deps struct {
	Log      *slog.Logger
	DB       Database
	KV       KV
	Auth     Authenticator
	Tenants  TenantLookup // validates X-Tenant-ID (cached for a second)
	Tenancy  *tenancy.Service
	Entities *entity.Service
	Profiles *entity.ProfileService
	Cache    *sourcecache.Service
	Webhooks *webhook.Service
	Keys     *fieldcrypt.Keys // seals idempotency records
	Tracer   trace.Tracer     // nil: tracing off
	Audit    AuditLog
	Audits   *audit.Service // the audit log's read side
	Rate     kv.Rate        // per credential
	// AuthLookups bounds, per client address, credential look-ups that
	// reach the database (default 600 a minute, burst 100).
	AuthLookups kv.Rate
	// TrustedProxies are the proxies whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// IdempotencyBudget bounds the bytes of idempotency records one
	// credential keeps (DefaultIdempotencyBudget when 0).
	IdempotencyBudget int64
	CORSOrigins       []string               // browser origins allowed
	RequestTimeout    time.Duration          // deadline of each request's work (0: none)
	Collectors        []prometheus.Collector // extra metrics (pool, audit writer)
	LatestSchema      int64                  // the schema version this binary needs
	// KeysMissing are environment key versions the database remembers
	// and this server does not hold (postgres.KeyCheck): readiness says
	// degraded, naming them.
	KeysMissing []uint32
	Version     string // build version
	Started     time.Time
	Now         func() time.Time // time.Now when nil
}

// NewServer returns the whole API as one handler.
func NewServer(d Deps) http.Handler {
	h, _ := newServer(d)
	return h
}

// newServer is NewServer, with the huma API that describes it.
func newServer(d Deps) (http.Handler, huma.API) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rate.Limit == 0 {
		d.Rate = kv.Rate{Limit: 1200, Period: time.Minute, Burst: 100}
	}
	if d.AuthLookups.Limit == 0 {
		d.AuthLookups = kv.Rate{Limit: 600, Period: time.Minute, Burst: 100}
	}
	useProblemErrors()
	m := newMetrics(d.Collectors)
	mux := http.NewServeMux()
	api := humago.New(mux, apiConfig())
	tenants := &tenantCache{store: d.Tenants, now: d.Now, items: map[tenantIDKey]cachedTenant{}}
	registerHealth(api, checker{keys: d.Keys, db: d.DB, kv: d.KV, latestSchema: d.LatestSchema, now: d.Now, keysMissing: d.KeysMissing}, d.Version, d.Started)
	table := routes(api, d, tenants)
	declareRateLimitHeaders(api.OpenAPI())
	declareBounds(api.OpenAPI())
	notReadyBodies(api.OpenAPI())
	declareErrorCodes(api.OpenAPI())
	declareExamples(api.OpenAPI())
	mux.Handle("GET /metrics", m.handler())
	docs := docsHandler()
	mux.Handle("GET /docs", docs)
	mux.Handle("GET /docs/redoc.standalone.js", docs)

	// Anything no route matches gets a problem, not the mux's plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, newProblem(r.Context(), errMethodNotAllowed.Withf("%s is not allowed on %s", r.Method, r.URL.Path)).Problem)
			return
		}
		writeProblem(w, newProblem(r.Context(), errRouteNotFound.Withf("no route for %s %s", r.Method, r.URL.Path)).Problem)
	})

	h := http.Handler(captureRoute(mux))
	h = withWebhookRules(d.Webhooks)(h)
	h = idempotency(d.KV, d.Keys, d.IdempotencyBudget, d.Log)(h)
	h = authorize(mux, table, tenants, d.Log)(h)
	h = jsonGuard(h)
	h = queryGuard(h)
	h = authenticate(d.Auth, d.KV, d.Rate, d.AuthLookups, m, d.Log)(h)
	h = cors(d.CORSOrigins)(h)
	h = recoverer(d.Log)(h)
	h = deadline(d.RequestTimeout)(h)
	h = securityHeaders(h)
	h = knownMethods(h)
	h = accessLog(d.Log, d.Now, m, d.Audit)(h)
	h = withRequestContext(d.Now, d.TrustedProxies...)(h)
	h = traced(d.Tracer)(h)
	return h, api
}

// allowedMethods lists the methods that have a route for r's path.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

func apiConfig() huma.Config {
	// info.version is the contract's version, not the build's (GET /health
	// says that): the document changes only with the contract.
	cfg := huma.DefaultConfig("elile API", APIVersion)
	cfg.Info.Description = "Multi-tenant core of an employee risk-assessment platform: entities, versioned risk profiles, " +
		"cached provider data and a sealed audit log. Every /v1 route takes `Authorization: Bearer <API key or JWT>`; " +
		"errors are RFC 9457 problems (application/problem+json) with a stable `code`."
	cfg.DocsPath = ""            // huma's page loads its renderer from a CDN; /docs is ours
	cfg.SchemasPath = ""         // no $schema links in bodies
	cfg.CreateHooks = nil        // (the hook that adds them)
	cfg.OpenAPIPath = "/openapi" // serves /openapi.json and /openapi.yaml
	cfg.RejectUnknownQueryParameters = true
	cfg.Info.Contact = &huma.Contact{Name: "elile", URL: "https://github.com/elile/elile"}
	cfg.Info.License = &huma.License{Name: "Proprietary"}
	// Relative: the document describes the server that serves it.
	cfg.Servers = []*huma.Server{{URL: "/", Description: "The elile server that serves this document"}}
	cfg.Tags = []*huma.Tag{
		{Name: "Operations", Description: "Liveness and readiness probes (public)."},
		{Name: "Tenants", Description: "Customer organisations, their erasure and their keys (platform admins)."},
		{Name: "API keys", Description: "Credentials of a tenant or of the platform."},
		{Name: "Entities", Description: "People, organisations and addresses being screened, and their relations."},
		{Name: "Profiles", Description: "Versioned risk profiles of an entity."},
		{Name: "Cached data sources", Description: "Provider results kept for reuse, with freshness windows."},
		{Name: "Audit log", Description: "The sealed, append-only record of every access, its verification and export."},
		{Name: "Webhooks", Description: "Endpoints that receive a tenant's events, signed (Standard Webhooks), with their delivery log."},
	}
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An API key (elk_...) or an HS256 JWT with sub, tenant_id, scope and exp."},
	}
	return cfg
}
