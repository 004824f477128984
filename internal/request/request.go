// Package request holds the per-request context: an immutable value made
// by the HTTP middleware and read by every layer below it (stores, audit,
// logging) through context.Context.
package request

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Context describes one request. It is immutable: fields are unexported,
// read through getters, and With* methods return a modified copy.
type Context struct {
	correlationID uuid.UUID
	method        string
	route         string
	clientIP      string
	userAgent     string
	traceParent   string
	started       time.Time
}

// New returns a request context. The method is reduced to the closed set
// of Method and the user agent cleaned by CleanText: both come from the
// client as arbitrary bytes and end up in logs, metrics and audit rows.
func New(correlationID uuid.UUID, method, clientIP, userAgent, traceParent string, started time.Time) Context {
	return Context{correlationID: correlationID, method: Method(method), clientIP: CleanText(clientIP, 64),
		userAgent: CleanText(userAgent, MaxUserAgent), traceParent: traceParent, started: started}
}

// CorrelationID ties together the logs, audit events and response of one request.
func (c Context) CorrelationID() uuid.UUID { return c.correlationID }

// Method is the HTTP method, or "OTHER" for one elile does not know.
func (c Context) Method() string { return c.method }

// Route is the matched route pattern, e.g. "GET /v1/entities/{entity_id}".
func (c Context) Route() string { return c.route }

// ClientIP is the caller's address.
func (c Context) ClientIP() string { return c.clientIP }

// UserAgent is the caller's User-Agent header.
func (c Context) UserAgent() string { return c.userAgent }

// TraceParent is the W3C traceparent of the request (generated if absent).
func (c Context) TraceParent() string { return c.traceParent }

// Started is when the request arrived.
func (c Context) Started() time.Time { return c.started }

// WithRoute returns a copy with the matched route pattern.
func (c Context) WithRoute(route string) Context { c.route = route; return c }

type ctxKey struct{}

// With returns ctx carrying rc.
func With(ctx context.Context, rc Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, rc)
}

// From returns the request context in ctx, and whether there is one.
func From(ctx context.Context) (Context, bool) {
	rc, ok := ctx.Value(ctxKey{}).(Context)
	return rc, ok
}
