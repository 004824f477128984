package postgres

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/fieldcrypt"
)

// InsertAuditBatch writes many events, of any tenants, in one statement
// and one commit, as the insert-only audit writer role: the group-commit
// writer's path.
func (db *DB) InsertAuditBatch(ctx context.Context, evs []audit.Event) error {
	if len(evs) == 0 {
		return nil
	}
	cols := make([][]any, 14)
	for i := range cols {
		cols[i] = make([]any, len(evs))
	}
	rows := make([][]any, len(evs))
	var keyless audit.EventErrors
	for j, ev := range evs {
		args, err := db.auditArgs(ctx, ev)
		if err != nil {
			if !fieldcrypt.KeyFailure(err) {
				return err
			}
			// This event's tenant key cannot be had (the provider is down
			// and the key not in memory, or the tenant was erased): the
			// event is written without its data, and the others as they
			// are — one tenant's key never fails another tenant's events.
			if keyless == nil {
				keyless = audit.EventErrors{}
			}
			keyless[j] = err
			args = auditRow(ev, nil)
		}
		for i, a := range args {
			cols[i][j] = a
		}
		rows[j] = args
	}
	citus := db.onCitus()
	err := db.InAuditWriterTx(ctx, func(tx *Tx) error {
		if citus {
			// Citus runs an INSERT … SELECT from unnest() through COPY,
			// which row-level security refuses: one INSERT per event, each
			// routed to its tenant's shard, all still in one round trip.
			for _, r := range rows {
				tx.Queue(insertAuditSQL, r...)
			}
			return nil
		}
		// Queued: the settings, the insert and the commit are one round trip.
		tx.Queue(`INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, user_id, actor_type,
			correlation_id, entity_id, resource_type, resource_id, event_data, ip_address, user_agent)
			SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[],
				$8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::bytea[], $13::inet[], $14::text[])`,
			typedColumns(cols)...)
		return nil
	})
	if err == nil && keyless != nil {
		return keyless
	}
	return err
}

// auditColumnTypes are the types of auditRow's values, in order.
//
//nolint:gochecknoglobals // read-only
var auditColumnTypes = []string{"uuid", "time", "uuid", "text", "text", "uuid", "text", "uuid", "uuid", "text", "text", "bytea", "inet", "text"}

// typedColumns turns auditRow's columns into slices of one Go type each,
// which pgx sends as the matching array in every query execution mode: a
// []any has no type without the server's description of the statement,
// which the exec and simple_protocol modes (behind a transaction pooler)
// do not ask for.
func typedColumns(cols [][]any) []any {
	out := make([]any, len(cols))
	for i, col := range cols {
		out[i] = typedColumn(auditColumnTypes[i], col)
	}
	return out
}

func typedColumn(kind string, col []any) any {
	switch kind {
	case "uuid":
		out := make([]pgtype.UUID, len(col))
		for j, v := range col {
			switch u := v.(type) {
			case uuid.UUID:
				out[j] = pgtype.UUID{Bytes: u, Valid: true}
			case *uuid.UUID:
				if u != nil {
					out[j] = pgtype.UUID{Bytes: *u, Valid: true}
				}
			}
		}
		return out
	case "text":
		out := make([]pgtype.Text, len(col))
		for j, v := range col {
			switch s := v.(type) {
			case string:
				out[j] = pgtype.Text{String: s, Valid: true}
			case *string:
				if s != nil {
					out[j] = pgtype.Text{String: *s, Valid: true}
				}
			}
		}
		return out
	case "time":
		out := make([]time.Time, len(col))
		for j, v := range col {
			out[j], _ = v.(time.Time)
		}
		return out
	case "bytea":
		out := make([][]byte, len(col))
		for j, v := range col {
			out[j], _ = v.([]byte)
		}
		return out
	default: // inet
		out := make([]*netip.Addr, len(col))
		for j, v := range col {
			out[j], _ = v.(*netip.Addr)
		}
		return out
	}
}

const storedCols = `audit_id, created_at, txid::text::numeric::bigint, tenant_id,
	event_type, severity, coalesce(user_id, '00000000-0000-0000-0000-000000000000'), actor_type, correlation_id,
	coalesce(entity_id, '00000000-0000-0000-0000-000000000000'), coalesce(resource_type, ''), coalesce(resource_id, ''),
	coalesce(event_data, '\x'), ip_address, coalesce(user_agent, '')`

func scanStored(row pgx.Row) (audit.Stored, error) {
	var s audit.Stored
	var txid int64
	var ip *netip.Addr
	err := row.Scan(&s.ID, &s.At, &txid, &s.Tenant, &s.Type, &s.Severity, &s.UserID, &s.Actor, &s.CorrelationID,
		&s.EntityID, &s.ResourceType, &s.ResourceID, &s.Data, &ip, &s.UserAgent)
	s.TxID = uint64(txid) //nolint:gosec // xid8 values are below 2^63
	if ip != nil {
		s.IP = ip.String()
	}
	s.At = s.At.UTC()
	return s, err
}

const sealCols = `seal_id, tenant_id, seq, horizon_from::text::numeric::bigint,
	horizon_to::text::numeric::bigint, event_count, cumulative_count, prev_hash, seal_hash, signature, signing_key_id, created_at, event_hashes`

func scanSeal(row pgx.Row) (audit.Seal, [][32]byte, error) {
	var s audit.Seal
	var from, to int64
	var prev, hash, hashes []byte
	err := row.Scan(&s.ID, &s.Tenant, &s.Seq, &from, &to, &s.EventCount, &s.CumulativeCount, &prev, &hash, &s.Signature, &s.KeyID, &s.At, &hashes)
	if err != nil {
		return s, nil, err
	}
	s.HorizonFrom, s.HorizonTo = uint64(from), uint64(to) //nolint:gosec // xid8 values are below 2^63
	copy(s.PrevHash[:], prev)
	copy(s.Hash[:], hash)
	s.At = s.At.UTC()
	list := make([][32]byte, len(hashes)/32)
	for i := range list {
		copy(list[i][:], hashes[i*32:])
	}
	return s, list, nil
}

// SealRound seals every event that became visible since the last round:
// for each chain (a tenant's events, or the system events) with pending
// events (migration 00010), it deletes their pending rows and appends one
// signed seal listing them, chained to the chain's previous seal, in one
// transaction. An event whose transaction has not committed here yet (on
// Citus: committed on the coordinator, not yet on the worker) is not
// pending yet either, and a later round seals it: none is skipped, and no
// ordering among the writers is needed. It returns how many events it
// sealed and the sealing lag after it. Run by one leader at a time (two
// would each fail on the other's seal numbers, not seal twice).
func (db *DB) SealRound(ctx context.Context, signer *audit.Signer) (audit.Round, error) {
	var round audit.Round
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT tenant_id FROM audit_pending /* all tenants: a round seals every chain */ ORDER BY 1`)
		if err != nil {
			return err
		}
		chains, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, t := range chains {
			ids, hashes, err := takePending(ctx, tx, t)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				continue
			}
			if err := db.appendSeal(ctx, tx, signer, t, ids, hashes, now); err != nil {
				return err
			}
			round.Sealed += len(ids)
		}
		round.Lag, err = lag(ctx, tx)
		return err
	})
	return round, err
}

// maxSealEvents bounds one seal: a chain with more pending events (after a
// long sealer outage) is sealed over several rounds.
const maxSealEvents = 100_000

// takePending deletes up to maxSealEvents of chain t's pending rows, oldest
// first, and returns their events' ids and hashes in that order. A pending
// row whose event is not there (deleted by someone who could) is dropped:
// what is gone before it was sealed cannot be vouched for either way.
func takePending(ctx context.Context, tx *Tx, t uuid.UUID) ([]uuid.UUID, [][32]byte, error) {
	rows, err := tx.Query(ctx, `WITH taken AS (
			DELETE FROM audit_pending WHERE tenant_id = $1 AND (created_at, audit_id) IN (
				SELECT created_at, audit_id FROM audit_pending WHERE tenant_id = $1 ORDER BY created_at, audit_id LIMIT $2)
			RETURNING created_at, audit_id)
		SELECT `+storedCols+` FROM audit_events e
		WHERE e.tenant_id = $1 AND (e.created_at, e.audit_id) IN (SELECT created_at, audit_id FROM taken)
		ORDER BY e.created_at, e.audit_id`, t, maxSealEvents)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ids []uuid.UUID
	var hashes [][32]byte
	for rows.Next() {
		ev, err := scanStored(rows)
		if err != nil {
			return nil, nil, err
		}
		ids = append(ids, ev.ID)
		hashes = append(hashes, ev.Hash())
	}
	return ids, hashes, rows.Err()
}

func (db *DB) appendSeal(ctx context.Context, tx *Tx, signer *audit.Signer, t uuid.UUID, ids []uuid.UUID, hashes [][32]byte, now time.Time) error {
	var prev audit.Seal
	var found bool
	row := tx.QueryRow(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, t)
	p, _, err := scanSeal(row)
	switch {
	case err == nil:
		prev, found = p, true
		if audit.VerifyCheckpoint(audit.CheckpointOf(p), signer.Public()) != nil {
			// Chained onto all the same (the seal numbers are unique):
			// verification names it; the metric and its alert tell now.
			db.forgedSeals.Add(1)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	flat := make([]byte, 0, 32*len(hashes))
	for _, h := range hashes {
		flat = append(flat, h[:]...)
	}
	s := audit.Seal{ID: uuid.Must(uuid.NewV7()), Tenant: t, Seq: 1, EventCount: len(hashes), CumulativeCount: int64(len(hashes)), At: now}
	if found {
		s.Seq, s.PrevHash, s.CumulativeCount = prev.Seq+1, prev.Hash, prev.CumulativeCount+int64(len(hashes))
	}
	// The chain positions the seal covers: its events are the chain's
	// events number from+1 through to.
	s.HorizonFrom, s.HorizonTo = uint64(s.CumulativeCount-int64(len(hashes))), uint64(s.CumulativeCount) //nolint:gosec // non-negative
	s.Hash = audit.SealHash(s.PrevHash, t, s.Seq, s.HorizonFrom, s.HorizonTo, s.CumulativeCount, hashes)
	signer.Sign(&s)
	_, err = tx.Exec(ctx, `INSERT INTO audit_seals (seal_id, tenant_id, seq, horizon_from, horizon_to, event_count, cumulative_count,
		prev_hash, seal_hash, signature, signing_key_id, created_at, event_hashes, event_ids)
		VALUES ($1, $2, $3, $4::text::xid8, $5::text::xid8, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		s.ID, t, s.Seq, fmt.Sprint(s.HorizonFrom), fmt.Sprint(s.HorizonTo), s.EventCount, s.CumulativeCount,
		s.PrevHash[:], s.Hash[:], s.Signature, s.KeyID, s.At, flat, ids)
	return err
}

// ForgedSealsSeen counts seals met on top of a chain whose signature did
// not verify (a round chains onto them all the same; verification names
// them).
func (db *DB) ForgedSealsSeen() int64 { return db.forgedSeals.Load() }

// SealingLag is how long the oldest event not yet sealed has waited (0 if
// none): the oldest pending row, which the primary key finds per chain.
// Nothing a seal says enters it: a forged seal cannot make it read 0.
func (db *DB) SealingLag(ctx context.Context, _ ed25519.PublicKey) (time.Duration, error) {
	var l time.Duration
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		l, err = lag(ctx, tx)
		return err
	})
	return l, err
}

func lag(ctx context.Context, tx *Tx) (time.Duration, error) {
	var secs float64
	err := tx.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)
		FROM audit_pending /* all tenants: the sealing lag is the oldest unsealed event of any chain */`).Scan(&secs)
	return time.Duration(secs * float64(time.Second)), err
}

// AuditChain reads a chain for verification: seals of tenant t (uuid.Nil:
// the system chain) in order, each with its authenticated hash list and
// the events now stored in its range. It runs as the platform role: the verifier
// reads what is stored, whatever the tenant.
func (db *DB) AuditChain(ctx context.Context, t uuid.UUID, each func(s audit.Seal, hashes [][32]byte, events []audit.Ref) error) error {
	return db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE tenant_id = $1 ORDER BY seq`, t)
		if err != nil {
			return err
		}
		type sealRow struct {
			s      audit.Seal
			hashes [][32]byte
		}
		seals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealRow, error) {
			s, h, err := scanSeal(r)
			return sealRow{s, h}, err
		})
		if err != nil {
			return err
		}
		for _, sr := range seals {
			// The events the seal lists, in its order; for a seal made
			// before migration 00010, those in its txid range.
			var ids []uuid.UUID
			if err := tx.QueryRow(ctx, `SELECT event_ids FROM audit_seals WHERE tenant_id = $1 AND seal_id = $2`, t, sr.s.ID).Scan(&ids); err != nil {
				return err
			}
			var rows pgx.Rows
			var err error
			if ids != nil {
				rows, err = tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events WHERE tenant_id = $1 AND audit_id = ANY($2)`, t, ids)
			} else {
				rows, err = tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events
					WHERE tenant_id = $1 AND txid >= $2::text::xid8 AND txid < $3::text::xid8 ORDER BY txid, audit_id`,
					t, fmt.Sprint(sr.s.HorizonFrom), fmt.Sprint(sr.s.HorizonTo))
			}
			if err != nil {
				return err
			}
			var refs []audit.Ref
			for rows.Next() {
				ev, err := scanStored(rows)
				if err != nil {
					rows.Close()
					return err
				}
				refs = append(refs, audit.Ref{ID: ev.ID, Hash: ev.Hash()})
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if ids != nil {
				inSeal := make(map[uuid.UUID]int, len(ids))
				for i, id := range ids {
					inSeal[id] = i
				}
				slices.SortStableFunc(refs, func(x, y audit.Ref) int { return inSeal[x.ID] - inSeal[y.ID] })
			}
			if err := each(sr.s, sr.hashes, refs); err != nil {
				return err
			}
		}
		return nil
	})
}

// RetentionRecords lists every retention record as stored (signed or not).
func (db *DB) RetentionRecords(ctx context.Context) ([]audit.Retention, error) {
	var out []audit.Retention
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT coalesce(record_id, '00000000-0000-0000-0000-000000000000'), cutoff, applied_at,
			coalesce(signing_key_id, ''), coalesce(signature, '\x') FROM audit_retention ORDER BY applied_at`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Retention, error) {
			var rec audit.Retention
			err := r.Scan(&rec.ID, &rec.Cutoff, &rec.At, &rec.KeyID, &rec.Signature)
			return rec, err
		})
		return err
	})
	return out, err
}

// RetentionFloor is the youngest age of audit partitions that may be
// dropped, as the schema owner set it.
func (db *DB) RetentionFloor(ctx context.Context) (time.Duration, error) {
	var secs float64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT extract(epoch FROM min_age) FROM audit_retention_floor`).Scan(&secs)
	})
	return time.Duration(secs * float64(time.Second)), err
}

// UnsealedEvents counts chain t's events created at or after since that
// are neither pending nor sealed: events that appeared without passing
// through the sealer (someone wrote them with the triggers off). One
// statement, so a round committing meanwhile cannot make it miscount.
func (db *DB) UnsealedEvents(ctx context.Context, t uuid.UUID, since time.Time) (int64, error) {
	var n int64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events e
			WHERE e.tenant_id = $1 AND e.created_at >= $2
			  AND NOT EXISTS (SELECT FROM audit_pending p WHERE p.tenant_id = $1 AND p.created_at = e.created_at AND p.audit_id = e.audit_id)
			  AND e.audit_id NOT IN (SELECT unnest(event_ids) FROM audit_seals WHERE tenant_id = $1 AND event_ids IS NOT NULL)
			  AND NOT EXISTS (SELECT FROM audit_seals s WHERE s.tenant_id = $1 AND s.event_ids IS NULL
			                  AND e.txid >= s.horizon_from AND e.txid < s.horizon_to)`, t, since).Scan(&n)
	})
	return n, err
}

// AuditChains lists the chains that exist: every tenant with seals, and
// uuid.Nil for the system chain if it has any.
func (db *DB) AuditChains(ctx context.Context) ([]uuid.UUID, error) {
	var out []uuid.UUID
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT tenant_id FROM audit_seals /* all tenants: every chain */ ORDER BY 1`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	return out, err
}

// LatestSeal returns the newest seal of tenant t's chain.
func (db *DB) LatestSeal(ctx context.Context, t uuid.UUID) (audit.Seal, error) {
	var s audit.Seal
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		s, _, err = scanSeal(tx.QueryRow(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, t))
		return err
	})
	return s, err
}

// EnsureAuditPartitions creates the monthly partitions from this month
// through monthsAhead months later; it returns how many it created.
func (db *DB) EnsureAuditPartitions(ctx context.Context, monthsAhead int) (int, error) {
	var n int
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT audit_ensure_partitions(now(), $1)`, monthsAhead).Scan(&n)
	})
	return n, err
}

// DropAuditPartitionsBefore detaches and drops every whole monthly
// partition that ends at or before cutoff — never one younger than the
// retention floor the schema owner set (the cutoff is moved back to it) —
// after writing a retention record signed by signer, and writes ev
// (data.retention_applied) with the names dropped, all in one transaction.
// Rows are never deleted one by one.
func (db *DB) DropAuditPartitionsBefore(ctx context.Context, cutoff time.Time, signer *audit.Signer, ev audit.Event) ([]string, error) {
	var dropped []string
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var floorCutoff time.Time
		var due int
		if err := tx.QueryRow(ctx, `SELECT now() - min_age, (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
				WHERE i.inhparent = 'audit_events'::regclass
				  AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz <= least($1, now() - min_age))
			FROM audit_retention_floor`, cutoff).Scan(&floorCutoff, &due); err != nil {
			return err
		}
		if cutoff.After(floorCutoff) {
			cutoff = floorCutoff
		}
		if due == 0 {
			return nil
		}
		rec := audit.Retention{ID: uuid.Must(uuid.NewV7()), Cutoff: cutoff, At: time.Now()}
		signer.SignRetention(&rec)
		if _, err := tx.Exec(ctx, `INSERT INTO audit_retention (applied_at, cutoff, dropped, record_id, signature, signing_key_id)
			VALUES ($1, $2, '{}', $3, $4, $5)`, rec.At, rec.Cutoff, rec.ID, rec.Signature, rec.KeyID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT audit_drop_partitions_before($1)`, rec.Cutoff).Scan(&dropped); err != nil {
			return err
		}
		if len(dropped) == 0 {
			return nil
		}
		ev.Data = map[string]any{"dropped_partitions": dropped, "cutoff": cutoff.UTC().Format(time.RFC3339)}
		return db.appendAudit(ctx, tx, ev)
	})
	return dropped, err
}

// session is a connection whose session lasts as long as it does: its own
// when DirectURL is set (a transaction pooler would hand a pooled
// connection's server session to other clients between statements, and
// a session lock with it), else one taken from the pool. done releases
// it: closed when it held a lock, else back to the pool.
func (db *DB) session(ctx context.Context) (conn *pgx.Conn, done func(held bool), err error) {
	if db.directURL != "" {
		c, err := pgx.Connect(ctx, db.directURL)
		if err != nil {
			return nil, nil, err
		}
		return c, func(bool) { _ = c.Close(context.WithoutCancel(ctx)) }, nil
	}
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pc.Conn(), func(held bool) {
		if held {
			_ = pc.Conn().Close(context.WithoutCancel(ctx)) // the session (and any lock) ends with it
		}
		pc.Release()
	}, nil
}

// Leader runs fn while this process holds the session advisory lock key
// across all instances, on a session of its own (see session); fn's
// context ends when the lock is lost (connection gone) or ctx ends. Other
// instances retry every retry interval, so leadership moves when the
// leader dies.
func (db *DB) Leader(ctx context.Context, key int64, retry time.Duration, fn func(context.Context)) {
	for ctx.Err() == nil {
		conn, release, err := db.session(ctx)
		if err == nil {
			var got bool
			if err = conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err == nil && got {
				lctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); fn(lctx) }()
				t := time.NewTicker(time.Second)
			watch:
				for {
					select {
					case <-done:
						break watch
					case <-t.C:
						pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
						perr := conn.Ping(pctx)
						pcancel()
						if perr != nil {
							break watch
						}
					case <-ctx.Done():
						break watch
					}
				}
				t.Stop()
				cancel()
				<-done
				_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
				release(true)
				continue
			}
			release(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// Advisory lock keys of the single-leader jobs.
const (
	LockSealer      int64 = 0x656c696c6501 // "elile" 01
	LockMaintenance int64 = 0x656c696c6502
	LockErasure     int64 = 0x656c696c6503
)
