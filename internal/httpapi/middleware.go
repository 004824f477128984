package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/request"
	"github.com/elile/elile/internal/tenant"
)

// statusRecorder remembers the status and size of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// routeHolder collects, from the layers inside, what the outer layers
// report about a request: the matched route pattern, the error code of a
// problem response, and the tenant and principal it acted as.
type routeHolder struct {
	pattern  string
	code     string
	category string
	tenant   tenant.ID
	user     uuid.UUID
	actor    auth.ActorType
}

func holderFrom(ctx context.Context) *routeHolder {
	h, _ := ctx.Value(routeKey{}).(*routeHolder)
	return h
}

type routeKey struct{}

// captureRoute records the pattern the mux matched (the mux sets
// r.Pattern on the request it is given).
func captureRoute(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if h, ok := r.Context().Value(routeKey{}).(*routeHolder); ok && r.Pattern != "/" {
			h.pattern = r.Pattern
		}
	})
}

var traceParentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`) //nolint:gochecknoglobals // compiled once

// withRequestContext creates the request context: a correlation id taken
// from X-Correlation-ID when it is a UUID and generated otherwise, echoed on
// the response; the W3C traceparent, continued or started.
func withRequestContext(now func() time.Time, trusted ...netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cid, err := uuid.Parse(r.Header.Get("X-Correlation-ID"))
			if err != nil || len(r.Header.Get("X-Correlation-ID")) != 36 {
				cid = uuid.Must(uuid.NewV7())
			}
			tp := strings.ToLower(r.Header.Get("traceparent"))
			switch sc := trace.SpanContextFromContext(r.Context()); {
			case sc.IsValid(): // tracing: our span's (traced started it)
				tp = "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
			case !traceParentRE.MatchString(tp) || strings.HasPrefix(tp[3:], strings.Repeat("0", 32)):
				tp = newTraceParent()
			default:
				tp = tp[:36] + newSpanID() + tp[52:] // our own span, same trace
			}
			w.Header().Set("X-Correlation-ID", cid.String())
			w.Header().Set("traceparent", tp)
			rc := request.New(cid, r.Method, clientIP(r, trusted), r.UserAgent(), tp, now())
			next.ServeHTTP(w, r.WithContext(request.With(r.Context(), rc)))
		})
	}
}

// traced starts the request's server span when tracing is on (tracer not
// nil), continuing the caller's trace from a valid traceparent; accessLog
// names it after the route and adds what is known at the end. Its
// attributes are chosen here, not taken from a library: the method from a
// closed set, the route pattern (never the path, whose ids may be
// personal), the status, the correlation id and the tenant id — no user
// agent, client address, query or body.
func traced(tracer trace.Tracer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if tracer == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			parent := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(parent, request.Method(r.Method), trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", request.Method(r.Method))))
			defer span.End()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// endSpan names the request's span after its route and records the
// outcome (a no-op when tracing is off).
func endSpan(r *http.Request, route string, status int, h *routeHolder) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return
	}
	span.SetName(route)
	attrs := []attribute.KeyValue{attribute.String("http.route", route), attribute.Int("http.response.status_code", status)}
	if rc, ok := request.From(r.Context()); ok {
		attrs = append(attrs, attribute.String("elile.correlation_id", rc.CorrelationID().String()))
	}
	if !h.tenant.IsZero() {
		attrs = append(attrs, attribute.String("elile.tenant_id", h.tenant.String()))
	}
	if h.code != "" {
		attrs = append(attrs, attribute.String("elile.error_code", h.code))
	}
	span.SetAttributes(attrs...)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

func newTraceParent() string {
	var t [16]byte
	_, _ = rand.Read(t[:])
	return "00-" + hex.EncodeToString(t[:]) + "-" + newSpanID() + "-01"
}

func newSpanID() string {
	var s [8]byte
	_, _ = rand.Read(s[:])
	return hex.EncodeToString(s[:])
}

// clientIP is the caller's address: the TCP peer, unless the peer is a
// proxy in trusted (TRUSTED_PROXIES), in which case X-Forwarded-For is read
// from the right, skipping trusted hops, and the first address that is
// not trusted is the client. Entries a client wrote itself sit to the left
// of what the trusted proxies appended, so they are never reached; an
// entry that is not an address stops the walk at the last trusted hop.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(peer) {
		return peer.String()
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.String()
			}
			client = a.Unmap()
			if !isTrusted(client) {
				return client.String()
			}
		}
	}
	return client.String()
}

// ErrorRecorder takes error.occurred events without waiting.
type ErrorRecorder interface{ Record(ev audit.Event) }

// accessLog writes one line per request: correlation id (from the context
// handler), method, route pattern, status, bytes, duration. Never the path
// itself, whose ids and query may be personal. Every error response under
// /v1 (and every unmatched route) also leaves one error.occurred event:
// system events for 401s and other failures before a tenant is known.
func accessLog(log *slog.Logger, now func() time.Time, m *metrics, errs ErrorRecorder) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := now()
			rec := &statusRecorder{ResponseWriter: w}
			holder := &routeHolder{}
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), routeKey{}, holder)))
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			route := holder.pattern
			if route == "" {
				route = "unmatched"
			}
			took := now().Sub(start)
			method := request.Method(r.Method) // a label from a closed set, whatever the client sent
			m.requests.WithLabelValues(route, method, statusLabel(status)).Inc()
			m.latency.WithLabelValues(route, method, statusClass(status)).Observe(took.Seconds())
			endSpan(r, route, status, holder)
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			if status >= 400 && errs != nil && holder.code != "" {
				errs.Record(errorEvent(r, holder, status, route))
			}
			log.LogAttrs(r.Context(), level, "request",
				slog.String("method", method), slog.String("route", route),
				slog.Int("status", status), slog.Int64("bytes", rec.bytes),
				slog.Float64("duration_ms", float64(took.Microseconds())/1000))
		})
	}
}

func errorEvent(r *http.Request, h *routeHolder, status int, route string) audit.Event {
	ev := audit.New(r.Context(), audit.ErrorOccurred, h.tenant)
	ev.UserID, ev.Actor = h.user, h.actor
	if ev.Actor == "" || h.tenant.IsZero() && status == http.StatusUnauthorized {
		ev.Actor, ev.UserID = auth.ActorSystem, uuid.Nil
	}
	ev.Severity = audit.Warning
	if status >= 500 {
		ev.Severity = audit.Error
	}
	ev.ResourceType = "http_route"
	ev.ResourceID = route
	ev.Data = map[string]any{"code": h.code, "category": h.category, "status": status, "route": route, "method": request.Method(r.Method)}
	return ev
}

// statusClass is "2xx", "4xx"… for the latency histograms, whose every
// label value multiplies their buckets.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// statusLabel bounds the status label: a handler can only write codes
// from 100 to 999, and anything else is reported as "other".
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}

// knownMethods refuses, before any other work, a method elile does not
// know, with 405 and the methods it does: a client may send any token as
// its method, and none of them may reach the routes, the logs or the audit
// log as anything but "OTHER". (405 rather than 501: a client's bytes must
// not be able to raise the server-error rate that alerts watch.)
func knownMethods(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if request.Method(r.Method) == "OTHER" {
			w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			writeProblem(w, newProblem(r.Context(), errMethodNotAllowed.Withf("this server does not know that method")).Problem)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a 500 problem with the correlation id and a
// logged stack; the server keeps serving.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w}
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as documented
					panic(p)
				}
				log.ErrorContext(r.Context(), "panic serving request", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeProblem(rec, newProblem(r.Context(), errors.New("panic")).Problem)
				}
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// Ignored by browsers over plain HTTP; behind a TLS terminator it
		// keeps them on HTTPS.
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		if strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/health") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
