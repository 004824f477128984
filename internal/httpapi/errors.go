package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/request"
)

// problemError is a Problem that huma writes as the response: it
// implements huma.StatusError and sets the problem+json content type.
type problemError struct {
	Problem
	headers http.Header
}

func (p *problemError) Error() string  { return p.Detail }
func (p *problemError) GetStatus() int { return p.Status }

// ContentType implements huma's ContentTypeFilter.
func (p *problemError) ContentType(string) string { return "application/problem+json" }

// GetHeaders implements huma.HeadersError.
func (p *problemError) GetHeaders() http.Header { return p.headers }

// newProblem renders err for the request in ctx: an apperr keeps its
// code, kind and message; anything else is an internal error whose cause
// stays in the log.
func newProblem(ctx context.Context, err error) *problemError {
	e := apperr.As(err)
	if e == nil {
		e = apperr.New(apperr.Internal, "INTERNAL_ERROR", "internal error")
	}
	status, category := statusOf(e.Kind)
	msg := e.Message
	if e.Kind == apperr.Internal {
		msg = "internal error"
	}
	p := &problemError{Problem: Problem{
		Type:     "https://elile.dev/problems/" + kebab(e.Code),
		Title:    statusText(status),
		Status:   status,
		Detail:   msg,
		Code:     e.Code,
		Category: category,
	}}
	if rc, ok := request.From(ctx); ok {
		p.CorrelationID = rc.CorrelationID().String()
	}
	var fe *fieldErrors
	if errors.As(err, &fe) {
		p.Errors = fe.items
	}
	// A service's invalid fields are paths in the request body.
	for _, f := range apperr.FieldsOf(err) {
		loc := "body"
		if f.Path != "" {
			loc += "." + f.Path
		}
		p.Errors = append(p.Errors, ProblemItem{Location: loc, Message: f.Message})
	}
	var cw *apperr.ConflictWith
	if errors.As(err, &cw) {
		switch cw.Kind {
		case "entity":
			p.ExistingEntityID = cw.ID
		case "relation":
			p.ExistingRelationID = cw.ID
		}
	}
	if h := holderFrom(ctx); h != nil {
		h.code, h.category = p.Code, p.Category
	}
	p.bounded()
	return p
}

func kebab(code string) string {
	b := []byte(code)
	for i, c := range b {
		switch {
		case c == '_':
			b[i] = '-'
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// fieldErrors carries one item per bad field with a validation error.
type fieldErrors struct{ items []ProblemItem }

// headerError is err (a bad header: 400) located at the header.
func headerError(err *apperr.Error, header, message string) error {
	return err.Wrap(&fieldErrors{items: []ProblemItem{{Location: "header." + header, Message: message}}})
}

func (f *fieldErrors) Error() string { return "validation failed" }

var errClientClosed = apperr.New(apperr.ClientClosed, "CLIENT_CLOSED_REQUEST", "the client closed the connection before the answer")

var installHumaErrors sync.Once //nolint:gochecknoglobals // huma's error constructor is package state

// useProblemErrors makes huma render its own errors (bad JSON, validation,
// body too large, ...) as elile problems. huma offers this only as a
// package variable, so it is set once per process; it holds no state.
func useProblemErrors() {
	installHumaErrors.Do(func() {
		// NewError is also what huma reflects on to document error
		// responses in the OpenAPI document.
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			return huma.NewErrorWithContext(nil, status, msg, errs...)
		}
		huma.NewErrorWithContext = func(hctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
			ctx := context.Background()
			if hctx != nil {
				ctx = hctx.Context()
			}
			for _, err := range errs {
				var pe *problemError
				if errors.As(err, &pe) {
					return pe
				}
				if apperr.As(err) != nil {
					return newProblem(ctx, err)
				}
			}
			kind, code := kindOfStatus(status)
			var items []ProblemItem
			at := map[string]int{} // location -> index in items
			for _, err := range errs {
				var d huma.ErrorDetailer
				if !errors.As(err, &d) {
					continue
				}
				det := d.ErrorDetail()
				it := fieldItem(det.Location, det.Message)
				// One item per bad field: a value too short and off its
				// pattern is one problem with two reasons. A service rule
				// (a resolver's, run after the schema) adds nothing to a
				// field the schema has already refused: the schema's
				// reason is the one to fix first.
				if i, ok := at[it.Location]; ok {
					var rule *ruleError
					if !errors.As(err, &rule) {
						items[i].Message += "; " + it.Message
					}
					continue
				}
				at[it.Location] = len(items)
				items = append(items, it)
			}
			if kind == apperr.Internal {
				msg = "internal error"
			}
			return newProblem(ctx, apperr.New(kind, code, msg).Wrap(&fieldErrors{items: items}))
		}
	})
}

// fieldItem is one problem item of huma's validation. huma reports a
// missing required property at the object that lacks it ("body",
// "expected required property name to be present"); a client needs it at
// the field itself: body.name, "required".
func fieldItem(location, message string) ProblemItem {
	const pre, post = "expected required property ", " to be present"
	if name, ok := strings.CutPrefix(message, pre); ok && strings.HasSuffix(name, post) {
		return ProblemItem{Location: location + "." + strings.TrimSuffix(name, post), Message: "required"}
	}
	return ProblemItem{Location: location, Message: message}
}

// respond turns a handler's error into a problem, logging internal errors
// in full under the request's correlation id.
func respond(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// The client went away: nobody reads this answer, and it is not a
		// server fault (499, as nginx calls it).
		return newProblem(ctx, errClientClosed.Wrap(err))
	}
	p := newProblem(ctx, err)
	if p.Status >= 500 {
		log.ErrorContext(ctx, "request failed", "err", err, "code", p.Code)
	}
	if p.Status == http.StatusServiceUnavailable || p.Code == audit.ErrBusy.Code {
		p.headers = http.Header{"Retry-After": {"1"}}
		p.RetryAfter = 1
	}
	return p
}

// statusText is the reason phrase of a status, 499 included.
func statusText(status int) string {
	if status == statusClientClosed {
		return "Client Closed Request"
	}
	return http.StatusText(status)
}
