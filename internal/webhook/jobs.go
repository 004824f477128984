package webhook

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/elile/elile/internal/tenant"
)

// The job queue's queues: deliveries, and the periodic work that feeds
// and trims them.
const (
	QueueDeliveries = "webhooks"
	QueueMaintain   = "webhooks_maintenance"
)

// DrainArgs is the job that drains one endpoint.
type DrainArgs struct {
	Tenant   uuid.UUID `json:"tenant_id"`
	Endpoint uuid.UUID `json:"endpoint_id"`
}

// Kind names the job.
func (DrainArgs) Kind() string { return "webhook_drain" }

// InsertOpts puts drains on the delivery queue. A failed drain is retried
// a few times; the dispatcher asks again for any endpoint still due.
func (DrainArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDeliveries, MaxAttempts: 3}
}

// DispatchArgs is the periodic job that asks for a drain of every due
// endpoint: after a crash, for another instance's events, for endpoints
// whose retry time came.
type DispatchArgs struct{}

// Kind names the job.
func (DispatchArgs) Kind() string { return "webhook_dispatch" }

// InsertOpts: not unique. A unique job left "running" by a killed
// process would block every later one until River rescued it (an hour);
// two dispatches at once only ask for the same drains twice, and a drain
// that finds its endpoint leased returns at once.
func (DispatchArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintain, MaxAttempts: 1}
}

// PruneArgs is the periodic job that deletes old delivered deliveries.
type PruneArgs struct{}

// Kind names the job.
func (PruneArgs) Kind() string { return "webhook_prune" }

// InsertOpts: on the maintenance queue.
func (PruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintain, MaxAttempts: 3}
}

// Inserter inserts jobs (a River client).
type Inserter interface {
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
}

// Jobs is the delivery side of the job queue: its workers, periodic jobs
// and queues, and the dispatcher that turns due endpoints into drains.
type Jobs struct {
	d         *Deliverer
	log       *slog.Logger
	retention time.Duration

	mu     sync.Mutex
	ins    Inserter
	kicked map[tenant.ID]bool
	wake   chan struct{}
}

// NewJobs returns the job side of deliveries. Delivered deliveries are
// kept for retention (30 days when 0).
func NewJobs(d *Deliverer, log *slog.Logger, retention time.Duration) *Jobs {
	if retention == 0 {
		retention = 30 * 24 * time.Hour
	}
	return &Jobs{d: d, log: log, retention: retention, kicked: map[tenant.ID]bool{}, wake: make(chan struct{}, 1)}
}

// Workers registers the workers.
func (j *Jobs) Workers(w *river.Workers) {
	river.AddWorker(w, &drainWorker{j: j})
	river.AddWorker(w, &dispatchWorker{j: j})
	river.AddWorker(w, &pruneWorker{j: j})
}

// Queues are the queues this instance works.
func (j *Jobs) Queues(deliveryWorkers int) map[string]river.QueueConfig {
	return map[string]river.QueueConfig{QueueDeliveries: {MaxWorkers: deliveryWorkers}, QueueMaintain: {MaxWorkers: 2}}
}

// Periodic are the periodic jobs (River's leader inserts them, any
// instance runs them; each is safe to run twice at once).
func (j *Jobs) Periodic() []*river.PeriodicJob {
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(time.Second), func() (river.JobArgs, *river.InsertOpts) {
			return DispatchArgs{}, nil
		}, &river.PeriodicJobOpts{ID: "webhook_dispatch", RunOnStart: true}),
		river.NewPeriodicJob(river.PeriodicInterval(time.Hour), func() (river.JobArgs, *river.InsertOpts) {
			return PruneArgs{}, nil
		}, &river.PeriodicJobOpts{ID: "webhook_prune", RunOnStart: true}),
	}
}

// Use sets the client that inserts drains.
func (j *Jobs) Use(ins Inserter) {
	j.mu.Lock()
	j.ins = ins
	j.mu.Unlock()
}

// Kick says tenant t has new deliveries: a drain of its due endpoints is
// asked for within a moment, without waiting for the periodic dispatch.
// It never blocks (a commit calls it).
func (j *Jobs) Kick(t tenant.ID) {
	j.mu.Lock()
	j.kicked[t] = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// RunKicks turns kicks into drains until ctx ends, at most every
// interval (kicks in between are merged).
func (j *Jobs) RunKicks(ctx context.Context, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.wake:
		}
		j.mu.Lock()
		ts := make([]tenant.ID, 0, len(j.kicked))
		for t := range j.kicked {
			ts = append(ts, t)
		}
		clear(j.kicked)
		j.mu.Unlock()
		if err := j.dispatch(ctx, ts); err != nil && ctx.Err() == nil {
			j.log.WarnContext(ctx, "webhook dispatch failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// dispatch asks for a drain of every due endpoint (of tenants ts, or of
// all when ts is nil).
func (j *Jobs) dispatch(ctx context.Context, ts []tenant.ID) error {
	j.mu.Lock()
	ins := j.ins
	j.mu.Unlock()
	if ins == nil {
		return nil
	}
	limit := 10_000
	if ts != nil {
		if len(ts) == 0 {
			return nil
		}
		limit = len(ts) * MaxEndpoints
	}
	refs, err := j.d.q.Due(ctx, j.d.now(), ts, limit)
	if err != nil || len(refs) == 0 {
		return err
	}
	params := make([]river.InsertManyParams, len(refs))
	for i, r := range refs {
		params[i] = river.InsertManyParams{Args: DrainArgs{Tenant: r.Tenant.UUID(), Endpoint: r.Endpoint}}
	}
	_, err = ins.InsertMany(ctx, params)
	return err
}

type drainWorker struct {
	river.WorkerDefaults[DrainArgs]
	j *Jobs
}

// Timeout: a drain's budget and one exchange, with room.
func (w *drainWorker) Timeout(*river.Job[DrainArgs]) time.Duration { return w.j.d.budget + time.Minute }

func (w *drainWorker) Work(ctx context.Context, job *river.Job[DrainArgs]) error {
	err := w.j.d.Drain(ctx, Ref{Tenant: tenant.ID(job.Args.Tenant), Endpoint: job.Args.Endpoint})
	if errors.Is(err, ErrMore) {
		// Yield: the job goes to the back of the queue, so other
		// endpoints' drains run before this one continues.
		return river.JobSnooze(0)
	}
	return err
}

type dispatchWorker struct {
	river.WorkerDefaults[DispatchArgs]
	j *Jobs
}

func (w *dispatchWorker) Work(ctx context.Context, _ *river.Job[DispatchArgs]) error {
	return w.j.dispatch(ctx, nil)
}

type pruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	j *Jobs
}

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	before := w.j.d.now().Add(-w.j.retention)
	for {
		n, err := w.j.d.q.Prune(ctx, before, 5000)
		if err != nil || n < 5000 {
			return err
		}
	}
}
