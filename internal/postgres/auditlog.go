package postgres

import (
	"bytes"
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
	// In chain order: each event locks its chain's head until the commit
	// (migration 00010), so two batches lock heads in the same order and
	// cannot deadlock.
	order := make([]int, len(evs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(evs[a].Tenant[:], evs[b].Tenant[:]) })
	for k, j := range order {
		ev := evs[j]
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
			cols[i][k] = a
		}
		rows[k] = args
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

// SealRound seals every chain's events committed since its last seal.
// Each chain (a tenant's events, or the system events) numbers its events
// in commit order (migration 00010): the round reads every chain's head,
// and for each chain whose head passed its last genuine seal, reads the
// events after that seal in order, stops at the first missing number (a
// transaction not yet visible here), and appends one signed seal chained
// to the chain's previous one. It returns how many events it sealed and
// the sealing lag after it. Run by one leader at a time.
func (db *DB) SealRound(ctx context.Context, signer *audit.Signer) (audit.Round, error) {
	var round audit.Round
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		heads, err := chainHeads(ctx, tx)
		if err != nil {
			return err
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, h := range heads {
			at, err := db.sealedPosition(ctx, tx, h.tenant, signer.Public())
			if err != nil {
				return err
			}
			if h.last < at {
				continue // every event of the chain is sealed
			}
			hashes, next, err := chainEvents(ctx, tx, h.tenant, at, h.last)
			if err != nil {
				return err
			}
			if len(hashes) == 0 {
				continue
			}
			if err := db.appendSeal(ctx, tx, signer, h.tenant, at, next, hashes, now); err != nil {
				return err
			}
			round.Sealed += len(hashes)
		}
		round.Lag, err = db.lag(ctx, tx, signer.Public())
		return err
	})
	return round, err
}

type chainHead struct {
	tenant uuid.UUID
	last   int64
}

// chainHeads reads every chain's last given position.
func chainHeads(ctx context.Context, tx *Tx) ([]chainHead, error) {
	rows, err := tx.Query(ctx, `SELECT tenant_id, last_seq FROM audit_heads /* all tenants: a round looks at every chain */ ORDER BY tenant_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (chainHead, error) {
		var h chainHead
		err := r.Scan(&h.tenant, &h.last)
		return h, err
	})
}

// chainEvents streams chain t's events from position from through last,
// in order, keeping only each event's 32-byte hash (a round after a long
// sealer outage may cover millions of events), and stops before the first
// position it does not find: the events it returns are from, from+1, …,
// next-1.
func chainEvents(ctx context.Context, tx *Tx, t uuid.UUID, from, last int64) (hashes [][32]byte, next int64, err error) {
	rows, err := tx.Query(ctx, `SELECT seq, `+storedCols+` FROM audit_events
		WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq`, t, from, last)
	if err != nil {
		return nil, from, err
	}
	defer rows.Close()
	next = from
	for rows.Next() {
		var seq int64
		ev, err := scanStored(seqRow{rows, &seq})
		if err != nil {
			return nil, from, err
		}
		if seq != next {
			break // a gap: the rest waits for a later round
		}
		hashes = append(hashes, ev.Hash())
		next++
	}
	rows.Close()
	return hashes, next, rows.Err()
}

// seqRow scans a leading seq column, then hands the rest to scanStored.
type seqRow struct {
	pgx.Row
	seq *int64
}

func (r seqRow) Scan(dest ...any) error { return r.Row.Scan(append([]any{r.seq}, dest...)...) }

func (db *DB) appendSeal(ctx context.Context, tx *Tx, signer *audit.Signer, t uuid.UUID, from, to int64, hashes [][32]byte, now time.Time) error {
	var prev audit.Seal
	var found bool
	row := tx.QueryRow(ctx, `SELECT `+sealCols+` FROM audit_seals WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, t)
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
	s := audit.Seal{ID: uuid.Must(uuid.NewV7()), Tenant: t, Seq: 1, HorizonFrom: uint64(from), HorizonTo: uint64(to), //nolint:gosec // positive
		EventCount: len(hashes), CumulativeCount: int64(len(hashes)), At: now}
	if found {
		s.Seq, s.PrevHash, s.CumulativeCount = prev.Seq+1, prev.Hash, prev.CumulativeCount+int64(len(hashes))
	}
	s.Hash = audit.SealHash(s.PrevHash, t, s.Seq, s.HorizonFrom, s.HorizonTo, s.CumulativeCount, hashes)
	signer.Sign(&s)
	_, err = tx.Exec(ctx, `INSERT INTO audit_seals (seal_id, tenant_id, seq, horizon_from, horizon_to, seq_from, seq_to, event_count, cumulative_count,
		prev_hash, seal_hash, signature, signing_key_id, created_at, event_hashes)
		VALUES ($1, $2, $3, $4::text::xid8, $5::text::xid8, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		s.ID, t, s.Seq, fmt.Sprint(from), fmt.Sprint(to), from, to, s.EventCount, s.CumulativeCount,
		s.PrevHash[:], s.Hash[:], s.Signature, s.KeyID, s.At, flat)
	if err == nil {
		db.sealed.Store(t, sealedAt{id: s.ID, next: to})
	}
	return err
}

// sealedAt is where a chain's newest genuine seal ends: the seal, and the
// position of the first event after it.
type sealedAt struct {
	id   uuid.UUID
	next int64
}

// sealedPosition is the position of chain t's first event not covered by
// a genuine seal: the seq_to of its newest seal whose signature verifies
// with pub (1 when it has none). A seal someone inserted without the
// signing key (one reaching far past the head, say) is passed over, so it
// can neither make the sealer skip events nor make the lag read 0. A
// verified seal is remembered by id: a round verifies a chain's seal once,
// not once per round.
func (db *DB) sealedPosition(ctx context.Context, tx *Tx, t uuid.UUID, pub ed25519.PublicKey) (int64, error) {
	const page = 16
	seen := 0
	for seen < maxForgedSeals {
		rows, err := tx.Query(ctx, `SELECT coalesce(seq_to, 1), `+sealHeadCols+` FROM audit_seals
			WHERE tenant_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT $3`, t, seen, min(page, maxForgedSeals-seen))
		if err != nil {
			return 0, err
		}
		type sealPos struct {
			s    audit.Seal
			next int64
		}
		seals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealPos, error) {
			var sp sealPos
			s, _, err := scanSeal(seqRow{r, &sp.next})
			sp.s = s
			return sp, err
		})
		if err != nil {
			return 0, err
		}
		for _, sp := range seals {
			if c, ok := db.sealed.Load(t); ok && c.(sealedAt).id == sp.s.ID { //nolint:forcetypeassert // only sealedAt is stored
				return sp.next, nil
			}
			if audit.VerifyCheckpoint(audit.CheckpointOf(sp.s), pub) == nil {
				db.sealed.Store(t, sealedAt{id: sp.s.ID, next: sp.next})
				return sp.next, nil
			}
			db.forgedSeals.Add(1)
		}
		seen += len(seals)
		if len(seals) < page {
			break
		}
	}
	if seen > 0 {
		// Only forged seals on top: stop sealing this chain (the lag then
		// grows and alerts) rather than guess where the genuine chain ends.
		return 0, fmt.Errorf("no seal among the newest %d of chain %s verifies with the audit signing key: audit_seals was written without it", seen, t)
	}
	return 1, nil
}

// sealHeadCols are sealCols without the event hash list, which checking a
// signature does not need.
const sealHeadCols = `seal_id, tenant_id, seq, horizon_from::text::numeric::bigint,
	horizon_to::text::numeric::bigint, event_count, cumulative_count, prev_hash, seal_hash, signature, signing_key_id, created_at, '\x'::bytea`

// maxForgedSeals bounds how many seals that do not verify a round reads
// past before it gives up.
const maxForgedSeals = 1000

// ForgedSealsSeen counts seals passed over because their signature did not
// verify (each time a round or a lag reading met them).
func (db *DB) ForgedSealsSeen() int64 { return db.forgedSeals.Load() }

// SealingLag is how long the oldest event not covered by a genuine seal
// has waited (0 if none): of every chain whose head passed its last seal,
// the event just after that seal, found by the (tenant_id, seq) index.
func (db *DB) SealingLag(ctx context.Context, pub ed25519.PublicKey) (time.Duration, error) {
	var lag time.Duration
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		var err error
		lag, err = db.lag(ctx, tx, pub)
		return err
	})
	return lag, err
}

func (db *DB) lag(ctx context.Context, tx *Tx, pub ed25519.PublicKey) (time.Duration, error) {
	heads, err := chainHeads(ctx, tx)
	if err != nil {
		return 0, err
	}
	var worst float64
	for _, h := range heads {
		at, err := db.sealedPosition(ctx, tx, h.tenant, pub)
		if err != nil {
			return 0, err
		}
		if h.last < at {
			continue
		}
		var l float64
		// The first event after the seal that is there (one may be missing:
		// the round stopped at that gap).
		if err := tx.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM clock_timestamp() - (SELECT created_at FROM audit_events
			WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT 1)), 0)`, h.tenant, at).Scan(&l); err != nil {
			return 0, err
		}
		worst = max(worst, l)
	}
	return time.Duration(worst * float64(time.Second)), nil
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
			// The positions the seal covers (NULL for a seal made before
			// migration 00010 whose events retention dropped: none read).
			rows, err := tx.Query(ctx, `SELECT `+storedCols+` FROM audit_events
				WHERE tenant_id = $1 AND seq >= (SELECT seq_from FROM audit_seals WHERE tenant_id = $1 AND seal_id = $2)
				  AND seq < (SELECT seq_to FROM audit_seals WHERE tenant_id = $1 AND seal_id = $2) ORDER BY seq`,
				t, sr.s.ID)
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

// CountEventsInRange counts chain t's events at the positions its seals
// cover, from the start of seal number fromSeal to the end of its newest.
func (db *DB) CountEventsInRange(ctx context.Context, t uuid.UUID, fromSeal int64) (int64, error) {
	var n int64
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1
			AND seq >= (SELECT seq_from FROM audit_seals WHERE tenant_id = $1 AND seq = $2)
			AND seq < (SELECT max(seq_to) FROM audit_seals WHERE tenant_id = $1)`, t, fromSeal).Scan(&n)
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
