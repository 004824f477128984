package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// codeDoc is one problem code: its status, what it means and what a
// client does about it. The catalogue is the reference's error section
// and the enum of the problem's code in the OpenAPI document;
// TestErrorCodes_Catalogue checks it against every code the source can
// raise, so it cannot drift.
type codeDoc struct {
	Code    string
	Status  int
	Meaning string
	Action  string
}

// Actions a client takes, shared by many codes.
const (
	actFix      = "Fix the request (see `errors`); do not retry it unchanged."
	actRetry    = "Retry after `retry_after` seconds (the `Retry-After` header), with backoff; the same `Idempotency-Key` makes it safe."
	actOperator = "Retry later with backoff; if it persists, give the operator the `correlation_id`."
	actAuth     = "Get a valid credential; do not retry with this one."
	actGone     = "The resource does not exist for this tenant (or never did): stop referring to it."
)

//nolint:gochecknoglobals // read-only table
var errorCodes = []codeDoc{
	// 400
	{"BAD_REQUEST", 400, "The request could not be read: malformed JSON, a duplicate key, a bad header or query.", actFix},
	{"CURSOR_INVALID", 400, "`cursor` is not one this list issued (or was issued for another list or tenant).", "Restart the listing without a cursor."},
	{"TENANT_INVALID", 400, "`X-Tenant-ID` is not a UUID.", actFix},
	{"TENANT_REQUIRED", 400, "A platform credential must name the tenant it acts in with `X-Tenant-ID`.", "Send `X-Tenant-ID` (a tenant-bound credential may omit it)."},
	// 401
	{"AUTH_REQUIRED", 401, "No credential was sent.", "Send `Authorization: Bearer <API key or JWT>`."},
	{"AUTH_INVALID", 401, "The credential is not one elile accepts (unknown key, bad signature, a claim out of policy).", actAuth},
	{"AUTH_EXPIRED", 401, "The key or token has expired.", "Get a new key or token."},
	{"AUTH_REVOKED", 401, "The API key was revoked.", actAuth},
	{"UNAUTHORIZED", 401, "Authentication failed (generic).", actAuth},
	// 403
	{"PERMISSION_DENIED", 403, "The credential lacks the scope the operation needs (`reveal=true` needs `pii:read`).", "Use a credential with the scope named in `detail`."},
	{"TENANT_FORBIDDEN", 403, "The credential is bound to another tenant than `X-Tenant-ID` names.", "Send the credential's own tenant, or omit `X-Tenant-ID`."},
	{"TENANT_INACTIVE", 403, "The tenant is deactivated: nothing may act in it.", "A platform admin reactivates it (`PATCH /v1/tenants/{id}` `active=true`)."},
	// 404
	{"NOT_FOUND", 404, "Not found (generic).", actGone},
	{"ROUTE_NOT_FOUND", 404, "No such route.", "Check the path against the OpenAPI document."},
	{"ENTITY_NOT_FOUND", 404, "No entity with this id is visible to the tenant (another tenant's is not found either).", actGone},
	{"RELATION_NOT_FOUND", 404, "No such relation of this entity.", actGone},
	{"PROFILE_NOT_FOUND", 404, "No profile version with this number, or `discovered_in_profile_id` names none.", actGone},
	{"CACHE_ENTRY_NOT_FOUND", 404, "No such cache entry visible to the tenant.", actGone},
	{"API_KEY_NOT_FOUND", 404, "No such API key in the tenant.", actGone},
	{"AUDIT_EVENT_NOT_FOUND", 404, "No such audit event in the tenant's log.", actGone},
	{"TENANT_NOT_FOUND", 404, "No such tenant.", actGone},
	{"WEBHOOK_ENDPOINT_NOT_FOUND", 404, "No such webhook endpoint in the tenant.", actGone},
	{"WEBHOOK_DELIVERY_NOT_FOUND", 404, "No delivery of this event to this endpoint.", actGone},
	{"NO_CHECKPOINT", 404, "The tenant's audit log has no sealed events yet.", "Retry in a second: events are sealed every 250 ms."},
	{"KEY_DESTROYED", 404, "The tenant's keys were destroyed: its data was erased.", actGone},
	// 405, 406, 413, 415
	{"METHOD_NOT_ALLOWED", 405, "The route exists; the method does not (`Allow` lists those that do).", actFix},
	{"NOT_ACCEPTABLE", 406, "`Accept` admits no type elile answers with (application/json, application/problem+json).", actFix},
	{"BODY_TOO_LARGE", 413, "The body is larger than the route accepts.", "Send less (the limits are in the OpenAPI document)."},
	{"UNSUPPORTED_MEDIA_TYPE", 415, "The body is not `application/json`.", actFix},
	// 409
	{"CONFLICT", 409, "Conflicts with stored data (generic).", "Read the current state, then decide."},
	{"ENTITY_DUPLICATE", 409, "A unique identifier already identifies another entity of the tenant.", "Use `existing_entity_id` (the entity holding it) instead of creating another."},
	{"EXTERNAL_ID_TAKEN", 409, "Another entity of the tenant has this `external_id`.", "Use `existing_entity_id`, or choose another external id."},
	{"RELATION_EXISTS", 409, "This relation (same entities and type) exists.", "Use `existing_relation_id` (PATCH it to change its dates)."},
	{"IDEMPOTENCY_IN_PROGRESS", 409, "A request with this `Idempotency-Key` is still running.", "Retry after `retry_after` seconds: you get its answer."},
	{"IDEMPOTENCY_RESPONSE_NOT_KEPT", 409, "The first request with this key finished but its answer was too large to keep.", "Read the resource instead of replaying."},
	{"LEGAL_HOLD", 409, "The tenant is under a legal hold: it cannot be erased.", "Lift the hold (`PATCH legal_hold=false`) first, if that is right."},
	{"TENANT_ERASING", 409, "The tenant is being erased and cannot be changed or reactivated.", "None: the erasure completes."},
	{"TENANT_SLUG_TAKEN", 409, "Another tenant has this slug.", "Choose another slug."},
	{"WEBHOOK_ENDPOINT_LIMIT", 409, "The tenant has 16 webhook endpoints, the most it may.", "Delete one, or subscribe an existing one to more event types."},
	// 422
	{"VALIDATION_FAILED", 422, "Fields are invalid: `errors` lists every one, by location, in one answer.", actFix},
	{"INVALID_VALUE", 422, "The database refused a value (out of its range).", actFix},
	{"IDEMPOTENCY_KEY_REUSED", 422, "This `Idempotency-Key` was used for a different request (method, path, query, tenant or canonical body).", "Use a new key for a new request."},
	{"KEK_NOT_USABLE", 422, "The tenant's own key (`byok_key`) cannot be found or used by the key provider.", "Fix the key or its grant in your KMS, then retry."},
	// 429
	{"RATE_LIMITED", 429, "The credential exceeded its rate (`RateLimit-*` headers say the quota).", actRetry},
	{"AUDIT_BUSY", 429, "Too many audit exports or verifications run for the tenant at once.", actRetry},
	{"IDEMPOTENCY_BUDGET_EXCEEDED", 429, "The credential keeps too many bytes of idempotency records at once.", actRetry},
	// 499
	{"CLIENT_CLOSED_REQUEST", 499, "The client closed the connection before the answer (logged, never read).", "None."},
	// 500
	{"INTERNAL_ERROR", 500, "A fault in elile.", actOperator},
	{"DEK_UNWRAP_FAILED", 500, "A data key could not be unwrapped: the key configuration does not match the data.", actOperator},
	{"IDEMPOTENCY_CORRUPT", 500, "A stored idempotency record could not be read.", actOperator},
	{"KEK_NOT_DESTROYABLE", 500, "The key provider refused to destroy a tenant's key.", actOperator},
	{"KEK_OTHER_PROVIDER", 500, "A tenant's key belongs to another key provider than the one configured.", actOperator},
	{"NO_TENANT", 500, "A unit of work ran without a tenant (a fault in elile; nothing was read or written).", actOperator},
	{"NO_TENANT_SCOPE", 500, "A unit of work ran without a tenant scope (a fault in elile; nothing was read or written).", actOperator},
	{"UNSAFE_DATABASE_LOGIN", 500, "The server's database login bypasses row-level security; it refuses to serve.", actOperator},
	// 503
	{"SERVICE_UNAVAILABLE", 503, "elile cannot answer now.", actRetry},
	{"DATABASE_UNAVAILABLE", 503, "PostgreSQL is unreachable or overloaded.", actRetry},
	{"AUDIT_UNAVAILABLE", 503, "The audit log cannot be written, so the access is refused.", actRetry},
	{"IDEMPOTENCY_UNAVAILABLE", 503, "The idempotency store (Redis) is unreachable: a request with `Idempotency-Key` is refused rather than risk running twice.", actRetry},
	{"KEY_UNAVAILABLE", 503, "The tenant's data key cannot be had: the key provider is unreachable.", actRetry},
	{"KEK_NOT_FOUND", 503, "The key-encryption key is not in the key provider.", actOperator},
}

// problemCodes are the catalogue's codes, for the problem schema's enum.
func problemCodes() []any {
	out := make([]any, 0, len(errorCodes))
	for _, c := range errorCodes {
		out = append(out, c.Code)
	}
	return out
}

// TransformSchema closes the problem's code to the catalogue: a client
// can switch on it exhaustively.
func (*Problem) TransformSchema(_ huma.Registry, s *huma.Schema) *huma.Schema {
	if c := s.Properties["code"]; c != nil {
		c.Enum = problemCodes()
		c.Description = "Stable, for a program to act on; what each means and what to do: docs/reference.md#error-codes"
		c.PrecomputeMessages()
	}
	return s
}

// commonCodes are the codes any /v1 operation may answer: the guards in
// front of every route (credential, tenant, scope, rate, body), the
// schema, and what a dependency's failure or a fault answers. An
// operation's own codes (x-error-codes) come on top.
func commonCodes() []string {
	return []string{"BAD_REQUEST", "TENANT_INVALID", "TENANT_REQUIRED", "AUTH_REQUIRED", "AUTH_INVALID", "AUTH_EXPIRED", "AUTH_REVOKED", "UNAUTHORIZED",
		"PERMISSION_DENIED", "TENANT_FORBIDDEN", "TENANT_INACTIVE", "NOT_ACCEPTABLE", "BODY_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "VALIDATION_FAILED",
		"RATE_LIMITED", "CLIENT_CLOSED_REQUEST", "INTERNAL_ERROR", "DEK_UNWRAP_FAILED", "NO_TENANT", "NO_TENANT_SCOPE",
		"SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE", "AUDIT_UNAVAILABLE", "KEY_UNAVAILABLE", "KEK_NOT_FOUND", "KEY_DESTROYED", "INVALID_VALUE", "CONFLICT"}
}

// idempotencyCodes are what a POST with Idempotency-Key may answer.
func idempotencyCodes() []string {
	return []string{"IDEMPOTENCY_IN_PROGRESS", "IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_RESPONSE_NOT_KEPT", "IDEMPOTENCY_BUDGET_EXCEEDED",
		"IDEMPOTENCY_UNAVAILABLE", "IDEMPOTENCY_CORRUPT"}
}

// operationCodes are each operation's own codes, by operation id: the
// document lists them (with the idempotency codes of a POST and
// CURSOR_INVALID of a list) as the operation's x-error-codes, and the
// response-conformance check of every test fails on a problem code an
// operation answers without declaring it.
//
//nolint:gochecknoglobals // read-only table
var operationCodes = map[string][]string{
	"create-tenant":                       {"TENANT_SLUG_TAKEN", "KEK_NOT_USABLE"},
	"get-tenant":                          {"TENANT_NOT_FOUND"},
	"update-tenant":                       {"TENANT_NOT_FOUND", "TENANT_ERASING", "KEK_NOT_USABLE"},
	"erase-tenant":                        {"TENANT_NOT_FOUND", "LEGAL_HOLD", "TENANT_ERASING", "KEK_NOT_DESTROYABLE", "KEK_OTHER_PROVIDER"},
	"get-own-tenant":                      {"TENANT_NOT_FOUND"},
	"revoke-api-key":                      {"API_KEY_NOT_FOUND"},
	"create-entity":                       {"ENTITY_DUPLICATE", "EXTERNAL_ID_TAKEN"},
	"create-shared-entity":                {"ENTITY_DUPLICATE", "EXTERNAL_ID_TAKEN"},
	"get-entity":                          {"ENTITY_NOT_FOUND"},
	"update-entity":                       {"ENTITY_NOT_FOUND", "ENTITY_DUPLICATE", "EXTERNAL_ID_TAKEN"},
	"delete-entity":                       {"ENTITY_NOT_FOUND"},
	"create-relation":                     {"ENTITY_NOT_FOUND", "PROFILE_NOT_FOUND", "RELATION_EXISTS"},
	"list-relations":                      {"ENTITY_NOT_FOUND"},
	"update-relation":                     {"ENTITY_NOT_FOUND", "RELATION_NOT_FOUND"},
	"delete-relation":                     {"ENTITY_NOT_FOUND", "RELATION_NOT_FOUND"},
	"create-profile":                      {"ENTITY_NOT_FOUND"},
	"list-profiles":                       {"ENTITY_NOT_FOUND"},
	"get-latest-profile":                  {"ENTITY_NOT_FOUND", "PROFILE_NOT_FOUND"},
	"get-profile":                         {"ENTITY_NOT_FOUND", "PROFILE_NOT_FOUND"},
	"create-cache-entry":                  {"ENTITY_NOT_FOUND"},
	"list-cache-entries":                  {"ENTITY_NOT_FOUND"},
	"get-cache-entry":                     {"ENTITY_NOT_FOUND", "CACHE_ENTRY_NOT_FOUND"},
	"create-webhook-endpoint":             {"WEBHOOK_ENDPOINT_LIMIT"},
	"get-webhook-endpoint":                {"WEBHOOK_ENDPOINT_NOT_FOUND"},
	"update-webhook-endpoint":             {"WEBHOOK_ENDPOINT_NOT_FOUND"},
	"delete-webhook-endpoint":             {"WEBHOOK_ENDPOINT_NOT_FOUND"},
	"rotate-webhook-secret":               {"WEBHOOK_ENDPOINT_NOT_FOUND"},
	"list-webhook-deliveries":             {"WEBHOOK_ENDPOINT_NOT_FOUND"},
	"redeliver-webhook":                   {"WEBHOOK_ENDPOINT_NOT_FOUND", "WEBHOOK_DELIVERY_NOT_FOUND"},
	"export-audit-events":                 {"AUDIT_BUSY"},
	"verify-audit-log":                    {"AUDIT_BUSY", "NO_CHECKPOINT"},
	"verify-audit-log-against-checkpoint": {"AUDIT_BUSY", "NO_CHECKPOINT"},
	"audit-checkpoint":                    {"NO_CHECKPOINT"},
	"get-audit-event":                     {"AUDIT_EVENT_NOT_FOUND"},
}

// declareErrorCodes gives every /v1 operation its x-error-codes (its own
// codes; commonCodes apply to all) and says them in its description.
func declareErrorCodes(o *huma.OpenAPI) {
	eachOperation(o, func(path, method string, op *huma.Operation) {
		if !strings.HasPrefix(path, "/v1/") {
			return
		}
		codes := slices.Clone(operationCodes[op.OperationID])
		if method == http.MethodPost {
			codes = append(codes, idempotencyCodes()...)
		}
		if slices.ContainsFunc(op.Parameters, func(p *huma.Param) bool { return p.Name == "cursor" }) {
			codes = append(codes, "CURSOR_INVALID")
		}
		if op.Extensions == nil {
			op.Extensions = map[string]any{}
		}
		op.Extensions["x-error-codes"] = codes
		if len(codes) > 0 {
			op.Description = strings.TrimSpace(op.Description + " Error codes of this operation, besides those of every operation " +
				"(docs/reference.md#error-codes): `" + strings.Join(codes, "`, `") + "`.")
		}
	})
}

// declaredCodes is what an operation may answer: commonCodes and its own.
func declaredCodes(op *huma.Operation) []string {
	own, _ := op.Extensions["x-error-codes"].([]string)
	return append(commonCodes(), own...)
}
