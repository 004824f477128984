package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	elile "github.com/elile/elile/clients/go/elile"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/tenant"
)

// TestIntegratorPath replays, through the generated Go client and nothing
// else, what a new integrator does (issue 17's "done when"): a platform
// admin makes a tenant and its admin key; the admin makes a worker key;
// the worker — sending no X-Tenant-ID — records a person and an
// organisation, the employment between them with its dates, two profile
// versions and their delta, and a cache entry; every error on the way is
// handled by its code and structured members, never by parsing detail; the
// tenant exports its audit log and verifies it against a checkpoint kept
// outside elile.
func TestIntegratorPath(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 1_000_000, Period: time.Minute, Burst: 100_000}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	client := func(secret string) *elile.ClientWithResponses { return genClient(t, srv.URL, secret) }
	// problem returns the typed problem of any generated response.
	problem := func(r interface{ StatusCode() int }, body []byte) elile.ProblemError {
		t.Helper()
		var p elile.ProblemError
		if err := json.Unmarshal(body, &p); err != nil || p.Code == "" {
			t.Fatalf("status %d is not a problem: %s", r.StatusCode(), body)
		}
		return p
	}
	must := func(ok bool, r interface{ StatusCode() int }, body []byte, err error, what string) {
		t.Helper()
		if err != nil || !ok {
			t.Fatalf("%s: %v %d %s", what, err, r.StatusCode(), body)
		}
	}

	// 1. The platform admin: a tenant, and its admin key.
	platform := client(mkKey(t, b, tenant.ID{}, auth.ScopePlatformAdmin).secret)
	tn, err := platform.CreateTenantWithResponse(ctx, &elile.CreateTenantParams{}, elile.CreateTenantJSONRequestBody{Name: "Acme Screening"})
	must(err == nil && tn.JSON201 != nil, tn, tn.Body, err, "create tenant")
	tid := tn.JSON201.TenantId
	adminKey, err := platform.CreateApiKeyWithResponse(ctx, &elile.CreateApiKeyParams{XTenantID: &tid},
		elile.CreateApiKeyJSONRequestBody{Name: "acme admin", Scopes: []elile.CreateKeyInputBodyScopes{"tenant:admin"}})
	must(err == nil && adminKey.JSON201 != nil && adminKey.JSON201.Secret != nil, adminKey, adminKey.Body, err, "admin key")

	// 2. The admin: a worker key, without entities:erase.
	admin := client(*adminKey.JSON201.Secret)
	workerKey, err := admin.CreateApiKeyWithResponse(ctx, &elile.CreateApiKeyParams{}, elile.CreateApiKeyJSONRequestBody{Name: "worker",
		Scopes: []elile.CreateKeyInputBodyScopes{"entities:read", "entities:write", "profiles:read", "profiles:write", "cache:read", "cache:write", "audit:read"}})
	must(err == nil && workerKey.JSON201 != nil, workerKey, workerKey.Body, err, "worker key")
	if loc := workerKey.HTTPResponse.Header.Get("Location"); loc != "/v1/api-keys/"+workerKey.JSON201.KeyId.String() {
		t.Errorf("key Location = %q", loc)
	}
	worker := client(*workerKey.JSON201.Secret)

	// 3. A person and an organisation. One request with several mistakes
	// is told all of them at once, each at its field.
	bad, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"social_security_number": "123-45-6789", "ssn": "000-12-3456", "date_of_birth": "1981-02-29"}})
	must(err == nil && bad.ApplicationproblemJSON422 != nil, bad, bad.Body, err, "bad person")
	if p := bad.ApplicationproblemJSON422; p.Code != elile.VALIDATIONFAILED || p.Errors == nil || len(*p.Errors) != 3 {
		t.Errorf("bad person: %+v", p)
	}
	idem := "person-jane-1"
	person, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{IdempotencyKey: &idem}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"ssn": "123-45-6789", "full_name": "Jane Doe", "date_of_birth": "1980-02-29", "email": "jane@example.com", "x_badge": "B-7"},
		ExternalId:           ptr("hr-1001")})
	must(err == nil && person.JSON201 != nil, person, person.Body, err, "person")
	pid := person.JSON201.EntityId
	if person.JSON201.CanonicalIdentifiers["ssn"] != "***-**-6789" || person.JSON201.CanonicalIdentifiers["x_badge"] != "***" {
		t.Errorf("masking: %v", person.JSON201.CanonicalIdentifiers)
	}
	// The network failed; the worker retries with the same key: the same
	// entity, marked as a replay.
	again, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{IdempotencyKey: &idem}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"ssn": "123-45-6789", "full_name": "Jane Doe", "date_of_birth": "1980-02-29", "email": "jane@example.com", "x_badge": "B-7"},
		ExternalId:           ptr("hr-1001")})
	must(err == nil && again.JSON201 != nil && again.JSON201.EntityId == pid && again.HTTPResponse.Header.Get("Idempotent-Replayed") == "true", again, again.Body, err, "replay")
	// The same key for another request: a program sees the code.
	reused, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{IdempotencyKey: &idem}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"full_name": "Someone Else"}})
	if err != nil || problem(reused, reused.Body).Code != elile.IDEMPOTENCYKEYREUSED {
		t.Errorf("reused key: %v %s", err, reused.Body)
	}
	// A second record of the same person: ENTITY_DUPLICATE names the one
	// that exists, and the worker uses it.
	dup, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"ssn": "123456789", "full_name": "J. Doe"}})
	must(err == nil && dup.ApplicationproblemJSON409 != nil, dup, dup.Body, err, "duplicate")
	if p := dup.ApplicationproblemJSON409; p.Code != elile.ENTITYDUPLICATE || p.ExistingEntityId == nil || *p.ExistingEntityId != pid {
		t.Errorf("duplicate: %+v", p)
	}
	taken, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{EntityType: "individual",
		CanonicalIdentifiers: map[string]string{"full_name": "Other"}, ExternalId: ptr("hr-1001")})
	if err != nil || taken.ApplicationproblemJSON409 == nil || taken.ApplicationproblemJSON409.Code != elile.EXTERNALIDTAKEN ||
		taken.ApplicationproblemJSON409.ExistingEntityId == nil || *taken.ApplicationproblemJSON409.ExistingEntityId != pid {
		t.Errorf("external id taken: %v %s", err, taken.Body)
	}
	org, err := worker.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{EntityType: "organization",
		CanonicalIdentifiers: map[string]string{"ein": "12-3456789", "legal_name": "Acme Holdings Ltd", "country": "us"}})
	must(err == nil && org.JSON201 != nil, org, org.Body, err, "organisation")
	oid := org.JSON201.EntityId
	found, err := worker.SearchEntitiesWithResponse(ctx, &elile.SearchEntitiesParams{}, elile.SearchEntitiesJSONRequestBody{Kind: elile.Ein, Value: "123456789"})
	must(err == nil && found.JSON200 != nil && len(found.JSON200.Data) == 1 && found.JSON200.Data[0].EntityId == oid, found, found.Body, err, "search")

	// 4. The employment, then its end.
	rel, err := worker.CreateRelationWithResponse(ctx, pid, &elile.CreateRelationParams{}, elile.CreateRelationJSONRequestBody{ToEntityId: oid,
		RelationType: "employer", ConfidenceScore: 0.9, ValidFrom: ptr("2019-03-01")})
	must(err == nil && rel.JSON201 != nil, rel, rel.Body, err, "relation")
	rid := rel.JSON201.RelationId
	exists, err := worker.CreateRelationWithResponse(ctx, pid, &elile.CreateRelationParams{}, elile.CreateRelationJSONRequestBody{ToEntityId: oid,
		RelationType: "employer", ConfidenceScore: 0.5})
	if err != nil || exists.ApplicationproblemJSON409 == nil || exists.ApplicationproblemJSON409.Code != elile.RELATIONEXISTS ||
		exists.ApplicationproblemJSON409.ExistingRelationId == nil || *exists.ApplicationproblemJSON409.ExistingRelationId != rid {
		t.Errorf("relation exists: %v %s", err, exists.Body)
	}
	early, err := worker.UpdateRelationWithResponse(ctx, pid, rid, &elile.UpdateRelationParams{}, elile.UpdateRelationJSONRequestBody{ValidTo: ptr("2018-12-31")})
	if err != nil || early.ApplicationproblemJSON422 == nil || early.ApplicationproblemJSON422.Code != elile.VALIDATIONFAILED {
		t.Errorf("an end before the start: %v %s", err, early.Body)
	}
	ended, err := worker.UpdateRelationWithResponse(ctx, pid, rid, &elile.UpdateRelationParams{}, elile.UpdateRelationJSONRequestBody{ValidTo: ptr("2024-06-30")})
	must(err == nil && ended.JSON200 != nil && ended.JSON200.ValidTo != nil && *ended.JSON200.ValidTo == "2024-06-30", ended, ended.Body, err, "end the employment")

	// 5. Two profile versions and their delta (findings matched by id).
	profile := func(overall float64, findings ...any) *elile.CreateProfileResponse {
		r, err := worker.CreateProfileWithResponse(ctx, pid, &elile.CreateProfileParams{}, elile.CreateProfileJSONRequestBody{TriggerType: "screening",
			RiskScore: map[string]any{"overall": overall}, Findings: &findings, Connections: &[]any{}, DataSourcesUsed: &[]any{"criminal"}, StaleDataUsed: &[]any{}})
		must(err == nil && r.JSON201 != nil, r, r.Body, err, "profile")
		return r
	}
	profile(0.2, map[string]any{"id": "f1", "kind": "address_mismatch"})
	v2 := profile(0.5, map[string]any{"id": "f1", "kind": "address_mismatch", "note": "rechecked"}, map[string]any{"id": "f2", "kind": "court_record"})
	d := v2.JSON201.Delta
	if v2.JSON201.Version != 2 || len(d.NewFindings) != 1 || len(d.ResolvedFindings) != 0 || d.RiskScoreChange != 0.3 {
		t.Errorf("version 2's delta = %+v (version %d)", d, v2.JSON201.Version)
	}

	// 6. A cache entry, fresh by its check type's default window.
	var cost elile.CreateCacheInputBody_CostIncurred
	if err := cost.FromCreateCacheInputBodyCostIncurred0("12.50"); err != nil {
		t.Fatal(err)
	}
	entry, err := worker.CreateCacheEntryWithResponse(ctx, pid, &elile.CreateCacheEntryParams{}, elile.CreateCacheEntryJSONRequestBody{ProviderId: "courts.example",
		CheckType: "criminal", DataOrigin: "paid_external", RawResponse: "e30=", NormalizedData: map[string]any{"records": 1}, CostIncurred: cost})
	must(err == nil && entry.JSON201 != nil && entry.JSON201.FreshnessStatus == "fresh", entry, entry.Body, err, "cache entry")

	// 7. What the worker may not do, by code: erase (its own scope), act
	// in another tenant, read another tenant's entity.
	erase, err := worker.DeleteEntityWithResponse(ctx, pid, &elile.DeleteEntityParams{})
	if err != nil || problem(erase, erase.Body).Code != elile.PERMISSIONDENIED {
		t.Errorf("erase without entities:erase: %v %s", err, erase.Body)
	}
	otherTenant := mkTenant(t, b, "integrator-other")
	otherID := otherTenant.UUID()
	wrong, err := worker.GetEntityWithResponse(ctx, pid, &elile.GetEntityParams{XTenantID: &otherID})
	if err != nil || problem(wrong, wrong.Body).Code != elile.TENANTFORBIDDEN {
		t.Errorf("another tenant's id: %v %s", err, wrong.Body)
	}
	stranger := client(mkKey(t, b, otherTenant, auth.ScopeTenantAdmin).secret)
	hidden, err := stranger.GetEntityWithResponse(ctx, pid, &elile.GetEntityParams{})
	if err != nil || problem(hidden, hidden.Body).Code != elile.ENTITYNOTFOUND {
		t.Errorf("another tenant reads the person: %v %s", err, hidden.Body)
	}
	cursor := "bm90LWEtY3Vyc29y"
	badCursor, err := worker.ListEntitiesWithResponse(ctx, &elile.ListEntitiesParams{Cursor: &cursor})
	if err != nil || problem(badCursor, badCursor.Body).Code != elile.CURSORINVALID {
		t.Errorf("a cursor this API did not issue: %v %s", err, badCursor.Body)
	}

	// 8. The audit log: exported, then verified against a checkpoint the
	// tenant keeps outside elile.
	exp, err := worker.ExportAuditEventsWithResponse(ctx, &elile.ExportAuditEventsParams{})
	must(err == nil && exp.StatusCode() == 200, exp, exp.Body, err, "export")
	types := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(exp.Body))
	for sc.Scan() {
		var ev elile.AuditEventOut
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		types[string(ev.EventType)]++
	}
	for _, want := range []string{"entity.created", "entity.related", "relation.updated", "profile.created", "api_key.created"} {
		if types[want] == 0 {
			t.Errorf("the export has no %s event: %v", want, types)
		}
	}
	sealUntil(t, b, countWhere(t, b, "SELECT count(*) FROM audit_events"))
	cp, err := worker.AuditCheckpointWithResponse(ctx, &elile.AuditCheckpointParams{})
	must(err == nil && cp.JSON200 != nil, cp, cp.Body, err, "checkpoint")
	kept, _ := json.Marshal(cp.JSON200) // stored by the tenant, as is
	var body elile.VerifyAuditLogAgainstCheckpointJSONRequestBody
	if err := json.Unmarshal(kept, &body); err != nil {
		t.Fatal(err)
	}
	rep, err := worker.VerifyAuditLogAgainstCheckpointWithResponse(ctx, &elile.VerifyAuditLogAgainstCheckpointParams{}, body)
	must(err == nil && rep.JSON200 != nil && rep.JSON200.Status == "intact" && rep.JSON200.EventsChecked > 0, rep, rep.Body, err, "verify")
}
