package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/elile/elile/internal/apperr"
)

// Problem is an RFC 9457 problem detail with elile's extensions: a stable
// code, a category, the correlation id, and one item per bad field.
type Problem struct {
	Type          string        `json:"type" format:"uri" maxLength:"100" doc:"https://elile.dev/problems/ and the code in kebab case"`
	Title         string        `json:"title" maxLength:"64" pattern:"^[A-Za-z0-9 -]+$" doc:"The status's reason phrase"`
	Status        int           `json:"status" minimum:"400" maximum:"599"`
	Detail        string        `json:"detail,omitempty" maxLength:"1024" doc:"What went wrong, for a person to read"`
	Code          string        `json:"code" maxLength:"64" pattern:"^[A-Z][A-Z0-9_]*$" doc:"Stable, for a program to act on"`
	Category      string        `json:"category" enum:"system,validation,authentication,permission,not_found,conflict,rate_limit"`
	CorrelationID string        `json:"correlation_id,omitempty" format:"uuid"`
	Errors        []ProblemItem `json:"errors,omitempty" maxItems:"100" doc:"One item per bad part of the request (the first 100)"`
	// Members a program acts on, so it never parses detail.
	ExistingEntityID   string `json:"existing_entity_id,omitempty" format:"uuid" doc:"ENTITY_DUPLICATE, EXTERNAL_ID_TAKEN: the entity that already holds the identifier or external_id"`
	ExistingRelationID string `json:"existing_relation_id,omitempty" format:"uuid" doc:"RELATION_EXISTS: the relation that already links these entities with this type"`
	RetryAfter         int    `json:"retry_after,omitempty" minimum:"1" maximum:"86400" doc:"With 429, 503 and IDEMPOTENCY_IN_PROGRESS: seconds to wait before trying again (the Retry-After header)"`
}

// ProblemItem is one problem with one part of the request.
type ProblemItem struct {
	Location string `json:"location" maxLength:"256" doc:"Where: body.name, body.metadata.team, query.limit, path.entity_id, header.X-Tenant-ID"`
	Message  string `json:"message" maxLength:"512"`
}

// Bounds of a problem's free text: messages can quote what the request
// sent (a path, a map key), which the problem must not echo unbounded.
const (
	maxProblemDetail   = 1024
	maxProblemItems    = 100
	maxProblemLocation = 256
	maxProblemMessage  = 512
)

// bounded cuts a problem's text to its declared bounds, on character
// boundaries.
func (p *Problem) bounded() {
	p.Detail = cutRunes(p.Detail, maxProblemDetail)
	if len(p.Errors) > maxProblemItems {
		p.Errors = p.Errors[:maxProblemItems]
	}
	for i := range p.Errors {
		p.Errors[i].Location = cutRunes(p.Errors[i].Location, maxProblemLocation)
		p.Errors[i].Message = cutRunes(p.Errors[i].Message, maxProblemMessage)
	}
}

// cutRunes returns s cut to at most n characters, the last one an
// ellipsis when it was cut.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// statusOf is the one place that maps an error kind to an HTTP status and
// a category.
// statusClientClosed is nginx's status for a request whose client went
// away before the answer (nobody reads it; it is not a server fault).
const statusClientClosed = 499

// kindStatus is the one mapping of error kinds to HTTP statuses, problem
// categories and the code of errors raised without one (huma's own).
//
//nolint:gochecknoglobals // read-only table
var kindStatus = map[apperr.Kind]struct {
	status   int
	category string
	code     string
}{
	apperr.Internal:         {http.StatusInternalServerError, "system", "INTERNAL_ERROR"},
	apperr.Invalid:          {http.StatusUnprocessableEntity, "validation", "VALIDATION_FAILED"},
	apperr.BadRequest:       {http.StatusBadRequest, "validation", "BAD_REQUEST"},
	apperr.Unauthorized:     {http.StatusUnauthorized, "authentication", "UNAUTHORIZED"},
	apperr.Forbidden:        {http.StatusForbidden, "permission", "PERMISSION_DENIED"},
	apperr.NotFound:         {http.StatusNotFound, "not_found", "NOT_FOUND"},
	apperr.Conflict:         {http.StatusConflict, "conflict", "CONFLICT"},
	apperr.RateLimited:      {http.StatusTooManyRequests, "rate_limit", "RATE_LIMITED"},
	apperr.Unavailable:      {http.StatusServiceUnavailable, "system", "SERVICE_UNAVAILABLE"},
	apperr.MethodNotAllowed: {http.StatusMethodNotAllowed, "validation", "METHOD_NOT_ALLOWED"},
	apperr.NotAcceptable:    {http.StatusNotAcceptable, "validation", "NOT_ACCEPTABLE"},
	apperr.TooLarge:         {http.StatusRequestEntityTooLarge, "validation", "BODY_TOO_LARGE"},
	apperr.UnsupportedMedia: {http.StatusUnsupportedMediaType, "validation", "UNSUPPORTED_MEDIA_TYPE"},
	apperr.ClientClosed:     {statusClientClosed, "validation", "CLIENT_CLOSED_REQUEST"},
}

// statusOf is the status and category of kind k.
func statusOf(k apperr.Kind) (int, string) {
	if m, ok := kindStatus[k]; ok {
		return m.status, m.category
	}
	return http.StatusInternalServerError, "system"
}

// kindOfStatus is the kind and code of an error huma raised with only a
// status: the inverse of kindStatus (anything else is internal).
func kindOfStatus(status int) (apperr.Kind, string) {
	for k, m := range kindStatus {
		if m.status == status {
			return k, m.code
		}
	}
	return apperr.Internal, "INTERNAL_ERROR"
}

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err == nil && ra >= 1 {
		p.RetryAfter = min(ra, 86400)
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Errors for requests that match no route.
var (
	errRouteNotFound    = apperr.New(apperr.NotFound, "ROUTE_NOT_FOUND", "no such route")
	errMethodNotAllowed = apperr.New(apperr.MethodNotAllowed, "METHOD_NOT_ALLOWED", "method not allowed on this route")
)
