package postgres

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// pgTracer makes a client span for each statement and each pipelined batch
// a traced request sends. Attributes name the operation and the table,
// never the arguments (identifiers, blind indexes and ciphertexts pass
// through them) or the statement text. Work outside a traced request (the
// audit writer, the sealer, connection set-up) makes no spans.
//
// seen, when set, is called with the text of every statement sent (the
// tests' check that queries name their tenant).
type pgTracer struct {
	t    trace.Tracer
	seen func(sql string)
}

var (
	sqlOperation = regexp.MustCompile(`(?i)^\s*(?:WITH\b.*?\)\s*)?([A-Z]+)`)                   //nolint:gochecknoglobals // compiled once
	sqlTable     = regexp.MustCompile(`(?is)\b(?:FROM|INTO|UPDATE|JOIN)\s+([a-z_][a-z0-9_]*)`) //nolint:gochecknoglobals // compiled once
)

func describe(sql string) (op, table string) {
	if m := sqlOperation.FindStringSubmatch(sql); m != nil {
		op = strings.ToUpper(m[1])
	}
	if m := sqlTable.FindStringSubmatch(sql); m != nil {
		table = m[1]
	}
	return op, table
}

func (p pgTracer) start(ctx context.Context, name string, attrs ...attribute.KeyValue) context.Context {
	if p.t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	attrs = append(attrs, attribute.String("db.system.name", "postgresql"))
	ctx, _ = p.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

func end(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, "statement failed")
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	}
	span.End()
}

// errorType is the SQLSTATE of a database error, or a generic class:
// never the message, which can quote values.
func errorType(err error) string {
	if code := sqlState(err); code != "" {
		return code
	}
	return "other"
}

// TraceQueryStart implements pgx.QueryTracer.
func (p pgTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if p.seen != nil {
		p.seen(data.SQL)
	}
	op, table := describe(data.SQL)
	return p.start(ctx, strings.TrimSpace("postgres "+op+" "+table),
		attribute.String("db.operation.name", op), attribute.String("db.collection.name", table))
}

// TraceQueryEnd implements pgx.QueryTracer.
func (p pgTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	end(ctx, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer: one span for the pipeline.
func (p pgTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	return p.start(ctx, "postgres pipeline", attribute.Int("db.operation.batch.size", data.Batch.Len()))
}

// TraceBatchQuery implements pgx.BatchTracer: each statement an event.
func (p pgTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if p.seen != nil {
		p.seen(data.SQL)
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	op, table := describe(data.SQL)
	attrs := []attribute.KeyValue{attribute.String("db.operation.name", op), attribute.String("db.collection.name", table)}
	if data.Err != nil {
		attrs = append(attrs, attribute.String("error.type", errorType(data.Err)))
	}
	span.AddEvent("statement", trace.WithAttributes(attrs...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (p pgTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	end(ctx, data.Err)
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
