// Package telemetry sets up OpenTelemetry tracing: spans exported over
// OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, nothing at all
// otherwise (no provider, no tracer: the instrumented code checks for nil
// and costs nothing). Spans carry the correlation id and tenant id and
// never personal data: the HTTP middleware (httpapi), the PostgreSQL tracer
// (postgres) and the Redis hook (kv) choose their attributes themselves
// rather than take the libraries' defaults, which record user agents,
// client addresses and command arguments.
package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is the process's tracer provider.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Config says where spans go.
type Config struct {
	Endpoint string // OTEL_EXPORTER_OTLP_ENDPOINT: base URL; spans go to <endpoint>/v1/traces. Empty: tracing off.
	Service  string
	Version  string
	// Sync exports each span when it ends (tests); otherwise spans are
	// batched.
	Sync bool
}

// New returns the tracing of c, or nil when c.Endpoint is empty.
func New(ctx context.Context, c Config) (*Tracing, error) {
	if c.Endpoint == "" {
		return nil, nil //nolint:nilnil // no tracing is a valid answer
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint+"/v1/traces"), otlptracehttp.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", c.Service), attribute.String("service.version", c.Version))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if c.Sync {
		opts = append(opts, sdktrace.WithSyncer(exp))
	} else {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return &Tracing{tp: sdktrace.NewTracerProvider(opts...)}, nil
}

// Tracer returns a tracer named name, or nil when t is nil (tracing off).
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tp.Tracer(name)
}

// Shutdown flushes what is buffered and stops exporting.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// ForceFlush exports what is buffered now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}
