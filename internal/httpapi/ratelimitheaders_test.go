package httpapi

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elile/elile/internal/kv"
)

// The document declares RateLimit-* on every /v1 2xx and 4xx response but
// 401: each kind of answer an identified credential can get carries them,
// and a 401 carries none.
func TestRateLimitHeaders_AsDocumented(t *testing.T) {
	t.Parallel()
	h, b := setup(t, setupOpts{rate: kv.Rate{Limit: 600, Period: time.Minute, Burst: 40}})
	w := world{h: h, b: b, a: mkTenant(t, b, "rl-headers")}
	w.admin = mkKey(t, b, w.a, "tenant:admin")
	w.reader = mkKey(t, b, w.a, "entities:read")
	e := w.create(t, w.admin, map[string]string{"email": "rl@example.com"})
	gone := w.create(t, w.admin, map[string]string{"email": "rl-gone@example.com"})
	huge := strings.Repeat("x", 2<<20)
	for name, r := range map[string]req{
		"200": w.as(w.admin, "GET", "/v1/entities/"+e.EntityID, nil),
		"201": w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{"email": "rl2@example.com"}}),
		"204": w.as(w.admin, "DELETE", "/v1/entities/"+gone.EntityID, nil),
		"400": w.as(w.admin, "GET", "/v1/entities?cursor=not-a-cursor", nil),
		"403": w.as(w.reader, "POST", "/v1/entities", map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]string{}}),
		"404": w.as(w.admin, "GET", "/v1/entities/01900000-0000-7000-8000-000000000000", nil),
		"413": w.as(w.admin, "POST", "/v1/entities", huge),
		"422": w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "spaceship"}),
	} {
		rec := call(t, h, r)
		if strconv.Itoa(rec.Code) != name {
			t.Errorf("%s: got %d %s", name, rec.Code, rec.Body)
			continue
		}
		for _, hdr := range []string{"RateLimit-Limit", "RateLimit-Policy", "RateLimit-Remaining", "RateLimit-Reset"} {
			if rec.Header().Get(hdr) == "" {
				t.Errorf("%s (%d): no %s", name, rec.Code, hdr)
			}
		}
	}
	rec := call(t, h, req{method: "GET", path: "/v1/entities", key: "elk_not-a-key"})
	if rec.Code != 401 || rec.Header().Get("RateLimit-Limit") != "" {
		t.Errorf("401: %d with RateLimit-Limit %q, want none", rec.Code, rec.Header().Get("RateLimit-Limit"))
	}
}
