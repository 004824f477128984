package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/elile/elile/internal/apperr"
)

// Problem is an RFC 9457 problem detail with elile's extensions: a stable
// code, a category, the correlation id, and one item per bad field.
type Problem struct {
	Type          string        `json:"type"`
	Title         string        `json:"title"`
	Status        int           `json:"status"`
	Detail        string        `json:"detail,omitempty"`
	Code          string        `json:"code"`
	Category      string        `json:"category"`
	CorrelationID string        `json:"correlation_id,omitempty"`
	Errors        []ProblemItem `json:"errors,omitempty"`
}

// ProblemItem is one problem with one part of the request.
type ProblemItem struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

// statusOf is the one place that maps an error kind to an HTTP status and
// a category.
func statusOf(k apperr.Kind) (int, string) {
	switch k {
	case apperr.Invalid:
		return http.StatusUnprocessableEntity, "validation"
	case apperr.BadRequest:
		return http.StatusBadRequest, "validation"
	case apperr.Unauthorized:
		return http.StatusUnauthorized, "authentication"
	case apperr.Forbidden:
		return http.StatusForbidden, "permission"
	case apperr.NotFound:
		return http.StatusNotFound, "not_found"
	case apperr.Conflict:
		return http.StatusConflict, "conflict"
	case apperr.RateLimited:
		return http.StatusTooManyRequests, "rate_limit"
	case apperr.Unavailable:
		return http.StatusServiceUnavailable, "system"
	default:
		return http.StatusInternalServerError, "system"
	}
}

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Errors for requests that match no route.
var (
	errRouteNotFound    = apperr.New(apperr.NotFound, "ROUTE_NOT_FOUND", "no such route")
	errMethodNotAllowed = apperr.New(apperr.Invalid, "METHOD_NOT_ALLOWED", "method not allowed on this route")
)
