package httpapi

import (
	"slices"
	"strings"
	"testing"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

// TestValidation_OnePass: a request with schema errors and service-rule
// errors learns all of them in one answer — the integrator fixed one batch
// and met another before. Each case mixes both kinds; the problem must name
// every location, once.
func TestValidation_OnePass(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := w.create(t, w.admin, map[string]string{"full_name": "One Pass"})
	other := w.create(t, w.admin, map[string]string{"full_name": "Other"})
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		want               []string // locations, sorted
	}{
		{"CreateEntity", "POST", "/v1/entities", map[string]any{"entity_type": "robot", // schema
			"canonical_identifiers": map[string]string{"ssn": "000-12-3456", "dob": "1980-01-01", "ein": "07-1234567", "email": "x"}, // rules
			"metadata":              map[string]string{strings.Repeat("k", 65): "v"}},                                                // rule
			[]string{"body.canonical_identifiers.dob", "body.canonical_identifiers.ein", "body.canonical_identifiers.email",
				"body.canonical_identifiers.ssn", "body.entity_type", "body.metadata." + strings.Repeat("k", 65)}},
		{"NoIdentifiers", "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{}, "external_id": ""},
			[]string{"body.canonical_identifiers", "body.external_id"}},
		{"PatchEntity", "PATCH", "/v1/entities/" + e.EntityID, map[string]any{"canonical_identifiers": map[string]any{"ssn": "666-01-0001", "x_badge": 7},
			"external_id": strings.Repeat("e", 300)},
			[]string{"body.canonical_identifiers.ssn", "body.canonical_identifiers.x_badge", "body.external_id"}},
		{"CreateRelation", "POST", "/v1/entities/" + e.EntityID + "/relations", map[string]any{"to_entity_id": e.EntityID, "relation_type": "Employer",
			"confidence_score": 0.5, "valid_from": "2024-02-30", "valid_to": "2023-01-01"},
			[]string{"body.relation_type", "body.to_entity_id", "body.valid_from"}},
		{"RelationDatesOutOfOrder", "POST", "/v1/entities/" + e.EntityID + "/relations", map[string]any{"to_entity_id": other.EntityID, "relation_type": "employer",
			"confidence_score": 1.5, "valid_from": "2024-02-01", "valid_to": "2023-01-01"},
			[]string{"body.confidence_score", "body.valid_to"}},
		{"CreateProfile", "POST", "/v1/entities/" + e.EntityID + "/profiles", map[string]any{"trigger_type": "sometimes", "risk_score": map[string]any{"overall": 2, "fraud": -1},
			"findings": []any{}, "connections": []any{}, "data_sources_used": []any{}, "stale_data_used": []any{}},
			[]string{"body.risk_score.fraud", "body.risk_score.overall", "body.trigger_type"}},
		{"CreateCache", "POST", "/v1/entities/" + e.EntityID + "/cache", map[string]any{"provider_id": "Bad Provider", "check_type": "made_up_check",
			"data_origin": "paid_external", "raw_response": "e30=", "normalized_data": map[string]any{}, "cost_incurred": "1.234"},
			[]string{"body.cost_incurred", "body.fresh_until", "body.provider_id", "body.stale_until"}},
		// The URL rule depends on the server's configuration (https here).
		{"CreateWebhookEndpoint", "POST", "/v1/webhook-endpoints", map[string]any{"url": "http://hooks.example.com/x", "event_types": []string{"entity.exploded"}},
			[]string{"body.event_types[0]", "body.url"}},
		{"UpdateWebhookEndpoint", "PATCH", "/v1/webhook-endpoints/" + e.EntityID, map[string]any{"url": "https://10.1.2.3/hook", "status": "paused"},
			[]string{"body.status", "body.url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := wantProblem(t, call(t, w.h, w.as(w.admin, tc.method, tc.path, tc.body)), 422, "VALIDATION_FAILED")
			if got := locations(p.Errors); !slices.Equal(got, tc.want) {
				t.Errorf("locations = %q\nwant        %q\n%+v", locations(p.Errors), tc.want, p.Errors)
			}
		})
	}
	// A tenant: a bad slug (schema) and a config over its 64 KiB (rule).
	platform := mkKey(t, w.b, tenant.ID{}, auth.ScopePlatformAdmin)
	p := wantProblem(t, call(t, w.h, req{method: "POST", path: "/v1/tenants", key: platform.secret,
		body: map[string]any{"name": "Big", "slug": "B!", "config": map[string]any{"blob": strings.Repeat("x", 70<<10)}}}), 422, "VALIDATION_FAILED")
	if got := locations(p.Errors); !slices.Equal(got, []string{"body.config", "body.slug"}) {
		t.Errorf("tenant: locations = %q", got)
	}
	// A score out of range is that, not "required".
	p = wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+e.EntityID+"/profiles", map[string]any{"trigger_type": "manual",
		"risk_score": map[string]any{"overall": 2}, "findings": []any{}, "connections": []any{}, "data_sources_used": []any{}, "stale_data_used": []any{}})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.risk_score.overall" || strings.Contains(p.Errors[0].Message, "required") {
		t.Errorf("overall = 2: %+v", p.Errors)
	}
	// An unknown kind names the way out.
	p = wantProblem(t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
		"canonical_identifiers": map[string]string{"social_security_number": "123-45-6789"}})), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Message, "x_social_security_number") {
		t.Errorf("unknown kind: %+v", p.Errors)
	}
}

// locations are the problem items' locations, sorted.
func locations(items []ProblemItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Location)
	}
	slices.Sort(out)
	return out
}
