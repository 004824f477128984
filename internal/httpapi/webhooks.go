package httpapi

import (
	"context"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/webhook"
)

// EndpointOut is a webhook endpoint in responses; Secret only when it is
// made or rotated.
type EndpointOut struct {
	EndpointID     string     `json:"endpoint_id" format:"uuid"`
	URL            string     `json:"url" maxLength:"2048" pattern:"^https?://[^\\x00-\\x20\\x7F]+$" doc:"Where events are POSTed"`
	Description    string     `json:"description" maxLength:"500" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	EventTypes     eventTypes `json:"event_types" doc:"The event types sent; empty: every type"`
	Status         string     `json:"status" enum:"enabled,disabled" doc:"disabled: nothing is sent (pending deliveries wait); elile disables an endpoint that fails through the whole retry schedule"`
	DisabledReason *string    `json:"disabled_reason" maxLength:"300" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
	Failures       int        `json:"consecutive_failures" minimum:"0" maximum:"1000" doc:"Failed attempts since the last success"`
	FailingSince   *time.Time `json:"failing_since" doc:"When the current run of failures began; null when healthy"`
	PreviousUntil  *time.Time `json:"previous_secret_expires_at" doc:"While set and in the future, deliveries carry a second signature, by the secret rotated out"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Secret         string     `json:"secret,omitempty" maxLength:"64" pattern:"^whsec_[A-Za-z0-9+/]+=*$" doc:"The signing secret (Standard Webhooks form). Shown once, when made or rotated; stored encrypted"`
}

// eventTypes is a list of subscribable event types.
type eventTypes []string

// Schema lists the types from the webhook package, so the document cannot
// drift from what the server sends.
func (eventTypes) Schema(huma.Registry) *huma.Schema { return enumListSchema(webhook.Types(), nil, "") }

func endpointOut(ep webhook.Endpoint) EndpointOut {
	o := EndpointOut{EndpointID: ep.ID.String(), URL: ep.URL, Description: ep.Description, EventTypes: ep.EventTypes,
		Status: ep.Status, Failures: min(ep.Failures, 1000), FailingSince: timePtr(ep.FailingSince),
		PreviousUntil: timePtr(ep.PreviousUntil), CreatedAt: ep.CreatedAt.UTC(), UpdatedAt: ep.UpdatedAt.UTC()}
	if ep.DisabledReason != "" {
		r := ep.DisabledReason
		o.DisabledReason = &r
	}
	if o.EventTypes == nil {
		o.EventTypes = eventTypes{}
	}
	return o
}

type createEndpointInput struct {
	Body struct {
		URL         string     `json:"url" minLength:"10" maxLength:"2048" pattern:"^https?://[^\\x00-\\x20\\x7F]+$" doc:"https in staging and production; must reach a public address (checked again on every connection)"`
		Description string     `json:"description,omitempty" maxLength:"500" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
		EventTypes  eventTypes `json:"event_types,omitempty" doc:"The event types to send; empty or absent: every type"`
	}
}

func handleEndpointCreate(svc *webhook.Service) handlerFunc[createEndpointInput, created[EndpointOut]] {
	return func(ctx context.Context, in *createEndpointInput) (*created[EndpointOut], error) {
		ep, secret, err := svc.Create(ctx, scopeOf(ctx).Tenant(), webhook.NewEndpoint{URL: in.Body.URL,
			Description: in.Body.Description, EventTypes: in.Body.EventTypes})
		if err != nil {
			return nil, err
		}
		o := endpointOut(ep)
		o.Secret = secret
		return &created[EndpointOut]{Location: "/v1/webhook-endpoints/" + ep.ID.String(), Body: o}, nil
	}
}

type endpointListOutput struct{ Body Page[EndpointOut] }

func handleEndpointList(svc *webhook.Service) handlerFunc[ListParams, endpointListOutput] {
	return func(ctx context.Context, in *ListParams) (*endpointListOutput, error) {
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		eps, err := svc.List(ctx, scopeOf(ctx).Tenant(), after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		return &endpointListOutput{Body: page(eps, in.Limit, func(e webhook.Endpoint) uuid.UUID { return e.ID }, endpointOut)}, nil
	}
}

type endpointPath struct {
	EndpointID string `path:"endpoint_id" format:"uuid"`
}

func (p endpointPath) id() (uuid.UUID, error) { return endpointID(p.EndpointID) }

func endpointID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, webhook.ErrEndpointNotFound
	}
	return id, nil
}

type endpointOutput struct{ Body EndpointOut }

func handleEndpointGet(svc *webhook.Service) handlerFunc[endpointPath, endpointOutput] {
	return func(ctx context.Context, in *endpointPath) (*endpointOutput, error) {
		id, err := in.id()
		if err != nil {
			return nil, err
		}
		ep, err := svc.Get(ctx, scopeOf(ctx).Tenant(), id)
		if err != nil {
			return nil, err
		}
		return &endpointOutput{Body: endpointOut(ep)}, nil
	}
}

type updateEndpointInput struct {
	EndpointID string `path:"endpoint_id" format:"uuid"`
	Body       struct {
		URL         *string     `json:"url,omitempty" minLength:"10" maxLength:"2048" pattern:"^https?://[^\\x00-\\x20\\x7F]+$"`
		Description *string     `json:"description,omitempty" maxLength:"500" pattern:"^[^\\x00-\\x1F\\x7F]*$"`
		EventTypes  *eventTypes `json:"event_types,omitempty" doc:"Replaces the list; empty: every type"`
		Status      *string     `json:"status,omitempty" enum:"enabled,disabled" doc:"enabled also clears the failures of a disabled endpoint: its pending deliveries go at once"`
	}
}

func handleEndpointUpdate(svc *webhook.Service) handlerFunc[updateEndpointInput, endpointOutput] {
	return func(ctx context.Context, in *updateEndpointInput) (*endpointOutput, error) {
		id, err := endpointID(in.EndpointID)
		if err != nil {
			return nil, err
		}
		p := webhook.Patch{URL: in.Body.URL, Description: in.Body.Description, Status: in.Body.Status}
		if in.Body.EventTypes != nil {
			ts := []string(*in.Body.EventTypes)
			p.EventTypes = &ts
		}
		ep, err := svc.Update(ctx, scopeOf(ctx).Tenant(), id, p)
		if err != nil {
			return nil, err
		}
		return &endpointOutput{Body: endpointOut(ep)}, nil
	}
}

func handleEndpointDelete(svc *webhook.Service) handlerFunc[endpointPath, noContent] {
	return func(ctx context.Context, in *endpointPath) (*noContent, error) {
		id, err := in.id()
		if err != nil {
			return nil, err
		}
		return &noContent{}, svc.Delete(ctx, scopeOf(ctx).Tenant(), id)
	}
}

type rotateSecretInput struct {
	EndpointID string `path:"endpoint_id" format:"uuid"`
	Body       struct {
		OverlapSeconds *int `json:"overlap_seconds,omitempty" minimum:"0" maximum:"604800" doc:"How long the secret rotated out keeps signing, as a second signature (default 86400: a day)"`
	}
}

func handleEndpointRotate(svc *webhook.Service) handlerFunc[rotateSecretInput, endpointOutput] {
	return func(ctx context.Context, in *rotateSecretInput) (*endpointOutput, error) {
		id, err := endpointID(in.EndpointID)
		if err != nil {
			return nil, err
		}
		overlap := 24 * time.Hour
		if in.Body.OverlapSeconds != nil {
			overlap = time.Duration(*in.Body.OverlapSeconds) * time.Second
		}
		ep, secret, err := svc.RotateSecret(ctx, scopeOf(ctx).Tenant(), id, overlap)
		if err != nil {
			return nil, err
		}
		o := endpointOut(ep)
		o.Secret = secret
		return &endpointOutput{Body: o}, nil
	}
}

// DeliveryOut is one event's delivery to an endpoint.
type DeliveryOut struct {
	DeliveryID      string     `json:"delivery_id" format:"uuid" doc:"The delivery's id, for redelivery: the id of its event"`
	EventID         string     `json:"event_id" format:"uuid" doc:"The event's id: webhook-id on the wire, id in the payload, and the id of the audit event of the change"`
	EventType       string     `json:"event_type" maxLength:"40" pattern:"^[a-z_]+\\.[a-z_]+$"`
	State           string     `json:"state" enum:"pending,delivered"`
	Attempts        int        `json:"attempts" minimum:"0" maximum:"100000"`
	LastAttemptAt   *time.Time `json:"last_attempt_at"`
	ResponseStatus  *int       `json:"response_status" minimum:"100" maximum:"999" doc:"The receiver's HTTP status at the last attempt; null when it gave none"`
	LatencyMS       *int       `json:"latency_ms" minimum:"0" maximum:"1073741824"`
	Error           *string    `json:"error" maxLength:"300" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"Why the last attempt failed"`
	ResponseExcerpt *string    `json:"response_excerpt" maxLength:"256" pattern:"^[^\\x00-\\x1F\\x7F]*$" doc:"The start of the receiver's response body, cleaned of control characters; never more"`
	DeliveredAt     *time.Time `json:"delivered_at"`
	CreatedAt       time.Time  `json:"created_at"`
}

func deliveryOut(d webhook.Delivery) DeliveryOut {
	o := DeliveryOut{DeliveryID: d.EventID.String(), EventID: d.EventID.String(), EventType: d.EventType, State: d.State, Attempts: d.Attempts,
		LastAttemptAt: timePtr(d.LastAttemptAt), DeliveredAt: timePtr(d.DeliveredAt), CreatedAt: d.CreatedAt.UTC()}
	if d.ResponseStatus != 0 {
		o.ResponseStatus = &d.ResponseStatus
	}
	if d.Attempts > 0 {
		o.LatencyMS = &d.LatencyMS
	}
	if d.Error != "" {
		o.Error = &d.Error
	}
	if d.ResponseExcerpt != "" {
		o.ResponseExcerpt = &d.ResponseExcerpt
	}
	return o
}

type deliveryListInput struct {
	EndpointID string `path:"endpoint_id" format:"uuid"`
	ListParams
	State string `query:"state" enum:"pending,delivered," doc:"Only deliveries in this state"`
}

type deliveryListOutput struct{ Body Page[DeliveryOut] }

func handleDeliveryList(svc *webhook.Service) handlerFunc[deliveryListInput, deliveryListOutput] {
	return func(ctx context.Context, in *deliveryListInput) (*deliveryListOutput, error) {
		id, err := endpointID(in.EndpointID)
		if err != nil {
			return nil, err
		}
		after, err := in.after()
		if err != nil {
			return nil, err
		}
		ds, err := svc.Deliveries(ctx, scopeOf(ctx).Tenant(), id, in.State, after, in.Limit+1)
		if err != nil {
			return nil, err
		}
		return &deliveryListOutput{Body: page(ds, in.Limit, func(d webhook.Delivery) uuid.UUID { return d.EventID }, deliveryOut)}, nil
	}
}

type redeliverInput struct {
	EndpointID string `path:"endpoint_id" format:"uuid"`
	DeliveryID string `path:"delivery_id" format:"uuid" doc:"The delivery's id: the id of the event it delivers (one delivery per endpoint and event)"`
}

type accepted struct{}

func handleRedeliver(svc *webhook.Service) handlerFunc[redeliverInput, accepted] {
	return func(ctx context.Context, in *redeliverInput) (*accepted, error) {
		id, err := endpointID(in.EndpointID)
		if err != nil {
			return nil, err
		}
		ev, err := uuid.Parse(in.DeliveryID)
		if err != nil {
			return nil, webhook.ErrDeliveryNotFound
		}
		return &accepted{}, svc.Redeliver(ctx, scopeOf(ctx).Tenant(), id, ev)
	}
}
