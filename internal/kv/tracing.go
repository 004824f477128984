package kv

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace makes a client span for each command and pipeline a traced request
// sends to Redis. Attributes: the command name only — never its arguments,
// which hold credential ids, client addresses and sealed idempotency
// records.
func (r *Redis) Trace(t trace.Tracer) { r.c.AddHook(redisHook{t}) }

type redisHook struct{ t trace.Tracer }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span, bool) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil, false
	}
	attrs = append(attrs, attribute.String("db.system.name", "redis"))
	ctx, span := h.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, span, true
}

func finish(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.SetStatus(codes.Error, "command failed")
	}
	span.End()
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		ctx, span, ok := h.span(ctx, "redis "+cmd.Name(), attribute.String("db.operation.name", cmd.Name()))
		if !ok {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		finish(span, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, span, ok := h.span(ctx, "redis pipeline", attribute.Int("db.operation.batch.size", len(cmds)))
		if !ok {
			return next(ctx, cmds)
		}
		err := next(ctx, cmds)
		finish(span, err)
		return err
	}
}
