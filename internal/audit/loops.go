package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SealStore seals committed events.
type SealStore interface {
	SealRound(ctx context.Context, signer *Signer) (int, error)
	SealingLag(ctx context.Context) (time.Duration, error)
}

// Sealer seals events within a second of commit. Run it under a leader
// lock: one sealer at a time across instances.
type Sealer struct {
	store    SealStore
	signer   *Signer
	log      *slog.Logger
	interval time.Duration
	lag      prometheus.Gauge
	sealed   prometheus.Counter
}

// NewSealer returns a sealer running a round every interval.
func NewSealer(store SealStore, signer *Signer, log *slog.Logger, interval time.Duration) *Sealer {
	return &Sealer{store: store, signer: signer, log: log, interval: interval,
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "elile_audit_sealing_lag_seconds",
			Help: "Age of the oldest committed but unsealed audit event (a long transaction anywhere holds sealing back)."}),
		sealed: prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_sealed_events_total", Help: "Events sealed."})}
}

// Collectors are the sealer's metrics.
func (s *Sealer) Collectors() []prometheus.Collector { return []prometheus.Collector{s.lag, s.sealed} }

// Run seals until ctx ends.
func (s *Sealer) Run(ctx context.Context) {
	s.log.InfoContext(ctx, "audit sealer: leading")
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		n, err := s.store.SealRound(ctx, s.signer)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "audit sealing round failed", "err", err)
		}
		s.sealed.Add(float64(n))
		if lag, err := s.store.SealingLag(ctx); err == nil {
			s.lag.Set(lag.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PartitionStore manages the audit log's monthly partitions.
type PartitionStore interface {
	EnsureAuditPartitions(ctx context.Context, monthsAhead int) (int, error)
	DropAuditPartitionsBefore(ctx context.Context, cutoff time.Time, ev Event) ([]string, error)
}

// Maintain keeps partitions created monthsAhead ahead and drops whole
// partitions older than retention, every interval, until ctx ends. Run it
// under a leader lock.
func Maintain(ctx context.Context, store PartitionStore, log *slog.Logger, monthsAhead int, retention, interval time.Duration) {
	log.InfoContext(ctx, "audit partition maintenance: leading")
	for {
		if n, err := store.EnsureAuditPartitions(ctx, monthsAhead); err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "creating audit partitions failed", "err", err)
		} else if n > 0 {
			log.InfoContext(ctx, "created audit partitions", "count", n)
		}
		cutoff := time.Now().UTC().Add(-retention)
		ev := New(ctx, RetentionApplied, [16]byte{})
		if dropped, err := store.DropAuditPartitionsBefore(ctx, cutoff, ev); err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "audit retention failed", "err", err)
		} else if len(dropped) > 0 {
			log.InfoContext(ctx, "audit retention dropped partitions", "partitions", dropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
