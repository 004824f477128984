package postgres

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
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
	}
	err := db.InAuditWriterTx(ctx, func(tx *Tx) error {
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

const storedCols = `audit_id, created_at, txid::text::numeric::bigint, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'),
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

const sealCols = `seal_id, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'), seq, horizon_from::text::numeric::bigint,
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

// SealRound seals every event committed since the last round: it reads the
// horizon H (the xmin of its snapshot: every transaction below it has
// ended), takes the events with last horizon <= txid < H, and appends one
// signed seal per tenant that has any, chained to that tenant's previous
// seal. It returns how many events it sealed and the sealing lag after it
// (read in the same unit of work, from the horizon it verified or wrote,
// so a round costs one seal verification, not two). Run by one leader at a
// time.
func (db *DB) SealRound(ctx context.Context, signer *audit.Signer) (audit.Round, error) {
	var round audit.Round
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var h int64
		if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::numeric::bigint`).Scan(&h); err != nil {
			return err
		}
		h0, err := db.sealedHorizon(ctx, tx, signer.Public())
		if err != nil {
			return err
		}
		if h <= h0 {
			round.Lag, err = lagFrom(ctx, tx, h0)
			return err
		}
		// Stream the rows, keeping only each event's 32-byte hash: a round
		// after a long sealer outage may cover millions of events.
		rows, err := tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events /* all tenants: a round seals every chain's new events */
			WHERE txid >= $1::text::xid8 AND txid < $2::text::xid8 ORDER BY tenant_id NULLS FIRST, txid, audit_id`,
			txidRange, fmt.Sprint(h0), fmt.Sprint(h))
		if err != nil {
			return err
		}
		type batch struct {
			tenant uuid.UUID
			hashes [][32]byte
		}
		var batches []batch
		for rows.Next() {
			ev, err := scanStored(rows)
			if err != nil {
				rows.Close()
				return err
			}
			if len(batches) == 0 || batches[len(batches)-1].tenant != ev.Tenant {
				batches = append(batches, batch{tenant: ev.Tenant})
			}
			b := &batches[len(batches)-1]
			b.hashes = append(b.hashes, ev.Hash())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, b := range batches {
			if err := db.appendSeal(ctx, tx, signer, b.tenant, uint64(h0), uint64(h), b.hashes, now); err != nil { //nolint:gosec // positive
				return err
			}
			round.Sealed += len(b.hashes)
		}
		// Sealed or not, no event below h is left unsealed.
		round.Lag, err = lagFrom(ctx, tx, h)
		return err
	})
	return round, err
}

func (db *DB) appendSeal(ctx context.Context, tx *Tx, signer *audit.Signer, t uuid.UUID, from, to uint64, hashes [][32]byte, now time.Time) error {
	var prev audit.Seal
	var found bool
	row := tx.QueryRow(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE `+chainIs(t)+` ORDER BY seq DESC LIMIT 1`, t)
	p, _, err := scanSeal(row)
	switch {
	case err == nil:
		prev, found = p, true
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	flat := make([]byte, 0, 32*len(hashes))
	for _, h := range hashes {
		flat = append(flat, h[:]...)
	}
	s := audit.Seal{ID: uuid.Must(uuid.NewV7()), Tenant: t, Seq: 1, HorizonFrom: from, HorizonTo: to,
		EventCount: len(hashes), CumulativeCount: int64(len(hashes)), At: now}
	if found {
		s.Seq, s.PrevHash, s.CumulativeCount = prev.Seq+1, prev.Hash, prev.CumulativeCount+int64(len(hashes))
	}
	s.Hash = audit.SealHash(s.PrevHash, t, s.Seq, from, to, s.CumulativeCount, hashes)
	signer.Sign(&s)
	_, err = tx.Exec(ctx, `INSERT INTO audit_seals (seal_id, tenant_id, seq, horizon_from, horizon_to, event_count, cumulative_count,
		prev_hash, seal_hash, signature, signing_key_id, created_at, event_hashes)
		VALUES ($1, $2, $3, $4::text::xid8, $5::text::xid8, $6, $7, $8, $9, $10, $11, $12, $13)`,
		s.ID, nullUUID(t), s.Seq, fmt.Sprint(from), fmt.Sprint(to), s.EventCount, s.CumulativeCount,
		s.PrevHash[:], s.Hash[:], s.Signature, s.KeyID, s.At, flat)
	return err
}

// sealedHorizon is where the last genuine sealing round stopped: the
// horizon_to of the newest seal whose signature verifies with pub. A seal
// someone inserted without the signing key (one with a huge horizon_to,
// say) is passed over, so it can neither make the sealer skip events nor
// make the sealing lag read 0. It returns 0 when no genuine seal exists.
func (db *DB) sealedHorizon(ctx context.Context, tx *Tx, pub ed25519.PublicKey) (int64, error) {
	// Normally the newest seal is genuine: read one page, then more only
	// while they do not verify. The event hash lists are not needed to check
	// a signature and are not read. The seals of one round share horizon_to,
	// so any genuine one of them gives it; the index on horizon_to serves
	// the order.
	const page = 16
	seen := 0
	for seen < maxForgedSeals {
		rows, err := tx.Query(ctx, `SELECT seal_id, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'), seq,
				horizon_from::text::numeric::bigint, horizon_to::text::numeric::bigint, event_count, cumulative_count,
				prev_hash, seal_hash, signature, signing_key_id, created_at, '\x'::bytea
			FROM audit_seals /* all tenants: the sealer checks every chain's newest seals */ ORDER BY horizon_to DESC OFFSET $1 LIMIT $2`, seen, min(page, maxForgedSeals-seen))
		if err != nil {
			return 0, err
		}
		seals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Seal, error) {
			s, _, err := scanSeal(r)
			return s, err
		})
		if err != nil {
			return 0, err
		}
		for _, s := range seals {
			if audit.VerifyCheckpoint(audit.CheckpointOf(s), pub) == nil {
				return int64(s.HorizonTo), nil //nolint:gosec // xid8 values are below 2^63
			}
			db.forgedSeals.Add(1)
		}
		seen += len(seals)
		if len(seals) < page {
			break
		}
	}
	if seen > 0 {
		// Only forged seals on top: stop sealing (the lag then grows and
		// alerts) rather than guess where the genuine chain ends.
		return 0, fmt.Errorf("no seal among the newest %d verifies with the audit signing key: audit_seals was written without it", seen)
	}
	return 0, nil
}

// maxForgedSeals bounds how many seals that do not verify a round reads
// past before it gives up.
const maxForgedSeals = 1000

// ForgedSealsSeen counts seals passed over because their signature did not
// verify (each time a round or a lag reading met them).
func (db *DB) ForgedSealsSeen() int64 { return db.forgedSeals.Load() }

// SealingLag is how long the first event not covered by a genuine seal
// has waited (0 if none): the event with the lowest transaction id above
// the sealed horizon, which the txid index finds with one row read per
// partition. (min(created_at) over every unsealed event read them all —
// hundreds under load, 15 ms a reading, four readings a second, in bursts
// that showed in the request tail; an event's created_at is its insert
// time, so the two differ by milliseconds at most.)
func (db *DB) SealingLag(ctx context.Context, pub ed25519.PublicKey) (time.Duration, error) {
	var lag time.Duration
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		h0, err := db.sealedHorizon(ctx, tx, pub)
		if err != nil {
			return err
		}
		lag, err = lagFrom(ctx, tx, h0)
		return err
	})
	return lag, err
}

// lagFrom is how long the first event at or above horizon h has waited.
func lagFrom(ctx context.Context, tx *Tx, h int64) (time.Duration, error) {
	var lag float64
	err := tx.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM clock_timestamp() - (SELECT created_at FROM audit_events
		WHERE txid >= $1::text::xid8 /* all tenants: the sealing lag is the oldest unsealed event of any chain */ ORDER BY txid LIMIT 1)), 0)`, txidRange, fmt.Sprint(h)).Scan(&lag)
	return time.Duration(lag * float64(time.Second)), err
}

// AuditChain reads a chain for verification: seals of tenant t (uuid.Nil:
// the system chain) in order, each with its authenticated hash list and
// the events now stored in its range. It runs as the platform role: the verifier
// reads what is stored, whatever the tenant.
func (db *DB) AuditChain(ctx context.Context, t uuid.UUID, each func(s audit.Seal, hashes [][32]byte, events []audit.Ref) error) error {
	return db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE `+chainIs(t)+` ORDER BY seq`, t)
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
			rows, err := tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events
				WHERE `+chainIs(t)+` AND txid >= $2::text::xid8 AND txid < $3::text::xid8 ORDER BY txid, audit_id`,
				txidRange, t, fmt.Sprint(sr.s.HorizonFrom), fmt.Sprint(sr.s.HorizonTo))
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

// CountEventsInRange counts tenant t's events with txid >= from and below
// the highest horizon any seal reached.
func (db *DB) CountEventsInRange(ctx context.Context, t uuid.UUID, from uint64) (int64, error) {
	var n int64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE `+chainIs(t)+`
			AND txid >= $2::text::xid8 AND txid < (SELECT max(horizon_to) FROM audit_seals)`, txidRange, t, fmt.Sprint(from)).Scan(&n)
	})
	return n, err
}

// AuditChains lists the chains that exist: every tenant with seals, and
// uuid.Nil for the system chain if it has any.
func (db *DB) AuditChains(ctx context.Context) ([]uuid.UUID, error) {
	var out []uuid.UUID
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT coalesce(tenant_id, '00000000-0000-0000-0000-000000000000') FROM audit_seals /* all tenants: every chain */ ORDER BY 1`)
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
		s, _, err = scanSeal(tx.QueryRow(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE `+chainIs(t)+` ORDER BY seq DESC LIMIT 1`, t))
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

// txidRange is how the queries over a range of transaction ids are sent:
// with their values in the statement (simple protocol), so PostgreSQL plans
// each for its actual range. As prepared statements they switch to a
// generic plan after five executions, which cannot tell a range of a few
// hundred new events from the whole month: the sealing-lag reading went
// from under 1 ms to 110 ms on a month of 200,000 events
// (BenchmarkSealingLag), every round.
const txidRange = pgx.QueryExecModeSimpleProtocol

// chainIs is the condition on tenant_id ($1) that selects chain t: an
// equality for a tenant and IS NULL for the system chain — both can use
// the (tenant_id, …) indexes, which IS NOT DISTINCT FROM cannot. For the
// system chain $1 is still sent (and ignored) so the placeholders stay put.
func chainIs(t uuid.UUID) string {
	if t == uuid.Nil {
		return "tenant_id IS NULL AND $1::uuid IS NOT NULL"
	}
	return "tenant_id = $1"
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
