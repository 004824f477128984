package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/entity"
)

// ProfileOut is a profile version in responses.
type ProfileOut struct {
	ProfileID        string            `json:"profile_id" format:"uuid"`
	EntityID         string            `json:"entity_id" format:"uuid"`
	TenantID         string            `json:"tenant_id" format:"uuid"`
	Version          int               `json:"version" minimum:"1" maximum:"2147483647"`
	PreviousVersion  *int              `json:"previous_version" minimum:"1" maximum:"2147483646"`
	TriggerType      string            `json:"trigger_type" enum:"screening,monitoring,manual"`
	TriggerID        *string           `json:"trigger_id" format:"uuid"`
	Findings         []json.RawMessage `json:"findings" nullable:"false" maxItems:"10000"`
	RiskScore        map[string]any    `json:"risk_score"`
	Connections      []json.RawMessage `json:"connections" nullable:"false" maxItems:"10000"`
	ConnectionCount  int               `json:"connection_count" minimum:"0" maximum:"10000"`
	DataSourcesUsed  []json.RawMessage `json:"data_sources_used" nullable:"false" maxItems:"1000"`
	StaleDataUsed    []json.RawMessage `json:"stale_data_used" nullable:"false" maxItems:"1000"`
	EvolutionSignals []json.RawMessage `json:"evolution_signals" nullable:"false" maxItems:"1000"`
	Delta            *Delta            `json:"delta"`
	CreatedAt        time.Time         `json:"created_at"`
}

// Delta is what changed against the previous version (findings matched
// by their id field, else by content).
type Delta struct {
	RiskScoreChange       float64           `json:"risk_score_change" minimum:"-1" maximum:"1"`
	ConnectionCountChange int               `json:"connection_count_change" minimum:"-10000" maximum:"10000"`
	NewFindings           []json.RawMessage `json:"new_findings" nullable:"false" maxItems:"10000"`
	ResolvedFindings      []json.RawMessage `json:"resolved_findings" nullable:"false" maxItems:"10000"`
}

func raws(v []json.RawMessage) []json.RawMessage {
	if v == nil {
		return []json.RawMessage{}
	}
	return v
}

func profileOut(p entity.Profile) ProfileOut {
	o := ProfileOut{ProfileID: p.ID.String(), EntityID: p.EntityID.String(), TenantID: p.Tenant.String(), Version: p.Version,
		TriggerType: p.TriggerType, TriggerID: optUUID(p.TriggerID), Findings: raws(p.Findings), RiskScore: p.RiskScore,
		Connections: raws(p.Connections), ConnectionCount: len(p.Connections), DataSourcesUsed: raws(p.DataSourcesUsed),
		StaleDataUsed: raws(p.StaleDataUsed), EvolutionSignals: raws(p.EvolutionSignals), CreatedAt: p.CreatedAt.UTC()}
	if d := p.Delta; d != nil {
		o.Delta = &Delta{RiskScoreChange: d.RiskScoreChange, ConnectionCountChange: d.ConnectionCountChange,
			NewFindings: raws(d.NewFindings), ResolvedFindings: raws(d.ResolvedFindings)}
	}
	if p.Version > 1 {
		v := p.Version - 1
		o.PreviousVersion = &v
	}
	return o
}

type createProfileInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Body     struct {
		TriggerType      string         `json:"trigger_type" enum:"screening,monitoring,manual"`
		TriggerID        string         `json:"trigger_id,omitempty" format:"uuid"`
		Findings         []any          `json:"findings" maxItems:"10000"`
		RiskScore        map[string]any `json:"risk_score" doc:"Scores; overall (0..1) is required, every other number is 0..1 too"`
		Connections      []any          `json:"connections" maxItems:"10000"`
		DataSourcesUsed  []any          `json:"data_sources_used" maxItems:"1000"`
		StaleDataUsed    []any          `json:"stale_data_used" maxItems:"1000"`
		EvolutionSignals []any          `json:"evolution_signals,omitempty" maxItems:"1000"`
	}
}

type profileOutput struct{ Body ProfileOut }

func handleProfileCreate(svc *entity.ProfileService) handlerFunc[createProfileInput, created[ProfileOut]] {
	return func(ctx context.Context, in *createProfileInput) (*created[ProfileOut], error) {
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		b := in.Body
		np := entity.NewProfile{TriggerType: b.TriggerType, RiskScore: b.RiskScore, Findings: b.Findings, Connections: b.Connections,
			DataSourcesUsed: b.DataSourcesUsed, StaleDataUsed: b.StaleDataUsed, EvolutionSignals: b.EvolutionSignals}
		if b.TriggerID != "" {
			np.TriggerID = uuid.MustParse(b.TriggerID)
		}
		p, err := svc.Create(ctx, scopeOf(ctx), eid, np)
		if err != nil {
			return nil, err
		}
		return &created[ProfileOut]{Location: fmt.Sprintf("/v1/entities/%s/profiles/%d", eid, p.Version), Body: profileOut(p)}, nil
	}
}

type listProfilesInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	ListParams
}

type profileListOutput struct{ Body Page[ProfileOut] }

func versionCursor(v int) string {
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint32([]byte{3}, uint32(v))) //nolint:gosec // positive
}

func handleProfileList(svc *entity.ProfileService) handlerFunc[listProfilesInput, profileListOutput] {
	return func(ctx context.Context, in *listProfilesInput) (*profileListOutput, error) {
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		before := 0
		if in.Cursor != "" {
			b, err := base64.RawURLEncoding.Strict().DecodeString(in.Cursor)
			if err != nil || len(b) != 5 || b[0] != 3 || base64.RawURLEncoding.EncodeToString(b) != in.Cursor {
				return nil, errCursor
			}
			before = int(binary.BigEndian.Uint32(b[1:]))
		}
		ps, more, err := svc.List(ctx, scopeOf(ctx), eid, before, in.Limit)
		if err != nil {
			return nil, err
		}
		out := Page[ProfileOut]{Data: make([]ProfileOut, 0, len(ps))}
		for _, p := range ps {
			out.Data = append(out.Data, profileOut(p))
		}
		if more && len(ps) > 0 {
			c := versionCursor(ps[len(ps)-1].Version)
			out.NextCursor = &c
		}
		return &profileListOutput{Body: out}, nil
	}
}

type getProfileInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Version  int    `path:"version" minimum:"1" maximum:"2147483647"`
}

func handleProfileGet(svc *entity.ProfileService) handlerFunc[getProfileInput, profileOutput] {
	return func(ctx context.Context, in *getProfileInput) (*profileOutput, error) {
		return getProfile(ctx, svc, in.EntityID, in.Version)
	}
}

func handleProfileLatest(svc *entity.ProfileService) handlerFunc[entityPath, profileOutput] {
	return func(ctx context.Context, in *entityPath) (*profileOutput, error) {
		return getProfile(ctx, svc, in.EntityID, 0)
	}
}

func getProfile(ctx context.Context, svc *entity.ProfileService, entityID string, version int) (*profileOutput, error) {
	eid, err := entityPath{entityID}.id()
	if err != nil {
		return nil, err
	}
	p, err := svc.Get(ctx, scopeOf(ctx), eid, version)
	if err != nil {
		return nil, err
	}
	return &profileOutput{Body: profileOut(p)}, nil
}
