package postgres_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// TestCheckKeys: the first holder of a key version defines it; a process
// with another key under that version is told exactly which (the server
// refuses to start on it), and versions it lacks are reported.
func TestCheckKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	ring := func(keys map[uint32][]byte, blind []byte) map[uint32]string {
		active := slices.Max(slices.Collect(func(yield func(uint32) bool) {
			for v := range keys {
				if !yield(v) {
					return
				}
			}
		}))
		r, err := fieldcrypt.NewKeyring(keys, active, blind)
		if err != nil {
			t.Fatal(err)
		}
		return r.Fingerprints()
	}
	k1, k2, other, blind := fieldcrypt.GenerateKey(), fieldcrypt.GenerateKey(), fieldcrypt.GenerateKey(), fieldcrypt.GenerateKey()
	good := ring(map[uint32][]byte{1: k1, 2: k2}, blind)
	if c := (postgres.KeyCheck{Wrong: []uint32{1}}); c.Err() == nil || !strings.Contains(c.Err().Error(), "[1]") {
		t.Errorf("KeyCheck.Err does not name the version: %v", c.Err())
	}

	// Nothing recorded: a check without recording finds nothing wrong.
	if c, err := b.db.CheckKeys(ctx, good, false); err != nil || c.Err() != nil || len(c.Missing) != 0 {
		t.Fatalf("empty database: %+v, %v", c, err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM key_fingerprints"); n != 0 {
		t.Fatalf("a check without record wrote %d rows", n)
	}
	// Two processes record at once, with different keys for version 1:
	// exactly one defines it, the other is told its version 1 is wrong.
	var wg sync.WaitGroup
	results := make([]postgres.KeyCheck, 2)
	for i, fps := range []map[uint32]string{good, ring(map[uint32][]byte{1: other}, blind)} {
		wg.Go(func() {
			c, err := b.db.CheckKeys(ctx, fps, true)
			if err != nil {
				t.Error(err)
			}
			results[i] = c
		})
	}
	wg.Wait()
	wrong := 0
	for _, c := range results {
		if c.Err() != nil {
			wrong++
			if !slices.Equal(c.Wrong, []uint32{1}) {
				t.Errorf("wrong = %v, want [1]", c.Wrong)
			}
		}
	}
	if wrong != 1 {
		t.Fatalf("two different version-1 keys recorded at once: %d refused, want exactly 1 (%+v)", wrong, results)
	}
	// Version 2 was recorded either way (no conflict); version 1 is the
	// winner's key.
	won := k1
	if results[0].Err() != nil {
		won = other
	}
	// The winner's keys pass; a wrong blind-index root (version 0) is
	// caught; a process without version 2 is told it is missing.
	if c, err := b.db.CheckKeys(ctx, ring(map[uint32][]byte{1: won, 2: k2}, blind), true); err != nil || c.Err() != nil || len(c.Missing) != 0 {
		t.Errorf("the recorded keys: %+v, %v", c, err)
	}
	if c, _ := b.db.CheckKeys(ctx, ring(map[uint32][]byte{1: won, 2: k2}, other), false); !slices.Equal(c.Wrong, []uint32{0}) {
		t.Errorf("another blind-index root: wrong = %v, want [0]", c.Wrong)
	}
	if c, _ := b.db.CheckKeys(ctx, ring(map[uint32][]byte{1: won}, blind), false); c.Err() != nil || !slices.Equal(c.Missing, []uint32{2}) {
		t.Errorf("without version 2: %+v, want missing [2]", c)
	}
	// Someone with the database URL edits a fingerprint: the next start
	// with the real keys is refused — which is the point: the row says
	// what the data was written with, and only the schema owner may
	// change it (the app's roles may not).
	if _, err := execAs(b.url, "elile_app", "UPDATE key_fingerprints SET fingerprint = '0000000000000000' WHERE version = 1"); err == nil {
		t.Error("elile_app could rewrite a key fingerprint")
	}
	if _, err := execAs(b.url, "elile_platform", "UPDATE key_fingerprints SET fingerprint = '0000000000000000' WHERE version = 1"); err == nil {
		t.Error("elile_platform could rewrite a key fingerprint")
	}
}

// TestInstances: a server's heartbeat makes it live with the keys it
// holds; deregistering or going silent removes it.
func TestInstances(t *testing.T) {
	t.Parallel()
	b := setup(t, postgres.Options{})
	ctx := context.Background()
	in := postgres.Instance{ID: uuid.Must(uuid.NewV7()), Build: "test", Host: "h1", KMSProvider: "local",
		Fingerprints: map[uint32]string{0: "00112233aabbccdd", 1: "0123456789abcdef"}, Started: time.Now()}
	for range 2 { // the second is an update
		if err := b.db.Heartbeat(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	live, err := b.db.LiveInstances(ctx, time.Minute)
	if err != nil || len(live) != 1 || live[0].ID != in.ID || !live[0].Holds(1, "0123456789abcdef") || live[0].Holds(2, "") || live[0].KMSProvider != "local" {
		t.Fatalf("live = %+v, %v", live, err)
	}
	pgtest.Exec(t, b.url, "UPDATE server_instances SET seen_at = now() - interval '2 minutes'")
	if live, _ := b.db.LiveInstances(ctx, time.Minute); len(live) != 0 {
		t.Errorf("a server silent for 2 minutes is live: %+v", live)
	}
	if err := b.db.Heartbeat(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := b.db.Deregister(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if live, _ := b.db.LiveInstances(ctx, time.Minute); len(live) != 0 {
		t.Errorf("a deregistered server is live: %+v", live)
	}
}

// execAs runs sql as role, on a connection of the schema owner.
func execAs(url, role, sql string) (pgconn.CommandTag, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET ROLE "+role); err != nil {
		return pgconn.CommandTag{}, err
	}
	return conn.Exec(ctx, sql)
}
