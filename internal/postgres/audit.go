package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/request"
)

const insertAuditSQL = `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, user_id, actor_type,
	correlation_id, entity_id, resource_type, resource_id, event_data, ip_address, user_agent)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

// auditArgs encodes ev for insertAuditSQL, encrypting its data bound to the
// audit id and tenant.
func (db *DB) auditArgs(ctx context.Context, ev audit.Event) ([]any, error) {
	if db.keys == nil {
		return nil, fmt.Errorf("audit %s: no keyring configured", ev.Type)
	}
	data := ev.Data
	if data == nil {
		data = map[string]any{}
	}
	plain, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("audit %s: encode data: %w", ev.Type, err)
	}
	sealed, err := db.keys.Seal(ctx, plain, auditColumn.AD(ev.ID, ev.Tenant.UUID()))
	if err != nil {
		return nil, err
	}
	return auditRow(ev, sealed), nil
}

// auditRow is ev's row with sealed as its event_data (nil: none).
func auditRow(ev audit.Event, sealed []byte) []any {
	var ip *netip.Addr
	if a, err := netip.ParseAddr(ev.IP); err == nil {
		ip = &a
	}
	// The text columns are cleaned once more here, whatever made the event:
	// one invalid byte would make PostgreSQL refuse the whole batch.
	return []any{ev.ID, ev.At, ev.Tenant.UUID(), ev.Type, ev.Severity, nullUUID(ev.UserID), string(ev.Actor),
		ev.CorrelationID, nullUUID(ev.EntityID), nullString(request.CleanText(ev.ResourceType, 100)),
		nullString(request.CleanText(ev.ResourceID, 255)), sealed, ip,
		nullString(request.CleanText(ev.UserAgent, request.MaxUserAgent))}
}

//nolint:gochecknoglobals // immutable description of the column
var auditColumn = EncryptedColumn{Table: "audit_events", Column: "event_data", ID: "audit_id", Tenant: "tenant_id"}

// appendAudit writes ev in tx: it commits or rolls back with the change it
// records.
func (db *DB) appendAudit(ctx context.Context, tx *Tx, ev audit.Event) error {
	args, err := db.auditArgs(ctx, ev)
	if err != nil {
		return err
	}
	tx.Queue(insertAuditSQL, args...) // commits with the change it records
	return nil
}

// AppendAudit queues ev in t, the unit of work of the change it records:
// it commits with the change (entity.Tx, entity.ProfileTx, sourcecache.Tx
// and tenancy.Tx all take it from here).
//
// A change a tenant's webhook endpoints may subscribe to also writes its
// event to the outbox here, in the same unit of work (webhooks.go).
func (t *Tx) AppendAudit(ctx context.Context, ev audit.Event) error {
	if err := t.db.appendAudit(ctx, t, ev); err != nil {
		return err
	}
	return t.announce(ctx, ev)
}

// Visible fails with entity.ErrNotFound unless the unit's scope can see
// every entity id (entity.Tx, entity.ProfileTx).
func (t *Tx) Visible(ctx context.Context, ids ...uuid.UUID) error {
	return visible(ctx, t, t.tenant, ids...)
}

func nullUUID(u uuid.UUID) *uuid.UUID {
	if u == uuid.Nil {
		return nil
	}
	return &u
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
