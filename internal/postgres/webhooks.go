package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/tenant"
	"github.com/elile/elile/internal/webhook"
)

//nolint:gochecknoglobals // immutable descriptions of the columns
var (
	secretColumn         = EncryptedColumn{Table: "webhook_endpoints", Column: "secret", ID: "endpoint_id", Tenant: "tenant_id"}
	previousSecretColumn = EncryptedColumn{Table: "webhook_endpoints", Column: "previous_secret", ID: "endpoint_id", Tenant: "tenant_id"}
)

// The outbox: the event, when an enabled endpoint of the tenant
// subscribes to its type, and one pending delivery per such endpoint.
// Both are INSERT … SELECT from the endpoints, queued with the change:
// nothing is read first, nothing waits.
const (
	outboxEventSQL = `INSERT INTO webhook_events (tenant_id, event_id, event_type, payload, created_at)
	SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT FROM webhook_endpoints
	  WHERE tenant_id = $1 AND status = 'enabled' AND (event_types = '{}' OR $3 = ANY (event_types)))`
	outboxDeliverySQL = `INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, created_at)
	SELECT tenant_id, endpoint_id, $2, $4 FROM webhook_endpoints
	  WHERE tenant_id = $1 AND status = 'enabled' AND (event_types = '{}' OR $3 = ANY (event_types))`
)

// OnWebhookEvent sets fn to be called, after commit, with the tenant of
// every committed change its endpoints may subscribe to (the delivery
// side asks for a drain at once instead of at its next round).
func (db *DB) OnWebhookEvent(fn func(tenant.ID)) { db.webhookHook.Store(&fn) }

// announce queues ev's outbox rows in t when ev announces a webhook event
// and the tenant has an enabled endpoint.
func (t *Tx) announce(ctx context.Context, ev audit.Event) error {
	typ := webhook.Announced(ev)
	if typ == "" {
		return nil
	}
	has, err := t.db.endpoints.has(ctx, t, ev.Tenant)
	if err != nil || !has {
		return err
	}
	tid := ev.Tenant.UUID()
	if t.db.onCitus() {
		// Citus runs INSERT … SELECT through COPY, which row-level
		// security refuses: read the subscribed endpoints (locked against
		// a concurrent delete until this unit commits), then insert rows.
		rows, err := t.Query(ctx, `SELECT endpoint_id FROM webhook_endpoints
			WHERE tenant_id = $1 AND status = 'enabled' AND (event_types = '{}' OR $2 = ANY (event_types)) FOR KEY SHARE`, tid, typ)
		if err != nil {
			return err
		}
		eps, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil || len(eps) == 0 {
			return err
		}
		t.Queue(`INSERT INTO webhook_events (tenant_id, event_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)`,
			tid, ev.ID, typ, string(webhook.PayloadOf(typ, ev)), ev.At)
		for _, ep := range eps {
			t.Queue(`INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, created_at) VALUES ($1, $2, $3, $4)`, tid, ep, ev.ID, ev.At)
		}
	} else {
		t.Queue(outboxEventSQL, tid, ev.ID, typ, string(webhook.PayloadOf(typ, ev)), ev.At)
		t.Queue(outboxDeliverySQL, tid, ev.ID, typ, ev.At)
	}
	t.afterCommit(t.db.webhookEvents(ev.Tenant))
	return nil
}

// webhookEvents is what runs after a commit that wrote deliveries for
// tenant id: the OnWebhookEvent hook, when one is set.
func (db *DB) webhookEvents(id tenant.ID) func() {
	return func() {
		if fn := db.webhookHook.Load(); fn != nil {
			(*fn)(id)
		}
	}
}

// EndpointCacheTTL is how long an instance trusts what it read of whether
// a tenant has an enabled webhook endpoint. A change of a tenant without
// one writes nothing to the outbox, and does not even send the outbox's
// statements (they cost 15 % of a create's throughput: BENCHMARKS.md).
// So an endpoint made or enabled on another instance is seen by this one
// within this time; the webhook service answers the create (or the
// enabling) only after it (webhook.Options.Settle), so every change that
// begins after the answer is announced to it.
const EndpointCacheTTL = time.Second

// endpointCache remembers, per tenant, whether it has an enabled webhook
// endpoint, for EndpointCacheTTL.
type endpointCache struct {
	mu sync.Mutex
	m  map[tenant.ID]endpointFlag
}

type endpointFlag struct {
	has bool
	at  time.Time
}

// has reports whether tenant id has an enabled endpoint, reading it in t
// (one more round trip, once a second per tenant) when not known.
func (c *endpointCache) has(ctx context.Context, t *Tx, id tenant.ID) (bool, error) {
	now := time.Now()
	c.mu.Lock()
	f, ok := c.m[id]
	c.mu.Unlock()
	if ok && now.Sub(f.at) < EndpointCacheTTL {
		return f.has, nil
	}
	var has bool
	if err := t.QueryRow(ctx, `SELECT EXISTS (SELECT FROM webhook_endpoints WHERE tenant_id = $1 AND status = 'enabled')`,
		id.UUID()).Scan(&has); err != nil {
		return false, err
	}
	c.set(id, has, now)
	return has, nil
}

func (c *endpointCache) set(id tenant.ID, has bool, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 100_000 {
		c.m = map[tenant.ID]endpointFlag{} // bounded: start over
	}
	c.m[id] = endpointFlag{has: has, at: at}
}

// Webhooks returns the webhook store (webhook.Store and webhook.Queue).
func (db *DB) Webhooks() *WebhookStore { return &WebhookStore{db: db} }

// WebhookStore keeps webhook endpoints and deliveries.
type WebhookStore struct{ db *DB }

const endpointCols = `endpoint_id, tenant_id, url, description, event_types, status, coalesce(disabled_reason, ''),
	failures, failing_since, previous_until, created_at, updated_at`

func scanEndpoint(row pgx.Row) (webhook.Endpoint, error) {
	var ep webhook.Endpoint
	var tid uuid.UUID
	var failing, prevUntil *time.Time
	err := row.Scan(&ep.ID, &tid, &ep.URL, &ep.Description, &ep.EventTypes, &ep.Status, &ep.DisabledReason,
		&ep.Failures, &failing, &prevUntil, &ep.CreatedAt, &ep.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ep, webhook.ErrEndpointNotFound
	}
	ep.Tenant = tenant.ID(tid)
	if failing != nil {
		ep.FailingSince = *failing
	}
	if prevUntil != nil {
		ep.PreviousUntil = *prevUntil
	}
	if ep.EventTypes == nil {
		ep.EventTypes = []string{}
	}
	return ep, err
}

// CreateEndpoint stores ep with its secret, encrypted (webhook.Store).
func (s *WebhookStore) CreateEndpoint(ctx context.Context, ep *webhook.Endpoint, secret string, ev audit.Event) error {
	return s.db.InTx(ctx, ep.Tenant, func(tx *Tx) error {
		sealed, err := s.db.keys.Seal(ctx, []byte(secret), secretColumn.AD(ep.ID, ep.Tenant.UUID()))
		if err != nil {
			return err
		}
		// Two creates at once may each see room for one: the bound is
		// approximate by that much. (Not INSERT … SELECT: Citus runs that
		// through COPY, which row-level security refuses.)
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1`, ep.Tenant.UUID()).Scan(&n); err != nil {
			return err
		}
		if n >= webhook.MaxEndpoints {
			return webhook.ErrTooManyEndpoints
		}
		tx.Queue(`INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, description, event_types, secret, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
			ep.Tenant.UUID(), ep.ID, ep.URL, ep.Description, ep.EventTypes, sealed, ep.CreatedAt)
		tx.afterCommit(func() { s.db.endpoints.set(ep.Tenant, true, time.Now()) })
		return tx.AppendAudit(ctx, ev)
	})
}

// Endpoints lists a tenant's endpoints newest first (webhook.Store).
func (s *WebhookStore) Endpoints(ctx context.Context, t tenant.ID, after uuid.UUID, limit int) ([]webhook.Endpoint, error) {
	var out []webhook.Endpoint
	err := s.db.InTx(ctx, t, func(tx *Tx) error {
		q := `SELECT ` + endpointCols + ` FROM webhook_endpoints WHERE tenant_id = $1`
		args := []any{t.UUID(), limit}
		if after != uuid.Nil {
			q += ` AND endpoint_id < $3`
			args = append(args, after)
		}
		rows, err := tx.Query(ctx, q+` ORDER BY endpoint_id DESC LIMIT $2`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			ep, err := scanEndpoint(rows)
			if err != nil {
				return err
			}
			out = append(out, ep)
		}
		return rows.Err()
	})
	return out, err
}

// Endpoint returns one endpoint (webhook.Store).
func (s *WebhookStore) Endpoint(ctx context.Context, t tenant.ID, id uuid.UUID) (webhook.Endpoint, error) {
	var ep webhook.Endpoint
	err := s.db.readRow(ctx, tenant.Of(t), `SELECT `+endpointCols+` FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2`,
		[]any{t.UUID(), id}, func(row pgx.Row) error {
			var err error
			ep, err = scanEndpoint(row)
			return err
		})
	return ep, err
}

// UpdateEndpoint applies p (webhook.Store). Enabling an endpoint clears
// its failures: its pending deliveries go at once.
func (s *WebhookStore) UpdateEndpoint(ctx context.Context, t tenant.ID, id uuid.UUID, p webhook.Patch, ev audit.Event) (webhook.Endpoint, error) {
	var ep webhook.Endpoint
	err := s.db.InTx(ctx, t, func(tx *Tx) error {
		set := []string{"updated_at = now()"}
		args := []any{t.UUID(), id}
		add := func(col string, v any) {
			args = append(args, v)
			set = append(set, fmt.Sprintf("%s = $%d", col, len(args)))
		}
		if p.URL != nil {
			add("url", *p.URL)
		}
		if p.Description != nil {
			add("description", *p.Description)
		}
		if p.EventTypes != nil {
			add("event_types", *p.EventTypes)
		}
		if p.Status != nil {
			add("status", *p.Status)
			if *p.Status == webhook.Enabled {
				set = append(set, "disabled_reason = NULL", "failures = 0", "failing_since = NULL", "retry_at = '-infinity'")
			} else {
				set = append(set, "disabled_reason = 'disabled by the tenant'")
			}
		}
		var err error
		ep, err = scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints SET `+strings.Join(set, ", ")+
			` WHERE tenant_id = $1 AND endpoint_id = $2 RETURNING `+endpointCols, args...))
		if err != nil {
			return err
		}
		if p.Status != nil && *p.Status == webhook.Enabled {
			tx.afterCommit(func() { s.db.endpoints.set(t, true, time.Now()) })
			tx.afterCommit(s.db.webhookEvents(t))
		}
		return tx.AppendAudit(ctx, ev)
	})
	return ep, err
}

// DeleteEndpoint deletes an endpoint and its deliveries (webhook.Store).
func (s *WebhookStore) DeleteEndpoint(ctx context.Context, t tenant.ID, id uuid.UUID, ev audit.Event) error {
	return s.db.InTx(ctx, t, func(tx *Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2`, t.UUID(), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return webhook.ErrEndpointNotFound
		}
		return tx.AppendAudit(ctx, ev)
	})
}

// RotateSecret makes secret the endpoint's signing secret; the one it
// replaces is sealed again for its new column and signs until until
// (webhook.Store).
func (s *WebhookStore) RotateSecret(ctx context.Context, t tenant.ID, id uuid.UUID, secret string, until time.Time, ev audit.Event) (webhook.Endpoint, error) {
	var ep webhook.Endpoint
	err := s.db.InTx(ctx, t, func(tx *Tx) error {
		var old []byte
		err := tx.QueryRow(ctx, `SELECT secret FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2 FOR UPDATE`, t.UUID(), id).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return webhook.ErrEndpointNotFound
		}
		if err != nil {
			return err
		}
		plain, err := s.db.keys.Open(ctx, old, secretColumn.AD(id, t.UUID()))
		if err != nil {
			return err
		}
		prev, err := s.db.keys.Seal(ctx, plain, previousSecretColumn.AD(id, t.UUID()))
		if err != nil {
			return err
		}
		cur, err := s.db.keys.Seal(ctx, []byte(secret), secretColumn.AD(id, t.UUID()))
		if err != nil {
			return err
		}
		ep, err = scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints SET secret = $3, previous_secret = $4, previous_until = $5, updated_at = now()
			WHERE tenant_id = $1 AND endpoint_id = $2 RETURNING `+endpointCols, t.UUID(), id, cur, prev, until))
		if err != nil {
			return err
		}
		return tx.AppendAudit(ctx, ev)
	})
	return ep, err
}

// Deliveries lists an endpoint's deliveries, newest event first
// (webhook.Store).
func (s *WebhookStore) Deliveries(ctx context.Context, t tenant.ID, endpoint uuid.UUID, state string, after uuid.UUID, limit int) ([]webhook.Delivery, error) {
	var out []webhook.Delivery
	err := s.db.InTx(ctx, t, func(tx *Tx) error {
		q := `SELECT d.event_id, e.event_type, d.state, d.attempts, d.last_attempt_at, coalesce(d.response_status, 0),
			coalesce(d.latency_ms, 0), coalesce(d.error, ''), coalesce(d.response_excerpt, ''), d.delivered_at, d.created_at
			FROM webhook_deliveries d JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.event_id = d.event_id
			WHERE d.tenant_id = $1 AND e.tenant_id = $1 AND d.endpoint_id = $2`
		args := []any{t.UUID(), endpoint, limit}
		if state != "" {
			args = append(args, state)
			q += fmt.Sprintf(` AND d.state = $%d`, len(args))
		}
		if after != uuid.Nil {
			args = append(args, after)
			q += fmt.Sprintf(` AND d.event_id < $%d`, len(args))
		}
		rows, err := tx.Query(ctx, q+` ORDER BY d.event_id DESC LIMIT $3`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d webhook.Delivery
			var last, delivered *time.Time
			if err := rows.Scan(&d.EventID, &d.EventType, &d.State, &d.Attempts, &last, &d.ResponseStatus, &d.LatencyMS,
				&d.Error, &d.ResponseExcerpt, &delivered, &d.CreatedAt); err != nil {
				return err
			}
			if last != nil {
				d.LastAttemptAt = *last
			}
			if delivered != nil {
				d.DeliveredAt = *delivered
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// Redeliver sets a delivery back to pending (webhook.Store).
func (s *WebhookStore) Redeliver(ctx context.Context, t tenant.ID, endpoint, event uuid.UUID, ev audit.Event) error {
	return s.db.InTx(ctx, t, func(tx *Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', delivered_at = NULL
			WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id = $3`, t.UUID(), endpoint, event)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return webhook.ErrDeliveryNotFound
		}
		tx.afterCommit(s.db.webhookEvents(t))
		return tx.AppendAudit(ctx, ev)
	})
}

// The delivery worker's side (webhook.Queue): across tenants, as the
// platform.

const dueSQL = `SELECT e.tenant_id, e.endpoint_id FROM webhook_endpoints e JOIN tenants t ON t.tenant_id = e.tenant_id
	WHERE e.status = 'enabled' AND t.active AND e.retry_at <= $1 AND e.lease_until < $1 %s
	  AND EXISTS (SELECT FROM webhook_deliveries d WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.endpoint_id AND d.state = 'pending')
	LIMIT $2`

// Due lists endpoints with deliveries to attempt now (webhook.Queue).
func (s *WebhookStore) Due(ctx context.Context, now time.Time, only []tenant.ID, limit int) ([]webhook.Ref, error) {
	var out []webhook.Ref
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		q, args := fmt.Sprintf(dueSQL, ""), []any{now, limit}
		if len(only) > 0 {
			ids := make([]uuid.UUID, len(only))
			for i, t := range only {
				ids[i] = t.UUID()
			}
			q, args = fmt.Sprintf(dueSQL, "AND e.tenant_id = ANY ($3)"), append(args, ids)
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t, e uuid.UUID
			if err := rows.Scan(&t, &e); err != nil {
				return err
			}
			out = append(out, webhook.Ref{Tenant: tenant.ID(t), Endpoint: e})
		}
		return rows.Err()
	})
	return out, err
}

// Claim leases a due endpoint and opens its secrets (webhook.Queue).
func (s *WebhookStore) Claim(ctx context.Context, r webhook.Ref, now, until time.Time) (webhook.Target, bool, error) {
	var tgt webhook.Target
	var secret, prev []byte
	var prevUntil *time.Time
	found := false
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		err := tx.QueryRow(ctx, `UPDATE webhook_endpoints e SET lease_until = $4 FROM tenants t
			WHERE e.tenant_id = $1 AND e.endpoint_id = $2 AND t.tenant_id = e.tenant_id AND t.active
			  AND e.status = 'enabled' AND e.retry_at <= $3 AND e.lease_until < $3
			RETURNING e.url, e.secret, e.previous_secret, e.previous_until, e.failures`,
			r.Tenant.UUID(), r.Endpoint, now, until).Scan(&tgt.URL, &secret, &prev, &prevUntil, &tgt.Failures)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return tgt, false, err
	}
	plain, err := s.db.keys.Open(ctx, secret, secretColumn.AD(r.Endpoint, r.Tenant.UUID()))
	if err != nil {
		_ = s.Release(context.WithoutCancel(ctx), r)
		return tgt, false, err
	}
	tgt.Secrets = []string{string(plain)}
	if prev != nil && prevUntil != nil && now.Before(*prevUntil) {
		if p, err := s.db.keys.Open(ctx, prev, previousSecretColumn.AD(r.Endpoint, r.Tenant.UUID())); err == nil {
			tgt.Secrets = append(tgt.Secrets, string(p))
		}
	}
	return tgt, true, nil
}

// Pending returns an endpoint's oldest pending deliveries (webhook.Queue).
func (s *WebhookStore) Pending(ctx context.Context, r webhook.Ref, limit int) ([]webhook.Message, error) {
	var out []webhook.Message
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT d.event_id, e.event_type, e.payload, d.attempts
			FROM webhook_deliveries d JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.event_id = d.event_id
			WHERE d.tenant_id = $1 AND e.tenant_id = $1 AND d.endpoint_id = $2 AND d.state = 'pending'
			ORDER BY d.event_id LIMIT $3`, r.Tenant.UUID(), r.Endpoint, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m webhook.Message
			var payload string
			if err := rows.Scan(&m.EventID, &m.Type, &payload, &m.Attempts); err != nil {
				return err
			}
			m.Payload = []byte(payload)
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, err
}

// Record writes attempts' outcomes and the endpoint's failure state, in
// one unit of work (webhook.Queue).
func (s *WebhookStore) Record(ctx context.Context, r webhook.Ref, results []webhook.Result, failures int, retryAt, lease time.Time) error {
	n := len(results)
	ids, ats, sts, ms, errs, exc, oks := make([]uuid.UUID, n), make([]time.Time, n), make([]int32, n), make([]int32, n),
		make([]string, n), make([]string, n), make([]bool, n)
	for i, x := range results {
		ids[i], ats[i], sts[i], ms[i], errs[i], exc[i], oks[i] = x.EventID, x.At, int32(x.Status), int32(min(x.Latency.Milliseconds(), 1<<30)), //nolint:gosec // bounded
			x.Error, x.Excerpt, x.Delivered
	}
	var retry *time.Time
	if !retryAt.IsZero() {
		retry = &retryAt
	}
	var at time.Time
	if n > 0 {
		at = results[n-1].At
	}
	return s.db.InPlatformTx(ctx, func(tx *Tx) error {
		tx.Queue(`UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = r.at,
			response_status = nullif(r.status, 0), latency_ms = r.ms, error = nullif(r.err, ''), response_excerpt = nullif(r.excerpt, ''),
			state = CASE WHEN r.ok THEN 'delivered' ELSE d.state END, delivered_at = CASE WHEN r.ok THEN r.at ELSE d.delivered_at END
			FROM unnest($3::uuid[], $4::timestamptz[], $5::int[], $6::int[], $7::text[], $8::text[], $9::bool[]) AS r(event_id, at, status, ms, err, excerpt, ok)
			WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND d.event_id = r.event_id`,
			r.Tenant.UUID(), r.Endpoint, ids, ats, sts, ms, errs, exc, oks)
		tx.Queue(`UPDATE webhook_endpoints SET failures = $3,
			failing_since = CASE WHEN $3 = 0 THEN NULL ELSE coalesce(failing_since, $5) END,
			retry_at = coalesce($4::timestamptz, '-infinity'), lease_until = $6 WHERE tenant_id = $1 AND endpoint_id = $2`,
			r.Tenant.UUID(), r.Endpoint, failures, retry, at, lease)
		return nil
	})
}

// Disable disables an endpoint that failed through the schedule; ev
// records it and announces it to the tenant's other endpoints
// (webhook.Queue).
func (s *WebhookStore) Disable(ctx context.Context, r webhook.Ref, reason string, ev audit.Event) error {
	return s.db.InPlatformTx(ctx, func(tx *Tx) error {
		tx.Queue(`UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $3, updated_at = now()
			WHERE tenant_id = $1 AND endpoint_id = $2`, r.Tenant.UUID(), r.Endpoint, reason)
		return tx.AppendAudit(ctx, ev)
	})
}

// Release ends a drain's lease (webhook.Queue).
func (s *WebhookStore) Release(ctx context.Context, r webhook.Ref) error {
	return s.db.InPlatformTx(ctx, func(tx *Tx) error {
		tx.Queue(`UPDATE webhook_endpoints SET lease_until = '-infinity' WHERE tenant_id = $1 AND endpoint_id = $2`,
			r.Tenant.UUID(), r.Endpoint)
		return nil
	})
}

// OldestPending is when the oldest delivery still to be made to an
// enabled endpoint of an active tenant was made (webhook.Queue).
func (s *WebhookStore) OldestPending(ctx context.Context) (time.Time, error) {
	var at *time.Time
	err := s.db.readRow(ctx, tenant.Platform(), `SELECT min(d.created_at) FROM webhook_deliveries d
		JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.endpoint_id = d.endpoint_id
		JOIN tenants t ON t.tenant_id = d.tenant_id
		WHERE d.state = 'pending' AND e.status = 'enabled' AND t.active`, nil, func(row pgx.Row) error { return row.Scan(&at) })
	if err != nil || at == nil {
		return time.Time{}, err
	}
	return *at, nil
}

// Prune deletes delivered deliveries made before before, then events
// left with no delivery, at most limit rows of each (webhook.Queue).
func (s *WebhookStore) Prune(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := s.db.InPlatformTx(ctx, func(tx *Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE (tenant_id, endpoint_id, event_id) IN (
			SELECT tenant_id, endpoint_id, event_id FROM webhook_deliveries WHERE state = 'delivered' AND created_at < $1 LIMIT $2)`, before, limit)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `DELETE FROM webhook_events WHERE (tenant_id, event_id) IN (
			SELECT e.tenant_id, e.event_id FROM webhook_events e WHERE e.created_at < $1
			  AND NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.tenant_id = e.tenant_id AND d.event_id = e.event_id) LIMIT $2)`, before, limit)
		n += tag.RowsAffected()
		return err
	})
	return n, err
}
