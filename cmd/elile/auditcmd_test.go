package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenant"
)

func TestAuditCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	encKey, seed := fieldcrypt.GenerateKey(), fieldcrypt.GenerateKey()
	e := env(map[string]string{"DATABASE_URL": url, "ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(encKey),
		"AUDIT_SIGNING_KEY": base64.StdEncoding.EncodeToString(seed)})
	blind, _ := fieldcrypt.DeriveBlindRoot(encKey)
	ring, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: encKey}, 1, blind)
	db, err := postgres.Open(ctx, postgres.Options{URL: url, Keyring: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	signer, _ := audit.NewSigner(seed)
	tid := tenant.NewID()
	pgtest.Exec(t, url, "INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, 'A', 'audit-cli')", tid.UUID())
	var evs []audit.Event
	for range 4 {
		evs = append(evs, audit.New(ctx, audit.DataAccessed, tid))
	}
	if err := db.InsertAuditBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for sealed, deadline := 0, time.Now().Add(10*time.Second); sealed < 4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r, err := db.SealRound(ctx, signer)
		if err != nil {
			t.Fatal(err)
		}
		sealed += r.Sealed
	}

	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"elile", "audit"}, args...), e, &out, io.Discard)
		return out.String(), err
	}
	cp, err := cli("checkpoint", "--tenant", tid.String())
	if err != nil || !strings.Contains(cp, `"event_count": 4`) {
		t.Fatalf("checkpoint: %v\n%s", err, cp)
	}
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(file, []byte(cp), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("verify"); err != nil || !strings.Contains(out, "all 1 chains intact") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if out, err := cli("verify", "--checkpoint", file, "--json"); err != nil || !strings.Contains(out, `"status":"intact"`) {
		t.Fatalf("verify --checkpoint: %v\n%s", err, out)
	}
	// Finding 15: a checkpoint of another chain was silently ignored.
	for _, other := range []string{uuid.NewString(), "system"} {
		if out, err := cli("verify", "--tenant", other, "--checkpoint", file); exitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "not of --tenant") {
			t.Errorf("verify --tenant %s with tenant %s's checkpoint = %v (exit %d)\n%s", other, tid, err, exitCode(err), out)
		}
	}

	// A database administrator rewrites the log: verify exits 1.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{"SET session_replication_role = replica", "UPDATE audit_events SET event_type = 'data.erased' WHERE audit_id = '" + evs[2].ID.String() + "'"} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cli("verify", "--tenant", tid.String())
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, "tampered") || !strings.Contains(out, evs[2].ID.String()) {
		t.Fatalf("verify after tampering: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM audit_seals"); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("verify", "--checkpoint", file); err == nil || !strings.Contains(out, "checkpoint") {
		t.Fatalf("verify --checkpoint after the seals were deleted: %v\n%s", err, out)
	}
	for _, args := range [][]string{{}, {"nope"}, {"checkpoint"}, {"verify", "--tenant", "x"}, {"verify", "--checkpoint", "/nonexistent"}} {
		if _, err := cli(args...); exitCode(err) != 2 {
			t.Errorf("audit %v = %v, want a usage error", args, err)
		}
	}
}
