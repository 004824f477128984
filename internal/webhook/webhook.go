// Package webhook tells tenants what happened: their endpoints, the events
// they subscribe to, and the delivery of those events as signed HTTP
// requests (Standard Webhooks), retried with backoff, by background jobs.
//
// An event is written with the change it reports (the store derives it
// from the change's audit event, in the same unit of work); a job drains
// each endpoint's pending deliveries in order, one endpoint at a time per
// job, so one tenant's backlog or dead endpoint holds up only itself.
package webhook

import (
	"context"
	"encoding/json"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/request"
	"github.com/elile/elile/internal/tenant"
)

// Event types a tenant's endpoint may subscribe to.
const (
	EntityCreated     = "entity.created"
	EntityUpdated     = "entity.updated"
	EntityErased      = "entity.erased"
	RelationCreated   = "relation.created"
	RelationUpdated   = "relation.updated"
	RelationDeleted   = "relation.deleted"
	ProfileCreated    = "profile.created"
	CacheEntryCreated = "cache_entry.created"
	APIKeyCreated     = "api_key.created"
	APIKeyRevoked     = "api_key.revoked"
	TenantUpdated     = "tenant.updated"
	EndpointDisabled  = "webhook_endpoint.disabled"
)

// Types lists every event type, in the order the reference shows them.
func Types() []string {
	return []string{EntityCreated, EntityUpdated, EntityErased, RelationCreated, RelationUpdated, RelationDeleted, ProfileCreated, CacheEntryCreated,
		APIKeyCreated, APIKeyRevoked, TenantUpdated, EndpointDisabled}
}

// Announced returns the event type a change's audit event announces to
// the tenant's endpoints, or "" when it announces none (reads, errors,
// platform-only changes).
func Announced(ev audit.Event) string {
	if ev.Tenant.IsZero() { // the platform's own (the nil UUID): no endpoints
		return ""
	}
	switch {
	case ev.Type == audit.EntityCreated && ev.ResourceType == "entity":
		return EntityCreated
	case ev.Type == audit.EntityUpdated && ev.ResourceType == "entity":
		return EntityUpdated
	case ev.Type == audit.DataErased && ev.ResourceType == "entity":
		return EntityErased
	case ev.Type == audit.EntityRelated && ev.ResourceType == "relation":
		return RelationCreated
	case ev.Type == audit.RelationUpdated:
		return RelationUpdated
	case ev.Type == audit.RelationDeleted:
		return RelationDeleted
	case ev.Type == audit.ProfileCreated && ev.ResourceType == "profile":
		return ProfileCreated
	case ev.Type == audit.ProviderQuery && ev.ResourceType == "cache_entry":
		return CacheEntryCreated
	case ev.Type == audit.APIKeyCreated:
		return APIKeyCreated
	case ev.Type == audit.APIKeyRevoked:
		return APIKeyRevoked
	case ev.Type == audit.ConfigChanged && ev.ResourceType == "tenant":
		return TenantUpdated
	case ev.Type == audit.WebhookEndpointDisabled:
		return EndpointDisabled
	}
	return ""
}

// Payload is the body of a delivery: the event's id and type, when it
// happened, and what it is about — ids, never personal data (the receiver
// reads what it needs with its own key).
type Payload struct {
	ID        uuid.UUID   `json:"id"`
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData names the resource an event is about.
type PayloadData struct {
	TenantID     uuid.UUID  `json:"tenant_id"`
	ResourceType string     `json:"resource_type"`
	ResourceID   string     `json:"resource_id"`
	EntityID     *uuid.UUID `json:"entity_id,omitempty"`
}

// PayloadOf returns the bytes sent for ev announced as typ: the same
// bytes on every attempt (they are signed).
func PayloadOf(typ string, ev audit.Event) []byte {
	p := Payload{ID: ev.ID, Type: typ, Timestamp: ev.At.UTC(), Data: PayloadData{TenantID: ev.Tenant.UUID(),
		ResourceType: request.CleanText(ev.ResourceType, 100), ResourceID: request.CleanText(ev.ResourceID, 255)}}
	if ev.EntityID != uuid.Nil {
		e := ev.EntityID
		p.Data.EntityID = &e
	}
	b, _ := json.Marshal(p) // ids, text and a time: always encodes
	return b
}

// Endpoint states.
const (
	Enabled  = "enabled"
	Disabled = "disabled"
)

// Endpoint is where a tenant receives events.
type Endpoint struct {
	ID             uuid.UUID
	Tenant         tenant.ID
	URL            string
	Description    string
	EventTypes     []string // empty: every type
	Status         string
	DisabledReason string
	Failures       int       // consecutive failed attempts
	FailingSince   time.Time // zero: not failing
	PreviousUntil  time.Time // a rotated-out secret still signs until then (zero: none)
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Patch changes an endpoint; nil fields stay.
type Patch struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Status      *string // enabling resets the failure count
}

// Delivery is one event's delivery to one endpoint.
type Delivery struct {
	EventID         uuid.UUID
	EventType       string
	State           string // pending, delivered
	Attempts        int
	LastAttemptAt   time.Time
	ResponseStatus  int // 0: no response
	LatencyMS       int
	Error           string
	ResponseExcerpt string
	DeliveredAt     time.Time
	CreatedAt       time.Time
}

// Delivery states.
const (
	Pending   = "pending"
	Delivered = "delivered"
)

// Errors.
var (
	ErrEndpointNotFound = apperr.New(apperr.NotFound, "WEBHOOK_ENDPOINT_NOT_FOUND", "webhook endpoint not found")
	ErrDeliveryNotFound = apperr.New(apperr.NotFound, "WEBHOOK_DELIVERY_NOT_FOUND", "no delivery of this event to this endpoint")
	ErrTooManyEndpoints = apperr.New(apperr.Conflict, "WEBHOOK_ENDPOINT_LIMIT", "a tenant has at most 16 webhook endpoints")
)

// MaxEndpoints bounds a tenant's endpoints: the fairness of deliveries is
// per endpoint, so this bounds one tenant's share of the workers.
const MaxEndpoints = 16

// Store keeps endpoints and deliveries in a tenant's scope; each change is
// written with its audit event, in one unit of work.
type Store interface {
	// CreateEndpoint stores ep with its signing secret (encrypted):
	// ErrTooManyEndpoints when the tenant has MaxEndpoints.
	CreateEndpoint(ctx context.Context, ep *Endpoint, secret string, ev audit.Event) error
	Endpoints(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]Endpoint, error)
	Endpoint(ctx context.Context, t tenant.ID, id uuid.UUID) (Endpoint, error)
	UpdateEndpoint(ctx context.Context, t tenant.ID, id uuid.UUID, p Patch, ev audit.Event) (Endpoint, error)
	DeleteEndpoint(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error
	// RotateSecret makes secret the endpoint's; the one it replaces
	// still signs until until.
	RotateSecret(ctx context.Context, t tenant.ID, id uuid.UUID, secret string, until time.Time, ev audit.Event) (Endpoint, error)
	// Deliveries lists an endpoint's deliveries newest event first.
	Deliveries(ctx context.Context, t tenant.ID, endpoint uuid.UUID, state string, after uuid.UUID, limit int) ([]Delivery, error)
	// Redeliver sets a delivery back to pending.
	Redeliver(ctx context.Context, t tenant.ID, endpoint, event uuid.UUID, ev audit.Event) error
}

// Service owns the rules of endpoints.
type Service struct {
	store Store
	opts  Options
}

// Options are the deployment's rules for endpoint URLs.
type Options struct {
	RequireHTTPS  bool // staging and production
	AllowLoopback bool // tests and development: a local receiver
	Now           func() time.Time
	// Settle is how long creating or enabling an endpoint waits before it
	// answers: the time every instance may take to see the endpoint
	// (postgres.EndpointCacheTTL). Then every change that begins after
	// the answer is announced to it. 0 for a single instance (tests).
	Settle time.Duration
}

// NewService returns the endpoint service.
func NewService(store Store, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: store, opts: o}
}

// NewEndpoint is the input of Create.
type NewEndpoint struct {
	URL         string
	Description string
	EventTypes  []string
}

// Create adds an endpoint and returns it with its secret, shown once.
func (s *Service) Create(ctx context.Context, t tenant.ID, in NewEndpoint) (Endpoint, string, error) {
	var errs []apperr.Field
	errs = append(errs, s.checkURL("url", in.URL)...)
	errs = append(errs, checkTypes("event_types", in.EventTypes)...)
	if err := apperr.Fields(errs...); err != nil {
		return Endpoint{}, "", err
	}
	now := s.opts.Now().UTC()
	ep := Endpoint{ID: uuid.Must(uuid.NewV7()), Tenant: t, URL: in.URL, Description: in.Description,
		EventTypes: normalTypes(in.EventTypes), Status: Enabled, CreatedAt: now, UpdatedAt: now}
	secret := NewSecret()
	ev := audit.New(ctx, audit.WebhookEndpointCreated, t).With("webhook_endpoint", ep.ID.String(), uuid.Nil,
		map[string]any{"host": hostOf(ep.URL), "event_types": ep.EventTypes})
	if err := s.store.CreateEndpoint(ctx, &ep, secret, ev); err != nil {
		return Endpoint{}, "", err
	}
	s.settle(ctx)
	return ep, secret, nil
}

// List lists a tenant's endpoints, newest first.
func (s *Service) List(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]Endpoint, error) {
	return s.store.Endpoints(ctx, t, after, limit)
}

// Get returns one endpoint.
func (s *Service) Get(ctx context.Context, t tenant.ID, id uuid.UUID) (Endpoint, error) {
	return s.store.Endpoint(ctx, t, id)
}

// Update applies p.
func (s *Service) Update(ctx context.Context, t tenant.ID, id uuid.UUID, p Patch) (Endpoint, error) {
	var errs []apperr.Field
	data := map[string]any{}
	if p.URL != nil {
		errs = append(errs, s.checkURL("url", *p.URL)...)
		data["host"] = hostOf(*p.URL)
	}
	if p.EventTypes != nil {
		errs = append(errs, checkTypes("event_types", *p.EventTypes)...)
		n := normalTypes(*p.EventTypes)
		p.EventTypes = &n
		data["event_types"] = n
	}
	if p.Status != nil {
		data["status"] = *p.Status
	}
	if p.Description != nil {
		data["description"] = true
	}
	if err := apperr.Fields(errs...); err != nil {
		return Endpoint{}, err
	}
	ev := audit.New(ctx, audit.WebhookEndpointUpdated, t).With("webhook_endpoint", id.String(), uuid.Nil, data)
	ep, err := s.store.UpdateEndpoint(ctx, t, id, p, ev)
	if err == nil && p.Status != nil && *p.Status == Enabled {
		s.settle(ctx)
	}
	return ep, err
}

// settle waits until every instance sees an endpoint made or enabled.
func (s *Service) settle(ctx context.Context) {
	if s.opts.Settle <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(s.opts.Settle):
	}
}

// Delete removes an endpoint with its deliveries.
func (s *Service) Delete(ctx context.Context, t tenant.ID, id uuid.UUID) error {
	ev := audit.New(ctx, audit.WebhookEndpointDeleted, t).With("webhook_endpoint", id.String(), uuid.Nil, nil)
	ev.Severity = audit.Warning
	return s.store.DeleteEndpoint(ctx, t, id, ev)
}

// MaxOverlap bounds how long a rotated-out secret keeps signing.
const MaxOverlap = 7 * 24 * time.Hour

// RotateSecret gives the endpoint a new secret, returned once; the old
// one keeps signing (a second signature) for overlap.
func (s *Service) RotateSecret(ctx context.Context, t tenant.ID, id uuid.UUID, overlap time.Duration) (Endpoint, string, error) {
	if overlap < 0 || overlap > MaxOverlap {
		return Endpoint{}, "", apperr.Fields(apperr.Field{Path: "overlap_seconds", Message: "must be between 0 and 604800"})
	}
	secret := NewSecret()
	ev := audit.New(ctx, audit.WebhookEndpointUpdated, t).With("webhook_endpoint", id.String(), uuid.Nil,
		map[string]any{"secret_rotated": true, "overlap_seconds": int(overlap.Seconds())})
	ep, err := s.store.RotateSecret(ctx, t, id, secret, s.opts.Now().Add(overlap).UTC(), ev)
	return ep, secret, err
}

// Deliveries lists an endpoint's deliveries, newest event first (state
// "" for all).
func (s *Service) Deliveries(ctx context.Context, t tenant.ID, endpoint uuid.UUID, state string, after uuid.UUID, limit int) ([]Delivery, error) {
	if _, err := s.store.Endpoint(ctx, t, endpoint); err != nil {
		return nil, err
	}
	return s.store.Deliveries(ctx, t, endpoint, state, after, limit)
}

// Redeliver sends an event to the endpoint again (at least once more,
// in order with the endpoint's other pending deliveries).
func (s *Service) Redeliver(ctx context.Context, t tenant.ID, endpoint, event uuid.UUID) error {
	ev := audit.New(ctx, audit.WebhookEndpointUpdated, t).With("webhook_endpoint", endpoint.String(), uuid.Nil,
		map[string]any{"redelivered": event.String()})
	return s.store.Redeliver(ctx, t, endpoint, event, ev)
}

// checkURL checks an endpoint URL: absolute http(s) (https when required),
// a host that is a name or a public address, no credentials or fragment.
// Where a name resolves is checked when a delivery connects.
// CheckURL reports what is wrong with an endpoint URL under this
// service's rules (https outside development, no address inside), as
// Create and Update do: the HTTP layer runs it with the schema.
func (s *Service) CheckURL(raw string) []apperr.Field { return s.checkURL("url", raw) }

func (s *Service) checkURL(path, raw string) []apperr.Field {
	bad := func(msg string) []apperr.Field { return []apperr.Field{{Path: path, Message: msg}} }
	if len(raw) > 2048 {
		return bad("at most 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return bad("must be an absolute http(s) URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && !s.opts.RequireHTTPS:
	case u.Scheme == "http":
		return bad("must be https")
	default:
		return bad("must be an http(s) URL")
	}
	if u.User != nil {
		return bad("must not carry credentials (the signature authenticates elile to the receiver)")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("must not have a fragment")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !PublicAddr(a) && (!s.opts.AllowLoopback || !a.Unmap().IsLoopback()) {
			return bad("must be a public address")
		}
	} else if h := strings.ToLower(strings.TrimSuffix(host, ".")); (h == "localhost" || strings.HasSuffix(h, ".localhost")) && !s.opts.AllowLoopback {
		return bad("must be a public address")
	}
	return nil
}

func checkTypes(path string, ts []string) []apperr.Field {
	var errs []apperr.Field
	for i, t := range ts {
		if !slices.Contains(Types(), t) {
			errs = append(errs, apperr.Field{Path: path + "[" + strconv.Itoa(i) + "]", Message: "unknown event type"})
		}
	}
	return errs
}

func normalTypes(ts []string) []string {
	out := slices.Clone(ts)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Hostname()
	}
	return ""
}
