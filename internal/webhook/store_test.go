package webhook_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/webhook"
)

// queryRow runs a query as the schema owner (outside the roles).
func queryRow(t *testing.T, b *bundle, sql string, args []any, dest ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, b *bundle, sql string, args ...any) int {
	t.Helper()
	var n int
	queryRow(t, b, sql, args, &n)
	return n
}

// TestOutbox_WrittenWithTheChange: a change a subscribed endpoint wants
// writes its event and a pending delivery in its own unit of work; an
// endpoint not subscribed to the type, a disabled one and another
// tenant's get nothing.
func TestOutbox_WrittenWithTheChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a, other := b.tenant(t, "Acme"), b.tenant(t, "Other")
	all, _ := b.endpoint(t, a, "https://all.example.com/")
	onlyKeys, _ := b.endpoint(t, a, "https://keys.example.com/", webhook.APIKeyCreated)
	off, _ := b.endpoint(t, a, "https://off.example.com/")
	st := webhook.Disabled
	if _, err := b.hooks.Update(ctx, a, off.ID, webhook.Patch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	theirs, _ := b.endpoint(t, other, "https://other.example.com/")

	id := b.entity(t, a)
	ds, err := b.store.Deliveries(ctx, a, all.ID, "", uuid.Nil, 10)
	if err != nil || len(ds) != 1 || ds[0].EventType != webhook.EntityCreated || ds[0].State != webhook.Pending {
		t.Fatalf("deliveries to the catch-all endpoint = %+v, %v", ds, err)
	}
	for name, ep := range map[string]uuid.UUID{"filtered": onlyKeys.ID, "disabled": off.ID, "other tenant's": theirs.ID} {
		if n := count(t, b, "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", ep); n != 0 {
			t.Errorf("%s endpoint got %d deliveries", name, n)
		}
	}
	// The payload: ids and types; its id is the change's audit event's.
	var payload string
	queryRow(t, b, "SELECT payload FROM webhook_events WHERE event_id = $1", []any{ds[0].EventID}, &payload)
	var p webhook.Payload
	if err := json.Unmarshal([]byte(payload), &p); err != nil || p.Type != webhook.EntityCreated || p.Data.ResourceID != id ||
		p.Data.TenantID != a.UUID() || p.ID != ds[0].EventID {
		t.Fatalf("payload %s = %+v, %v", payload, p, err)
	}
	if n := count(t, b, "SELECT count(*) FROM audit_events WHERE audit_id = $1 AND event_type = 'entity.created'", p.ID); n != 1 {
		t.Fatalf("the event's id names %d audit events, want its change's", n)
	}
}
