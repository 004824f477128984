package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testSigner(t testing.TB, b byte) *audit.Signer {
	t.Helper()
	s, err := audit.NewSigner(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// auditSetup opens the database with a keyring, as the server does.
func auditSetup(t *testing.T) testBundle {
	t.Helper()
	return setup(t, postgres.Options{Keyring: testRing(t, 1, 1)})
}

// appendEvent writes a data.accessed event of tenant a in a transaction of
// its own, as a mutation's event is written, and returns it.
func appendEvent(t *testing.T, db *postgres.DB, a tenant.ID) audit.Event {
	t.Helper()
	ctx := context.Background()
	ev := event(a, audit.DataAccessed)
	if err := db.InTx(ctx, a, func(tx *postgres.Tx) error { return tx.AppendAudit(ctx, ev) }); err != nil {
		t.Fatal(err)
	}
	return ev
}

func event(t tenant.ID, typ string) audit.Event {
	ev := audit.New(context.Background(), typ, t)
	ev.Data = map[string]any{"n": 1}
	return ev
}

// sealAll runs rounds until want events are sealed: the horizon is the
// whole cluster's oldest running transaction, which other tests' open
// transactions hold back for a moment.
func sealAll(t *testing.T, db *postgres.DB, s *audit.Signer, want int) int {
	t.Helper()
	total := 0
	for deadline := time.Now().Add(60 * time.Second); total < want && time.Now().Before(deadline); {
		r, err := db.SealRound(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		total += r.Sealed
		if total < want {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return total
}

func verify(t *testing.T, db *postgres.DB, tid uuid.UUID, s *audit.Signer, cp *audit.Checkpoint) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), db, tid, s.Public(), cp)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// superuser runs statements with the triggers off: an attacker with full
// write access to the database but not the signing key.
func superuser(t *testing.T, url string, stmts ...string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "SET session_replication_role = replica"); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestAudit_TransactionalWrite(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a := seedTenant(t, b.url, "audit-tx")
	ev := event(a, audit.EntityCreated)
	entity := newUUID()
	boom := errors.New("fails after the audit insert")
	err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error {
		if _, err := tx.Raw().Exec(ctx, "INSERT INTO entities (entity_id, tenant_id, entity_type) VALUES ($1, $2, 'individual')", entity, a.UUID()); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, ev); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v", err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1", ev.ID); n != 0 {
		t.Errorf("audit event of a rolled-back change survived")
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM entities WHERE entity_id = $1", entity); n != 0 {
		t.Errorf("the change survived")
	}
	// And the other way: the change commits with its event.
	if err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error { return tx.AppendAudit(ctx, ev) }); err != nil {
		t.Fatal(err)
	}
	got, err := b.db.AuditEvent(ctx, a, ev.ID)
	if err != nil || got.Type != audit.EntityCreated || got.Data["n"] != float64(1) {
		t.Fatalf("AuditEvent = %+v, %v", got, err)
	}
	// event_data is encrypted at rest and bound to its row.
	var raw []byte
	conn, _ := pgx.Connect(ctx, b.url)
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT event_data FROM audit_events WHERE audit_id = $1", ev.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(`"n"`)) {
		t.Error("event_data stored in clear")
	}
}

func TestAudit_TenantIsolation(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a, bt := seedTenant(t, b.url, "iso-a"), seedTenant(t, b.url, "iso-b")
	evA, evB := event(a, audit.DataAccessed), event(bt, audit.DataAccessed)
	if err := b.db.InsertAuditBatch(ctx, []audit.Event{evA, evB, event(tenant.ID{}, audit.ErrorOccurred)}); err != nil {
		t.Fatal(err)
	}
	got, err := b.db.AuditEvents(ctx, bt, audit.Filter{}, 100)
	if err != nil || len(got) != 1 || got[0].ID != evB.ID {
		t.Fatalf("B's events = %+v, %v; want only B's", got, err)
	}
	if _, err := b.db.AuditEvent(ctx, bt, evA.ID); apperr.KindOf(err) != apperr.NotFound {
		t.Errorf("B reading A's event by id: %v, want not found", err)
	}
	// Filters, by correlation and type, and keyset pages.
	got, _ = b.db.AuditEvents(ctx, a, audit.Filter{CorrelationID: evA.CorrelationID, Type: audit.DataAccessed}, 10)
	if len(got) != 1 {
		t.Errorf("filtered = %d events", len(got))
	}
	got, _ = b.db.AuditEvents(ctx, a, audit.Filter{BeforeAt: evA.At, BeforeID: evA.ID}, 10)
	if len(got) != 0 {
		t.Errorf("page after the only event = %d events", len(got))
	}
	var lines int
	if err := b.db.ExportAudit(ctx, a, audit.Filter{}, func(audit.Record) error { lines++; return nil }); err != nil || lines != 1 {
		t.Errorf("export = %d, %v", lines, err)
	}
}

// TestSealer_DetectsTampering seals a chain, then plays an attacker with
// full database access and no signing key.
func TestSealer_DetectsTampering(t *testing.T) {
	t.Parallel()
	signer := testSigner(t, 1)
	type attack struct {
		name  string
		do    func(t *testing.T, url string, ids []uuid.UUID)
		kind  string
		first int // index of the first bad event, -1 if not event-specific
	}
	attacks := []attack{
		{"Modify", func(t *testing.T, url string, ids []uuid.UUID) {
			superuser(t, url, fmt.Sprintf("UPDATE audit_events SET severity = 'debug' WHERE audit_id = '%s'", ids[2]))
		}, "modified", 2},
		{"Delete", func(t *testing.T, url string, ids []uuid.UUID) {
			superuser(t, url, fmt.Sprintf("DELETE FROM audit_events WHERE audit_id = '%s'", ids[1]))
		}, "deleted", 1},
		{"Insert", func(t *testing.T, url string, ids []uuid.UUID) {
			// Among the sealed events, with the triggers off: never pending.
			superuser(t, url, fmt.Sprintf(`INSERT INTO audit_events (audit_id, created_at, txid, tenant_id, event_type, severity, actor_type, correlation_id)
				SELECT '%s', created_at, txid, tenant_id, 'data.accessed', 'info', 'human', correlation_id FROM audit_events WHERE audit_id = '%s'`, newUUID(), ids[0]))
		}, "inserted", -1},
		{"Reorder", func(t *testing.T, url string, ids []uuid.UUID) {
			// Swap two events' places in the chain: what each holds moves to
			// the other's place (the ids, which key the rows, stay).
			superuser(t, url, fmt.Sprintf(`UPDATE audit_events e SET event_type = o.event_type, correlation_id = o.correlation_id,
				event_data = o.event_data, created_at = o.created_at FROM audit_events o
				WHERE (e.audit_id, o.audit_id) IN (('%[1]s', '%[2]s'), ('%[2]s', '%[1]s'))`, ids[3], ids[4]))
		}, "", 3},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			t.Parallel()
			b := auditSetup(t)
			a := seedTenant(t, b.url, "tamper")
			var ids []uuid.UUID
			for range 6 {
				ids = append(ids, appendEvent(t, b.db, a).ID)
			}
			if n := sealAll(t, b.db, signer, 6); n != 6 {
				t.Fatalf("sealed %d, want 6", n)
			}
			if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "intact" || rep.EventsChecked != 6 {
				t.Fatalf("before the attack: %+v", rep)
			}
			at.do(t, b.url, ids)
			rep := verify(t, b.db, a.UUID(), signer, nil)
			if rep.Status != "tampered" || len(rep.Problems) == 0 {
				t.Fatalf("after %s: %+v, want tampered", at.name, rep)
			}
			p := rep.Problems[0]
			if at.kind != "" && p.Kind != at.kind {
				t.Errorf("first problem = %+v, want kind %s", p, at.kind)
			}
			if at.first >= 0 && at.kind != "deleted" && p.AuditID != ids[at.first] && (at.name != "Reorder" || p.AuditID != ids[4]) {
				t.Errorf("first bad event = %s, want %s", p.AuditID, ids[at.first])
			}
		})
	}
}

func TestSealer_Checkpoints(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "checkpoint")
	write := func(n int) {
		for range n {
			appendEvent(t, b.db, a)
		}
		sealAll(t, b.db, signer, n)
	}
	write(3)
	seal, err := b.db.LatestSeal(ctx, a.UUID())
	if err != nil {
		t.Fatal(err)
	}
	cp := audit.CheckpointOf(seal)
	write(2)
	if rep := verify(t, b.db, a.UUID(), signer, &cp); rep.Status != "intact" || rep.SealsChecked < 2 || rep.Head.CumulativeCount != 5 {
		t.Fatalf("the log grew past the checkpoint: %+v, want intact", rep)
	}

	// A checkpoint edited by hand fails its signature.
	forged := cp
	forged.CumulativeCount = 99
	if err := audit.VerifyCheckpoint(forged, signer.Public()); !errors.Is(err, audit.ErrBadSignature) {
		t.Errorf("edited checkpoint verifies: %v", err)
	}
	if rep := verify(t, b.db, a.UUID(), signer, &forged); rep.Status != "tampered" {
		t.Errorf("verify with an edited checkpoint: %+v", rep)
	}

	// Wholesale rewrite: the attacker deletes everything and rebuilds a
	// consistent chain with a key of their own. Without --checkpoint the
	// signatures already fail; the checkpoint pins the old head too.
	superuser(t, b.url, "DELETE FROM audit_seals", "DELETE FROM audit_events", "DELETE FROM audit_pending")
	write(1)
	rewritten, _ := b.db.LatestSeal(ctx, a.UUID())
	_ = rewritten
	rep := verify(t, b.db, a.UUID(), signer, &cp)
	if rep.Status != "tampered" {
		t.Fatalf("rewrite with the real sealer: %+v, want caught by the checkpoint", rep)
	}
	attacker := testSigner(t, 2)
	superuser(t, b.url, "DELETE FROM audit_seals")
	sealAllFrom(t, b.db, attacker, b.url)
	if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "tampered" || rep.Problems[0].Kind != "bad_signature" {
		t.Fatalf("chain re-signed with another key: %+v", rep)
	}
}

// sealAllFrom re-seals every event (after the attacker deleted the seals):
// all of them wait for a seal again.
func sealAllFrom(t *testing.T, db *postgres.DB, s *audit.Signer, url string) {
	t.Helper()
	superuser(t, url, "INSERT INTO audit_pending SELECT tenant_id, created_at, audit_id FROM audit_events")
	sealAll(t, db, s, 1)
}

func TestSealer_Truncation(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "truncate")
	for i := range 2 {
		appendEvent(t, b.db, a)
		sealAll(t, b.db, signer, 1)
		_ = i
	}
	seal, _ := b.db.LatestSeal(ctx, a.UUID())
	cp := audit.CheckpointOf(seal)
	// Drop the newest seal and its event: the remaining chain is valid on
	// its own, only the saved checkpoint shows it.
	superuser(t, b.url, fmt.Sprintf("DELETE FROM audit_events WHERE audit_id = ANY((SELECT event_ids FROM audit_seals WHERE seq = 2 AND tenant_id = '%s')::uuid[]) AND tenant_id = '%[1]s'", a),
		fmt.Sprintf("DELETE FROM audit_seals WHERE seq = 2 AND tenant_id = '%s'", a))
	if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "intact" {
		t.Fatalf("truncated chain alone: %+v (a valid prefix)", rep)
	}
	if rep := verify(t, b.db, a.UUID(), signer, &cp); rep.Status != "tampered" || rep.Problems[0].Kind != "checkpoint" {
		t.Fatalf("truncation with the checkpoint: %+v, want caught", rep)
	}
}

// TestSealer_ConcurrentWriters: 50 goroutines write while rounds run; the
// chains never fork and every event is sealed exactly once.
func TestSealer_ConcurrentWriters(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	tenants := []tenant.ID{seedTenant(t, b.url, "conc-a"), seedTenant(t, b.url, "conc-b")}
	w := audit.NewWriter(b.db, quietLog(), 1000, 200)
	wctx, stopW := context.WithCancel(ctx)
	go w.Run(wctx)
	stop := make(chan struct{})
	var sealed atomic.Int64
	var sealerDone sync.WaitGroup
	sealerDone.Go(func() {
		for {
			r, err := b.db.SealRound(ctx, signer)
			if err != nil {
				t.Error(err)
				return
			}
			sealed.Add(int64(r.Sealed))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			tid := tenants[g%2]
			for i := range 20 {
				ev := event(tid, audit.DataAccessed)
				var err error
				if i%2 == 0 {
					err = w.Write(ctx, ev)
				} else {
					err = b.db.InTx(ctx, tid, func(tx *postgres.Tx) error { return tx.AppendAudit(ctx, ev) })
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	sealerDone.Wait()
	stopW()
	w.Wait()
	// Seal the rest: rounds until the horizon passes every writer. The
	// horizon is the whole cluster's: other databases' transactions on a
	// busy CI machine can hold it back for seconds, so wait on the
	// condition with a generous deadline rather than a fixed number of rounds.
	for deadline := time.Now().Add(60 * time.Second); sealed.Load() < 1000 && time.Now().Before(deadline); {
		r, err := b.db.SealRound(ctx, signer)
		if err != nil {
			t.Fatal(err)
		}
		sealed.Add(int64(r.Sealed))
		if sealed.Load() < 1000 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if sealed.Load() != 1000 {
		t.Fatalf("sealed %d events, want 1000", sealed.Load())
	}
	for _, tid := range tenants {
		rep := verify(t, b.db, tid.UUID(), signer, nil)
		if rep.Status != "intact" || rep.EventsChecked != 500 || rep.Head.CumulativeCount != 500 {
			t.Errorf("tenant %s: %+v", tid, rep)
		}
	}
}

func TestRetention_DropsWholePartitions(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	pgtest.Exec(t, b.url, "SELECT audit_ensure_partitions(now() - interval '3 years', 0)")
	old := time.Now().AddDate(-3, 0, 0).UTC()
	pgtest.Exec(t, b.url, `INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, actor_type, correlation_id)
		VALUES ($1, $2, '00000000-0000-0000-0000-000000000000', 'data.accessed', 'info', 'system', $1)`, newUUID(), old)
	keep := event(tenant.ID{}, audit.DataAccessed)
	if err := b.db.InsertAuditBatch(ctx, []audit.Event{keep}); err != nil {
		t.Fatal(err)
	}
	// Inside the 7-year floor nothing goes, whatever cutoff is asked for.
	if dropped, err := b.db.DropAuditPartitionsBefore(ctx, time.Now().AddDate(-2, 0, 0), signer, event(tenant.ID{}, audit.RetentionApplied)); err != nil || len(dropped) != 0 {
		t.Fatalf("inside the floor: dropped %v, %v", dropped, err)
	}
	// The schema owner lowers the floor (a migration's job, here a test's).
	pgtest.Exec(t, b.url, "UPDATE audit_retention_floor SET min_age = interval '1 year'")
	dropped, err := b.db.DropAuditPartitionsBefore(ctx, time.Now().AddDate(-2, 0, 0), signer, event(tenant.ID{}, audit.RetentionApplied))
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !strings.HasPrefix(dropped[0], old.Format("audit_events_y2006m01")) {
		t.Fatalf("dropped = %v", dropped)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'data.retention_applied'"); n != 1 {
		t.Errorf("data.retention_applied events = %d, want 1", n)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1", keep.ID); n != 1 {
		t.Error("a current event was dropped")
	}
	recs, err := b.db.RetentionRecords(ctx)
	if err != nil || len(recs) != 1 || audit.VerifyRetention(recs[0], signer.Public()) != nil {
		t.Errorf("retention records = %+v, %v: want one, signed", recs, err)
	}
	if n, err := b.db.EnsureAuditPartitions(ctx, 3); err != nil || n != 0 {
		t.Errorf("EnsureAuditPartitions = %d, %v; the migration already made them", n, err)
	}
}

func TestLeader_OneAtATimeAndHandover(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	var running, maxRunning atomic.Int32
	var ran [2]atomic.Int32
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	job := func(i int) func(context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			ran[i].Add(1)
			<-ctx.Done()
			running.Add(-1)
		}
	}
	key := int64(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Go(func() { b.db.Leader(ctx1, key, 50*time.Millisecond, job(0)) })
	time.Sleep(200 * time.Millisecond)
	wg.Go(func() { b.db.Leader(ctx2, key, 50*time.Millisecond, job(1)) })
	time.Sleep(300 * time.Millisecond)
	if ran[0].Load() != 1 || ran[1].Load() != 0 {
		t.Fatalf("runs = %d, %d; want only the first leader", ran[0].Load(), ran[1].Load())
	}
	start := time.Now()
	cancel1() // the leader dies
	for ran[1].Load() == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no handover within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if maxRunning.Load() != 1 {
		t.Errorf("%d leaders ran at once", maxRunning.Load())
	}
	cancel2()
	wg.Wait()
}

func TestWriter_GroupCommitFlushAndFlood(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	a := seedTenant(t, b.url, "writer")
	w := audit.NewWriter(b.db, quietLog(), 64, 500)
	wctx, stop := context.WithCancel(ctx)
	go w.Run(wctx)

	// Many concurrent writers: every Write returns only once durable.
	var wg sync.WaitGroup
	var ids sync.Map
	// A small pool for the checks: 200 writers must not mean 200
	// connections (the server allows 100, shared with other tests).
	checks, err := pgxpool.New(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer checks.Close()
	for range 200 {
		wg.Go(func() {
			ev := event(a, audit.DataAccessed)
			if err := w.Write(ctx, ev); err != nil {
				t.Error(err)
				return
			}
			var n int
			if err := checks.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE audit_id = $1", ev.ID).Scan(&n); err != nil || n != 1 {
				t.Errorf("Write returned before the event was durable (%d, %v)", n, err)
			}
			ids.Store(ev.ID, true)
		})
	}
	wg.Wait()

	// A flood of error events beyond the queue: none blocks, the excess is
	// counted into one summary event.
	for range 1000 {
		w.Record(event(tenant.ID{}, audit.ErrorOccurred))
	}
	// Queued but not yet written when shutdown begins: flushed.
	last := event(a, audit.DataAccessed)
	done := make(chan error, 1)
	go func() { done <- w.Write(ctx, last) }()
	time.Sleep(20 * time.Millisecond)
	stop()
	w.Wait()
	if err := <-done; err != nil {
		t.Fatalf("write in flight at shutdown: %v", err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1", last.ID); n != 1 {
		t.Error("the event queued at shutdown was not flushed")
	}
	errs := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'error.occurred' AND tenant_id = '00000000-0000-0000-0000-000000000000'")
	var suppressed int
	conn, _ := pgx.Connect(ctx, b.url)
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT audit_id, event_data FROM audit_events WHERE event_type = 'error.occurred' AND tenant_id = '00000000-0000-0000-0000-000000000000'")
	for rows.Next() {
		var id uuid.UUID
		var data []byte
		_ = rows.Scan(&id, &data)
		pt, err := b.db.DataKeys().Open(ctx, data, column("audit_events", "event_data").AD(id, uuid.Nil))
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			N int `json:"suppressed_error_events"`
		}
		if err := json.Unmarshal(pt, &d); err != nil {
			t.Fatal(err)
		}
		suppressed += d.N
	}
	summaries := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE event_type = 'error.occurred' AND tenant_id = '00000000-0000-0000-0000-000000000000' AND severity = 'warning'")
	if errs-summaries+suppressed != 1000 || suppressed == 0 {
		t.Errorf("error events: %d written + %d summarised, want 1000 accounted for", errs, suppressed)
	}
	if err := w.Write(ctx, event(a, audit.DataAccessed)); !errors.Is(err, audit.ErrWriterClosed) {
		t.Errorf("Write after close = %v", err)
	}
}

func BenchmarkWriter(b *testing.B) {
	url := pgtest.DB(b)
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url, Keyring: testRing(&testing.T{}, 1, 1), MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	id := tenant.NewID()
	pgtest.Exec(b, url, "INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, 'bench', 'bench')", id.UUID())
	w := audit.NewWriter(db, quietLog(), 10_000, 1_000)
	ctx, stop := context.WithCancel(context.Background())
	go w.Run(ctx)
	b.SetParallelism(64) // 128 concurrent requests on 2 cores
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Write(context.Background(), event(id, audit.DataAccessed)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	stop()
	w.Wait()
}

// BenchmarkWriterWithSealer writes at full speed while the sealer runs
// every 250 ms, and reports the worst sealing lag seen.
func BenchmarkWriterWithSealer(b *testing.B) {
	url := pgtest.DB(b)
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url, Keyring: testRing(&testing.T{}, 1, 1), MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	id := tenant.NewID()
	pgtest.Exec(b, url, "INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, 'bench', 'bench')", id.UUID())
	w := audit.NewWriter(db, quietLog(), 10_000, 1_000)
	ctx, stop := context.WithCancel(context.Background())
	go w.Run(ctx)
	signer := testSigner(b, 1)
	var worst atomic.Int64
	sealerDone := make(chan struct{})
	go func() {
		defer close(sealerDone)
		for ctx.Err() == nil {
			// The lag just before a round is the worst an event waits.
			if lag, err := db.SealingLag(ctx, signer.Public()); err == nil && int64(lag) > worst.Load() {
				worst.Store(int64(lag))
			}
			if _, err := db.SealRound(ctx, signer); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	b.SetParallelism(64)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Write(context.Background(), event(id, audit.DataAccessed)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(time.Duration(worst.Load()).Seconds()*1000, "worst-lag-ms")
	stop()
	w.Wait()
	<-sealerDone
}

// A round seals what has become visible and leaves the rest for later: an
// event of a transaction still open (on Citus: committed on the
// coordinator, not yet visible on the worker) is neither sealed nor
// skipped, and the next round after its commit seals it. The lag is the
// oldest visible unsealed event's wait.
func TestSealRound_SealsWhatIsVisible(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer, err := audit.NewSigner(bytes.Repeat([]byte{5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a := seedTenant(t, b.url, "lag-a")
	open, err := pgx.Connect(ctx, pgtest.AppLoginURL(t, b.url))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	late := newUUID()
	if _, err := open.Exec(ctx, fmt.Sprintf(`BEGIN; SELECT elile_set_scope('elile_app', '%s');
		INSERT INTO audit_events (audit_id, tenant_id, event_type, severity, actor_type, correlation_id)
		VALUES ('%s', '%[1]s', 'data.accessed', 'info', 'human', '%[2]s')`, a, late)); err != nil {
		t.Fatal(err)
	}
	appendEvent(t, b.db, a)
	time.Sleep(150 * time.Millisecond)
	if lag, err := b.db.SealingLag(ctx, signer.Public()); err != nil || lag < 150*time.Millisecond || lag > time.Minute {
		t.Errorf("lag of an unsealed event = %v, %v; want at least 150ms", lag, err)
	}
	if r, err := b.db.SealRound(ctx, signer); err != nil || r.Sealed != 1 || r.Lag > 50*time.Millisecond {
		t.Fatalf("round beside an open transaction = %+v, %v; want the committed event sealed, about no lag", r, err)
	}
	if _, err := open.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if r, err := b.db.SealRound(ctx, signer); err != nil || r.Sealed != 1 || r.Lag > 50*time.Millisecond {
		t.Fatalf("round after the commit = %+v, %v; want the late event sealed", r, err)
	}
	if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "intact" || rep.EventsChecked != 2 || rep.SealsChecked != 2 {
		t.Errorf("chain: %+v", rep)
	}
}
