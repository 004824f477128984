package postgres_test

import (
	"context"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// viaPooler is url reached through the pooler at addr.
func viaPooler(url, addr string) string { return strings.Replace(url, "127.0.0.1:5432", addr, 1) }

// TestExecModes: every query execution mode, directly and (but
// cache_statement, which it cannot keep) through PgBouncer in transaction
// mode, runs units of work with their role and tenant, and the audit
// batch with its array parameters.
func TestExecModes(t *testing.T) {
	t.Parallel()
	addr := os.Getenv("ELILE_TEST_PGBOUNCER")
	modes := make([]string, 0, len(postgres.ExecModes))
	for m := range postgres.ExecModes {
		modes = append(modes, m)
	}
	sort.Strings(modes)
	for _, pooled := range []bool{false, true} {
		for _, mode := range modes {
			if pooled && (addr == "" || mode == "cache_statement") {
				continue
			}
			name := mode
			if pooled {
				name += "/pgbouncer"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				url := pgtest.DB(t)
				o := postgres.Options{URL: url, Keyring: testRing(t, 1, 1), ExecMode: mode}
				if pooled {
					o.URL, o.TransactionPooler, o.DirectURL = viaPooler(url, addr), true, url
				}
				db, err := postgres.Open(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(db.Close)
				ctx := context.Background()
				a, other := seedTenant(t, url, "modes-a"), seedTenant(t, url, "modes-b")
				seedEntity(t, url, &a)
				for range 3 { // again, with whatever the mode cached
					if err := db.InTx(ctx, a, func(tx *postgres.Tx) error {
						var role string
						if err := tx.Raw().QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil {
							return err
						}
						if role != postgres.AppRole {
							t.Errorf("a unit of work runs as %s, want %s", role, postgres.AppRole)
						}
						if got := tenantsIn(t, tx, "SELECT tenant_id FROM entities"); len(got) != 1 || got[0] != a.String() {
							t.Errorf("tenant a sees %v", got)
						}
						return nil
					}); err != nil {
						t.Fatal(err)
					}
				}
				evs := make([]audit.Event, 50)
				for i := range evs {
					tid := a
					if i%2 == 1 {
						tid = other
					}
					evs[i] = event(tid, audit.DataAccessed)
				}
				if err := db.InsertAuditBatch(ctx, evs); err != nil {
					t.Fatalf("audit batch: %v", err)
				}
				if n := countRows(t, url, "SELECT count(*) FROM audit_events WHERE event_type = 'data.accessed'"); n != 50 {
					t.Errorf("audit events = %d, want 50", n)
				}
			})
		}
	}
}

// TestLeader_BehindTransactionPooler: two instances whose pools go through
// PgBouncer in transaction mode elect one leader at a time (their
// session locks are taken on DirectURL), and leadership moves when the
// leader stops.
func TestLeader_BehindTransactionPooler(t *testing.T) {
	t.Parallel()
	addr := pgtest.PgBouncer(t)
	url := pgtest.DB(t)
	open := func() *postgres.DB {
		db, err := postgres.Open(context.Background(), postgres.Options{URL: viaPooler(url, addr), TransactionPooler: true, DirectURL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	var running, most atomic.Int64
	var leader atomic.Int64 // the instance leading now: 1 or 2, 0 none
	lead := func(id int64) func(context.Context) {
		return func(ctx context.Context) {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			leader.Store(id)
			<-ctx.Done()
			leader.CompareAndSwap(id, 0)
			running.Add(-1)
		}
	}
	stops := []context.CancelFunc{}
	var wg sync.WaitGroup
	const key = 424242
	for id := int64(1); id <= 2; id++ {
		ctx, stop := context.WithCancel(context.Background())
		stops = append(stops, stop)
		db := open()
		wg.Go(func() { db.Leader(ctx, key, 50*time.Millisecond, lead(id)) })
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
		wg.Wait()
	}()
	waitFor(t, func() bool { return leader.Load() != 0 })
	time.Sleep(time.Second) // the other retries twenty times meanwhile
	first := leader.Load()
	stops[first-1]()
	waitFor(t, func() bool { return leader.Load() == 3-first })
	time.Sleep(500 * time.Millisecond)
	if most.Load() != 1 {
		t.Fatalf("%d leaders at once", most.Load())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}
