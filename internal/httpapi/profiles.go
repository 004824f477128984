package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/tenant"
)

// ProfileOut is a profile version in responses.
type ProfileOut struct {
	ProfileID        string            `json:"profile_id" format:"uuid"`
	EntityID         string            `json:"entity_id" format:"uuid"`
	TenantID         string            `json:"tenant_id" format:"uuid"`
	Version          int               `json:"version"`
	PreviousVersion  *int              `json:"previous_version"`
	TriggerType      string            `json:"trigger_type"`
	TriggerID        *string           `json:"trigger_id" format:"uuid"`
	Findings         []json.RawMessage `json:"findings"`
	RiskScore        map[string]any    `json:"risk_score"`
	Connections      []json.RawMessage `json:"connections"`
	ConnectionCount  int               `json:"connection_count"`
	DataSourcesUsed  []json.RawMessage `json:"data_sources_used"`
	StaleDataUsed    []json.RawMessage `json:"stale_data_used"`
	EvolutionSignals []json.RawMessage `json:"evolution_signals"`
	Delta            *entity.Delta     `json:"delta"`
	CreatedAt        time.Time         `json:"created_at"`
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
		StaleDataUsed: raws(p.StaleDataUsed), EvolutionSignals: raws(p.EvolutionSignals), Delta: p.Delta, CreatedAt: p.CreatedAt.UTC()}
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
		RiskScore        map[string]any `json:"risk_score" doc:"Scores; overall (0..1) is required"`
		Connections      []any          `json:"connections" maxItems:"10000"`
		DataSourcesUsed  []any          `json:"data_sources_used" maxItems:"1000"`
		StaleDataUsed    []any          `json:"stale_data_used" maxItems:"1000"`
		EvolutionSignals []any          `json:"evolution_signals,omitempty" maxItems:"1000"`
	}
}

func toRaw(loc string, in []any) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(in))
	for i, v := range in {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, invalidFields(ProblemItem{Location: fmt.Sprintf("%s[%d]", loc, i), Message: "not JSON"})
		}
		out[i] = b
	}
	return out, nil
}

type profileOutput struct{ Body ProfileOut }

func handleProfileCreate(d Deps) handlerFunc[createProfileInput, profileOutput] {
	return func(ctx context.Context, in *createProfileInput) (*profileOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
		eid, err := entityPath{in.EntityID}.id()
		if err != nil {
			return nil, err
		}
		b := in.Body
		var items []ProblemItem
		overall, ok := b.RiskScore["overall"].(float64)
		if !ok || overall < 0 || overall > 1 || math.IsNaN(overall) {
			items = append(items, ProblemItem{Location: "body.risk_score.overall", Message: "required: a number from 0 to 1"})
		}
		for k, v := range b.RiskScore {
			if f, isNum := v.(float64); isNum && (f < 0 || f > 1) {
				items = append(items, ProblemItem{Location: "body.risk_score." + k, Message: "scores are from 0 to 1"})
			}
		}
		if len(items) > 0 {
			return nil, invalidFields(items...)
		}
		p := entity.Profile{ID: uuid.Must(uuid.NewV7()), EntityID: eid, Tenant: tid, TriggerType: b.TriggerType, RiskScore: b.RiskScore}
		if b.TriggerID != "" {
			p.TriggerID = uuid.MustParse(b.TriggerID)
		}
		for _, x := range []struct {
			loc string
			in  []any
			out *[]json.RawMessage
		}{{"body.findings", b.Findings, &p.Findings}, {"body.connections", b.Connections, &p.Connections},
			{"body.data_sources_used", b.DataSourcesUsed, &p.DataSourcesUsed}, {"body.stale_data_used", b.StaleDataUsed, &p.StaleDataUsed},
			{"body.evolution_signals", b.EvolutionSignals, &p.EvolutionSignals}} {
			if *x.out, err = toRaw(x.loc, x.in); err != nil {
				return nil, err
			}
		}
		out, err := d.Entities.CreateProfile(ctx, p, func(p entity.Profile) audit.Event {
			return audit.New(ctx, audit.ProfileCreated, tid).With("profile", p.ID.String(), eid, map[string]any{
				"version": p.Version, "trigger_type": p.TriggerType, "risk_score_overall": entity.Overall(p.RiskScore),
				"findings": len(p.Findings), "connections": len(p.Connections)})
		})
		if err != nil {
			return nil, err
		}
		return &profileOutput{Body: profileOut(out)}, nil
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

func handleProfileList(d Deps) handlerFunc[listProfilesInput, profileListOutput] {
	return func(ctx context.Context, in *listProfilesInput) (*profileListOutput, error) {
		tid, _ := tenant.ScopeFrom(ctx)
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
		ps, more, err := d.Entities.Profiles(ctx, tid, eid, before, in.Limit)
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
		ev := audit.New(ctx, audit.DataAccessed, tid).With("profile", "list", eid, map[string]any{"returned": len(out.Data)})
		if err := d.Audit.Write(ctx, ev); err != nil {
			return nil, err
		}
		return &profileListOutput{Body: out}, nil
	}
}

type getProfileInput struct {
	EntityID string `path:"entity_id" format:"uuid"`
	Version  int    `path:"version" minimum:"1" maximum:"2147483647"`
}

func getProfile(ctx context.Context, d Deps, entityID string, version int) (*profileOutput, error) {
	tid, _ := tenant.ScopeFrom(ctx)
	eid, err := entityPath{entityID}.id()
	if err != nil {
		return nil, err
	}
	p, err := d.Entities.Profile(ctx, tid, eid, version)
	if err != nil {
		return nil, err
	}
	ev := audit.New(ctx, audit.DataAccessed, tid).With("profile", p.ID.String(), eid, map[string]any{"version": p.Version})
	if err := d.Audit.Write(ctx, ev); err != nil {
		return nil, err
	}
	return &profileOutput{Body: profileOut(p)}, nil
}

func handleProfileGet(d Deps) handlerFunc[getProfileInput, profileOutput] {
	return func(ctx context.Context, in *getProfileInput) (*profileOutput, error) {
		return getProfile(ctx, d, in.EntityID, in.Version)
	}
}

func handleProfileLatest(d Deps) handlerFunc[entityPath, profileOutput] {
	return func(ctx context.Context, in *entityPath) (*profileOutput, error) {
		return getProfile(ctx, d, in.EntityID, 0)
	}
}
