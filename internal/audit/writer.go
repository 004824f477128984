package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elile/elile/internal/apperr"
)

// BatchStore inserts many events in one statement and one commit.
type BatchStore interface {
	InsertAuditBatch(ctx context.Context, evs []Event) error
}

// ErrWriterClosed is returned by Write after Close.
var ErrWriterClosed = apperr.New(apperr.Unavailable, "AUDIT_UNAVAILABLE", "the audit log is not accepting events; retry later")

// Writer is the group-commit writer for events that record reads and
// errors: concurrent requests' events go out together in one multi-row
// insert and one commit. Write returns once the event is durable, so a
// response that reveals personal data is never sent before its audit
// record exists. The queue is bounded: when it is full, Write waits
// (requests slow down) instead of dropping events.
type Writer struct {
	store    BatchStore
	log      *slog.Logger
	queue    chan pending
	errq     chan Event
	maxBatch int

	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}

	suppressed atomic.Int64

	batches  prometheus.Histogram
	written  prometheus.Counter
	failures prometheus.Counter
	rejected prometheus.Counter
	dropped  prometheus.Counter
	depth    prometheus.GaugeFunc
}

type pending struct {
	ev   Event
	done chan error
}

// NewWriter returns a writer with room for queue waiting events, writing
// at most maxBatch per commit.
func NewWriter(store BatchStore, log *slog.Logger, queue, maxBatch int) *Writer {
	w := &Writer{store: store, log: log, queue: make(chan pending, queue), errq: make(chan Event, queue),
		maxBatch: maxBatch, stopped: make(chan struct{})}
	w.batches = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "elile_audit_writer_batch_size",
		Help: "Events per group commit.", Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}})
	w.written = prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_writer_events_total", Help: "Events committed by the group writer."})
	w.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_writer_failures_total", Help: "Group commits that failed."})
	w.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_writer_rejected_events_total",
		Help: "Events the database refused; each was found by bisecting its batch and written in a safe form instead."})
	w.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_error_events_summarised_total",
		Help: "error.occurred events folded into a summary event because the error queue was full."})
	w.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "elile_audit_writer_queue_depth", Help: "Events waiting."},
		func() float64 { return float64(len(w.queue) + len(w.errq)) })
	return w
}

// Collectors are the writer's metrics.
func (w *Writer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{w.batches, w.written, w.failures, w.rejected, w.dropped, w.depth}
}

// Write queues ev and waits until it is committed. It fails when ctx ends
// first (the event may still be written) or the writer is closed.
func (w *Writer) Write(ctx context.Context, ev Event) error {
	done := make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrWriterClosed
	}
	select {
	case w.queue <- pending{ev: ev, done: done}:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Record queues an error.occurred event without waiting. When a flood of
// errors fills the queue, further ones are counted and written as one
// summary event instead, so bad requests cannot slow good ones down.
func (w *Writer) Record(ev Event) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.errq <- ev:
	default:
		w.suppressed.Add(1)
		w.dropped.Inc()
	}
}

// Run writes batches until ctx ends and then flushes what is queued; it
// returns when everything accepted has been written or has failed.
func (w *Writer) Run(ctx context.Context) {
	defer close(w.stopped)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var first pending
		var firstErr *Event
		select {
		case first = <-w.queue:
		case ev := <-w.errq:
			firstErr = &ev
		case <-tick.C:
			w.flushSuppressed()
			continue
		case <-ctx.Done():
			w.mu.Lock()
			w.closed = true
			w.mu.Unlock()
			w.drain()
			return
		}
		batch := make([]pending, 0, w.maxBatch)
		if firstErr != nil {
			batch = append(batch, pending{ev: *firstErr})
		} else {
			batch = append(batch, first)
		}
		batch = w.fill(batch)
		w.commit(batch)
	}
}

// fill adds whatever is already waiting, reads before errors.
func (w *Writer) fill(batch []pending) []pending {
	for len(batch) < w.maxBatch {
		select {
		case p := <-w.queue:
			batch = append(batch, p)
			continue
		default:
		}
		select {
		case ev := <-w.errq:
			batch = append(batch, pending{ev: ev})
			continue
		default:
		}
		break
	}
	return batch
}

func (w *Writer) drain() {
	for {
		batch := w.fill(nil)
		if len(batch) == 0 {
			w.flushSuppressed()
			return
		}
		w.commit(batch)
	}
}

func (w *Writer) flushSuppressed() {
	n := w.suppressed.Swap(0)
	if n == 0 {
		return
	}
	ev := New(context.Background(), ErrorOccurred, [16]byte{})
	ev.Severity = Warning
	ev.Data = map[string]any{"summary": true, "suppressed_error_events": n,
		"reason": "error events arrived faster than they could be written; counted here instead"}
	w.commit([]pending{{ev: ev}})
}

// EventErrors is InsertAuditBatch's answer when some events of a batch —
// by their index — were written without their data, because their
// tenant's key could not be used; every other event was written whole.
// Those events' requests fail (with the key error); no other does.
type EventErrors map[int]error

func (e EventErrors) Error() string {
	for _, err := range e {
		return fmt.Sprintf("%d audit events written without their data: %v", len(e), err)
	}
	return "no audit event errors"
}

func (w *Writer) commit(batch []pending) {
	evs := make([]Event, len(batch))
	for i, p := range batch {
		evs[i] = p.ev
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := w.insert(ctx, evs)
	cancel()
	w.batches.Observe(float64(len(batch)))
	var keyless EventErrors
	if errors.As(err, &keyless) {
		w.written.Add(float64(len(batch)))
		w.rejected.Add(float64(len(keyless)))
		w.log.Warn("audit events written without their data: their tenant's key is unavailable", "events", len(keyless), "err", err)
		for i, p := range batch {
			if p.done != nil {
				p.done <- keyless[i]
			}
		}
		return
	}
	if err != nil {
		w.failures.Inc()
		w.log.Error("audit batch failed", "events", len(batch), "err", err)
		err = ErrWriterClosed.Withf("the audit log could not record this access; retry later").Wrap(err)
	} else {
		w.written.Add(float64(len(batch)))
	}
	for _, p := range batch {
		if p.done != nil {
			p.done <- err
		}
	}
}

// insert writes evs. When the database refuses the batch for its content
// (apperr Invalid: a value no check caught), one bad event must not fail
// the others, whatever tenant they belong to: the batch is split in halves
// until the refused events are alone — log2(n) extra inserts per bad
// event, not one insert per event — and each refused event is written in
// its safe form. Any other failure (the connection) is retried once.
func (w *Writer) insert(ctx context.Context, evs []Event) error {
	err := w.store.InsertAuditBatch(ctx, evs)
	var keyless EventErrors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &keyless):
		return err // written: the events without their data are the answer
	case apperr.KindOf(err) == apperr.Invalid:
		if len(evs) == 1 {
			w.rejected.Inc()
			w.log.Warn("audit event refused by the database; writing its safe form",
				"audit_id", evs[0].ID, "event_type", evs[0].Type, "err", err)
			return w.store.InsertAuditBatch(ctx, []Event{evs[0].Safe(err)})
		}
		half := len(evs) / 2
		return joinHalves(w.insert(ctx, evs[:half]), w.insert(ctx, evs[half:]), half)
	case errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return w.store.InsertAuditBatch(ctx, evs) // one retry: a dropped connection should not lose a batch
	}
}

// joinHalves joins the errors of a batch's two halves, the second's
// EventErrors indexes moved past the first half's n events.
func joinHalves(first, second error, n int) error {
	var a, b EventErrors
	okA := first == nil || errors.As(first, &a)
	okB := second == nil || errors.As(second, &b)
	if !okA || !okB {
		return errors.Join(first, second)
	}
	if a == nil && b == nil {
		return nil
	}
	out := EventErrors{}
	for i, err := range a {
		out[i] = err
	}
	for i, err := range b {
		out[n+i] = err
	}
	return out
}

// Wait blocks until Run has returned (after its context ended).
func (w *Writer) Wait() { <-w.stopped }
