package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"sync"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/tenant"
)

// Store reads the audit log. postgres implements it.
type Store interface {
	// AuditEvents lists t's events matching f, newest first, at most limit.
	AuditEvents(ctx context.Context, t tenant.ID, f Filter, limit int) ([]Record, error)
	// AuditEvent returns one of t's events: apperr.NotFound otherwise.
	AuditEvent(ctx context.Context, t tenant.ID, id uuid.UUID) (Record, error)
	// ExportAudit calls each for t's events matching f, oldest first.
	ExportAudit(ctx context.Context, t tenant.ID, f Filter, each func(Record) error) error
	// LatestSeal returns the newest seal of t's chain: apperr.NotFound
	// when it has none.
	LatestSeal(ctx context.Context, t uuid.UUID) (Seal, error)
	ChainReader
}

// Log records events: Write returns once the event is durable.
type Log interface {
	Write(ctx context.Context, ev Event) error
}

// Errors of the audit service.
var (
	ErrNotFound = apperr.New(apperr.NotFound, "AUDIT_EVENT_NOT_FOUND", "audit event not found")
	ErrNoSeal   = apperr.New(apperr.NotFound, "NO_CHECKPOINT", "this tenant's audit log has no sealed events yet")
	ErrBusy     = apperr.New(apperr.RateLimited, "AUDIT_BUSY",
		"this tenant already runs as many audit verifications and exports as it may at once; retry when one ends")
	errOtherChain = apperr.Fields(apperr.Field{Path: "tenant_id", Message: "the checkpoint is of another tenant's chain"})
)

// Service is the audit log's read side: listing, export and verification,
// each of them itself recorded (reading the log is audited), and the long
// reads bounded so no tenant can take the database with them.
type Service struct {
	store Store
	log   Log
	pub   ed25519.PublicKey
	gate  *Gate
}

// NewService returns the audit service; pub verifies seals, gate bounds
// verifications and exports.
func NewService(store Store, log Log, pub ed25519.PublicKey, gate *Gate) *Service {
	return &Service{store: store, log: log, pub: pub, gate: gate}
}

// read records that the caller read the audit log, durably, before the
// answer.
func (s *Service) read(ctx context.Context, t tenant.ID, what string, data map[string]any) error {
	return s.log.Write(ctx, New(ctx, DataAccessed, t).With("audit_events", what, uuid.Nil, data))
}

// List returns t's events matching f (at most limit) and records the read.
func (s *Service) List(ctx context.Context, t tenant.ID, f Filter, limit, shown int) ([]Record, error) {
	recs, err := s.store.AuditEvents(ctx, t, f, limit)
	if err != nil {
		return nil, err
	}
	if err := s.read(ctx, t, "list", map[string]any{"returned": min(len(recs), shown), "filter_event_type": f.Type}); err != nil {
		return nil, err
	}
	return recs, nil
}

// Get returns one of t's events and records the read: ErrNotFound
// otherwise.
func (s *Service) Get(ctx context.Context, t tenant.ID, id uuid.UUID) (Record, error) {
	r, err := s.store.AuditEvent(ctx, t, id)
	if apperr.KindOf(err) == apperr.NotFound {
		return Record{}, ErrNotFound.Wrap(err)
	}
	if err != nil {
		return Record{}, err
	}
	if err := s.read(ctx, t, id.String(), nil); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Verify checks t's chain of seals (and, given one, that it still holds a
// checkpoint the tenant kept outside elile) and records the verification.
// Errors: ErrBusy, apperr.Invalid (a checkpoint of another chain).
func (s *Service) Verify(ctx context.Context, t tenant.ID, cp *Checkpoint) (Report, error) {
	if cp != nil && cp.Tenant != t.String() {
		return Report{}, errOtherChain
	}
	release, err := s.gate.Enter(t)
	if err != nil {
		return Report{}, err
	}
	defer release()
	rep, err := Verify(ctx, s.store, t.UUID(), s.pub, cp)
	if err != nil {
		return Report{}, err
	}
	data := map[string]any{"status": rep.Status}
	if cp != nil {
		data["checkpoint_seq"] = cp.Seq
	}
	if err := s.read(ctx, t, "verify", data); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// Checkpoint returns t's latest signed checkpoint with the public key that
// verifies it: ErrNoSeal when nothing is sealed yet.
func (s *Service) Checkpoint(ctx context.Context, t tenant.ID) (Checkpoint, error) {
	seal, err := s.store.LatestSeal(ctx, t.UUID())
	if apperr.KindOf(err) == apperr.NotFound {
		return Checkpoint{}, ErrNoSeal.Wrap(err)
	}
	if err != nil {
		return Checkpoint{}, err
	}
	c := CheckpointOf(seal)
	c.PublicKey = base64.StdEncoding.EncodeToString(s.pub)
	return c, nil
}

// Export is a started export: Stream sends it; Close gives its place back
// if it is never streamed.
type Export struct {
	s       *Service
	t       tenant.ID
	f       Filter
	release func()
}

// StartExport takes one of t's places for long reads (ErrBusy when none is
// free) and records the export, before any of it is sent.
func (s *Service) StartExport(ctx context.Context, t tenant.ID, f Filter) (*Export, error) {
	release, err := s.gate.Enter(t)
	if err != nil {
		return nil, err
	}
	if err := s.read(ctx, t, "export", map[string]any{"since": f.Since, "until": f.Until}); err != nil {
		release()
		return nil, err
	}
	return &Export{s: s, t: t, f: f, release: release}, nil
}

// Stream calls each for every event of the export, oldest first, then
// gives its place back.
func (e *Export) Stream(ctx context.Context, each func(Record) error) error {
	defer e.release()
	return e.s.store.ExportAudit(ctx, e.t, e.f, each)
}

// Close gives the export's place back (after Stream, it does nothing).
func (e *Export) Close() { e.release() }

// Gate bounds the audit log's long reads — verification, export — which
// hold a database connection for as long as they run: at most perTenant
// at once for one tenant, and at most total on this instance.
type Gate struct {
	perTenant, total int

	mu      sync.Mutex
	running map[tenant.ID]int
	all     int
}

// NewGate returns a gate of perTenant places per tenant and total in all.
func NewGate(perTenant, total int) *Gate {
	return &Gate{perTenant: perTenant, total: total, running: map[tenant.ID]int{}}
}

// Enter takes a place for t, or fails with ErrBusy (429). release may be
// called more than once; it frees one place.
func (g *Gate) Enter(t tenant.ID) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[t] >= g.perTenant || g.all >= g.total {
		return nil, ErrBusy
	}
	g.running[t]++
	g.all++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.running[t]--; g.running[t] == 0 {
				delete(g.running, t)
			}
			g.all--
		})
	}, nil
}
