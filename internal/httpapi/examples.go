package httpapi

import "github.com/danielgtaylor/huma/v2"

// Placeholder ids the examples use where a request names another
// resource.
const (
	exampleEntityID = "01939a4e-7c1a-7f00-8a00-000000000001"
	exampleOtherID  = "01939a4e-7c1a-7f00-8a00-000000000002"
	exampleTenantID = "01939a4e-7c1a-7f00-8a00-000000000003"
)

// requestExamples is a request body for every operation that takes one,
// by operation id: the document shows it, and TestRequestExamples_Valid
// sends each to a live server and checks it passes the schema and the
// rules (it may still name a resource that does not exist there).
//
//nolint:gochecknoglobals // read-only table
var requestExamples = map[string]any{
	"create-tenant": map[string]any{"name": "Acme Screening", "slug": "acme", "locale": "US", "config": map[string]any{"default_checks": []any{"criminal", "employment"}}},
	"update-tenant": map[string]any{"legal_hold": true},
	"erase-tenant":  map[string]any{"confirm": "acme"},
	"create-api-key": map[string]any{"name": "screening worker", "scopes": []any{"entities:read", "entities:write", "profiles:write", "cache:write"},
		"expires_at": "2030-01-01T00:00:00Z"},
	"create-entity": map[string]any{"entity_type": "individual", "external_id": "hr-1001",
		"canonical_identifiers": map[string]any{"ssn": "123-45-6789", "full_name": "Jane Doe", "date_of_birth": "1980-02-29", "email": "jane.doe@example.com"},
		"metadata":              map[string]any{"department": "finance"}},
	"create-shared-entity": map[string]any{"entity_type": "organization",
		"canonical_identifiers": map[string]any{"ein": "12-3456789", "legal_name": "Acme Holdings Ltd", "country": "US"}},
	"search-entities": map[string]any{"kind": "ssn", "value": "123-45-6789"},
	"update-entity": map[string]any{"canonical_identifiers": map[string]any{"email": "jane@example.org", "phone": nil},
		"metadata": map[string]any{"department": "audit"}},
	"create-relation": map[string]any{"to_entity_id": exampleOtherID, "relation_type": "employer", "confidence_score": 0.95, "valid_from": "2019-03-01"},
	"update-relation": map[string]any{"valid_to": "2024-06-30"},
	"create-profile": map[string]any{"trigger_type": "screening", "risk_score": map[string]any{"overall": 0.42, "criminal": 0.1},
		"findings":          []any{map[string]any{"id": "f-1", "category": "court_record", "severity": "medium"}},
		"connections":       []any{map[string]any{"entity_id": exampleOtherID, "relation": "employer"}},
		"data_sources_used": []any{"criminal", "employment"}, "stale_data_used": []any{}},
	"create-cache-entry": map[string]any{"provider_id": "courts.example", "check_type": "criminal", "data_origin": "paid_external",
		"raw_response": "eyJyZWNvcmRzIjpbXX0=", "normalized_data": map[string]any{"records": []any{}}, "cost_incurred": "12.50", "cost_currency": "USD"},
	"create-webhook-endpoint": map[string]any{"url": "https://hooks.example.com/elile", "description": "screening updates",
		"event_types": []any{"entity.created", "profile.created"}},
	"update-webhook-endpoint": map[string]any{"status": "enabled"},
	"rotate-webhook-secret":   map[string]any{"overlap_seconds": 86400},
	"verify-audit-log-against-checkpoint": map[string]any{"tenant_id": exampleTenantID, "seal_seq": 42, "event_count": 1234, "horizon": 5678,
		"seal_hash": "9f2c4e1a7b3d5f60819a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70", "sealed_at": "2026-12-01T10:00:00Z", "key_id": "ed25519:1a2b3c4d",
		"signature": "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="},
}

// declareExamples attaches requestExamples to the operations, and gives
// every response header that lacks one its schema's description.
func declareExamples(o *huma.OpenAPI) {
	eachOperation(o, func(_, _ string, op *huma.Operation) {
		if ex, ok := requestExamples[op.OperationID]; ok && op.RequestBody != nil {
			if mt := op.RequestBody.Content["application/json"]; mt != nil {
				mt.Examples = map[string]*huma.Example{"example": {Summary: "A typical request", Value: ex}}
			}
		}
		for _, resp := range op.Responses {
			for _, h := range resp.Headers {
				if h.Description == "" && h.Schema != nil {
					h.Description = h.Schema.Description
				}
			}
		}
	})
}
