package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/request"
	"github.com/elile/elile/internal/tenant"
)

// Schedule is the wait before each retry after consecutive failed
// attempts of an endpoint: about a day in all. After the last one fails
// the endpoint is disabled.
func Schedule() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour}
}

// Backoff returns the wait after the n-th consecutive failure (n >= 1),
// with jitter: between 80 % and 120 % of the schedule's step, so that
// endpoints that failed together do not retry together. ok is false when
// the schedule is exhausted (the endpoint is to be disabled).
func Backoff(n int, jitter float64) (time.Duration, bool) {
	s := Schedule()
	if n < 1 || n > len(s) {
		return 0, false
	}
	d := s[n-1]
	return time.Duration(float64(d) * (0.8 + 0.4*jitter)), true
}

// Ref names an endpoint.
type Ref struct {
	Tenant   tenant.ID
	Endpoint uuid.UUID
}

// Target is what a drain needs of a claimed endpoint.
type Target struct {
	URL      string
	Secrets  []string // the current one first; a rotated-out one while its overlap lasts
	Failures int
}

// Message is a pending delivery with what is sent.
type Message struct {
	EventID  uuid.UUID
	Type     string
	Payload  []byte
	Attempts int
}

// Result is one attempt's outcome.
type Result struct {
	EventID   uuid.UUID
	OK        bool
	At        time.Time
	Status    int // 0: no response
	Latency   time.Duration
	Error     string // bounded, clean
	Excerpt   string // the start of the response body, bounded, clean
	Delivered bool
}

// Queue is the delivery worker's view of the store, across tenants.
type Queue interface {
	// Due lists endpoints with pending deliveries that may be attempted
	// now: enabled, of an active tenant, past their retry time, not
	// leased; only of tenants in only when it is not empty.
	Due(ctx context.Context, now time.Time, only []tenant.ID, limit int) ([]Ref, error)
	// Claim leases an endpoint until until, if it is still due: ok false
	// otherwise (another worker has it, it was disabled, its tenant
	// deactivated).
	Claim(ctx context.Context, r Ref, now, until time.Time) (Target, bool, error)
	// Pending returns the endpoint's oldest pending deliveries.
	Pending(ctx context.Context, r Ref, limit int) ([]Message, error)
	// Record writes attempts' outcomes and the endpoint's failure state
	// (failures 0: healthy; retryAt: when the next attempt may go), and
	// extends the drain's lease to lease.
	Record(ctx context.Context, r Ref, results []Result, failures int, retryAt, lease time.Time) error
	// Disable disables the endpoint and writes ev (its audit event, which
	// also announces it to the tenant's other endpoints).
	Disable(ctx context.Context, r Ref, reason string, ev audit.Event) error
	// Release ends the lease.
	Release(ctx context.Context, r Ref) error
	// OldestPending is when the oldest delivery still to be attempted was
	// made (zero: none), over enabled endpoints of active tenants.
	OldestPending(ctx context.Context) (time.Time, error)
	// Prune deletes delivered deliveries and events made before before,
	// at most limit rows, reporting how many.
	Prune(ctx context.Context, before time.Time, limit int) (int64, error)
}

// Deliverer sends pending deliveries.
type Deliverer struct {
	q        Queue
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	jitter   func() float64
	batch    int
	parallel int           // deliveries in flight at once to a healthy endpoint
	budget   time.Duration // a drain yields after this long
	metrics  *Metrics
}

// DelivererOptions configure a Deliverer; zero values take defaults.
type DelivererOptions struct {
	Client *http.Client
	Log    *slog.Logger
	Now    func() time.Time // the clock the schedule is computed with
	Jitter func() float64   // in [0, 1)
	Batch  int              // deliveries read at once (100)
	// Parallel is how many deliveries to one healthy endpoint are in
	// flight at once (16); a failing endpoint gets one at a time. Order is
	// kept between batches, not within one: receivers order by the
	// payload's timestamp if they must.
	Parallel int
	Budget   time.Duration // how long one drain runs before it yields (10 s)
}

// NewDeliverer returns a Deliverer.
func NewDeliverer(q Queue, o DelivererOptions) *Deliverer {
	if o.Client == nil {
		o.Client = NewClient(ClientOptions{})
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64 //nolint:gosec // jitter, not a secret
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	if o.Budget == 0 {
		o.Budget = 10 * time.Second
	}
	if o.Parallel == 0 {
		o.Parallel = 16
	}
	d := &Deliverer{q: q, client: o.Client, log: o.Log, now: o.Now, jitter: o.Jitter, batch: o.Batch, budget: o.Budget, parallel: o.Parallel}
	d.metrics = newMetrics(d.oldestPending)
	return d
}

// oldestPending is the age of the oldest delivery still to be made, in
// seconds, read when the metrics are scraped: every instance reports the
// same current value (NaN when the database does not answer).
func (d *Deliverer) oldestPending() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	at, err := d.q.OldestPending(ctx)
	switch {
	case err != nil:
		return math.NaN()
	case at.IsZero():
		return 0
	}
	return max(d.now().Sub(at).Seconds(), 0)
}

// Metrics returns the deliverer's metrics.
func (d *Deliverer) Metrics() *Metrics { return d.metrics }

// leaseFor is how long a claim holds an endpoint, renewed each time a
// drain records (at least every recordEvery, plus one exchange of at most
// 15 s): a live drain never loses it, and a crashed worker's endpoint is
// taken over within it.
func (d *Deliverer) leaseFor() time.Duration { return 25 * time.Second }

// recordEvery bounds how long a drain sends before it records what it
// sent (and renews its lease).
const recordEvery = 5 * time.Second

// ErrMore says a drain yielded with deliveries still due: run it again.
var ErrMore = errors.New("webhook: endpoint has more due deliveries")

// Drain delivers an endpoint's pending deliveries in order until none is
// due, the endpoint fails, or the budget is spent (ErrMore). Only one
// drain works an endpoint at a time (the lease); a drain that finds the
// endpoint leased, disabled or not yet due returns nil at once.
func (d *Deliverer) Drain(ctx context.Context, r Ref) error {
	start := d.now()
	tgt, ok, err := d.q.Claim(ctx, r, start, start.Add(d.leaseFor()))
	if err != nil || !ok {
		return err
	}
	more, err := d.drain(ctx, r, tgt, start)
	if rerr := d.q.Release(context.WithoutCancel(ctx), r); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if !more {
		// A delivery committed while this drain was finishing may have
		// seen the lease and not asked for a drain: look once more, now
		// the lease is gone.
		due, err := d.q.Due(ctx, d.now(), []tenant.ID{r.Tenant}, MaxEndpoints)
		if err != nil {
			return err
		}
		for _, x := range due {
			if x == r {
				return ErrMore
			}
		}
		return nil
	}
	return ErrMore
}

func (d *Deliverer) drain(ctx context.Context, r Ref, tgt Target, start time.Time) (bool, error) {
	for {
		msgs, err := d.q.Pending(ctx, r, d.batch)
		if err != nil || len(msgs) == 0 {
			return false, err
		}
		// A failing endpoint gets one delivery at a time (a probe);
		// a healthy one up to d.parallel at once.
		window := d.parallel
		if tgt.Failures > 0 {
			window = 1
		}
		stopAt := d.now().Add(recordEvery)
		if end := start.Add(d.budget); end.Before(stopAt) {
			stopAt = end
		}
		results, failed := d.sendBatch(ctx, tgt, msgs, window, stopAt)
		lease := d.now().Add(d.leaseFor())
		failures, retryAt := 0, time.Time{}
		if failed {
			failures = tgt.Failures + 1
			wait, ok := Backoff(failures, d.jitter())
			if !ok {
				if err := d.q.Record(ctx, r, results, failures, d.now(), lease); err != nil {
					return false, err
				}
				return false, d.disable(ctx, r, failures)
			}
			retryAt = d.now().Add(wait)
		}
		if err := d.q.Record(ctx, r, results, failures, retryAt, lease); err != nil {
			return false, err
		}
		if failed {
			return false, nil
		}
		tgt.Failures = 0
		if d.now().Sub(start) > d.budget {
			return true, nil
		}
	}
}

// sendBatch sends msgs, up to window at once, in their order: it starts
// no new one after a failure or after stopAt (the first always goes). It
// returns the results of those it sent, and whether one failed.
func (d *Deliverer) sendBatch(ctx context.Context, tgt Target, msgs []Message, window int, stopAt time.Time) ([]Result, bool) {
	results := make([]Result, len(msgs))
	sent := make([]bool, len(msgs))
	var failed atomic.Bool
	slots := make(chan struct{}, max(window, 1))
	var wg sync.WaitGroup
	for i, m := range msgs {
		slots <- struct{}{}
		if failed.Load() || (i > 0 && !d.now().Before(stopAt)) {
			<-slots
			break
		}
		sent[i] = true
		wg.Go(func() {
			defer func() { <-slots }()
			res := d.send(ctx, tgt, m)
			results[i] = res
			if !res.OK {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	out := make([]Result, 0, len(msgs))
	for i, ok := range sent {
		if ok {
			out = append(out, results[i])
		}
	}
	return out, failed.Load()
}

func (d *Deliverer) disable(ctx context.Context, r Ref, failures int) error {
	reason := fmt.Sprintf("%d consecutive failed attempts over the whole retry schedule", failures)
	ev := audit.New(ctx, audit.WebhookEndpointDisabled, r.Tenant).With("webhook_endpoint", r.Endpoint.String(), uuid.Nil,
		map[string]any{"reason": reason, "failures": failures})
	ev.Severity = audit.Warning
	if err := d.q.Disable(ctx, r, reason, ev); err != nil {
		return err
	}
	d.metrics.disabled.Inc()
	d.log.WarnContext(ctx, "webhook endpoint disabled", "tenant_id", r.Tenant.String(), "endpoint_id", r.Endpoint, "failures", failures)
	return nil
}

// MaxExcerpt bounds what is kept of a receiver's response body.
const MaxExcerpt = 256

// send makes one attempt. The receiver's answer is hostile input: only
// its status, a bounded and cleaned excerpt of its body, and how long it
// took are kept.
func (d *Deliverer) send(ctx context.Context, tgt Target, m Message) Result {
	at := d.now()
	res := Result{EventID: m.EventID, At: at}
	id := m.EventID.String()
	sig, err := Signature(id, at, m.Payload, tgt.Secrets...)
	if err != nil {
		res.Error = "signing: " + err.Error()
		d.metrics.attempts.WithLabelValues("error").Inc()
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tgt.URL, bytes.NewReader(m.Payload))
	if err != nil {
		res.Error = request.CleanText("request: "+err.Error(), 300)
		d.metrics.attempts.WithLabelValues("error").Inc()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "elile-webhooks/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	began := time.Now()
	resp, err := d.client.Do(req)
	res.Latency = time.Since(began)
	d.metrics.latency.Observe(res.Latency.Seconds())
	if err != nil {
		res.Error = request.CleanText(err.Error(), 300)
		d.metrics.attempts.WithLabelValues("error").Inc()
		return res
	}
	body := make([]byte, MaxExcerpt)
	n, _ := io.ReadFull(resp.Body, body)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	_ = resp.Body.Close()
	res.Status = resp.StatusCode
	res.Excerpt = request.CleanText(string(body[:n]), MaxExcerpt)
	res.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	res.Delivered = res.OK
	if res.OK {
		d.metrics.attempts.WithLabelValues("delivered").Inc()
	} else {
		res.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		d.metrics.attempts.WithLabelValues("failed").Inc()
	}
	return res
}

// Metrics are the delivery metrics. No label names a tenant or endpoint:
// labels come from bounded sets; a tenant's view is its delivery log.
type Metrics struct {
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
	disabled prometheus.Counter
	oldest   prometheus.GaugeFunc
}

// newMetrics returns the delivery metrics; oldest reads the backlog's age.
func newMetrics(oldest func() float64) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "elile_webhook_attempts_total",
			Help: "Delivery attempts by outcome: delivered (2xx), failed (another status), error (no response)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "elile_webhook_attempt_duration_seconds",
			Help: "Time from sending a delivery to its response (or failure).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled after failing through the whole retry schedule."}),
		oldest: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "elile_webhook_oldest_pending_seconds",
			Help: "Age of the oldest delivery still to be made to an enabled endpoint of an active tenant (0: none), read from the database at scrape time."}, oldest),
	}
	for _, o := range []string{"delivered", "failed", "error"} {
		m.attempts.WithLabelValues(o)
	}
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.attempts, m.latency, m.disabled, m.oldest}
}
