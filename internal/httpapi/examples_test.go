package httpapi

import (
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/tenant"
)

// TestRequestExamples_Valid: every operation that takes a body shows an
// example, and each example, sent to a live server as a platform admin
// acting in a tenant, passes the schema and the service rules — it is
// never 400 or 422 (it may be 404 or 409: its ids name nothing here, or
// it meets the example sent before it). The checkpoint example's tenant
// is another than the caller's: that is refused at body.tenant_id, the
// only rule an example cannot meet without a real checkpoint.
func TestRequestExamples_Valid(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	admin := mkKey(t, w.b, tenant.ID{}, auth.ScopePlatformAdmin)
	acme := mkTenant(t, w.b, "acme") // the slug the erase example confirms
	_, api := newServer(Deps{Log: quiet(), Version: "v1"})
	n := 0
	eachOperation(api.OpenAPI(), func(path, method string, op *huma.Operation) {
		if op.RequestBody == nil {
			return
		}
		mt := op.RequestBody.Content["application/json"]
		if mt == nil || mt.Examples["example"] == nil {
			t.Errorf("%s %s takes a body and shows no example", method, path)
			return
		}
		n++
		p := strings.NewReplacer("{entity_id}", exampleEntityID, "{relation_id}", exampleOtherID, "{tenant_id}", acme.String(),
			"{endpoint_id}", exampleOtherID).Replace(path)
		rec := call(t, w.h, req{method: method, path: p, key: admin.secret, tenant: w.a.String(), body: mt.Examples["example"].Value})
		if op.OperationID == "verify-audit-log-against-checkpoint" && rec.Code == 422 && strings.Contains(rec.Body.String(), `"body.tenant_id"`) &&
			strings.Count(rec.Body.String(), `"location"`) == 1 {
			return
		}
		if rec.Code == 400 || rec.Code == 422 || rec.Code >= 500 {
			t.Errorf("%s %s: the documented example is refused: %d %s", method, path, rec.Code, rec.Body)
		}
	})
	if n < 16 {
		t.Errorf("%d operations with a body, want at least 16", n)
	}
}
