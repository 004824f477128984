// Package apperr defines elile's typed errors: a Kind that decides the HTTP
// status and category, and a stable machine-readable Code.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an error. The HTTP layer maps each Kind to one status.
type Kind uint8

// The kinds of error.
const (
	Internal         Kind = iota // a bug or an unexpected failure: 500
	Invalid                      // the request fails validation: 422
	Unauthorized                 // no valid credential: 401
	Forbidden                    // a valid credential that may not do this: 403
	NotFound                     // no such object visible to the caller: 404
	Conflict                     // the request conflicts with stored state: 409
	RateLimited                  // too many requests: 429
	Unavailable                  // a dependency is down or saturated: 503
	BadRequest                   // a malformed request or header: 400
	MethodNotAllowed             // a method the route does not have: 405
	NotAcceptable                // no acceptable response type: 406
	TooLarge                     // a body over the limit: 413
	UnsupportedMedia             // a body that is not JSON: 415
	ClientClosed                 // the client went away before the answer: 499
)

var kindNames = [...]string{"internal", "invalid", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited", "unavailable", "bad_request", //nolint:gochecknoglobals // read-only table
	"method_not_allowed", "not_acceptable", "too_large", "unsupported_media", "client_closed"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is an error with a kind, a stable code and a message safe to show to
// the client. Sentinels are *Error values compared with errors.Is by code.
type Error struct {
	Kind    Kind
	Code    string // stable, UPPER_SNAKE_CASE, e.g. TENANT_FORBIDDEN
	Message string // safe to show to the client
	Err     error  // the cause, never shown to the client
}

// New returns an error of kind k with a stable code and a client-safe message.
func New(k Kind, code, msg string) *Error { return &Error{Kind: k, Code: code, Message: msg} }

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Wrap returns a copy of e that carries cause.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.Err = cause
	return &c
}

// Withf returns a copy of e with a more specific message.
func (e *Error) Withf(format string, args ...any) *Error {
	c := *e
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// As returns the first *Error in err's chain, or nil.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// Field is one invalid input field: its path in the input (e.g.
// "canonical_identifiers.ssn", "risk_score.overall") and what is wrong.
type Field struct {
	Path    string
	Message string
}

// FieldsError lists every invalid field of one input, so a client fixes
// them in one pass.
type FieldsError struct{ Fields []Field }

func (f *FieldsError) Error() string {
	if len(f.Fields) == 0 {
		return "invalid input"
	}
	return fmt.Sprintf("invalid input: %s: %s (and %d more)", f.Fields[0].Path, f.Fields[0].Message, len(f.Fields)-1)
}

// ErrValidation is the error of invalid fields (422 VALIDATION_FAILED).
var ErrValidation = New(Invalid, "VALIDATION_FAILED", "the request has invalid fields") //nolint:gochecknoglobals // sentinel

// Fields returns the validation error listing fields, or nil when there
// are none.
func Fields(fields ...Field) error {
	if len(fields) == 0 {
		return nil
	}
	return ErrValidation.Wrap(&FieldsError{Fields: fields})
}

// FieldsOf returns the invalid fields err carries (nil if none).
func FieldsOf(err error) []Field {
	var f *FieldsError
	if errors.As(err, &f) {
		return f.Fields
	}
	return nil
}

// ConflictWith names the stored object a conflict is with (wrapped in a
// Conflict error), so a client acts on it without parsing the message:
// the HTTP layer renders it as existing_entity_id or existing_relation_id.
type ConflictWith struct {
	Kind string // "entity" or "relation"
	ID   string
}

func (c *ConflictWith) Error() string { return "conflicts with " + c.Kind + " " + c.ID }
