package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
	"github.com/elile/elile/internal/webhook"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// deliverer is a Deliverer on b's store reaching loopback receivers, with
// clock c (nil: the real one) and no jitter (each wait is the
// schedule's step).
func deliverer(b *bundle, c *clock, timeout time.Duration) *webhook.Deliverer {
	o := webhook.DelivererOptions{Log: quiet(), Jitter: func() float64 { return 0.5 },
		Client: webhook.NewClient(webhook.ClientOptions{AllowLoopback: true, Timeout: timeout})}
	if c != nil {
		o.Now = c.Now
	}
	return webhook.NewDeliverer(b.store, o)
}

// startJobs runs the job queue on b's database as serve does, until the
// test ends.
func startJobs(t *testing.T, b *bundle, d *webhook.Deliverer) *webhook.Jobs {
	t.Helper()
	j := webhook.NewJobs(d, quiet(), 0)
	workers := river.NewWorkers()
	j.Workers(workers)
	rc, closePool, err := b.db.Jobs(context.Background(), postgres.JobsOptions{Config: &river.Config{Logger: quiet(),
		Queues: j.Queues(10), Workers: workers, PeriodicJobs: j.Periodic(), FetchPollInterval: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	j.Use(rc)
	ctx, cancel := context.WithCancel(context.Background())
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b.db.OnWebhookEvent(j.Kick)
	done := make(chan struct{})
	go func() { j.RunKicks(ctx, 20*time.Millisecond); close(done) }()
	t.Cleanup(func() {
		sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer c2()
		_ = rc.Stop(sctx)
		cancel()
		<-done
		closePool()
	})
	return j
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeliver_EndToEnd: with the job queue running as in serve, every
// committed change reaches the receiver, signed so that the documented
// receiver code accepts it, and the delivery log says so.
func TestDeliver_EndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startJobs(t, b, deliverer(b, nil, 5*time.Second))
	a := b.tenant(t, "Acme")
	s := newSink(t, time.Now)
	ep, secret := b.endpoint(t, a, s.srv.URL+"/hooks")
	s.secret.Store(secret)
	want := map[string]bool{}
	for range 40 {
		want[b.entity(t, a)] = true
	}
	waitFor(t, "40 deliveries", 15*time.Second, func() bool { return len(s.ids()) >= 40 })
	seen := map[string]bool{}
	for _, d := range s.received() {
		var p webhook.Payload
		if err := json.Unmarshal(d.payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.ID.String() != d.id || p.Type != webhook.EntityCreated || !want[p.Data.ResourceID] {
			t.Errorf("delivery %s: payload %+v is not one of the changes", d.id, p)
		}
		seen[p.Data.ResourceID] = true
	}
	if len(seen) != len(want) || s.bad != 0 {
		t.Fatalf("received %d of %d changes, %d refused signatures", len(seen), len(want), s.bad)
	}
	// The receiver has them; the drain records them a moment later.
	var ds []webhook.Delivery
	waitFor(t, "40 deliveries recorded as delivered", 10*time.Second, func() bool {
		var err error
		ds, err = b.hooks.Deliveries(context.Background(), a, ep.ID, webhook.Delivered, uuid.Nil, 100)
		return err == nil && len(ds) == 40
	})
	if d := ds[0]; d.Attempts != 1 || d.ResponseStatus != http.StatusOK || d.DeliveredAt.IsZero() || d.ResponseExcerpt != "status 200" {
		t.Fatalf("log entry = %+v", d)
	}
}

// TestDeliver_ScheduleAndDisable: an endpoint that keeps failing is
// retried on the schedule (an injected clock drives it), not before; after
// the last step fails it is disabled, with an audit event, and the
// tenant's other endpoint subscribed to that is told.
func TestDeliver_ScheduleAndDisable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c := &clock{now: time.Now()}
	d := deliverer(b, c, 5*time.Second)
	a := b.tenant(t, "Acme")
	bad := newSink(t, c.Now)
	bad.status.Store(http.StatusInternalServerError)
	ep, _ := b.endpoint(t, a, bad.srv.URL, webhook.EntityCreated)
	watcher := newSink(t, c.Now)
	watch, secret := b.endpoint(t, a, watcher.srv.URL, webhook.EndpointDisabled)
	watcher.secret.Store(secret)
	b.entity(t, a)
	ref := webhook.Ref{Tenant: a, Endpoint: ep.ID}

	attempts := func() int {
		return count(t, b, "SELECT attempts FROM webhook_deliveries WHERE endpoint_id = $1", ep.ID)
	}
	for i, step := range webhook.Schedule() {
		if err := d.Drain(ctx, ref); err != nil {
			t.Fatalf("drain %d: %v", i+1, err)
		}
		if n := attempts(); n != i+1 {
			t.Fatalf("after drain %d: %d attempts", i+1, n)
		}
		var retry time.Time
		queryRow(t, b, "SELECT retry_at FROM webhook_endpoints WHERE endpoint_id = $1", []any{ep.ID}, &retry)
		if got := retry.Sub(c.Now()); got < step-time.Millisecond || got > step+time.Millisecond {
			t.Fatalf("after failure %d the next attempt is in %s, want %s", i+1, got, step)
		}
		// Not before its time.
		c.Add(step - time.Second)
		if err := d.Drain(ctx, ref); err != nil || attempts() != i+1 {
			t.Fatalf("a drain a second early attempted: %d attempts, %v", attempts(), err)
		}
		c.Add(time.Second)
	}
	// The last step's attempt fails: disabled.
	if err := d.Drain(ctx, ref); err != nil {
		t.Fatal(err)
	}
	got, err := b.hooks.Get(ctx, a, ep.ID)
	if err != nil || got.Status != webhook.Disabled || got.DisabledReason == "" || got.Failures != len(webhook.Schedule())+1 {
		t.Fatalf("after the schedule: %+v, %v", got, err)
	}
	if n := count(t, b, "SELECT count(*) FROM audit_events WHERE event_type = 'webhook_endpoint.disabled' AND resource_id = $1", ep.ID.String()); n != 1 {
		t.Fatalf("%d audit events of the disabling", n)
	}
	if err := d.Drain(ctx, webhook.Ref{Tenant: a, Endpoint: watch.ID}); err != nil {
		t.Fatal(err)
	}
	if r := watcher.received(); len(r) != 1 || !json.Valid(r[0].payload) {
		t.Fatalf("the other endpoint got %d deliveries", len(r))
	} else {
		var p webhook.Payload
		_ = json.Unmarshal(r[0].payload, &p)
		if p.Type != webhook.EndpointDisabled || p.Data.ResourceID != ep.ID.String() {
			t.Fatalf("announcement = %+v", p)
		}
	}
	// Disabled: nothing is attempted, whatever the time.
	c.Add(48 * time.Hour)
	if err := d.Drain(ctx, ref); err != nil || attempts() != len(webhook.Schedule())+1 {
		t.Fatalf("a disabled endpoint was attempted: %d", attempts())
	}
	// Re-enabled by the tenant: the pending delivery goes at once.
	bad.status.Store(http.StatusOK)
	st := webhook.Enabled
	if _, err := b.hooks.Update(ctx, a, ep.ID, webhook.Patch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(ctx, ref); err != nil || len(bad.received()) != 1 {
		t.Fatalf("after re-enabling: %d received, %v", len(bad.received()), err)
	}
}

// TestDeliver_ReceiverBackWithinOneStep: a receiver down for 10 minutes
// gets every event at the first retry after it is back, which is within
// one step of the schedule.
func TestDeliver_ReceiverBackWithinOneStep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	start := time.Now()
	c := &clock{now: start}
	d := deliverer(b, c, 5*time.Second)
	a := b.tenant(t, "Acme")
	s := newSink(t, c.Now)
	s.status.Store(http.StatusServiceUnavailable)
	ep, _ := b.endpoint(t, a, s.srv.URL)
	ref := webhook.Ref{Tenant: a, Endpoint: ep.ID}
	var made []string
	back := start.Add(10 * time.Minute)
	// Events keep coming while it is down; the worker looks every second.
	for c.Now().Before(back.Add(time.Hour)) {
		if c.Now().Before(back) && len(made) < 20 && c.Now().Sub(start) >= time.Duration(len(made))*30*time.Second {
			made = append(made, b.entity(t, a))
		}
		if !c.Now().Before(back) {
			s.status.Store(http.StatusOK)
		}
		if err := d.Drain(ctx, ref); err != nil && !errors.Is(err, webhook.ErrMore) {
			t.Fatal(err)
		}
		if len(s.ids()) == len(made) && !c.Now().Before(back) {
			break
		}
		c.Add(time.Second)
	}
	if len(s.ids()) != len(made) {
		t.Fatalf("received %d of %d", len(s.ids()), len(made))
	}
	// Attempts at 0, 5 s, 35 s and 2 m 35 s fail; the next is 10 minutes
	// (the fourth step) later, at 12 m 35 s: 2 m 35 s after it is back.
	if waited := c.Now().Sub(back); waited > webhook.Schedule()[3] {
		t.Fatalf("everything arrived %s after the receiver was back, more than one step (%s)", waited, webhook.Schedule()[3])
	}
	t.Logf("%d events, all received %s after the receiver came back", len(made), c.Now().Sub(back))
}

// TestDeliver_DeadEndpointDoesNotDelayAnother: one tenant's endpoint that
// accepts connections and never answers, with a backlog, holds one
// worker; another tenant's deliveries go on.
func TestDeliver_DeadEndpointDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startJobs(t, b, deliverer(b, nil, 10*time.Second))
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hole.Close() })
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			defer c.Close() //nolint:revive // held open until the test ends
		}
	}()
	slow, fast := b.tenant(t, "Slow"), b.tenant(t, "Fast")
	for range 8 {
		b.endpoint(t, slow, "http://"+hole.Addr().String()+"/")
	}
	for range 30 {
		b.entity(t, slow)
	}
	s := newSink(t, time.Now)
	_, secret := b.endpoint(t, fast, s.srv.URL)
	s.secret.Store(secret)
	time.Sleep(300 * time.Millisecond) // the dead endpoints' drains are running
	began := time.Now()
	for range 5 {
		b.entity(t, fast)
	}
	waitFor(t, "the healthy tenant's 5 deliveries", 10*time.Second, func() bool { return len(s.ids()) == 5 })
	t.Logf("healthy tenant served in %s while the other's 8 endpoints hang", time.Since(began))
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("the healthy tenant waited %s: as long as the dead endpoints' timeout", took)
	}
}

// TestDeliver_TenantsThatStop: a deactivated tenant's deliveries pause
// and resume when it is active again; an erased tenant's endpoints and
// deliveries are deleted with it.
func TestDeliver_TenantsThatStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	d := deliverer(b, nil, 5*time.Second)
	a := b.tenant(t, "Pausing")
	s := newSink(t, time.Now)
	ep, _ := b.endpoint(t, a, s.srv.URL)
	b.entity(t, a)
	off, on := false, true
	if _, err := b.tenancy.Update(ctx, a, tenant.Patch{Active: &off}); err != nil {
		t.Fatal(err)
	}
	ref := webhook.Ref{Tenant: a, Endpoint: ep.ID}
	if err := d.Drain(ctx, ref); err != nil || len(s.received()) != 0 {
		t.Fatalf("an inactive tenant's delivery went: %d, %v", len(s.received()), err)
	}
	if _, err := b.tenancy.Update(ctx, a, tenant.Patch{Active: &on}); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(ctx, ref); err != nil || len(s.received()) != 3 { // the entity, and the tenant update of each change
		t.Fatalf("after reactivation: %d received, %v", len(s.received()), err)
	}

	gone := b.tenant(t, "Erased")
	ep2, _ := b.endpoint(t, gone, s.srv.URL)
	b.entity(t, gone)
	tt, err := b.tenancy.Get(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.tenancy.Erase(ctx, gone, tt.Slug, "test"); err != nil {
		t.Fatal(err)
	}
	for table, n := range map[string]int{
		"endpoints":  count(t, b, "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", gone.UUID()),
		"events":     count(t, b, "SELECT count(*) FROM webhook_events WHERE tenant_id = $1", gone.UUID()),
		"deliveries": count(t, b, "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1", gone.UUID()),
	} {
		if n != 0 {
			t.Errorf("erased tenant keeps %d webhook %s", n, table)
		}
	}
	_ = ep2
}

// TestDeliver_BehindPgBouncer: behind a transaction-mode pooler the job
// queue polls (LISTEN/NOTIFY cannot work there) and sets no session role,
// and deliveries still arrive. CI starts PgBouncer (.ci/run).
func TestDeliver_BehindPgBouncer(t *testing.T) {
	t.Parallel()
	b := setupWith(t, pgtest.PgBouncer(t))
	startJobs(t, b, deliverer(b, nil, 5*time.Second))
	a := b.tenant(t, "Pooled")
	s := newSink(t, time.Now)
	_, secret := b.endpoint(t, a, s.srv.URL)
	s.secret.Store(secret)
	for range 10 {
		b.entity(t, a)
	}
	waitFor(t, "10 deliveries through the pooler", 15*time.Second, func() bool { return len(s.ids()) == 10 })
}
