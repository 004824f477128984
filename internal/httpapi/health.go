package httpapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kv"
)

// Database is what the health checks need of PostgreSQL.
type Database interface {
	Ping(ctx context.Context) error
	SchemaVersion(ctx context.Context) (int64, error)
}

// KV is the key-value store: health, rate limits and idempotency records.
type KV interface {
	Ping(ctx context.Context) error
	Mode() kv.Mode
	RateLimiter
	IdempotencyStore
}

// Component statuses.
const (
	statusHealthy   = "healthy"
	statusDegraded  = "degraded"
	statusUnhealthy = "unhealthy"
)

// Component is the state of one dependency.
type Component struct {
	Status    string  `json:"status" enum:"healthy,degraded,unhealthy" doc:"healthy, degraded (working with reduced guarantees) or unhealthy"`
	LatencyMS float64 `json:"latency_ms" doc:"How long the check took, in milliseconds"`
	Detail    string  `json:"detail,omitempty" maxLength:"512" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Why the component is not healthy, or what it runs on"`
	Current   *int64  `json:"current_version,omitempty" minimum:"0" maximum:"9007199254740991" doc:"Migrations only: the database's schema version"`
	Latest    *int64  `json:"latest_version,omitempty" minimum:"0" maximum:"9007199254740991" doc:"Migrations only: the schema version this binary needs"`
}

type healthBody struct {
	Status        string  `json:"status" enum:"healthy" doc:"Always healthy while the process runs"`
	Version       string  `json:"version" maxLength:"100" pattern:"^[!-~]+$" doc:"Build version"`
	UptimeSeconds float64 `json:"uptime_seconds" doc:"Seconds since the process started"`
}

type healthOutput struct{ Body healthBody }

type readyBody struct {
	Status     string               `json:"status" enum:"healthy,degraded,unhealthy"`
	Components map[string]Component `json:"components" maxProperties:"4" doc:"database, redis, migrations and kms"`
}

type readyOutput struct {
	Status int
	Body   readyBody
}

type componentOutput struct {
	Status int
	Body   Component
}

// checkTimeout bounds each dependency check, so readiness answers within
// a few seconds even when a dependency hangs.
const checkTimeout = 2 * time.Second

type checker struct {
	keys         *fieldcrypt.Keys
	db           Database
	kv           KV
	latestSchema int64
	now          func() time.Time
	keysMissing  []uint32
}

func (c checker) database(ctx context.Context) Component {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := c.now()
	err := c.db.Ping(ctx)
	comp := Component{Status: statusHealthy, LatencyMS: ms(c.now().Sub(start))}
	if err != nil {
		comp.Status, comp.Detail = statusUnhealthy, "unreachable"
	}
	return comp
}

func (c checker) migrations(ctx context.Context) Component {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := c.now()
	v, err := c.db.SchemaVersion(ctx)
	latest := c.latestSchema
	comp := Component{Status: statusHealthy, LatencyMS: ms(c.now().Sub(start)), Latest: &latest}
	switch {
	case err != nil:
		comp.Status, comp.Detail = statusUnhealthy, "schema version unknown: database unreachable"
	case v < latest:
		comp.Current = &v
		comp.Status, comp.Detail = statusUnhealthy, "migrations behind: run elile migrate up"
	case v > latest:
		comp.Current = &v
		comp.Detail = "schema is newer than this binary"
	default:
		comp.Current = &v
	}
	return comp
}

func (c checker) redis(ctx context.Context) Component {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := c.now()
	err := c.kv.Ping(ctx)
	comp := Component{Status: statusHealthy, LatencyMS: ms(c.now().Sub(start)), Detail: "redis"}
	switch {
	case c.kv.Mode() == kv.ModeMemory:
		comp.Status, comp.Detail = statusDegraded, "REDIS_URL not set: in-process store, single instance only"
	case err != nil:
		comp.Status, comp.Detail = statusDegraded, "unreachable: in-process fallback, single instance only"
	}
	return comp
}

// kms checks the key provider: unreachable is degraded while data keys in
// memory keep serving their tenants, unhealthy when none is.
func (c checker) kms(ctx context.Context) Component {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := c.now()
	if c.keys == nil {
		return Component{Status: statusUnhealthy, Detail: "no keys configured"}
	}
	cached, err := c.keys.Check(ctx)
	// What this server holds, so an operator compares servers before a
	// rotation: the provider, and the environment key versions with the
	// start of their fingerprints (0: the blind-index root).
	comp := Component{Status: statusHealthy, LatencyMS: ms(c.now().Sub(start)), Detail: c.keys.Provider().Name() + keyVersions(c.keys.Legacy())}
	switch {
	case err == nil && len(c.keysMissing) > 0:
		comp.Status, comp.Detail = statusDegraded, fmt.Sprintf("%s; holds no key for environment version(s) %v, which the database remembers: values sealed under them cannot be read (elile keys status)",
			comp.Detail, c.keysMissing)
	case err != nil && cached > 0:
		comp.Status, comp.Detail = statusDegraded, fmt.Sprintf("%s unreachable: %d data keys in memory keep serving their tenants, others get 503", c.keys.Provider().Name(), cached)
	case err != nil:
		comp.Status, comp.Detail = statusUnhealthy, c.keys.Provider().Name()+" unreachable and no data key in memory"
	}
	comp.Detail = cutRunes(comp.Detail, 512)
	return comp
}

// keyVersions lists a keyring's versions with the first 8 hex digits of
// their fingerprints: "; keys 0:1a2b3c4d 1:…".
func keyVersions(ring *fieldcrypt.Keyring) string {
	if ring == nil {
		return ""
	}
	fps := ring.Fingerprints()
	var b strings.Builder
	b.WriteString("; keys")
	for _, v := range slices.Sorted(maps.Keys(fps)) {
		fmt.Fprintf(&b, " %d:%s", v, fps[v][:8])
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// public marks an operation that needs no credential (an empty security
// requirement, as opposed to none stated).
//
//nolint:gochecknoglobals // read-only
var public = []map[string][]string{}

// probeErrors are what a probe answers to a malformed request: a query or
// path that is not text, or a body (400, 413, 415: the guards in front of
// every route), a query parameter it does not take (422).
func probeErrors() []int { return append(guardErrors(), http.StatusUnprocessableEntity) }

// notReadyBodies documents the 503 of the readiness routes with the body
// they send: the same as their 200.
func notReadyBodies(o *huma.OpenAPI) {
	for _, path := range []string{"/health/ready", "/health/db"} {
		op := o.Paths[path].Get
		op.Responses["503"].Content = op.Responses["200"].Content
	}
}

func registerHealth(api huma.API, c checker, version string, started time.Time) {
	huma.Register(api, huma.Operation{
		OperationID: "health", Method: http.MethodGet, Path: "/health", Tags: []string{"Operations"}, Security: public,
		Summary:     "Liveness",
		Description: "Answers 200 while the process runs, whatever its dependencies do.",
		Errors:      probeErrors(),
	}, func(_ context.Context, _ *struct{}) (*healthOutput, error) {
		return &healthOutput{Body: healthBody{Status: statusHealthy, Version: version,
			UptimeSeconds: float64(int64(c.now().Sub(started).Seconds()*10)) / 10}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "health-ready", Method: http.MethodGet, Path: "/health/ready", Tags: []string{"Operations"}, Security: public,
		Summary: "Readiness",
		Description: "200 when the instance can serve: database reachable and migrations current. " +
			"Redis down or not configured gives 200 degraded (an in-process fallback serves). " +
			"Key provider unreachable gives 200 degraded while data keys in memory serve, 503 when none is. " +
			"Database down or migrations behind gives 503 unhealthy.",
		Responses: map[string]*huma.Response{"503": {Description: "Not ready"}},
		Errors:    probeErrors(),
	}, func(ctx context.Context, _ *struct{}) (*readyOutput, error) {
		comps := make(map[string]Component, 3)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, check := range map[string]func(context.Context) Component{
			"database": c.database, "migrations": c.migrations, "redis": c.redis, "kms": c.kms,
		} {
			wg.Go(func() {
				comp := check(ctx)
				mu.Lock()
				comps[name] = comp
				mu.Unlock()
			})
		}
		wg.Wait()
		out := &readyOutput{Status: http.StatusOK, Body: readyBody{Status: statusHealthy, Components: comps}}
		for _, comp := range comps {
			switch comp.Status {
			case statusUnhealthy:
				out.Status, out.Body.Status = http.StatusServiceUnavailable, statusUnhealthy
			case statusDegraded:
				if out.Body.Status == statusHealthy {
					out.Body.Status = statusDegraded
				}
			}
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "health-db", Method: http.MethodGet, Path: "/health/db", Tags: []string{"Operations"}, Security: public,
		Summary:     "Database health",
		Description: "The database component of /health/ready alone: 200 while the database answers, 503 otherwise.",
		Responses:   map[string]*huma.Response{"503": {Description: "Database unreachable"}},
		Errors:      probeErrors(),
	}, func(ctx context.Context, _ *struct{}) (*componentOutput, error) {
		comp := c.database(ctx)
		status := http.StatusOK
		if comp.Status != statusHealthy {
			status = http.StatusServiceUnavailable
		}
		return &componentOutput{Status: status, Body: comp}, nil
	})
}
