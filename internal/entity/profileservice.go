package entity

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/compactjson"
	"github.com/elile/elile/internal/tenant"
)

// ProfileStore keeps the versioned risk profiles. postgres implements it.
type ProfileStore interface {
	// InScope runs fn in one unit of work in scope sc.
	InScope(ctx context.Context, sc tenant.Scope, fn func(ProfileTx) error) error
	// Profiles lists sc's profiles of an entity sc can see, newest first,
	// below version before (0: from the newest); more reports a next page.
	Profiles(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, before, limit int) (ps []Profile, more bool, err error)
	// Profile returns version v (0: the latest) of sc's profile of an
	// entity: ErrNotFound or ErrProfileNotFound otherwise.
	Profile(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, v int) (Profile, error)
}

// ProfileTx is the work a profile unit of work can do.
type ProfileTx interface {
	// Visible fails with ErrNotFound unless the scope can see the entity.
	Visible(ctx context.Context, ids ...uuid.UUID) error
	// Latest locks the entity's profile history for this unit of work
	// (concurrent creates get consecutive versions) and returns its newest
	// version; ok is false when it has none.
	Latest(ctx context.Context, entityID uuid.UUID) (p Profile, ok bool, err error)
	// InsertProfile stores p (created_at filled in when it is sent).
	InsertProfile(ctx context.Context, p *Profile) error
	// AppendAudit records ev in the same transaction.
	AppendAudit(ctx context.Context, ev audit.Event) error
}

// ProfileService owns the rules of risk profiles: what a valid score is,
// versions, the delta against the previous version, and audit events.
type ProfileService struct {
	store ProfileStore
	audit audit.Log
}

// NewProfileService returns the profile service.
func NewProfileService(store ProfileStore, log audit.Log) *ProfileService {
	return &ProfileService{store: store, audit: log}
}

// NewProfile is the input of Create. The lists hold JSON values.
type NewProfile struct {
	TriggerType      string
	TriggerID        uuid.UUID
	RiskScore        map[string]any
	Findings         []any
	Connections      []any
	DataSourcesUsed  []any
	StaleDataUsed    []any
	EvolutionSignals []any
}

// Byte budgets of a profile's free-form values, as compact JSON: with
// every other field at its limit, a profile at these fits the API's 1 MiB
// request body.
const (
	MaxFindingsBytes    = 512 << 10
	MaxConnectionsBytes = 256 << 10
	MaxListBytes        = 64 << 10 // data_sources_used, stale_data_used, evolution_signals
	MaxScoreBytes       = 8 << 10
)

// ValidateScore checks a risk score: overall is required, and every
// numeric score is a number from 0 to 1.
func ValidateScore(score map[string]any) []apperr.Field {
	var errs []apperr.Field
	if n := compactjson.Size(score); n > MaxScoreBytes {
		errs = append(errs, apperr.Field{Path: "risk_score", Message: fmt.Sprintf("at most %d bytes as compact JSON, not %d", MaxScoreBytes, n)})
	}
	switch overall, ok := score["overall"].(float64); {
	case score["overall"] == nil:
		errs = append(errs, apperr.Field{Path: "risk_score.overall", Message: "required: a number from 0 to 1"})
	case !ok:
		errs = append(errs, apperr.Field{Path: "risk_score.overall", Message: "a number from 0 to 1"})
	case overall < 0 || overall > 1 || math.IsNaN(overall):
		errs = append(errs, apperr.Field{Path: "risk_score.overall", Message: "scores are from 0 to 1"})
	}
	for _, k := range slices.Sorted(maps.Keys(score)) {
		if k == "overall" {
			continue
		}
		if f, isNum := score[k].(float64); isNum && (f < 0 || f > 1 || math.IsNaN(f)) {
			errs = append(errs, apperr.Field{Path: "risk_score." + k, Message: "scores are from 0 to 1"})
		}
	}
	return errs
}

// toRaw encodes a list of JSON values, which together (as a compact JSON
// array) take at most budget bytes.
func toRaw(path string, in []any, budget int) ([]json.RawMessage, []apperr.Field) {
	out := make([]json.RawMessage, len(in))
	size := 2 + max(len(in)-1, 0) // [ , ]
	for i, v := range in {
		b, err := compactjson.Marshal(v)
		if err != nil {
			return nil, []apperr.Field{{Path: fmt.Sprintf("%s[%d]", path, i), Message: "not JSON"}}
		}
		out[i] = b
		size += len(b)
	}
	if size > budget {
		return nil, []apperr.Field{{Path: path, Message: fmt.Sprintf("at most %d bytes as compact JSON, not %d", budget, size)}}
	}
	return out, nil
}

// Create stores the next version of sc's profile of an entity sc can see,
// with its delta against the version before, and records
// profile.created, in one transaction. Errors: apperr.Invalid,
// ErrNotFound.
func (s *ProfileService) Create(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, in NewProfile) (Profile, error) {
	errs := ValidateScore(in.RiskScore)
	p := Profile{ID: uuid.Must(uuid.NewV7()), EntityID: entityID, Tenant: sc.Tenant(), TriggerType: in.TriggerType,
		TriggerID: in.TriggerID, RiskScore: in.RiskScore}
	for _, x := range []struct {
		path   string
		in     []any
		budget int
		out    *[]json.RawMessage
	}{{"findings", in.Findings, MaxFindingsBytes, &p.Findings}, {"connections", in.Connections, MaxConnectionsBytes, &p.Connections},
		{"data_sources_used", in.DataSourcesUsed, MaxListBytes, &p.DataSourcesUsed}, {"stale_data_used", in.StaleDataUsed, MaxListBytes, &p.StaleDataUsed},
		{"evolution_signals", in.EvolutionSignals, MaxListBytes, &p.EvolutionSignals}} {
		var bad []apperr.Field
		*x.out, bad = toRaw(x.path, x.in, x.budget)
		errs = append(errs, bad...)
	}
	if err := apperr.Fields(errs...); err != nil {
		return Profile{}, err
	}
	err := s.store.InScope(ctx, sc, func(tx ProfileTx) error {
		if err := tx.Visible(ctx, entityID); err != nil {
			return err
		}
		prev, ok, err := tx.Latest(ctx, entityID)
		if err != nil {
			return err
		}
		var d Delta
		if ok {
			p.Version = prev.Version + 1
			d = ComputeDelta(prev, p)
		} else {
			p.Version = 1
			d = FirstDelta(p)
		}
		p.Delta = &d
		if err := tx.InsertProfile(ctx, &p); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(ctx, audit.ProfileCreated, sc.Tenant()).With("profile", p.ID.String(), entityID,
			map[string]any{"version": p.Version, "trigger_type": p.TriggerType, "risk_score_overall": Overall(p.RiskScore),
				"findings": len(p.Findings), "connections": len(p.Connections)}))
	})
	if err != nil {
		return Profile{}, err
	}
	return p, nil
}

// List returns a page of sc's profiles of an entity and records the read.
func (s *ProfileService) List(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, before, limit int) ([]Profile, bool, error) {
	ps, more, err := s.store.Profiles(ctx, sc, entityID, before, limit)
	if err != nil {
		return nil, false, err
	}
	ev := audit.New(ctx, audit.DataAccessed, sc.Tenant()).With("profile", "list", entityID, map[string]any{"returned": len(ps)})
	if err := s.audit.Write(ctx, ev); err != nil {
		return nil, false, err
	}
	return ps, more, nil
}

// Get returns version v (0: the latest) of sc's profile of an entity and
// records the read.
func (s *ProfileService) Get(ctx context.Context, sc tenant.Scope, entityID uuid.UUID, v int) (Profile, error) {
	p, err := s.store.Profile(ctx, sc, entityID, v)
	if err != nil {
		return Profile{}, err
	}
	ev := audit.New(ctx, audit.DataAccessed, sc.Tenant()).With("profile", p.ID.String(), entityID, map[string]any{"version": p.Version})
	if err := s.audit.Write(ctx, ev); err != nil {
		return Profile{}, err
	}
	return p, nil
}
