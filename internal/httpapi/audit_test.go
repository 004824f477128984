package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

func sealUntil(t *testing.T, b *testBundle, want int) {
	t.Helper()
	total := 0
	for deadline := time.Now().Add(10 * time.Second); total < want && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r, err := b.db.SealRound(context.Background(), b.signer)
		if err != nil {
			t.Fatal(err)
		}
		total += r.Sealed
	}
	if total < want {
		t.Fatalf("sealed %d events, want %d", total, want)
	}
}

func countWhere(t *testing.T, b *testBundle, q string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAuditRoutes(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	a := mkTenant(t, b, "audit-routes")
	other := mkTenant(t, b, "audit-other")
	reader := mkKey(t, b, a, auth.ScopeAuditRead, auth.ScopeKeysManage)
	otherReader := mkKey(t, b, other, auth.ScopeAuditRead)
	noScope := mkKey(t, b, a, auth.ScopeEntitiesRead)
	cid := uuid.NewString()
	for range 3 {
		rec := call(t, h, req{method: "POST", path: "/v1/api-keys", key: reader.secret, tenant: a.String(),
			body: map[string]any{"name": "k", "scopes": []string{"audit:read"}}, hdr: map[string]string{"X-Correlation-ID": cid}})
		if rec.Code != 201 {
			t.Fatalf("create key: %d %s", rec.Code, rec.Body)
		}
	}
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/audit-events", key: noScope.secret, tenant: a.String()}), 403, "PERMISSION_DENIED")

	list := decode[Page[AuditEventOut]](t, call(t, h, req{method: "GET", path: "/v1/audit-events?event_type=api_key.created&correlation_id=" + cid + "&limit=2", key: reader.secret, tenant: a.String()}))
	if len(list.Data) != 2 || list.NextCursor == nil || list.Data[0].CorrelationID != cid || list.Data[0].EventData["scopes"] == nil {
		t.Fatalf("page 1 = %+v", list)
	}
	if !list.Data[0].CreatedAt.After(list.Data[1].CreatedAt) && list.Data[0].AuditID < list.Data[1].AuditID {
		t.Error("not newest first")
	}
	next := decode[Page[AuditEventOut]](t, call(t, h, req{method: "GET", path: "/v1/audit-events?event_type=api_key.created&correlation_id=" + cid + "&limit=2&cursor=" + *list.NextCursor, key: reader.secret, tenant: a.String()}))
	if len(next.Data) != 1 || next.NextCursor != nil || next.Data[0].AuditID == list.Data[1].AuditID {
		t.Fatalf("page 2 = %+v", next)
	}
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/audit-events?cursor=AAAA", key: reader.secret, tenant: a.String()}), 400, "CURSOR_INVALID")
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/audit-events?severity=loud", key: reader.secret, tenant: a.String()}), 422, "VALIDATION_FAILED")

	one := call(t, h, req{method: "GET", path: "/v1/audit-events/" + next.Data[0].AuditID, key: reader.secret, tenant: a.String()})
	if got := decode[AuditEventOut](t, one); one.Code != 200 || got.AuditID != next.Data[0].AuditID {
		t.Fatalf("get one: %d %s", one.Code, one.Body)
	}
	// Another tenant's event: 404, by id and in lists.
	wantProblem(t, call(t, h, req{method: "GET", path: "/v1/audit-events/" + next.Data[0].AuditID, key: otherReader.secret, tenant: other.String()}), 404, "AUDIT_EVENT_NOT_FOUND")
	otherList := decode[Page[AuditEventOut]](t, call(t, h, req{method: "GET", path: "/v1/audit-events?correlation_id=" + cid, key: otherReader.secret, tenant: other.String()}))
	if len(otherList.Data) != 0 {
		t.Fatalf("tenant B sees A's events: %+v", otherList.Data)
	}

	// Reading the log is itself audited, durably, before the answer.
	if n := countWhere(t, b, "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND event_type = 'data.accessed' AND resource_type = 'audit_events'", a.UUID()); n != 3 {
		t.Errorf("audit reads audited: %d events, want 3 (two pages and one event)", n)
	}

	exp := call(t, h, req{method: "GET", path: "/v1/audit-events/export", key: reader.secret, tenant: a.String()})
	if exp.Code != 200 || exp.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %q", exp.Code, exp.Header().Get("Content-Type"))
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(exp.Body.String()))
	for sc.Scan() {
		var ev AuditEventOut
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.TenantID == nil || *ev.TenantID != a.String() {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines < 8 {
		t.Errorf("export lines = %d", lines)
	}

	// Seal, then verify and fetch the checkpoint through the API.
	total := countWhere(t, b, "SELECT count(*) FROM audit_events")
	sealUntil(t, b, total)
	rep := decode[audit.Report](t, call(t, h, req{method: "GET", path: "/v1/audit-events/verify", key: reader.secret, tenant: a.String()}))
	if rep.Status != "intact" || rep.SealsChecked == 0 || rep.EventsChecked == 0 || rep.LastSealedAt == nil {
		t.Fatalf("verify = %+v", rep)
	}
	cp := decode[audit.Checkpoint](t, call(t, h, req{method: "GET", path: "/v1/audit-events/checkpoint", key: reader.secret, tenant: a.String()}))
	if cp.Tenant != a.String() || cp.PublicKey == "" || audit.VerifyCheckpoint(cp, b.signer.Public()) != nil {
		t.Fatalf("checkpoint = %+v", cp)
	}
	// Each tenant gets its own chain's checkpoint.
	ocp := decode[audit.Checkpoint](t, call(t, h, req{method: "GET", path: "/v1/audit-events/checkpoint", key: otherReader.secret, tenant: other.String()}))
	if ocp.Tenant != other.String() || ocp.SealHash == cp.SealHash {
		t.Errorf("tenant B's checkpoint = %+v", ocp)
	}
	// Finding 15: verify against a checkpoint kept outside elile, over HTTP.
	rep = decode[audit.Report](t, call(t, h, req{method: "POST", path: "/v1/audit-events/verify", key: reader.secret, tenant: a.String(), body: cp}))
	if rep.Status != "intact" {
		t.Fatalf("verify with the checkpoint = %+v", rep)
	}
	p := wantProblem(t, call(t, h, req{method: "POST", path: "/v1/audit-events/verify", key: reader.secret, tenant: a.String(), body: ocp}), 422, "VALIDATION_FAILED")
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.tenant_id" {
		t.Errorf("another tenant's checkpoint: %+v", p.Errors)
	}
	forged := cp
	forged.CumulativeCount++
	rep = decode[audit.Report](t, call(t, h, req{method: "POST", path: "/v1/audit-events/verify", key: reader.secret, tenant: a.String(), body: forged}))
	if rep.Status != "tampered" {
		t.Errorf("verify with an edited checkpoint = %+v, want tampered", rep)
	}
	// The seals are deleted (a truncation by someone with database access):
	// the checkpoint the client kept exposes it.
	conn, err := pgx.Connect(context.Background(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "SET session_replication_role = replica; DELETE FROM audit_seals WHERE tenant_id = '"+a.String()+"'"); err != nil {
		t.Fatal(err)
	}
	rep = decode[audit.Report](t, call(t, h, req{method: "POST", path: "/v1/audit-events/verify", key: reader.secret, tenant: a.String(), body: cp}))
	if rep.Status != "tampered" {
		t.Errorf("verify with the checkpoint after the seals were deleted = %+v, want tampered", rep)
	}
}

// TestErrorEvents: every error response leaves one error.occurred event;
// a 401 is a system event with no tenant.
func TestErrorEvents(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{})
	a := mkTenant(t, b, "error-events")
	key := mkKey(t, b, a, auth.ScopeEntitiesRead)
	cid401, cid403, cid404 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	call(t, h, req{method: "GET", path: "/v1/tenant", hdr: map[string]string{"X-Correlation-ID": cid401}})
	call(t, h, req{method: "GET", path: "/v1/api-keys", key: key.secret, tenant: a.String(), hdr: map[string]string{"X-Correlation-ID": cid403}})
	call(t, h, req{method: "GET", path: "/nowhere", hdr: map[string]string{"X-Correlation-ID": cid404}})
	call(t, h, req{method: "GET", path: "/health"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		n401 := countWhere(t, b, "SELECT count(*) FROM audit_events WHERE correlation_id = $1 AND event_type = 'error.occurred' AND tenant_id = '00000000-0000-0000-0000-000000000000' AND actor_type = 'system'", cid401)
		n403 := countWhere(t, b, "SELECT count(*) FROM audit_events WHERE correlation_id = $1 AND event_type = 'error.occurred' AND tenant_id = $2", cid403, a.UUID())
		n404 := countWhere(t, b, "SELECT count(*) FROM audit_events WHERE correlation_id = $1 AND event_type = 'error.occurred'", cid404)
		if n401 == 1 && n403 == 1 && n404 == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("error events: 401→%d 403→%d 404→%d, want one each", n401, n403, n404)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs, err := b.db.AuditEvents(context.Background(), a, audit.Filter{Type: audit.ErrorOccurred}, 10)
	if err != nil || len(recs) != 1 || recs[0].Data["code"] != "PERMISSION_DENIED" || recs[0].Data["status"] != float64(403) || recs[0].Data["route"] != "GET /v1/api-keys" {
		t.Fatalf("403 event = %+v, %v", recs, err)
	}
	_ = tenant.ID{}
}
