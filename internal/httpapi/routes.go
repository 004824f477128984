package httpapi

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
)

// routes registers every operation of the API. It is the one place that
// shows the whole surface: method, path, required scope and whether the
// route acts in the tenant of X-Tenant-ID.
func routes(api huma.API, d Deps, tenants *tenantCache) map[string]access {
	r := registrar{api: api, log: d.Log, table: map[string]access{}}

	// Tenants and keys (API.md "Tenants and keys").
	r.add(http.MethodPost, "/v1/tenants", "create-tenant", "Create a tenant", access{Scope: "platform:admin"}, http.StatusCreated, handleTenantCreate(d.Tenancy))
	r.add(http.MethodGet, "/v1/tenants", "list-tenants", "List tenants", access{Scope: "platform:admin"}, 0, handleTenantList(d.Tenancy))
	r.add(http.MethodGet, "/v1/tenants/{tenant_id}", "get-tenant", "Get a tenant", access{Scope: "platform:admin"}, 0, handleTenantGet(d.Tenancy))
	r.add(http.MethodPatch, "/v1/tenants/{tenant_id}", "update-tenant", "Update a tenant", access{Scope: "platform:admin"}, 0, handleTenantUpdate(d.Tenancy, tenants))
	r.add(http.MethodDelete, "/v1/tenants/{tenant_id}", "erase-tenant", "Erase a tenant: destroy its keys, delete its rows", access{Scope: "platform:admin"}, 0, handleTenantErase(d.Tenancy, tenants))
	r.add(http.MethodGet, "/v1/tenant", "get-own-tenant", "The caller's tenant", access{Tenant: true}, 0, handleOwnTenant(d.Tenancy))
	r.add(http.MethodPost, "/v1/api-keys", "create-api-key", "Create an API key", access{Scope: "keys:manage", Tenant: true}, http.StatusCreated, handleKeyCreate(d.Tenancy))
	r.add(http.MethodGet, "/v1/api-keys", "list-api-keys", "List API keys", access{Scope: "keys:manage", Tenant: true}, 0, handleKeyList(d.Tenancy))
	r.add(http.MethodDelete, "/v1/api-keys/{key_id}", "revoke-api-key", "Revoke an API key", access{Scope: "keys:manage", Tenant: true}, http.StatusNoContent, handleKeyRevoke(d.Tenancy))

	// Entities (API.md "Entities").
	r.add(http.MethodPost, "/v1/entities", "create-entity", "Create an entity", access{Scope: "entities:write", Tenant: true}, http.StatusCreated, handleEntityCreate(d.Entities, false))
	r.add(http.MethodPost, "/v1/shared/entities", "create-shared-entity", "Create a platform-shared entity", access{Scope: "platform:admin"}, http.StatusCreated, handleEntityCreate(d.Entities, true))
	r.add(http.MethodGet, "/v1/entities", "list-entities", "List entities", access{Scope: "entities:read", Tenant: true}, 0, handleEntityList(d.Entities))
	r.add(http.MethodPost, "/v1/entities/search", "search-entities", "Find entities by a unique identifier", access{Scope: "entities:read", Tenant: true}, http.StatusOK, handleEntitySearch(d.Entities))
	r.add(http.MethodGet, "/v1/entities/{entity_id}", "get-entity", "Get an entity", access{Scope: "entities:read", Tenant: true}, 0, handleEntityGet(d.Entities))
	r.add(http.MethodPatch, "/v1/entities/{entity_id}", "update-entity", "Change identifiers, metadata or external_id", access{Scope: "entities:write", Tenant: true}, 0, handleEntityPatch(d.Entities))
	// Erasing is irreversible (its data keys' rows go; API.md): a scope of
	// its own, which tenant:admin holds and entities:write does not.
	r.add(http.MethodDelete, "/v1/entities/{entity_id}", "delete-entity", "Erase an entity", access{Scope: "entities:erase", Tenant: true}, http.StatusNoContent, handleEntityDelete(d.Entities))
	r.add(http.MethodPost, "/v1/entities/{entity_id}/relations", "create-relation", "Relate two entities", access{Scope: "entities:write", Tenant: true}, http.StatusCreated, handleRelationCreate(d.Entities))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/relations", "list-relations", "Relations in both directions", access{Scope: "entities:read", Tenant: true}, 0, handleRelationList(d.Entities))
	r.add(http.MethodPatch, "/v1/entities/{entity_id}/relations/{relation_id}", "update-relation", "Change a relation's confidence or validity dates (end an employment)", access{Scope: "entities:write", Tenant: true}, 0, handleRelationUpdate(d.Entities))
	r.add(http.MethodDelete, "/v1/entities/{entity_id}/relations/{relation_id}", "delete-relation", "Delete a relation", access{Scope: "entities:write", Tenant: true}, http.StatusNoContent, handleRelationDelete(d.Entities))

	// Profiles (API.md "Profiles").
	r.add(http.MethodPost, "/v1/entities/{entity_id}/profiles", "create-profile", "Create the next profile version", access{Scope: "profiles:write", Tenant: true}, http.StatusCreated, handleProfileCreate(d.Profiles))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/profiles", "list-profiles", "List profile versions", access{Scope: "profiles:read", Tenant: true}, 0, handleProfileList(d.Profiles))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/profiles/latest", "get-latest-profile", "The latest profile", access{Scope: "profiles:read", Tenant: true}, 0, handleProfileLatest(d.Profiles))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/profiles/{version}", "get-profile", "One profile version", access{Scope: "profiles:read", Tenant: true}, 0, handleProfileGet(d.Profiles))

	// Cached data sources (API.md "Cached data sources").
	r.add(http.MethodPost, "/v1/entities/{entity_id}/cache", "create-cache-entry", "Store a provider result", access{Scope: "cache:write", Tenant: true}, http.StatusCreated, handleCacheCreate(d.Cache, d.Now))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/cache", "list-cache-entries", "Cached provider results", access{Scope: "cache:read", Tenant: true}, 0, handleCacheList(d.Cache, d.Now))
	r.add(http.MethodGet, "/v1/entities/{entity_id}/cache/{cache_id}", "get-cache-entry", "One cached provider result", access{Scope: "cache:read", Tenant: true}, 0, handleCacheGet(d.Cache, d.Now))

	// Webhooks (API.md "Webhooks", docs/webhooks.md).
	wh := access{Scope: "webhooks:manage", Tenant: true}
	r.add(http.MethodPost, "/v1/webhook-endpoints", "create-webhook-endpoint", "Create a webhook endpoint", wh, http.StatusCreated, handleEndpointCreate(d.Webhooks))
	r.add(http.MethodGet, "/v1/webhook-endpoints", "list-webhook-endpoints", "List webhook endpoints", wh, 0, handleEndpointList(d.Webhooks))
	r.add(http.MethodGet, "/v1/webhook-endpoints/{endpoint_id}", "get-webhook-endpoint", "Get a webhook endpoint", wh, 0, handleEndpointGet(d.Webhooks))
	r.add(http.MethodPatch, "/v1/webhook-endpoints/{endpoint_id}", "update-webhook-endpoint", "Change, disable or re-enable a webhook endpoint", wh, 0, handleEndpointUpdate(d.Webhooks))
	r.add(http.MethodDelete, "/v1/webhook-endpoints/{endpoint_id}", "delete-webhook-endpoint", "Delete a webhook endpoint and its deliveries", wh, http.StatusNoContent, handleEndpointDelete(d.Webhooks))
	r.add(http.MethodPost, "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", "rotate-webhook-secret", "Give a webhook endpoint a new signing secret", wh, http.StatusOK, handleEndpointRotate(d.Webhooks))
	r.add(http.MethodGet, "/v1/webhook-endpoints/{endpoint_id}/deliveries", "list-webhook-deliveries", "An endpoint's delivery log", wh, 0, handleDeliveryList(d.Webhooks))
	r.add(http.MethodPost, "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver", "redeliver-webhook", "Send an event to an endpoint again", wh, http.StatusAccepted, handleRedeliver(d.Webhooks))

	// Audit log (API.md "Audit log"). The fixed paths come before {audit_id}.
	// Verification and export hold a connection while they run: bounded per
	// tenant and per instance.
	registerAuditExport(api, d.Audits, d.Log, r.table)
	r.add(http.MethodGet, "/v1/audit-events/verify", "verify-audit-log", "Verify the audit log's seals", access{Scope: "audit:read", Tenant: true}, 0, handleAuditVerify(d.Audits))
	r.add(http.MethodPost, "/v1/audit-events/verify", "verify-audit-log-against-checkpoint", "Verify the audit log against a checkpoint kept outside elile", access{Scope: "audit:read", Tenant: true}, http.StatusOK, handleAuditVerifyCheckpoint(d.Audits))
	r.add(http.MethodGet, "/v1/audit-events/checkpoint", "audit-checkpoint", "Latest signed checkpoint and public key", access{Scope: "audit:read", Tenant: true}, 0, handleAuditCheckpoint(d.Audits))
	r.add(http.MethodGet, "/v1/audit-events", "list-audit-events", "List audit events", access{Scope: "audit:read", Tenant: true}, 0, handleAuditList(d.Audits))
	r.add(http.MethodGet, "/v1/audit-events/{audit_id}", "get-audit-event", "Get an audit event", access{Scope: "audit:read", Tenant: true}, 0, handleAuditGet(d.Audits))
	return r.table
}

// registrar registers operations with their access rules and error
// documentation.
type registrar struct {
	api   huma.API
	log   *slog.Logger
	table map[string]access // by the mux pattern, "METHOD /path"
}

// add registers handler h, whose signature huma inspects for its input
// and output types. Errors it returns go through respond.
func (r registrar) add(method, path, id, summary string, a access, status int, h any) {
	// 400: a bad header (X-Tenant-ID is checked wherever it is sent), a
	// cursor this API did not return, malformed JSON; 413 and 415: the
	// guards check any body sent, to any route.
	errs := append(guardErrors(), http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusUnprocessableEntity)
	if hasBody(h) {
		errs = append(errs, http.StatusConflict)
	}
	errs = append(errs, http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable)
	op := huma.Operation{
		OperationID: id, Method: method, Path: path, Summary: summary, DefaultStatus: status,
		Tags:         []string{tagFor(path)},
		Security:     []map[string][]string{{"bearer": {}}},
		MaxBodyBytes: maxBody,
		Errors:       dedupe(errs),
	}
	if a.Scope != "" {
		op.Description = "Requires scope `" + a.Scope + "`."
	}
	if a.Tenant {
		op.Description += " Acts in the tenant named by `X-Tenant-ID`, or in the credential's own tenant when it is bound to one."
		op.Parameters = append(op.Parameters, &huma.Param{Name: "X-Tenant-ID", In: "header",
			Description: "The tenant to act in (UUID). Required for a platform-admin credential; optional for a credential bound to one tenant.",
			Schema:      &huma.Schema{Type: "string", Format: "uuid"}})
	}
	r.table[method+" "+path] = a
	if method == http.MethodPost {
		op.Parameters = append(op.Parameters, &huma.Param{Name: "Idempotency-Key", In: "header",
			Description: "Replays the first response for the same key and request within 24 h. The JSON body is compared canonically (layout and key order do not matter). While the first request is still running: 409 IDEMPOTENCY_IN_PROGRESS with Retry-After.", Schema: &huma.Schema{Type: "string", MinLength: ptr(1), MaxLength: ptr(255), Pattern: "^[\\x20-\\x7E]+$"}})
	}
	registerAny(r.api, op, h, r.log)
}

func ptr[T any](v T) *T { return &v }

// guardErrors are the answers of the guards in front of every route to a
// malformed request: a path, query or header that is not text or not
// what it must be (400), a body over 1 MiB (413) or not declared JSON
// (415). A new slice each time: huma appends to an operation's errors.
func guardErrors() []int {
	return []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}
}

// eachOperation calls fn with every operation of the document.
func eachOperation(o *huma.OpenAPI, fn func(path, method string, op *huma.Operation)) {
	for path, item := range o.Paths {
		for method, op := range map[string]*huma.Operation{http.MethodGet: item.Get, http.MethodPost: item.Post,
			http.MethodPut: item.Put, http.MethodPatch: item.Patch, http.MethodDelete: item.Delete} {
			if op != nil {
				fn(path, method, op)
			}
		}
	}
}

// hasBody reports whether handler h's input has a request body: such an
// operation can also answer 409.
func hasBody(h any) bool {
	t := reflect.TypeOf(h)
	if t.Kind() != reflect.Func || t.NumIn() != 2 {
		return false
	}
	in := t.In(1)
	if in.Kind() == reflect.Pointer {
		in = in.Elem()
	}
	_, ok := in.FieldByName("Body")
	return in.Kind() == reflect.Struct && ok
}

func dedupe(xs []int) []int {
	seen := map[int]bool{}
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func tagFor(path string) string {
	switch {
	case len(path) >= 12 && path[:12] == "/v1/api-keys":
		return "API keys"
	case len(path) >= 10 && path[:10] == "/v1/tenant":
		return "Tenants"
	case len(path) >= 13 && path[:13] == "/v1/audit-eve":
		return "Audit log"
	case strings.HasPrefix(path, "/v1/webhook-"):
		return "Webhooks"
	case strings.Contains(path, "/profiles"):
		return "Profiles"
	case strings.Contains(path, "/cache"):
		return "Cached data sources"
	default:
		return "Entities"
	}
}

// handlerFunc is the shape of every handler: huma's, with errors still to
// be rendered.
type handlerFunc[I, O any] func(context.Context, *I) (*O, error)

// registerAny dispatches on the handler's type; every handler type is
// listed in handlers.go's register calls.
func registerAny(api huma.API, op huma.Operation, h any, log *slog.Logger) {
	h.(interface {
		register(huma.API, huma.Operation, *slog.Logger)
	}).register(api, op, log)
}

func (h handlerFunc[I, O]) register(api huma.API, op huma.Operation, log *slog.Logger) {
	huma.Register(api, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		return out, respond(ctx, log, err)
	})
}

// Page is a page of a list.
type Page[T any] struct {
	Data       []T     `json:"data" nullable:"false" maxItems:"1000"`
	NextCursor *string `json:"next_cursor" maxLength:"200" pattern:"^[A-Za-z0-9_-]+$" doc:"Pass as cursor for the next page; null on the last page"`
}

// ListParams are the paging parameters of every list.
type ListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size"`
	Cursor string `query:"cursor" maxLength:"200" pattern:"^[A-Za-z0-9_-]*$" doc:"Opaque cursor from next_cursor"`
}

var errCursor = apperr.New(apperr.BadRequest, "CURSOR_INVALID", "cursor is not one this API returned")

// after decodes the cursor: the id of the last item of the previous page.
func (l ListParams) after() (uuid.UUID, error) {
	if l.Cursor == "" {
		return uuid.Nil, nil
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(l.Cursor)
	if err != nil || len(b) != 17 || b[0] != 1 || base64.RawURLEncoding.EncodeToString(b) != l.Cursor {
		return uuid.Nil, errCursor
	}
	return uuid.UUID(b[1:]), nil
}

// page renders a list read with limit+1 items: at most limit of them, each
// through out, and a cursor after the last one shown when more follow.
func page[D, T any](items []D, limit int, id func(D) uuid.UUID, out func(D) T) Page[T] {
	if len(items) > limit {
		return pageOf(items[:limit], true, id, out)
	}
	return pageOf(items, false, id, out)
}

// pageOf renders items through out, with a cursor after the last one (its
// id, read from the item itself, not back from its rendering) when more
// follow (a store may end a page early to stay within its byte budget).
func pageOf[D, T any](items []D, more bool, id func(D) uuid.UUID, out func(D) T) Page[T] {
	p := Page[T]{Data: make([]T, len(items))}
	for i, it := range items {
		p.Data[i] = out(it)
	}
	if more && len(items) > 0 {
		last := id(items[len(items)-1])
		c := base64.RawURLEncoding.EncodeToString(append([]byte{1}, last[:]...))
		p.NextCursor = &c
	}
	return p
}

// declareRateLimitHeaders documents the RateLimit-* headers on the /v1
// responses that carry them: every 2xx and 4xx answered once the
// credential is known (authenticate sets them before anything else runs).
// A 401 answers before any credential is known and carries none.
func declareRateLimitHeaders(o *huma.OpenAPI) {
	count := func(doc string) *huma.Param {
		return &huma.Param{Description: doc, Schema: &huma.Schema{Type: "integer", Format: "int64", Minimum: ptr(0.0), Maximum: ptr(1e7)}}
	}
	retryAfter := &huma.Param{Description: "Seconds to wait before trying again.",
		Schema: &huma.Schema{Type: "integer", Format: "int64", Minimum: ptr(1.0), Maximum: ptr(86400.0)}}
	headers := map[string]*huma.Param{
		"RateLimit-Limit":     count("The quota RateLimit-Remaining counts down from: requests the credential may make at once (RATE_LIMIT_BURST), as draft-ietf-httpapi-ratelimit-headers means it."),
		"RateLimit-Remaining": count("Requests left now; they refill at RATE_LIMIT_PER_MINUTE's pace."),
		"RateLimit-Reset":     count("Seconds until the allowance is full again."),
		"RateLimit-Policy": {Description: "The quota and the seconds in which it refills, e.g. 100;w=5 for a burst of 100 at 1,200 a minute.",
			Schema: &huma.Schema{Type: "string", MaxLength: ptr(30), Pattern: "^[0-9]+;w=[0-9]+$"}},
	}
	inProgress := &huma.Param{Description: "With IDEMPOTENCY_IN_PROGRESS: seconds to wait before sending the request again.",
		Schema: &huma.Schema{Type: "integer", Format: "int64", Minimum: ptr(1.0), Maximum: ptr(60.0)}}
	eachOperation(o, func(path, method string, op *huma.Operation) {
		if !strings.HasPrefix(path, "/v1/") {
			return
		}
		for code, resp := range op.Responses {
			if code == "401" || code == "" || (code[0] != '2' && code[0] != '4') {
				continue
			}
			if resp.Headers == nil {
				resp.Headers = map[string]*huma.Param{}
			}
			for name, h := range headers {
				resp.Headers[name] = h
			}
			if code == "429" {
				resp.Headers["Retry-After"] = retryAfter
			}
			if code == "409" && method == http.MethodPost {
				resp.Headers["Retry-After"] = inProgress
			}
		}
	})
}
