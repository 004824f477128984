package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

func TestKeys_GenerateAndUsage(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"elile", "keys", "generate"}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out.String()))
	if err != nil || len(k) != 32 {
		t.Fatalf("keys generate printed %q: %d bytes, %v", out.String(), len(k), err)
	}
	for _, args := range [][]string{{"keys"}, {"keys", "nope"}, {"keys", "rotate", "--batch", "0"}, {"keys", "status", "--bad"}} {
		err := run(context.Background(), append([]string{"elile"}, args...), env(nil), io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v = %v, want a usage error", args, err)
		}
	}
}

// TestKeys_RotateEndToEnd: data written under key 1, rotated to key 2 with
// the CLI, then read with key 1 gone and the blind-index key pinned.
func TestKeys_RotateEndToEnd(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	k1 := base64.StdEncoding.EncodeToString(fieldcrypt.GenerateKey())
	k2 := base64.StdEncoding.EncodeToString(fieldcrypt.GenerateKey())
	keysFile := filepath.Join(t.TempDir(), "dev.env")
	base := map[string]string{"DATABASE_URL": url, "DEV_KEYS_FILE": keysFile, "API_SECRET_KEY": strings.Repeat("s", 32)}
	with := func(extra map[string]string) func(string) string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return env(m)
	}
	cli := func(getenv func(string) string, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"elile", "keys"}, args...), getenv, &out, io.Discard); err != nil {
			t.Fatalf("keys %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}

	// Seal one entity's identifiers the way the server does, under key 1.
	raw1, _ := base64.StdEncoding.DecodeString(k1)
	blind, _ := fieldcrypt.DeriveBlindRoot(raw1)
	ring1, _ := fieldcrypt.NewKeyring(map[uint32][]byte{1: raw1}, 1, blind)
	tid, eid := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	col := postgres.EncryptedColumns()[0]
	ct, _ := ring1.Seal([]byte(`{"ssn":"123456789"}`), col.AD(eid, tid))
	pgtest.Exec(t, url, "INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, 'T', 'keys-cli')", tid)
	pgtest.Exec(t, url, "INSERT INTO entities (entity_id, tenant_id, entity_type, identifiers) VALUES ($1, $2, 'individual', $3)", eid, tid, ct)

	type status struct {
		Provider string `json:"provider"`
		Usage    []struct {
			Table   string `json:"table"`
			Key     string `json:"key"`
			Version uint32 `json:"version"`
			Count   int64  `json:"count"`
		} `json:"usage"`
		Env struct {
			Configured []uint32 `json:"configured"`
			Removable  []uint32 `json:"removable"`
			Missing    []uint32 `json:"missing"`
		} `json:"environment_keyring"`
		Stale int64 `json:"not_under_active_key"`
	}
	var before status
	if err := json.Unmarshal([]byte(cli(with(map[string]string{"ENCRYPTION_KEY": k1}), "status", "--json")), &before); err != nil {
		t.Fatal(err)
	}
	if before.Provider != "local" || len(before.Usage) != 1 || before.Usage[0].Key != "environment" || before.Usage[0].Version != 1 ||
		before.Usage[0].Count != 1 || before.Stale != 1 || len(before.Env.Missing) != 0 {
		t.Fatalf("status before rotation = %+v", before)
	}
	pinned := strings.TrimSpace(cli(with(map[string]string{"ENCRYPTION_KEY": k1}), "blind-index-key"))
	if pinned != base64.StdEncoding.EncodeToString(blind) {
		t.Fatalf("blind-index-key = %q, want the derived root", pinned)
	}

	// Rotation moves the value to the tenant's own data key.
	out := cli(with(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ",2:" + k2}), "rotate", "--batch", "1", "--json")
	if !strings.Contains(out, `"event":"progress"`) || !strings.Contains(out, `"rotated":1`) {
		t.Fatalf("rotate output:\n%s", out)
	}
	// Key 1 gone, blind-index root pinned (it is also the local provider's
	// root): nothing missing, no environment version in use.
	only2 := with(map[string]string{"ENCRYPTION_KEYS": "2:" + k2, "BLIND_INDEX_KEY": pinned})
	var after status
	if err := json.Unmarshal([]byte(cli(only2, "status", "--json")), &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Env.Missing) != 0 || len(after.Usage) != 1 || after.Usage[0].Key != "tenant" || after.Stale != 0 ||
		len(after.Env.Removable) != 1 || after.Env.Removable[0] != 2 {
		t.Fatalf("status after rotation = %+v", after)
	}
	text := cli(only2, "status")
	if !strings.Contains(text, "entities") || !strings.Contains(text, "safe to remove") || !strings.Contains(text, "KEK VERSION") {
		t.Errorf("status text:\n%s", text)
	}
	if out := cli(only2, "rotate-dek", "--tenant", tid.String()); !strings.Contains(out, "new data key") {
		t.Errorf("rotate-dek:\n%s", out)
	}
	if out := cli(only2, "rotate"); !strings.Contains(out, "re-encrypted 1 values") || strings.Contains(out, "{") {
		t.Errorf("rotation after a new data key:\n%s", out)
	}
	if out := cli(only2, "rotate-kek", "--older-than", "0s", "--json"); !strings.Contains(out, `"event":"done"`) || strings.Contains(out, `"rotated":0`) {
		t.Errorf("rotate-kek:\n%s", out)
	}
	if out := cli(only2, "rotate-kek", "--json"); !strings.Contains(out, `"rotated":0,`) {
		t.Errorf("rotate-kek again (the KEKs are new):\n%s", out)
	}
	if out := cli(only2, "rotate", "--json"); !strings.Contains(out, `"rotated":0`) {
		t.Errorf("second rotation:\n%s", out)
	}
}
