package webhook_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/webhook"
)

// BenchmarkDrain measures one endpoint's drain on its own: b.N pending
// deliveries (written as the outbox writes them), sent to a receiver on
// loopback and recorded.
func BenchmarkDrain(b *testing.B) {
	t := &testing.T{}
	bb := setup(t)
	ctx := context.Background()
	a := bb.tenant(t, "Bench")
	s := newSink(t, time.Now)
	ep, _ := bb.endpoint(t, a, s.srv.URL)
	conn, err := pgx.Connect(ctx, bb.url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO webhook_events (tenant_id, event_id, event_type, payload, created_at)
		SELECT $1, uuidv, 'entity.created', '{"id":"x","type":"entity.created"}', now()
		FROM (SELECT gen_random_uuid() AS uuidv FROM generate_series(1, $2)) g`, a.UUID(), b.N); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, created_at)
		SELECT tenant_id, $2, event_id, created_at FROM webhook_events WHERE tenant_id = $1`, a.UUID(), ep.ID); err != nil {
		b.Fatal(err)
	}
	d := deliverer(bb, nil, 5*time.Second)
	b.ResetTimer()
	for {
		err := d.Drain(ctx, webhook.Ref{Tenant: a, Endpoint: ep.ID})
		if err == nil {
			break
		}
		if !errors.Is(err, webhook.ErrMore) {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := len(s.received()); got != b.N {
		b.Fatalf("received %d of %d", got, b.N)
	}
}
