package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/docs/webhooks/receiver"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/webhook"
)

// TestCrash_EveryCommittedEventDelivered: the server is killed with
// SIGKILL while it creates entities and delivers their events; after a
// restart the receiver has an event for every entity that committed —
// including those whose request never got its answer — and for nothing
// else. Repeats are allowed (at least once) and carry the same
// webhook-id.
func TestCrash_EveryCommittedEventDelivered(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.DB(t)
	env := sharedEnv(t, dbURL, "RATE_LIMIT_PER_MINUTE=10000000", "RATE_LIMIT_BURST=1000000", "WEBHOOK_ALLOW_LOOPBACK=true")
	s := startServer(t, env)
	admin := platformKey(t, env)
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(base, method, path, key, tid, body string) (int, []byte, error) {
		return apiCall(client, base, method, path, key, tid, body)
	}
	must := func(want int, base, method, path, key, tid, body string) []byte {
		code, b, err := call(base, method, path, key, tid, body)
		if err != nil || code != want {
			t.Fatalf("%s %s: %d %s %v", method, path, code, b, err)
		}
		return b
	}
	var tn struct {
		TenantID string `json:"tenant_id"`
	}
	_ = json.Unmarshal(must(201, s.url, "POST", "/v1/tenants", admin, "", `{"name":"Crash"}`), &tn)
	var key struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(must(201, s.url, "POST", "/v1/api-keys", admin, tn.TenantID, `{"name":"w","scopes":["tenant:admin"]}`), &key)

	// The receiver: checks each signature with the documented code.
	var mu sync.Mutex
	got := map[string]string{} // webhook-id -> entity id
	var deliveries, refused atomic.Int64
	var secret atomic.Value
	secret.Store("")
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := receiver.Verify(secret.Load().(string), r.Header, body, 5*time.Minute, time.Now()); err != nil {
			refused.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		deliveries.Add(1)
		if p.Type == webhook.EntityCreated {
			mu.Lock()
			if prev, ok := got[r.Header.Get("webhook-id")]; ok && prev != p.Data.ResourceID {
				t.Errorf("webhook-id %s carried %s and %s", r.Header.Get("webhook-id"), prev, p.Data.ResourceID)
			}
			got[r.Header.Get("webhook-id")] = p.Data.ResourceID
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	var ep struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(must(201, s.url, "POST", "/v1/webhook-endpoints", key.Secret, "",
		fmt.Sprintf(`{"url":%q,"event_types":["entity.created"]}`, recv.URL+"/hooks")), &ep)
	secret.Store(ep.Secret)

	// Load, then SIGKILL in the middle of it.
	var acked sync.Map
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for !stop.Load() {
				code, b, err := call(s.url, "POST", "/v1/entities", key.Secret, "", `{"entity_type":"individual","canonical_identifiers":{"full_name":"Crash"}}`)
				if err != nil {
					return // the server is gone
				}
				if code == 201 {
					var e struct {
						EntityID string `json:"entity_id"`
					}
					_ = json.Unmarshal(b, &e)
					acked.Store(e.EntityID, true)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-s.exited; err == nil {
		t.Fatal("the server exited cleanly after SIGKILL")
	}
	stop.Store(true)
	wg.Wait()
	before := deliveries.Load()

	// What committed: every entity of the tenant in the database, once the
	// dead server's sessions are gone (a pipeline whose COMMIT PostgreSQL
	// had received still commits after its client died).
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for deadline := time.Now().Add(30 * time.Second); ; {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'elile%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of the killed server still open after 30 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	entities := func() map[string]bool {
		out := map[string]bool{}
		rows, err := conn.Query(context.Background(), "SELECT entity_id::text FROM entities WHERE tenant_id = $1", tn.TenantID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			out[id] = true
		}
		return out
	}
	committed := entities()
	nAcked := 0
	acked.Range(func(k, _ any) bool {
		nAcked++
		if !committed[k.(string)] {
			t.Errorf("entity %s was acknowledged and is not in the database", k)
		}
		return true
	})

	startServer(t, env) // the restarted server finds the pending deliveries
	restarted := time.Now()
	received := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for _, e := range got {
			out[e]++
		}
		return out
	}
	// The dead server's lease on the endpoint (25 s) runs out first.
	deadline := time.Now().Add(60 * time.Second)
	for len(received()) < len(committed) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	r := received()
	for id := range committed {
		if r[id] == 0 {
			t.Errorf("committed entity %s: its event never arrived", id)
		}
	}
	for id, n := range r {
		if !committed[id] {
			t.Errorf("an event for entity %s, which never committed", id)
		}
		if n != 1 {
			t.Errorf("entity %s announced under %d webhook-ids", id, n)
		}
	}
	if after := entities(); len(after) != len(committed) {
		t.Errorf("%d entities after the restart, %d when the killed server's sessions were gone", len(after), len(committed))
	}
	if refused.Load() != 0 {
		t.Errorf("%d deliveries failed the documented signature check", refused.Load())
	}
	if len(committed) < 50 {
		t.Fatalf("only %d entities committed before the kill: the test did not load the server", len(committed))
	}
	t.Logf("%d entities committed (%d acknowledged before SIGKILL), %d delivered before the kill, %d deliveries in all (repeats %d); every committed one received %s after the restart",
		len(committed), nAcked, before, deliveries.Load(), deliveries.Load()-int64(len(committed)), time.Since(restarted).Round(time.Second))
}
