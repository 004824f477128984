package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/postgres"
)

// countingStore counts the inserts the writer makes against the real
// database.
type countingStore struct {
	db    *postgres.DB
	calls atomic.Int64
}

func (c *countingStore) InsertAuditBatch(ctx context.Context, evs []audit.Event) error {
	c.calls.Add(1)
	return c.db.InsertAuditBatch(ctx, evs)
}

func metricValue(t *testing.T, cs []prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			return firstValue(m)
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func firstValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// Finding 1 of the hardening review: one event the database refuses made
// the whole group commit fail, and every tenant's audited reads with it.
func TestWriter_OneBadEventNeverFailsABatch(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a, other := seedTenant(t, b.url, "bisect-a"), seedTenant(t, b.url, "bisect-b")
	store := &countingStore{db: b.db}
	w := audit.NewWriter(store, quietLog(), 2000, 1000)

	const n = 1000
	evs := make([]audit.Event, n)
	for i := range evs {
		tid := a
		if i%2 == 1 {
			tid = other
		}
		evs[i] = event(tid, audit.DataAccessed)
	}
	evs[500].Severity = "bogus"          // refused by a CHECK constraint
	evs[901].Type = "Not A Type\x00\xff" // refused by the event_type CHECK (and not valid text)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range evs {
		wg.Go(func() { errs[i] = w.Write(ctx, evs[i]) })
	}
	// Everything queued before the writer starts: one batch of 1,000.
	for deadline := time.Now().Add(10 * time.Second); metricValue(t, w.Collectors(), "elile_audit_writer_queue_depth") < n; {
		if time.Now().After(deadline) {
			t.Fatal("events were not queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wctx, stop := context.WithCancel(ctx)
	go w.Run(wctx)
	wg.Wait()
	stop()
	w.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("Write %d: %v (one bad event failed the others)", i, err)
		}
	}
	if got := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = ANY($1)", ids(evs)); got != n {
		t.Errorf("%d of %d events stored", got, n)
	}
	safe := countRows(t, b.url, `SELECT count(*) FROM audit_events WHERE audit_id = ANY($1)
		AND (event_type, severity) IN (('data.accessed', 'warning'), ('error.occurred', 'info'))`, ids([]audit.Event{evs[500], evs[901]}))
	if safe != 2 {
		t.Errorf("refused events stored in their safe form: %d, want 2", safe)
	}
	if got := metricValue(t, w.Collectors(), "elile_audit_writer_rejected_events_total"); got != 2 {
		t.Errorf("rejected events counted: %v, want 2", got)
	}
	// Bisection, not one insert per event: 1 + about 2·log2(1000) per bad
	// event + its safe form.
	if calls := store.calls.Load(); calls > 50 {
		t.Errorf("%d inserts for one batch with two bad events; bisection should need about 40", calls)
	}
}

func ids(evs []audit.Event) []any {
	out := make([]any, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
