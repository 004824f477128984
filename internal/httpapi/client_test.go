package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	elile "github.com/elile/elile/clients/go/elile"
	"github.com/elile/elile/internal/kv"
)

// TestGeneratedGoClient_Smoke drives a live server through the generated Go
// client (make clients) and nothing else: create an entity, read it
// masked, list audit events, and handle a 422 and a 429 through the
// client's types.
func TestGeneratedGoClient_Smoke(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 60, Period: time.Minute, Burst: 5}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tid := mkTenant(t, b, "client-smoke")
	key := mkKey(t, b, tid, "tenant:admin")
	c, err := elile.NewClientWithResponses(srv.URL, elile.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+key.secret)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	created, err := c.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{
		EntityType: elile.EntityBodyEntityTypeIndividual, CanonicalIdentifiers: map[string]string{"ssn": "123-45-6789", "full_name": "Cli Ent"}})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("create: %v %d %s", err, created.StatusCode(), created.Body)
	}
	got, err := c.GetEntityWithResponse(ctx, created.JSON201.EntityId, &elile.GetEntityParams{})
	if err != nil || got.JSON200 == nil || got.JSON200.CanonicalIdentifiers["ssn"] != "***-**-6789" {
		t.Fatalf("get (masked): %v %+v", err, got.JSON200)
	}
	events, err := c.ListAuditEventsWithResponse(ctx, &elile.ListAuditEventsParams{})
	if err != nil || events.JSON200 == nil || len(events.JSON200.Data) == 0 {
		t.Fatalf("audit events: %v %d %s", err, events.StatusCode(), events.Body)
	}

	// A 422, typed: every bad field located.
	bad, err := c.CreateEntityWithResponse(ctx, &elile.CreateEntityParams{}, elile.CreateEntityJSONRequestBody{
		EntityType: "spaceship", CanonicalIdentifiers: map[string]string{}})
	if err != nil || bad.ApplicationproblemJSON422 == nil || bad.ApplicationproblemJSON422.Errors == nil || len(*bad.ApplicationproblemJSON422.Errors) == 0 {
		t.Fatalf("422: %v %d %s", err, bad.StatusCode(), bad.Body)
	}
	for _, item := range *bad.ApplicationproblemJSON422.Errors {
		if item.Location == "" || item.Location == "body" {
			t.Errorf("a 422 item not located at its field: %+v", item)
		}
	}

	// A 429, typed, with Retry-After: the burst of 5 is spent above.
	var limited *elile.GetEntityResponse
	for range 10 {
		r, err := c.GetEntityWithResponse(ctx, uuid.Must(uuid.NewV7()), &elile.GetEntityParams{})
		if err != nil {
			t.Fatal(err)
		}
		if r.ApplicationproblemJSON429 != nil {
			limited = r
			break
		}
	}
	if limited == nil || limited.ApplicationproblemJSON429.Code != "RATE_LIMITED" || limited.HTTPResponse.Header.Get("Retry-After") == "" {
		t.Fatal("no typed 429 with Retry-After after the burst")
	}
}
