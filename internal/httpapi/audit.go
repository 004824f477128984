package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
)

// AuditLog takes audit events: Write waits until the event is durable
// (reads of personal data), Record does not (errors).
type AuditLog interface {
	Write(ctx context.Context, ev audit.Event) error
	ErrorRecorder
}

// AuditEventOut is an audit event in responses, event_data decrypted.
type AuditEventOut struct {
	AuditID       string         `json:"audit_id" format:"uuid"`
	EventType     eventType      `json:"event_type"`
	Severity      string         `json:"severity" enum:"debug,info,warning,error,critical"`
	TenantID      *string        `json:"tenant_id" format:"uuid"`
	UserID        *string        `json:"user_id" format:"uuid"`
	ActorType     string         `json:"actor_type" enum:"human,service,system"`
	CorrelationID string         `json:"correlation_id" format:"uuid"`
	EntityID      *string        `json:"entity_id" format:"uuid"`
	ResourceType  *string        `json:"resource_type" maxLength:"100" pattern:"^[a-z][a-z0-9_]*$"`
	ResourceID    *string        `json:"resource_id" maxLength:"255" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	EventData     map[string]any `json:"event_data"`
	IPAddress     *string        `json:"ip_address" format:"ip"`
	UserAgent     *string        `json:"user_agent" maxLength:"512" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"As sent, cut to 512 bytes, control characters replaced"`
	CreatedAt     time.Time      `json:"created_at"`
}

// eventType is an audit event type; its schema lists them all.
type eventType string

// Schema lists the event types from the audit package.
func (eventType) Schema(huma.Registry) *huma.Schema {
	types := audit.Types()
	enum := make([]any, len(types))
	for i, t := range types {
		enum[i] = t
	}
	return &huma.Schema{Type: huma.TypeString, Enum: enum, Description: "An audit event type, e.g. data.accessed"}
}

func optUUID(u uuid.UUID) *string {
	if u == uuid.Nil {
		return nil
	}
	s := u.String()
	return &s
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func auditOut(r audit.Record) AuditEventOut {
	data := r.Data
	if data == nil {
		data = map[string]any{}
	}
	return AuditEventOut{AuditID: r.ID.String(), EventType: eventType(r.Type), Severity: r.Severity, TenantID: optUUID(r.Tenant),
		UserID: optUUID(r.UserID), ActorType: r.Actor, CorrelationID: r.CorrelationID.String(), EntityID: optUUID(r.EntityID),
		ResourceType: optString(r.ResourceType), ResourceID: optString(r.ResourceID), EventData: data,
		IPAddress: optString(r.IP), UserAgent: optString(r.UserAgent), CreatedAt: r.At}
}

type AuditFilterParams struct {
	EventType     eventType `query:"event_type"`
	Severity      string    `query:"severity" enum:"debug,info,warning,error,critical"`
	EntityID      string    `query:"entity_id" format:"uuid"`
	CorrelationID string    `query:"correlation_id" format:"uuid"`
	UserID        string    `query:"user_id" format:"uuid"`
	ResourceType  string    `query:"resource_type" maxLength:"100" pattern:"^[a-z][a-z0-9_]*$"`
	ResourceID    string    `query:"resource_id" maxLength:"255" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	Since         time.Time `query:"since" doc:"RFC 3339; events at or after"`
	Until         time.Time `query:"until" doc:"RFC 3339; events before"`
}

func (p AuditFilterParams) filter() audit.Filter {
	f := audit.Filter{Type: string(p.EventType), Severity: p.Severity, ResourceType: p.ResourceType, ResourceID: p.ResourceID,
		Since: p.Since, Until: p.Until}
	f.EntityID, _ = uuid.Parse(p.EntityID)
	f.CorrelationID, _ = uuid.Parse(p.CorrelationID)
	f.UserID, _ = uuid.Parse(p.UserID)
	return f
}

type auditListInput struct {
	AuditFilterParams
	ListParams
}

type auditListOutput struct{ Body Page[AuditEventOut] }

// auditCursor encodes the keyset position (time, id) of the last event.
func auditCursor(at time.Time, id uuid.UUID) string {
	b := make([]byte, 0, 25)
	b = append(b, 2)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMicro())) //nolint:gosec // after 1970
	b = append(b, id[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseAuditCursor(c string) (time.Time, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil || len(b) != 25 || b[0] != 2 || base64.RawURLEncoding.EncodeToString(b) != c {
		return time.Time{}, uuid.Nil, errCursor
	}
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC(), uuid.UUID(b[9:]), nil //nolint:gosec // round trip
}

func handleAuditList(svc *audit.Service) handlerFunc[auditListInput, auditListOutput] {
	return func(ctx context.Context, in *auditListInput) (*auditListOutput, error) {
		f := in.filter()
		if in.Cursor != "" {
			at, id, err := parseAuditCursor(in.Cursor)
			if err != nil {
				return nil, err
			}
			f.BeforeAt, f.BeforeID = at, id
		}
		recs, err := svc.List(ctx, scopeOf(ctx).Tenant(), f, in.Limit+1, in.Limit)
		if err != nil {
			return nil, err
		}
		out := Page[AuditEventOut]{Data: make([]AuditEventOut, 0, min(len(recs), in.Limit))}
		for i, r := range recs {
			if i == in.Limit {
				last := recs[i-1]
				c := auditCursor(last.At, last.ID)
				out.NextCursor = &c
				break
			}
			out.Data = append(out.Data, auditOut(r))
		}
		return &auditListOutput{Body: out}, nil
	}
}

type auditIDInput struct {
	AuditID string `path:"audit_id" format:"uuid"`
}

type auditOneOutput struct{ Body AuditEventOut }

func handleAuditGet(svc *audit.Service) handlerFunc[auditIDInput, auditOneOutput] {
	return func(ctx context.Context, in *auditIDInput) (*auditOneOutput, error) {
		id, err := uuid.Parse(in.AuditID)
		if err != nil {
			return nil, audit.ErrNotFound
		}
		r, err := svc.Get(ctx, scopeOf(ctx).Tenant(), id)
		if err != nil {
			return nil, err
		}
		return &auditOneOutput{Body: auditOut(r)}, nil
	}
}

// Report is the outcome of verifying a tenant's audit log.
type Report struct {
	Status        string      `json:"status" enum:"intact,tampered"`
	EventsChecked int64       `json:"events_checked" minimum:"0" maximum:"9007199254740991"`
	SealsChecked  int         `json:"seals_checked" minimum:"0" maximum:"9007199254740991"`
	LastSealedAt  *time.Time  `json:"last_sealed_at"`
	Head          *Checkpoint `json:"head,omitempty" doc:"The newest seal, signed: keep it outside elile and verify against it later"`
	Problems      []Finding   `json:"problems" nullable:"false" maxItems:"100" doc:"The first 100 problems found"`
}

// Finding is one problem verification found.
type Finding struct {
	Seq     int64  `json:"seal_seq,omitempty" minimum:"0" maximum:"9007199254740991"`
	AuditID string `json:"audit_id,omitempty" format:"uuid"`
	Kind    string `json:"kind" enum:"modified,deleted,inserted,reordered,bad_signature,broken_link,checkpoint"`
	Detail  string `json:"detail" maxLength:"500"`
}

// Checkpoint is a signed statement of a tenant's log: its seal count,
// event count and head hash at a time.
type Checkpoint struct {
	TenantID        string    `json:"tenant_id" format:"uuid"`
	Seq             int64     `json:"seal_seq" minimum:"1" maximum:"9007199254740991"`
	HorizonTo       uint64    `json:"horizon" minimum:"0" maximum:"9007199254740991" doc:"Opaque: part of what the signature covers. Keep it as returned and send it back to verify; do not compute with it"`
	CumulativeCount int64     `json:"event_count" minimum:"0" maximum:"9007199254740991"`
	SealHash        string    `json:"seal_hash" maxLength:"64" pattern:"^[0-9a-f]{64}$"`
	At              time.Time `json:"sealed_at"`
	KeyID           string    `json:"key_id" maxLength:"100" pattern:"^[a-z0-9]+:[0-9a-f]+$"`
	Signature       string    `json:"signature" maxLength:"200" pattern:"^[A-Za-z0-9+/]+={0,2}$" doc:"Base64 Ed25519 signature"`
	PublicKey       string    `json:"public_key,omitempty" maxLength:"100" pattern:"^[A-Za-z0-9+/]+={0,2}$" doc:"Base64; informative: verify against a key you trust (absent in a verification report's head)"`
}

func checkpointOut(c audit.Checkpoint) Checkpoint {
	return Checkpoint{TenantID: c.Tenant, Seq: c.Seq, HorizonTo: c.HorizonTo, CumulativeCount: c.CumulativeCount, SealHash: c.SealHash,
		At: c.At, KeyID: c.KeyID, Signature: c.Signature, PublicKey: c.PublicKey}
}

func reportOut(r audit.Report) Report {
	o := Report{Status: r.Status, EventsChecked: r.EventsChecked, SealsChecked: r.SealsChecked, LastSealedAt: r.LastSealedAt,
		Problems: make([]Finding, len(r.Problems))}
	if r.Head != nil {
		h := checkpointOut(*r.Head)
		o.Head = &h
	}
	for i, f := range r.Problems {
		o.Problems[i] = Finding{Seq: f.Seq, Kind: f.Kind, Detail: f.Detail}
		if f.AuditID != uuid.Nil {
			o.Problems[i].AuditID = f.AuditID.String()
		}
	}
	return o
}

type verifyOutput struct{ Body Report }

type emptyInput struct{}

func handleAuditVerify(svc *audit.Service) handlerFunc[emptyInput, verifyOutput] {
	return func(ctx context.Context, _ *emptyInput) (*verifyOutput, error) {
		rep, err := svc.Verify(ctx, scopeOf(ctx).Tenant(), nil)
		if err != nil {
			return nil, err
		}
		return &verifyOutput{Body: reportOut(rep)}, nil
	}
}

// checkpointBody is a checkpoint as GET /v1/audit-events/checkpoint
// returned it and the client kept outside elile.
type checkpointBody struct {
	TenantID        string    `json:"tenant_id" format:"uuid" doc:"The tenant whose chain it covers: the caller's"`
	Seq             int64     `json:"seal_seq" minimum:"1" maximum:"9007199254740991"`
	HorizonTo       uint64    `json:"horizon" minimum:"0" maximum:"9007199254740991" doc:"Opaque: part of what the signature covers. Keep it as returned and send it back to verify; do not compute with it"`
	CumulativeCount int64     `json:"event_count" minimum:"0" maximum:"9007199254740991"`
	SealHash        string    `json:"seal_hash" maxLength:"64" pattern:"^[0-9a-f]{64}$"`
	At              time.Time `json:"sealed_at"`
	KeyID           string    `json:"key_id" maxLength:"100" pattern:"^[a-z0-9]+:[0-9a-f]+$"`
	Signature       string    `json:"signature" maxLength:"200" pattern:"^[A-Za-z0-9+/]+={0,2}$" doc:"Base64 Ed25519 signature"`
	PublicKey       string    `json:"public_key,omitempty" maxLength:"100" pattern:"^[A-Za-z0-9+/]*={0,2}$" doc:"Informative; verification uses the server's key"`
}

type verifyCheckpointInput struct{ Body checkpointBody }

// handleAuditVerifyCheckpoint verifies the tenant's chain and proves that
// it still contains a checkpoint the client kept outside elile: a rewrite
// or truncation by someone with database access shows as tampered.
func handleAuditVerifyCheckpoint(svc *audit.Service) handlerFunc[verifyCheckpointInput, verifyOutput] {
	return func(ctx context.Context, in *verifyCheckpointInput) (*verifyOutput, error) {
		b := in.Body
		cp := audit.Checkpoint{Tenant: b.TenantID, Seq: b.Seq, HorizonTo: b.HorizonTo, CumulativeCount: b.CumulativeCount,
			SealHash: b.SealHash, At: b.At, KeyID: b.KeyID, Signature: b.Signature}
		rep, err := svc.Verify(ctx, scopeOf(ctx).Tenant(), &cp)
		if err != nil {
			return nil, err
		}
		return &verifyOutput{Body: reportOut(rep)}, nil
	}
}

type checkpointOutput struct{ Body Checkpoint }

func handleAuditCheckpoint(svc *audit.Service) handlerFunc[emptyInput, checkpointOutput] {
	return func(ctx context.Context, _ *emptyInput) (*checkpointOutput, error) {
		c, err := svc.Checkpoint(ctx, scopeOf(ctx).Tenant())
		if err != nil {
			return nil, err
		}
		return &checkpointOutput{Body: checkpointOut(c)}, nil
	}
}

// registerAuditExport adds the NDJSON export, which streams: huma
// describes it, the handler writes line by line and flushes.
func registerAuditExport(api huma.API, svc *audit.Service, log *slog.Logger, table map[string]access) {
	op := huma.Operation{OperationID: "export-audit-events", Method: http.MethodGet, Path: "/v1/audit-events/export",
		Summary: "Export audit events (NDJSON)", Tags: []string{"Audit log"}, Security: []map[string][]string{{"bearer": {}}},
		Description: "Requires scope `audit:read`. Acts in the tenant named by `X-Tenant-ID`, or in the credential's own tenant when it is bound to one. One event per line, oldest first, streamed.",
		Errors:      append(guardErrors(), 401, 403, 422, 429, 500, 503),
		Parameters: []*huma.Param{{Name: "X-Tenant-ID", In: "header", Schema: &huma.Schema{Type: "string", Format: "uuid"},
			Description: "The tenant to act in (UUID). Required for a platform-admin credential; optional for a credential bound to one tenant."}},
		Responses: map[string]*huma.Response{"200": {Description: "Events, one JSON object per line",
			Content: map[string]*huma.MediaType{"application/x-ndjson": {Schema: &huma.Schema{Ref: "#/components/schemas/AuditEventOut",
				Description: "The schema of each line: one audit event"}}}}},
	}
	type exportInput struct {
		Since time.Time `query:"since"`
		Until time.Time `query:"until"`
	}
	table[op.Method+" "+op.Path] = access{Scope: "audit:read", Tenant: true}
	huma.Register(api, op, func(ctx context.Context, in *exportInput) (*huma.StreamResponse, error) {
		exp, err := svc.StartExport(ctx, scopeOf(ctx).Tenant(), audit.Filter{Since: in.Since, Until: in.Until})
		if err != nil {
			return nil, respond(ctx, log, err)
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			defer exp.Close()
			hctx.SetHeader("Content-Type", "application/x-ndjson")
			w := hctx.BodyWriter()
			enc := json.NewEncoder(w)
			flusher, _ := w.(http.Flusher)
			n := 0
			err := exp.Stream(hctx.Context(), func(r audit.Record) error {
				if err := enc.Encode(auditOut(r)); err != nil {
					return err
				}
				if n++; n%500 == 0 && flusher != nil {
					flusher.Flush()
				}
				return nil
			})
			if err != nil {
				log.ErrorContext(hctx.Context(), "audit export interrupted", "err", err, "lines", n)
			}
		}}, nil
	})
}
