package httpapi

import "github.com/danielgtaylor/huma/v2"

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
