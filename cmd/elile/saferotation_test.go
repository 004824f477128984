package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// TestKeys_SafeRotation replays the integrator's outage and its cure: a
// running server reports the keys it holds (readiness, metrics, keys
// status); a key command whose configuration holds a version the live
// server lacks refuses unless forced; a wrong old key is caught by config
// check and by a server's start, before it could answer 500 to every read
// of old data.
func TestKeys_SafeRotation(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	gen := func() (string, []byte) {
		k := fieldcrypt.GenerateKey()
		return base64.StdEncoding.EncodeToString(k), k
	}
	k1, raw1 := gen()
	k2, _ := gen()
	wrong, _ := gen()
	vars := func(extra map[string]string) map[string]string {
		m := map[string]string{"DATABASE_URL": url, "API_PORT": "0", "LOG_LEVEL": "warn", "API_SECRET_KEY": strings.Repeat("s", 32)}
		maps.Copy(m, extra)
		return m
	}
	cli := func(v map[string]string, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"elile"}, args...), env(v), &out, &errOut)
		return out.String(), errOut.String(), err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, ctx, vars(map[string]string{"ENCRYPTION_KEY": k1}))
	fp1 := fieldcrypt.Fingerprint(raw1)

	// The server says what it holds.
	if _, body := get(t, base+"/health/ready"); !strings.Contains(body, " 1:"+fp1[:8]) {
		t.Errorf("readiness does not name key version 1 by fingerprint: %s", body)
	}
	if _, metrics := get(t, base+"/metrics"); !strings.Contains(metrics, `elile_encryption_key_info{fingerprint="`+fp1+`",version="1"} 1`) {
		t.Error("/metrics lacks elile_encryption_key_info for version 1")
	}
	var status struct {
		Servers []struct {
			Fingerprints map[string]string `json:"key_fingerprints"`
		} `json:"servers"`
		Mismatches []string `json:"server_mismatches"`
	}
	out, _, err := cli(vars(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ",2:" + k2}), "keys", "status", "--json")
	if err != nil || json.Unmarshal([]byte(out), &status) != nil {
		t.Fatalf("keys status: %v\n%s", err, out)
	}
	if len(status.Servers) != 1 || status.Servers[0].Fingerprints["1"] != fp1 || len(status.Mismatches) != 1 || !strings.Contains(status.Mismatches[0], "lacks environment key version 2") {
		t.Errorf("keys status = %+v", status)
	}

	// A key command holding a version the live server lacks refuses.
	both := vars(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ",2:" + k2})
	for _, cmd := range [][]string{{"keys", "rotate"}, {"keys", "rotate-dek", "--tenant", "platform"}, {"keys", "rotate-kek"}, {"keys", "reindex", "--tenant", "platform"}} {
		if _, _, err := cli(both, cmd...); err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "lacks environment key version 2") {
			t.Errorf("%v with a version the server lacks = %v, want a refusal naming it", cmd, err)
		}
	}
	if _, errOut, err := cli(both, "keys", "rotate", "--force"); err != nil || !strings.Contains(errOut, "--force") {
		t.Errorf("keys rotate --force = %v (stderr %q), want it done with a warning", err, errOut)
	}
	// The same keys as the server: no refusal.
	if _, _, err := cli(vars(map[string]string{"ENCRYPTION_KEY": k1}), "keys", "rotate"); err != nil {
		t.Errorf("keys rotate with the server's keys = %v", err)
	}

	// A wrong old key: config check and a second server refuse (exit 2),
	// naming the versions (0, the blind-index root derived from it, too).
	bad := vars(map[string]string{"ENCRYPTION_KEY": wrong})
	if _, _, err := cli(bad, "config", "check"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "[0 1]") {
		t.Errorf("config check with a wrong key = %v, want exit 2 naming versions [0 1]", err)
	}
	if out, _, err := cli(vars(map[string]string{"ENCRYPTION_KEY": k1}), "config", "check"); err != nil || !strings.Contains(out, "encryption keys: match the database") {
		t.Errorf("config check with the right key = %v\n%s", err, out)
	}
	if _, _, err := cli(bad, "serve"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "not the keys this database was written with") ||
		!strings.Contains(err.Error(), "DEV_KEYS_FILE") {
		t.Errorf("serve with a wrong key = %v, want a refusal (exit 2)", err)
	}

	// Once the server stops it is no longer live: nothing to refuse.
	stopServe(t, cancel, done)
	if _, _, err := cli(both, "keys", "rotate"); err != nil {
		t.Errorf("keys rotate after the server stopped = %v", err)
	}
	if _, errOut, _ := cli(vars(map[string]string{"ENCRYPTION_KEYS": "2:" + k2, "BLIND_INDEX_KEY": base64.StdEncoding.EncodeToString(mustBlind(t, raw1))}),
		"config", "check"); !strings.Contains(errOut, "[1]") {
		t.Errorf("config check without version 1 does not warn that the database remembers it: %q", errOut)
	}
}

func mustBlind(t *testing.T, key []byte) []byte {
	t.Helper()
	b, err := fieldcrypt.DeriveBlindRoot(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
