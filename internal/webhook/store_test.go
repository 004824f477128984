package webhook_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

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

// TestSecret_EncryptedAtRest: the signing secret is stored as a
// ciphertext bound to its row; moved to another endpoint's row it does not
// open there.
func TestSecret_EncryptedAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.tenant(t, "Acme")
	one, secret := b.endpoint(t, a, "https://one.example.com/")
	two, _ := b.endpoint(t, a, "https://two.example.com/")
	var raw []byte
	queryRow(t, b, "SELECT secret FROM webhook_endpoints WHERE endpoint_id = $1", []any{one.ID}, &raw)
	if len(raw) == 0 || strings.Contains(string(raw), strings.TrimPrefix(secret, webhook.SecretPrefix)) || strings.Contains(string(raw), "whsec_") {
		t.Fatal("the secret is stored in clear")
	}
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE webhook_endpoints SET secret = $1 WHERE endpoint_id = $2", raw, two.ID); err != nil {
		t.Fatal(err)
	}
	b.entity(t, a)
	now := time.Now()
	if _, ok, err := b.store.Claim(ctx, webhook.Ref{Tenant: a, Endpoint: two.ID}, now, now.Add(time.Minute)); err == nil || ok {
		t.Fatalf("a secret moved to another endpoint opened: ok %v, err %v", ok, err)
	}
}
