package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/tenant"
)

func auditWhere(f audit.Filter, t tenant.ID) (string, []any) {
	conds := []string{"tenant_id = $1"}
	args := []any{t.UUID()}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Type != "" {
		add("event_type = $%d", f.Type)
	}
	if f.Severity != "" {
		add("severity = $%d", f.Severity)
	}
	if f.ResourceType != "" {
		add("resource_type = $%d", f.ResourceType)
	}
	if f.ResourceID != "" {
		add("resource_id = $%d", f.ResourceID)
	}
	if f.EntityID != uuid.Nil {
		add("entity_id = $%d", f.EntityID)
	}
	if f.CorrelationID != uuid.Nil {
		add("correlation_id = $%d", f.CorrelationID)
	}
	if f.UserID != uuid.Nil {
		add("user_id = $%d", f.UserID)
	}
	if !f.Since.IsZero() {
		add("created_at >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("created_at < $%d", f.Until)
	}
	if !f.BeforeAt.IsZero() {
		args = append(args, f.BeforeAt, f.BeforeID)
		conds = append(conds, fmt.Sprintf("(created_at, audit_id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	if !f.AfterAt.IsZero() {
		args = append(args, f.AfterAt, f.AfterID)
		conds = append(conds, fmt.Sprintf("(created_at, audit_id) > ($%d, $%d)", len(args)-1, len(args)))
	}
	return strings.Join(conds, " AND "), args
}

func (db *DB) decryptAudit(ctx context.Context, s audit.Stored) (audit.Record, error) {
	r := audit.Record{Stored: s}
	if len(s.Data) == 0 {
		return r, nil
	}
	plain, err := db.keys.Open(ctx, s.Data, auditColumn.AD(s.ID, s.Tenant))
	if errors.Is(err, fieldcrypt.ErrKeyDestroyed) {
		// The tenant was erased: the event stays (existence, time, type,
		// actor), its content is gone with the tenant's keys.
		r.Data = map[string]any{"_erased": true}
		return r, nil
	}
	if err != nil {
		// One unreadable event must not hide the rest of the log: say why
		// in its place (a removed key version, or tampering, which
		// verification reports in full).
		r.Data = map[string]any{"_unreadable": err.Error()}
		return r, nil
	}
	return r, json.Unmarshal(plain, &r.Data)
}

// AuditEvents lists tenant t's events newest first, at most limit, in the
// tenant's scope (row-level security applies).
func (db *DB) AuditEvents(ctx context.Context, t tenant.ID, f audit.Filter, limit int) ([]audit.Record, error) {
	var out []audit.Record
	err := db.InTx(ctx, t, func(tx *Tx) error {
		where, args := auditWhere(f, t)
		args = append(args, limit)
		rows, err := tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events WHERE `+where+
			fmt.Sprintf(` ORDER BY created_at DESC, audit_id DESC LIMIT $%d`, len(args)), args...)
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Stored, error) { return scanStored(r) })
		if err != nil {
			return err
		}
		for _, s := range stored {
			rec, err := db.decryptAudit(ctx, s)
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// AuditEvent returns one of tenant t's events. Its id (UUIDv7) carries its
// time, which prunes the search to one partition.
func (db *DB) AuditEvent(ctx context.Context, t tenant.ID, id uuid.UUID) (audit.Record, error) {
	var out audit.Record
	err := db.InTx(ctx, t, func(tx *Tx) error {
		at := audit.TimeOf(id)
		s, err := scanStored(tx.QueryRow(ctx, `SELECT `+storedCols+` FROM audit_events
			WHERE tenant_id = $1 AND audit_id = $2 AND created_at BETWEEN $3::timestamptz - interval '1 second' AND $3::timestamptz + interval '1 second'`,
			t.UUID(), id, at))
		if err != nil {
			return err
		}
		out, err = db.decryptAudit(ctx, s)
		return err
	})
	return out, err
}

// exportPage is how many events ExportAudit reads per transaction.
const exportPage = 500

// ExportAudit streams tenant t's events matching f, oldest first, to each,
// without holding them all in memory. It reads a page at a time, each in a
// short transaction of its own, and calls each only after that
// transaction has ended: a slow reader holds no pooled connection.
func (db *DB) ExportAudit(ctx context.Context, t tenant.ID, f audit.Filter, each func(audit.Record) error) error {
	for {
		var page []audit.Stored
		err := db.InTx(ctx, t, func(tx *Tx) error {
			where, args := auditWhere(f, t)
			args = append(args, exportPage)
			rows, err := tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events WHERE `+where+
				fmt.Sprintf(` ORDER BY created_at, audit_id LIMIT $%d`, len(args)), args...)
			if err != nil {
				return err
			}
			page, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Stored, error) { return scanStored(r) })
			return err
		})
		if err != nil {
			return err
		}
		for _, s := range page {
			rec, err := db.decryptAudit(ctx, s)
			if err != nil {
				return err
			}
			if err := each(rec); err != nil {
				return err
			}
		}
		if len(page) < exportPage {
			return nil
		}
		last := page[len(page)-1]
		f.AfterAt, f.AfterID = last.At, last.ID
	}
}
