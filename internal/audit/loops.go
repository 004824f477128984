package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SealStore seals committed events.
type SealStore interface {
	// SealRound seals what committed since the last round and reports
	// how many events it sealed and the sealing lag after it.
	SealRound(ctx context.Context, signer *Signer) (Round, error)
	ForgedSealsSeen() int64
}

// Round is what one sealing round did.
type Round struct {
	Sealed int           // events sealed
	Lag    time.Duration // how long the first unsealed event has waited after the round
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
	leading  prometheus.Gauge
	rounds   *prometheus.CounterVec
	forged   prometheus.CounterFunc
}

// NewSealer returns a sealer running a round every interval.
func NewSealer(store SealStore, signer *Signer, log *slog.Logger, interval time.Duration) *Sealer {
	s := &Sealer{store: store, signer: signer, log: log, interval: interval,
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "elile_audit_sealing_lag_seconds",
			Help: "Age of the oldest committed but unsealed audit event (a long transaction anywhere holds sealing back)."}),
		sealed: prometheus.NewCounter(prometheus.CounterOpts{Name: "elile_audit_sealed_events_total", Help: "Events sealed."}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{Name: "elile_audit_sealer_leading",
			Help: "1 on the instance that holds the sealer lock (the one whose lag gauge is current)."}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "elile_audit_seal_rounds_total",
			Help: "Sealing rounds by outcome."}, []string{"outcome"}),
		forged: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "elile_audit_forged_seals_seen_total",
			Help: "Seals passed over because their signature does not verify: someone wrote to audit_seals without the signing key."},
			func() float64 { return float64(store.ForgedSealsSeen()) })}
	s.rounds.WithLabelValues("ok")
	s.rounds.WithLabelValues("failed")
	return s
}

// Collectors are the sealer's metrics.
func (s *Sealer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.lag, s.sealed, s.leading, s.rounds, s.forged}
}

// Run seals until ctx ends.
func (s *Sealer) Run(ctx context.Context) {
	s.log.InfoContext(ctx, "audit sealer: leading")
	s.leading.Set(1)
	defer s.leading.Set(0)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		r, err := s.store.SealRound(ctx, s.signer)
		if err != nil && ctx.Err() == nil {
			s.rounds.WithLabelValues("failed").Inc()
			s.log.ErrorContext(ctx, "audit sealing round failed", "err", err)
		} else if err == nil {
			s.rounds.WithLabelValues("ok").Inc()
			s.sealed.Add(float64(r.Sealed))
			s.lag.Set(r.Lag.Seconds())
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
	DropAuditPartitionsBefore(ctx context.Context, cutoff time.Time, signer *Signer, ev Event) ([]string, error)
}

// Maintain keeps partitions created monthsAhead ahead and drops whole
// partitions older than retention, every interval, until ctx ends. Run it
// under a leader lock.
func Maintain(ctx context.Context, store PartitionStore, signer *Signer, log *slog.Logger, monthsAhead int, retention, interval time.Duration) {
	log.InfoContext(ctx, "audit partition maintenance: leading")
	for {
		if n, err := store.EnsureAuditPartitions(ctx, monthsAhead); err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "creating audit partitions failed", "err", err)
		} else if n > 0 {
			log.InfoContext(ctx, "created audit partitions", "count", n)
		}
		cutoff := time.Now().UTC().Add(-retention)
		ev := New(ctx, RetentionApplied, [16]byte{})
		if dropped, err := store.DropAuditPartitionsBefore(ctx, cutoff, signer, ev); err != nil && ctx.Err() == nil {
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
