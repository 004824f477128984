package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/webhook"
)

// The services' rules, run as huma resolvers: huma runs them after its
// schema validation and reports both in one 422, so a request learns
// everything that is wrong with it at once instead of fixing the schema's
// batch and then meeting the rules'. The services check again (they have
// other callers, and their clock may differ); what a resolver cannot tell
// without the database (a duplicate, a missing entity) stays with them.

// ruleError is a rule's verdict on one field of the body. Where the
// schema has already said what is wrong with a field, the problem keeps
// the schema's reason alone (see useProblemErrors).
type ruleError struct{ detail huma.ErrorDetail }

func (r *ruleError) Error() string { return r.detail.Error() }

// ErrorDetail implements huma.ErrorDetailer.
func (r *ruleError) ErrorDetail() *huma.ErrorDetail { return &r.detail }

func ruleErrors(fields []apperr.Field) []error {
	if len(fields) == 0 {
		return nil
	}
	out := make([]error, len(fields))
	for i, f := range fields {
		loc := "body"
		if f.Path != "" {
			loc += "." + f.Path
		}
		out[i] = &ruleError{detail: huma.ErrorDetail{Location: loc, Message: f.Message}}
	}
	return out
}

// Resolve runs the entity service's rules (identifier kinds and values,
// metadata).
func (in *createEntityInput) Resolve(huma.Context) []error {
	b := in.Body
	return ruleErrors(entity.NewEntity{Type: b.EntityType, Metadata: b.Metadata, Identifiers: b.CanonicalIdentifiers}.Check(time.Now()))
}

// Resolve runs the entity service's rules on a change.
func (in *patchEntityInput) Resolve(huma.Context) []error {
	p := entity.Patch{Identifiers: entity.IdentifierPatch(in.Body.CanonicalIdentifiers), ExternalID: in.Body.ExternalID}
	if in.Body.Metadata != nil {
		m := map[string]string(*in.Body.Metadata)
		p.Metadata = &m
	}
	return ruleErrors(p.Check(time.Now()))
}

// Resolve checks the validity dates (days of the calendar, the end on or
// after the start) and that the relation is not to its own entity.
func (in *createRelationInput) Resolve(huma.Context) []error {
	var errs []apperr.Field
	from, errFrom := uuid.Parse(in.EntityID)
	if to, err := uuid.Parse(in.Body.ToEntityID); err == nil && errFrom == nil && to == from {
		errs = append(errs, apperr.Field{Path: "to_entity_id", Message: "an entity cannot be related to itself"})
	}
	ds, err := parseDates(map[string]string{"valid_from": in.Body.ValidFrom, "valid_to": in.Body.ValidTo})
	errs = append(errs, apperr.FieldsOf(err)...)
	if err == nil {
		errs = append(errs, entity.CheckValidity(ds["valid_from"], ds["valid_to"])...)
	}
	return ruleErrors(errs)
}

// Resolve checks the validity dates given; their order against the stored
// ones is the service's.
func (in *updateRelationInput) Resolve(huma.Context) []error {
	ds, err := in.dates()
	errs := apperr.FieldsOf(err)
	if err == nil {
		errs = append(errs, entity.CheckValidity(ds["valid_from"], ds["valid_to"])...)
	}
	return ruleErrors(errs)
}

// Resolve checks the risk score (overall required, every score 0..1); the
// size budgets of the lists are the service's, which encodes them once.
func (in *createProfileInput) Resolve(huma.Context) []error {
	if in.Body.RiskScore == nil {
		return nil // the schema says it is required
	}
	return ruleErrors(entity.ValidateScore(in.Body.RiskScore))
}

// Resolve checks the cost and the freshness windows; the size of
// normalized_data is the service's, which encodes it once.
func (in *createCacheInput) Resolve(huma.Context) []error {
	b := in.Body
	return ruleErrors(sourcecache.NewEntry{CheckType: b.CheckType, Cost: b.CostIncurred.value(), AcquiredAt: b.AcquiredAt,
		FreshUntil: b.FreshUntil, StaleUntil: b.StaleUntil}.Check(time.Now()))
}

// Resolve checks the tenant's config (its size as JSON).
func (in *createTenantInput) Resolve(huma.Context) []error {
	return ruleErrors(tenancy.CheckConfig(in.Body.Config))
}

// Resolve checks the tenant's config (its size as JSON).
func (in *updateTenantInput) Resolve(huma.Context) []error {
	return ruleErrors(tenancy.CheckConfig(in.Body.Config))
}

// The webhook URL rules depend on the server's configuration (https
// outside development, loopback only where allowed): the service that
// holds them travels in the request's context to the resolvers.
type webhookRulesKey struct{}

// withWebhookRules puts svc in the context of the webhook endpoint routes'
// requests only: every other request goes on without the copy.
func withWebhookRules(svc *webhook.Service) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if svc == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/webhook-endpoints") {
				r = r.WithContext(context.WithValue(r.Context(), webhookRulesKey{}, svc))
			}
			next.ServeHTTP(w, r)
		})
	}
}

func checkEndpointURL(ctx huma.Context, url string) []error {
	svc, _ := ctx.Context().Value(webhookRulesKey{}).(*webhook.Service)
	if svc == nil || url == "" {
		return nil
	}
	return ruleErrors(svc.CheckURL(url))
}

// Resolve checks the URL under the server's rules.
func (in *createEndpointInput) Resolve(ctx huma.Context) []error {
	return checkEndpointURL(ctx, in.Body.URL)
}

// Resolve checks a new URL under the server's rules.
func (in *updateEndpointInput) Resolve(ctx huma.Context) []error {
	if in.Body.URL == nil {
		return nil
	}
	return checkEndpointURL(ctx, *in.Body.URL)
}
