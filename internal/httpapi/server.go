// Package httpapi is elile's HTTP API: the middleware every request passes
// through, the routes (registered with huma, which generates the OpenAPI
// document from the handlers' Go types and validates input against it), and
// the mapping of errors to RFC 9457 problems.
package httpapi

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// Deps is what the server needs.
type Deps struct {
	Log          *slog.Logger
	DB           Database
	KV           KV
	LatestSchema int64  // the schema version this binary needs
	Version      string // build version
	Started      time.Time
	Now          func() time.Time // time.Now when nil
}

// NewServer returns the whole API as one handler.
func NewServer(d Deps) http.Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	mux := http.NewServeMux()
	api := humago.New(mux, apiConfig(d.Version))
	registerHealth(api, checker{db: d.DB, kv: d.KV, latestSchema: d.LatestSchema, now: d.Now}, d.Version, d.Started)

	// Anything no route matches gets a problem, not the mux's plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			p := problemFor(r, errMethodNotAllowed.Withf("%s is not allowed on %s", r.Method, r.URL.Path))
			p.Status, p.Title = http.StatusMethodNotAllowed, http.StatusText(http.StatusMethodNotAllowed)
			writeProblem(w, p)
			return
		}
		writeProblem(w, problemFor(r, errRouteNotFound.Withf("no route for %s %s", r.Method, r.URL.Path)))
	})

	var h http.Handler = captureRoute(mux)
	h = recoverer(d.Log)(h)
	h = securityHeaders(h)
	h = accessLog(d.Log, d.Now)(h)
	h = withRequestContext(d.Now)(h)
	return h
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

func apiConfig(version string) huma.Config {
	cfg := huma.DefaultConfig("elile API", version)
	cfg.Info.Description = "Multi-tenant core of an employee risk-assessment platform: entities, versioned risk profiles, cached provider data and a sealed audit log."
	cfg.DocsPath = ""            // huma's page loads its renderer from a CDN
	cfg.SchemasPath = ""         // no $schema links in bodies
	cfg.CreateHooks = nil        // (the hook that adds them)
	cfg.OpenAPIPath = "/openapi" // serves /openapi.json and /openapi.yaml
	cfg.RejectUnknownQueryParameters = true
	return cfg
}
