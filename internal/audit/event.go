// Package audit defines the audit log's events and how they are made from
// a request: every mutation records one in its own transaction, every read
// of personal data and every error response records one before the
// response is sent.
package audit

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/request"
	"github.com/elile/elile/internal/tenant"
)

// Event types: the phase document's set and elile's additions.
const (
	ScreeningInitiated  = "screening.initiated"
	ScreeningCompleted  = "screening.completed"
	ScreeningFailed     = "screening.failed"
	DataAccessed        = "data.accessed"
	CacheHit            = "cache.hit"
	CacheMiss           = "cache.miss"
	ProviderQuery       = "provider.query"
	EntityCreated       = "entity.created"
	EntityMerged        = "entity.merged"
	ProfileCreated      = "profile.created"
	ConsentGranted      = "consent.granted"
	ConsentRevoked      = "consent.revoked"
	ComplianceCheck     = "compliance.check"
	ComplianceViolation = "compliance.violation"
	UserLogin           = "user.login"
	UserLogout          = "user.logout"
	ReportDownloaded    = "report.downloaded"
	ConfigChanged       = "config.changed"
	RuleModified        = "rule.modified"
	RetentionApplied    = "data.retention_applied"
	DataErased          = "data.erased"
	EntityUpdated       = "entity.updated"
	EntityRelated       = "entity.related"
	TenantCreated       = "tenant.created"
	TenantErased        = "tenant.erased"
	APIKeyCreated       = "api_key.created"
	APIKeyRevoked       = "api_key.revoked"
	AuthFailed          = "auth.failed"
	ErrorOccurred       = "error.occurred"

	RelationUpdated = "relation.updated"
	RelationDeleted = "relation.deleted"

	WebhookEndpointCreated  = "webhook_endpoint.created"
	WebhookEndpointUpdated  = "webhook_endpoint.updated"
	WebhookEndpointDeleted  = "webhook_endpoint.deleted"
	WebhookEndpointDisabled = "webhook_endpoint.disabled"
)

// Types lists every event type.
func Types() []string {
	return []string{ScreeningInitiated, ScreeningCompleted, ScreeningFailed, DataAccessed, CacheHit, CacheMiss,
		ProviderQuery, EntityCreated, EntityMerged, ProfileCreated, ConsentGranted, ConsentRevoked, ComplianceCheck,
		ComplianceViolation, UserLogin, UserLogout, ReportDownloaded, ConfigChanged, RuleModified, RetentionApplied,
		DataErased, EntityUpdated, EntityRelated, TenantCreated, TenantErased, APIKeyCreated, APIKeyRevoked, AuthFailed, ErrorOccurred,
		WebhookEndpointCreated, WebhookEndpointUpdated, WebhookEndpointDeleted, WebhookEndpointDisabled, RelationUpdated, RelationDeleted}
}

// ValidType reports whether t is a known event type.
func ValidType(t string) bool { return slices.Contains(Types(), t) }

// Severities, lowest first.
const (
	Debug    = "debug"
	Info     = "info"
	Warning  = "warning"
	Error    = "error"
	Critical = "critical"
)

// Severities lists the severities.
func Severities() []string { return []string{Debug, Info, Warning, Error, Critical} }

// Event is one audit record. Data never holds personal data in clear: it
// is encrypted at rest anyway, but events name identifier kinds, not values.
type Event struct {
	ID            uuid.UUID
	At            time.Time // equals the time in ID (UUIDv7), to the millisecond
	Type          string
	Severity      string
	Tenant        tenant.ID // zero: a system event
	UserID        uuid.UUID // uuid.Nil: none
	Actor         auth.ActorType
	CorrelationID uuid.UUID
	EntityID      uuid.UUID // uuid.Nil: none
	ResourceType  string
	ResourceID    string
	Data          map[string]any
	IP            string
	UserAgent     string
}

// NewID returns a UUIDv7 and the time it carries, so an event's id alone
// says which monthly partition holds it.
func NewID() (uuid.UUID, time.Time) {
	id := uuid.Must(uuid.NewV7())
	sec, nsec := id.Time().UnixTime()
	return id, time.Unix(sec, nsec).UTC()
}

// TimeOf returns the time carried by a UUIDv7 id.
func TimeOf(id uuid.UUID) time.Time {
	sec, nsec := id.Time().UnixTime()
	return time.Unix(sec, nsec).UTC()
}

// New makes an event of type typ in tenant t from the request in ctx: the
// correlation id, caller address and user agent from the request context,
// the user and actor type from the principal. Without a principal the
// actor is the system.
func New(ctx context.Context, typ string, t tenant.ID) Event {
	id, at := NewID()
	ev := Event{ID: id, At: at, Type: typ, Severity: Info, Tenant: t, Actor: auth.ActorSystem}
	if rc, ok := request.From(ctx); ok {
		ev.CorrelationID = rc.CorrelationID()
		ev.IP = rc.ClientIP()
		ev.UserAgent = rc.UserAgent() // cleaned and bounded by request.New
	} else {
		ev.CorrelationID = uuid.Must(uuid.NewV7())
	}
	if p, ok := auth.PrincipalFrom(ctx); ok {
		ev.UserID = p.UserID()
		ev.Actor = p.Actor()
	}
	return ev
}

// Safe returns the form of ev written when the database refused ev itself:
// the same id, time, tenant, actor and correlation id (so the record still
// says who did what, when), a known type and severity, no free-text
// fields, and data that says what was refused and why. It never holds
// more of ev than fits every column's rules.
func (ev Event) Safe(reason error) Event {
	out := Event{ID: ev.ID, At: ev.At, Type: ev.Type, Severity: ev.Severity, Tenant: ev.Tenant, UserID: ev.UserID,
		Actor: ev.Actor, CorrelationID: ev.CorrelationID, EntityID: ev.EntityID, IP: ev.IP}
	if !ValidType(out.Type) {
		out.Type = ErrorOccurred
	}
	if !slices.Contains(Severities(), out.Severity) {
		out.Severity = Warning
	}
	switch out.Actor {
	case auth.ActorHuman, auth.ActorService, auth.ActorSystem:
	default:
		out.Actor = auth.ActorSystem
	}
	msg := ""
	if reason != nil {
		msg = request.CleanText(reason.Error(), 300)
	}
	out.Data = map[string]any{"safe_form": true, "original_type": request.CleanText(ev.Type, 100), "refused_because": msg}
	return out
}

// With returns a copy of ev with resource, entity and data set.
func (ev Event) With(resourceType, resourceID string, entity uuid.UUID, data map[string]any) Event {
	ev.ResourceType, ev.ResourceID, ev.EntityID, ev.Data = resourceType, resourceID, entity, data
	return ev
}
