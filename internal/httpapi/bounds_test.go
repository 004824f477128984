package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/compactjson"
	"github.com/elile/elile/internal/tenant"
)

// The bounds walker: it reads the served document and, for every bounded
// field of every operation (parameters, body properties, map keys and
// values, array items, byte budgets), sends a valid request with that
// field at its limit and one with the field one past it. At the limit the
// request must not be refused for that field (nor be a 413); past it, it
// must be refused with a problem item located at the field: 422, or 400
// for a header (API.md: "400 is for malformed JSON and bad headers").

type docSchema = map[string]any

// doc is the served document, decoded.
type doc struct {
	root docSchema
}

func loadDoc(t *testing.T) doc {
	t.Helper()
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d.root); err != nil {
		t.Fatal(err)
	}
	return d
}

// resolve follows a $ref.
func (d doc) resolve(s docSchema) docSchema {
	for s != nil {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		s, _ = d.root["components"].(docSchema)["schemas"].(docSchema)[name].(docSchema)
	}
	return s
}

// site is one bounded place of a request.
type site struct {
	in       string   // path, query, header, body
	path     []string // body: property names down to the value; params: the name
	keyword  string   // maxLength, minLength, maximum, minimum, maxItems, minItems, maxProperties, x-max-bytes, propertyNames.maxLength
	limit    float64
	schema   docSchema // the bounded schema
	location string    // where the problem must point
}

func (s site) String() string {
	return s.location + " " + s.keyword + "=" + strconv.FormatFloat(s.limit, 'f', -1, 64)
}

var boundKeywords = []string{"maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems", "maxProperties", "x-max-bytes"}

// sites lists the bounded places of an operation.
func (d doc) sites(op docSchema) []site {
	var out []site
	for _, p := range asList(op["parameters"]) {
		p := p.(docSchema)
		in, name := p["in"].(string), p["name"].(string)
		for _, s := range d.schemaSites(d.resolve(p["schema"].(docSchema)), nil) {
			s.in, s.path, s.location = in, []string{name}, in+"."+name
			out = append(out, s)
		}
	}
	if rb, ok := op["requestBody"].(docSchema); ok {
		body := d.resolve(rb["content"].(docSchema)["application/json"].(docSchema)["schema"].(docSchema))
		for name, ps := range body["properties"].(docSchema) {
			for _, s := range d.schemaSites(d.resolve(ps.(docSchema)), []string{name}) {
				s.in = "body"
				s.location = "body." + strings.Join(s.path, ".")
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// schemaSites lists the bounds of schema s at path, and of its map
// values, map keys and array items below (items and values are probed
// through a one-element array or a one-key map).
func (d doc) schemaSites(s docSchema, path []string) []site {
	var out []site
	for _, k := range boundKeywords {
		if v, ok := s[k].(float64); ok {
			out = append(out, site{path: path, keyword: k, limit: v, schema: s})
		}
	}
	if names, ok := s["propertyNames"].(docSchema); ok {
		if v, ok := names["maxLength"].(float64); ok {
			out = append(out, site{path: path, keyword: "propertyNames.maxLength", limit: v, schema: s})
		}
	}
	if ap, ok := s["additionalProperties"].(docSchema); ok && len(ap) > 0 {
		out = append(out, d.schemaSites(d.resolve(ap), append(slices.Clone(path), "*"))...)
	}
	if it, ok := s["items"].(docSchema); ok && len(it) > 0 {
		out = append(out, d.schemaSites(d.resolve(it), append(slices.Clone(path), "0"))...)
	}
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// probe is a valid request of one operation, made fresh for each send.
type probe struct {
	path string
	key  fixture
	body map[string]any
	// prepare fixes up a request after a field was set (the erasure's
	// confirm must name a tenant with that slug).
	prepare func(t *testing.T, r *req)
}

// boundsWorld is what the probes act on.
type boundsWorld struct {
	world
	entity, peer EntityOut
	cacheID      string
	auditID      string
	checkpoint   map[string]any
	endpointID   string
	deliveryID   string
	relationID   string
}

func (w *boundsWorld) probes(t *testing.T) map[string]func() probe {
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	eid := w.entity.EntityID
	ent := "/v1/entities/" + eid
	n := 0
	fresh := func(prefix string) string { n++; return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, n) }
	entityBody := func() map[string]any {
		return map[string]any{"entity_type": "individual", "canonical_identifiers": map[string]any{"full_name": "Ada"},
			"external_id": fresh("ext"), "metadata": map[string]any{"team": "a"}}
	}
	return map[string]func() probe{
		"create-tenant": func() probe {
			return probe{path: "/v1/tenants", key: w.platform, body: map[string]any{"name": "T", "slug": fresh("t"), "locale": "en-US", "config": map[string]any{"a": 1}}}
		},
		"list-tenants":   func() probe { return probe{path: "/v1/tenants", key: w.platform} },
		"get-tenant":     func() probe { return probe{path: "/v1/tenants/" + w.a.String(), key: w.platform} },
		"get-own-tenant": func() probe { return probe{path: "/v1/tenant", key: w.admin} },
		"update-tenant": func() probe {
			return probe{path: "/v1/tenants/" + w.other.String(), key: w.platform, body: map[string]any{"name": "Other", "locale": "en", "config": map[string]any{}}}
		},
		"erase-tenant": func() probe {
			return probe{path: "/v1/tenants/" + tenant.NewID().String(), key: w.platform, body: map[string]any{"confirm": "abc"},
				prepare: func(t *testing.T, r *req) {
					t.Helper()
					var b map[string]any
					_ = json.Unmarshal(r.body.([]byte), &b)
					if slug, ok := b["confirm"].(string); ok && slugOK(slug) && strings.HasPrefix(r.path, "/v1/tenants/") && len(r.path) == len("/v1/tenants/")+36 {
						r.path = "/v1/tenants/" + mkTenant(t, w.b, slug).String()
					}
				}}
		},
		"create-api-key": func() probe {
			return probe{path: "/v1/api-keys", key: w.admin, body: map[string]any{"name": "k", "scopes": []any{"entities:read"}, "expires_at": future}}
		},
		"list-api-keys": func() probe { return probe{path: "/v1/api-keys", key: w.admin} },
		"revoke-api-key": func() probe {
			return probe{path: "/v1/api-keys/" + mkKey(t, w.b, w.a, auth.ScopeEntitiesRead).keyID.String(), key: w.admin}
		},
		"create-entity": func() probe { return probe{path: "/v1/entities", key: w.admin, body: entityBody()} },
		"create-shared-entity": func() probe {
			return probe{path: "/v1/shared/entities", key: w.platform, body: entityBody()}
		},
		"list-entities": func() probe { return probe{path: "/v1/entities", key: w.admin} },
		"search-entities": func() probe {
			return probe{path: "/v1/entities/search", key: w.admin, body: map[string]any{"kind": "email", "value": "ada@example.com"},
				prepare: func(t *testing.T, r *req) {
					t.Helper()
					// A value of n characters of the kind that admits it.
					var b map[string]any
					_ = json.Unmarshal(r.body.([]byte), &b)
					if v, ok := b["value"].(string); ok && strings.Trim(v, "a") == "" {
						if len(v) <= 64 {
							b["kind"], b["value"] = "national_id", strings.ToUpper(v)
						} else {
							b["value"] = v[:max(len(v)-12, 1)] + "@example.com"
						}
						r.body, _ = json.Marshal(b)
					}
				}}
		},
		"get-entity": func() probe { return probe{path: ent, key: w.admin} },
		"update-entity": func() probe {
			// An entity of its own each time: the external_id at its limit
			// is the same string in every probe.
			e := w.create(t, w.admin, map[string]string{"full_name": "Patched"})
			return probe{path: "/v1/entities/" + e.EntityID, key: w.admin, body: map[string]any{"canonical_identifiers": map[string]any{"legal_name": "Ada L"},
				"external_id": fresh("upd"), "metadata": map[string]any{"team": "b"}}}
		},
		"delete-entity": func() probe {
			return probe{path: "/v1/entities/" + w.create(t, w.admin, map[string]string{"full_name": "Gone"}).EntityID, key: w.admin}
		},
		"create-relation": func() probe {
			return probe{path: ent + "/relations", key: w.admin, body: map[string]any{"to_entity_id": w.peer.EntityID, "relation_type": "employer", "confidence_score": 0.5}}
		},
		"list-relations": func() probe { return probe{path: ent + "/relations", key: w.admin} },
		"update-relation": func() probe {
			return probe{path: ent + "/relations/" + w.relationID, key: w.admin,
				body: map[string]any{"confidence_score": 0.5, "valid_from": "2020-01-01", "valid_to": "2026-01-02"}}
		},
		"delete-relation": func() probe {
			other := w.create(t, w.admin, map[string]string{"full_name": "Related"})
			r := decode[RelationOut](t, call(t, w.h, w.as(w.admin, "POST", ent+"/relations",
				map[string]any{"to_entity_id": other.EntityID, "relation_type": "knows", "confidence_score": 0.5})))
			return probe{path: ent + "/relations/" + r.RelationID, key: w.admin}
		},
		"create-profile": func() probe { return probe{path: ent + "/profiles", key: w.admin, body: profileBody(0.5, "f1")} },
		"list-profiles":  func() probe { return probe{path: ent + "/profiles", key: w.admin} },
		"get-latest-profile": func() probe {
			return probe{path: ent + "/profiles/latest", key: w.admin}
		},
		"get-profile": func() probe { return probe{path: ent + "/profiles/1", key: w.admin} },
		"create-cache-entry": func() probe {
			b := cacheBody("criminal", "paid_external")
			b["acquired_at"], b["cost_currency"] = past, "USD"
			b["fresh_until"], b["stale_until"] = future, time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339)
			return probe{path: ent + "/cache", key: w.admin, body: b}
		},
		"list-cache-entries": func() probe { return probe{path: ent + "/cache", key: w.admin} },
		"get-cache-entry":    func() probe { return probe{path: ent + "/cache/" + w.cacheID, key: w.admin} },
		"export-audit-events": func() probe {
			return probe{path: "/v1/audit-events/export", key: w.admin}
		},
		"verify-audit-log": func() probe { return probe{path: "/v1/audit-events/verify", key: w.admin} },
		"verify-audit-log-against-checkpoint": func() probe {
			return probe{path: "/v1/audit-events/verify", key: w.admin, body: clone(w.checkpoint)}
		},
		"audit-checkpoint":  func() probe { return probe{path: "/v1/audit-events/checkpoint", key: w.admin} },
		"list-audit-events": func() probe { return probe{path: "/v1/audit-events", key: w.admin} },
		"get-audit-event":   func() probe { return probe{path: "/v1/audit-events/" + w.auditID, key: w.admin} },
		"create-webhook-endpoint": func() probe {
			// A tenant of its own each time: a tenant has at most 16 endpoints.
			return probe{path: "/v1/webhook-endpoints", key: mkKey(t, w.b, mkTenant(t, w.b, fresh("wh")), auth.ScopeWebhooks),
				body: map[string]any{"url": "https://hooks.example.com/in", "description": "d", "event_types": []any{"entity.created"}}}
		},
		"list-webhook-endpoints": func() probe { return probe{path: "/v1/webhook-endpoints", key: w.admin} },
		"get-webhook-endpoint":   func() probe { return probe{path: "/v1/webhook-endpoints/" + w.endpointID, key: w.admin} },
		"update-webhook-endpoint": func() probe {
			return probe{path: "/v1/webhook-endpoints/" + w.endpointID, key: w.admin,
				body: map[string]any{"url": "https://hooks.example.com/in", "description": "d", "event_types": []any{"entity.created"}, "status": "enabled"}}
		},
		"delete-webhook-endpoint": func() probe {
			ep := decode[EndpointOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://gone.example.com/"})))
			return probe{path: "/v1/webhook-endpoints/" + ep.EndpointID, key: w.admin}
		},
		"rotate-webhook-secret": func() probe {
			return probe{path: "/v1/webhook-endpoints/" + w.endpointID + "/rotate-secret", key: w.admin, body: map[string]any{"overlap_seconds": 60}}
		},
		"list-webhook-deliveries": func() probe {
			return probe{path: "/v1/webhook-endpoints/" + w.endpointID + "/deliveries", key: w.admin}
		},
		"redeliver-webhook": func() probe {
			return probe{path: "/v1/webhook-endpoints/" + w.endpointID + "/deliveries/" + w.deliveryID + "/redeliver", key: w.admin}
		},
	}
}

func slugOK(s string) bool {
	if len(s) < 3 || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// TestBounds_Walk sends the limit and the limit + 1 of every bounded field
// of every operation.
func TestBounds_Walk(t *testing.T) {
	t.Parallel()
	w := &boundsWorld{world: newWorld(t)} // its handler checks every answer against the document
	w.entity = w.create(t, w.admin, map[string]string{"full_name": "Walker", "email": "ada@example.com"})
	w.peer = w.create(t, w.admin, map[string]string{"full_name": "Other"})
	w.relationID = decode[RelationOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+w.entity.EntityID+"/relations",
		map[string]any{"to_entity_id": w.peer.EntityID, "relation_type": "director_of", "confidence_score": 0.5}))).RelationID
	if rec := call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+w.entity.EntityID+"/profiles", profileBody(0.4, "f0"))); rec.Code != 201 {
		t.Fatalf("profile: %d %s", rec.Code, rec.Body)
	}
	cache := decode[CacheOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/entities/"+w.entity.EntityID+"/cache", cacheBody("criminal", "paid_external"))))
	w.cacheID = cache.CacheID
	events := decode[Page[AuditEventOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/audit-events?limit=1", nil)))
	if len(events.Data) == 0 {
		t.Fatal("no audit event")
	}
	w.auditID = events.Data[0].AuditID
	ep := decode[EndpointOut](t, call(t, w.h, w.as(w.admin, "POST", "/v1/webhook-endpoints", map[string]any{"url": "https://hooks.example.com/walk"})))
	w.endpointID = ep.EndpointID
	w.create(t, w.admin, map[string]string{"full_name": "Announced"})
	ds := decode[Page[DeliveryOut]](t, call(t, w.h, w.as(w.admin, "GET", "/v1/webhook-endpoints/"+ep.EndpointID+"/deliveries", nil)))
	if len(ds.Data) != 1 {
		t.Fatalf("deliveries = %+v", ds)
	}
	w.deliveryID = ds.Data[0].DeliveryID
	sealUntil(t, w.b, 1)
	rec := call(t, w.h, w.as(w.admin, "GET", "/v1/audit-events/checkpoint", nil))
	if rec.Code != 200 {
		t.Fatalf("checkpoint: %d %s", rec.Code, rec.Body)
	}
	w.checkpoint = decode[map[string]any](t, rec)

	d := loadDoc(t)
	probes := w.probes(t)
	checked := 0
	for path, item := range d.root["paths"].(docSchema) {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for method, o := range item.(docSchema) {
			op := o.(docSchema)
			id := op["operationId"].(string)
			mk, ok := probes[id]
			if !ok {
				t.Errorf("%s: no probe: add one to boundsWorld.probes", id)
				continue
			}
			for _, s := range d.sites(op) {
				if s.in == "header" && s.path[0] == "X-Tenant-ID" && s.keyword != "maxLength" {
					continue
				}
				for _, over := range []bool{false, true} {
					if send(t, w, strings.ToUpper(method), mk(), s, over) {
						checked++
					}
				}
			}
		}
	}
	t.Logf("%d probes sent", checked)
	if checked < 100 {
		t.Errorf("only %d probes: the walker found too few bounds", checked)
	}
}

// send sends p with site s at its limit (over: one past it) and checks
// the answer; it reports false when the site cannot be probed.
func send(t *testing.T, w *boundsWorld, method string, p probe, s site, over bool) bool {
	t.Helper()
	r := req{method: method, path: p.path, key: p.key.secret, hdr: map[string]string{}}
	if !p.key.tenant.IsZero() {
		r.tenant = p.key.tenant.String()
	}
	body := clone(p.body)
	if body == nil && p.body != nil {
		body = map[string]any{}
	}
	switch s.in {
	case "path":
		v, ok := value(s, over, pathValue(p.path, s.path[0]))
		if !ok {
			return false
		}
		r.path = replacePathValue(p.path, s.path[0], queryString(v))
	case "query":
		v, ok := value(s, over, nil)
		if !ok {
			return false
		}
		r.path += "?" + s.path[0] + "=" + url.QueryEscape(queryString(v))
	case "header":
		if s.keyword == "minLength" {
			return false // an empty header is no header
		}
		v, ok := value(s, over, nil)
		if !ok {
			return false
		}
		if s.path[0] == "X-Tenant-ID" {
			if !over {
				return false // the fixture's tenant: already the limit
			}
			r.tenant = v.(string)
		} else {
			r.hdr[s.path[0]] = v.(string)
		}
	case "body":
		if !setAt(body, s, over) {
			return false
		}
	}
	if p.body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r.body = b
	}
	if p.prepare != nil {
		p.prepare(t, &r)
	}
	rec := call(t, w.h, r)
	var prob Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &prob)
	at := func() bool {
		for _, it := range prob.Errors {
			if it.Location == s.location || strings.HasPrefix(it.Location, s.location+".") ||
				(strings.Contains(s.location, ".*") && strings.HasPrefix(it.Location, strings.Split(s.location, ".*")[0]+".")) ||
				(strings.Contains(s.location, ".0") && strings.HasPrefix(it.Location, strings.Split(s.location, ".0")[0]+"[")) {
				return true
			}
		}
		return false
	}
	what := fmt.Sprintf("%s %s: %s", method, p.path, s)
	switch {
	case !over && (rec.Code == http.StatusRequestEntityTooLarge || at()):
		t.Errorf("%s: at the limit, refused: %d %.400s", what, rec.Code, rec.Body)
	case over && s.in == "header" && (rec.Code != http.StatusBadRequest || !at()):
		t.Errorf("%s: past the limit, want 400 at %s: %d %.400s", what, s.location, rec.Code, rec.Body)
	case over && s.in != "header" && (rec.Code != http.StatusUnprocessableEntity || !at()):
		t.Errorf("%s: past the limit, want 422 at %s: %d %.400s", what, s.location, rec.Code, rec.Body)
	}
	return true
}

// value is a value of site s's schema at its limit (over: one past it),
// from base where the schema needs a real value (a path's id).
func value(s site, over bool, base any) (any, bool) {
	n := int(s.limit)
	switch s.keyword {
	case "maximum":
		if over {
			return n + 1, true
		}
		return n, true
	case "minimum":
		if over {
			return n - 1, true
		}
		return n, true
	case "maxLength":
		if over {
			n++
		}
		return stringOf(s.schema, n, base)
	case "minLength":
		if over {
			if n == 0 {
				return nil, false
			}
			n--
		}
		return stringOf(s.schema, n, base)
	}
	return nil, false
}

// stringOf is a string of n characters that s admits (when n is within
// its bounds): base padded, a uuid, a timestamp, or a fill its pattern
// admits.
func stringOf(s docSchema, n int, base any) (any, bool) {
	switch s["format"] {
	case "uuid":
		b, _ := base.(string)
		if len(b) != 36 {
			b = "0190a6b2-7c5d-7e8f-9a0b-1c2d3e4f5a6b"
		}
		return pad(b, n, "0"), true
	case "date-time":
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if b, ok := base.(string); ok {
			if t, err := time.Parse(time.RFC3339, b); err == nil {
				at = t
			}
		}
		ts := at.Truncate(time.Second).Add(123456789).In(time.FixedZone("", 3600)).Format("2006-01-02T15:04:05.000000000-07:00")
		return pad(ts, n, "0"), true
	}
	if enum := asList(s["enum"]); len(enum) > 0 {
		for _, e := range enum {
			if e, _ := e.(string); utf8.RuneCountInString(e) == n {
				return e, true
			}
		}
		return strings.Repeat("a", n), true
	}
	pattern, _ := s["pattern"].(string)
	switch pattern {
	case "^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$": // a locale
		v := "en"
		for len(v)+9 <= n {
			v += "-abcdefgh"
		}
		if rest := n - len(v); rest > 0 {
			v += "-" + strings.Repeat("x", max(rest-1, 0))
		}
		return v[:n], true
	case "^[a-z0-9-]{3,63}$": // a slug: unique
		slugs++
		return pad(strconv.Itoa(slugs)+"-", n, "s"), true
	case "^[A-Z]{3}$":
		return strings.Repeat("U", n), true
	case "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$": // a date
		return pad("2026-01-02", n, "0"), true
	case "^https?://[^\\x00-\\x20\\x7F]+$": // a webhook endpoint's URL
		return pad("https://hooks.example.com/", n, "a"), true
	case "^[0-9a-f]{64}$", "^[a-z0-9]+:[0-9a-f]+$":
		if pattern != "^[0-9a-f]{64}$" {
			return pad("ed25519:", n, "a"), true
		}
		return strings.Repeat("a", n), true
	}
	return strings.Repeat("a", n), true
}

// slugs counts the slugs made, so each is new.
var slugs int

func pad(s string, n int, fill string) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat(fill, n-len(s))
}

// setAt sets site s of body to its limit (over: one past it).
func setAt(body map[string]any, s site, over bool) bool {
	parent := any(body)
	for _, k := range s.path[:len(s.path)-1] {
		m, ok := parent.(map[string]any)
		if !ok {
			return false
		}
		switch next := m[k].(type) {
		case map[string]any, []any:
			parent = next
		default:
			return false
		}
	}
	last := s.path[len(s.path)-1]
	get := func() any {
		switch p := parent.(type) {
		case map[string]any:
			if last == "*" {
				for _, k := range sortedKeys(p) {
					return p[k]
				}
				return nil
			}
			return p[last]
		case []any:
			if len(p) > 0 {
				return p[0]
			}
		}
		return nil
	}
	put := func(v any) bool {
		switch p := parent.(type) {
		case map[string]any:
			if last == "*" {
				ks := sortedKeys(p)
				if len(ks) == 0 {
					return false
				}
				p[ks[0]] = v
				return true
			}
			p[last] = v
			return true
		case []any:
			if len(p) == 0 {
				return false
			}
			p[0] = v
			return true
		}
		return false
	}
	cur := get()
	n := int(s.limit)
	switch s.keyword {
	case "maxLength", "minLength", "maximum", "minimum":
		v, ok := value(s, over, cur)
		if !ok {
			return false
		}
		if _, isNum := v.(int); isNum && s.schema["type"] != "integer" {
			return false // numbers other than integers: not probed
		}
		return put(v)
	case "maxItems", "minItems":
		if s.keyword == "minItems" {
			if !over {
				return true // the probe's own list is within
			}
			return put([]any{})
		}
		if over {
			n++
		}
		return put(itemsOf(s.schema, cur, n))
	case "maxProperties":
		if over {
			n++
		}
		return put(propsOf(s.schema, cur, n))
	case "propertyNames.maxLength":
		m, _ := cur.(map[string]any)
		if m == nil {
			return false
		}
		if over {
			n++
		}
		out := clone(m)
		var v any = "x"
		for _, k := range sortedKeys(m) {
			v = m[k]
			break
		}
		out[keyOf(n)] = v
		return put(out)
	case "x-max-bytes":
		if over {
			n++
		}
		v, ok := padBytes(cur, n)
		if !ok {
			return false
		}
		return put(v)
	}
	return false
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// keyOf is a map key of n characters: both bounded maps' key patterns
// (identifier kinds, labels) admit a custom kind, x_ and a run of k.
func keyOf(n int) string { return "x_" + strings.Repeat("k", n-2) }

// itemsOf is a list of n items that s admits: the enum's values in turn
// (repeating past its end), else copies of the current first item.
func itemsOf(s docSchema, cur any, n int) []any {
	items, _ := s["items"].(docSchema)
	enum := asList(items["enum"])
	var first any = 0
	if l, ok := cur.([]any); ok && len(l) > 0 {
		first = l[0]
	}
	out := make([]any, n)
	for i := range out {
		if len(enum) > 0 {
			out[i] = enum[i%len(enum)]
		} else {
			out[i] = first
		}
	}
	return out
}

// propsOf is a map of n entries that s admits: the current ones, then
// generated keys with the first current value (or null, when the values
// may be null: removing what is not there changes nothing).
func propsOf(s docSchema, cur any, n int) map[string]any {
	m, _ := cur.(map[string]any)
	out := map[string]any{}
	var v any = "x"
	ap, _ := s["additionalProperties"].(docSchema)
	if types, ok := ap["type"].([]any); ok && slices.Contains(types, any("null")) {
		v = nil
	} else if len(m) > 0 {
		v = m[sortedKeys(m)[0]]
	}
	for _, k := range sortedKeys(m) {
		if len(out) < n {
			out[k] = m[k]
		}
	}
	for i := 0; len(out) < n; i++ {
		out["x_k"+strconv.Itoa(i)] = v
	}
	return out
}

// padBytes makes cur (a JSON object or array) exactly n bytes of compact
// JSON by adding one string.
func padBytes(cur any, n int) (any, bool) {
	switch c := cur.(type) {
	case map[string]any:
		out := clone(c)
		out["pad"] = ""
		size := compactjson.Size(out)
		if size > n {
			return nil, false
		}
		out["pad"] = strings.Repeat("p", n-size)
		return out, compactjson.Size(out) == n
	case []any:
		out := append(slices.Clone(c), "")
		size := compactjson.Size(out)
		if size > n {
			return nil, false
		}
		out[len(out)-1] = strings.Repeat("p", n-size)
		return out, compactjson.Size(out) == n
	}
	return nil, false
}

func pathValue(path, name string) string {
	// Path parameters are found by position in the document's template;
	// the probes' paths use real ids, so take the segment after the
	// collection the parameter names.
	coll := map[string]string{"tenant_id": "tenants", "key_id": "api-keys", "entity_id": "entities", "cache_id": "cache",
		"audit_id": "audit-events", "version": "profiles", "endpoint_id": "webhook-endpoints", "delivery_id": "deliveries", "relation_id": "relations"}[name]
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == coll && i+1 < len(segs) {
			return segs[i+1]
		}
	}
	return ""
}

func replacePathValue(path, name, v string) string {
	old := pathValue(path, name)
	if old == "" {
		return path
	}
	return strings.Replace(path, "/"+old, "/"+v, 1)
}

func queryString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return fmt.Sprint(v)
}

// TestBounds_RequestAtLimitsFitsTheBodyCap: the largest body each
// operation's schema admits — every field at its limit, each character
// at its widest UTF-8 encoding — is smaller than the body cap, so a
// request within the declared bounds is never a 413.
func TestBounds_RequestAtLimitsFitsTheBodyCap(t *testing.T) {
	t.Parallel()
	d := loadDoc(t)
	largest := 0
	for path, item := range d.root["paths"].(docSchema) {
		for method, o := range item.(docSchema) {
			rb, ok := o.(docSchema)["requestBody"].(docSchema)
			if !ok {
				continue
			}
			s := d.resolve(rb["content"].(docSchema)["application/json"].(docSchema)["schema"].(docSchema))
			size, err := d.maxSize(s)
			if err != nil {
				t.Errorf("%s %s: %v", method, path, err)
				continue
			}
			t.Logf("%s %s: at most %d bytes", strings.ToUpper(method), path, size)
			largest = max(largest, size)
			if size > maxBody {
				t.Errorf("%s %s: a body at the declared limits can be %d bytes, over the %d-byte cap", method, path, size, maxBody)
			}
		}
	}
	if largest < maxBody/2 {
		t.Errorf("largest body at the limits = %d: the measure lost a budget", largest)
	}
}

// maxSize is the largest compact JSON encoding s admits; an error names a
// part without a bound.
func (d doc) maxSize(s docSchema) (int, error) {
	s = d.resolve(s)
	if b, ok := s["x-max-bytes"].(float64); ok {
		return int(b), nil
	}
	if anyOf := asList(s["anyOf"]); len(anyOf) > 0 {
		m := 0
		for _, sub := range anyOf {
			n, err := d.maxSize(sub.(docSchema))
			if err != nil {
				return 0, err
			}
			m = max(m, n)
		}
		return m, nil
	}
	typ := s["type"]
	if l, ok := typ.([]any); ok { // [T, "null"]
		for _, x := range l {
			if x != "null" {
				typ = x
			}
		}
	}
	switch typ {
	case "boolean":
		return len("false"), nil
	case "integer":
		lo, _ := s["minimum"].(float64)
		hi, ok := s["maximum"].(float64)
		if !ok {
			return 0, fmt.Errorf("an integer without a maximum")
		}
		return max(len(strconv.FormatFloat(lo, 'f', -1, 64)), len(strconv.FormatFloat(hi, 'f', -1, 64))), nil
	case "number":
		return 24, nil // the longest float64 Go or JavaScript writes
	case "string":
		if enum := asList(s["enum"]); len(enum) > 0 {
			m := 0
			for _, e := range enum {
				m = max(m, len(e.(string))+2)
			}
			return m, nil
		}
		n, ok := s["maxLength"].(float64)
		if !ok {
			return 0, fmt.Errorf("a string without maxLength")
		}
		return 2 + int(n)*bytesPerChar(s), nil
	case "array":
		n, ok := s["maxItems"].(float64)
		if !ok {
			return 0, fmt.Errorf("an array without maxItems")
		}
		item, err := d.maxSize(s["items"].(docSchema))
		if err != nil {
			return 0, fmt.Errorf("items: %w", err)
		}
		return 2 + int(n)*(item+1), nil
	case "object":
		size := 2
		for name, ps := range asMap(s["properties"]) {
			n, err := d.maxSize(ps.(docSchema))
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			size += len(name) + 4 + n // "name":value,
		}
		if ap, ok := s["additionalProperties"].(docSchema); ok {
			n, ok := s["maxProperties"].(float64)
			names, _ := s["propertyNames"].(docSchema)
			keyLen, keyOK := names["maxLength"].(float64)
			if !ok || !keyOK {
				return 0, fmt.Errorf("a map without maxProperties and propertyNames.maxLength")
			}
			v, err := d.maxSize(ap)
			if err != nil {
				return 0, fmt.Errorf("values: %w", err)
			}
			size += int(n) * (2 + int(keyLen)*bytesPerChar(names) + 2 + v)
		}
		return size, nil
	}
	return 0, fmt.Errorf("a value without a type or a byte budget")
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// bytesPerChar is the most bytes one character of s takes in JSON: 1 for
// a format or a pattern of printable ASCII (2 where it admits a quote or
// backslash), 4 for text without control characters (UTF-8), 6 for any
// text (a control character is written \u00XX).
func bytesPerChar(s docSchema) int {
	if _, ok := s["format"].(string); ok {
		return 1
	}
	p, ok := s["pattern"].(string)
	if !ok {
		return 6
	}
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return 6
	}
	lo, hi, escaped := rune(utf8.MaxRune), rune(0), false
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			for _, c := range r.Rune {
				lo, hi = min(lo, c), max(hi, c)
				escaped = escaped || c == '"' || c == '\\'
			}
		case syntax.OpCharClass:
			for i := 0; i+1 < len(r.Rune); i += 2 {
				lo, hi = min(lo, r.Rune[i]), max(hi, r.Rune[i+1])
				escaped = escaped || (r.Rune[i] <= '"' && r.Rune[i+1] >= '"') || (r.Rune[i] <= '\\' && r.Rune[i+1] >= '\\')
			}
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			lo, hi = 0, utf8.MaxRune
		}
		for _, sub := range r.Sub {
			walk(sub)
		}
	}
	walk(re)
	switch {
	case lo < 0x20:
		return 6
	case hi >= 0x80:
		return 4
	case escaped:
		return 2
	}
	return 1
}

// conforming wraps h so that every answer it gives is checked against the
// document: its status is one the operation declares, and its JSON body
// validates against the declared schema (bounds, patterns, enums,
// required members). The document's response bounds are promises; this
// holds the server to them.
func conforming(t *testing.T, h http.Handler) http.Handler {
	t.Helper()
	_, api := newServer(Deps{Log: quiet(), Version: "v1"})
	o := api.OpenAPI()
	mux := http.NewServeMux()
	ops := map[string]*huma.Operation{}
	eachOperation(o, func(path, method string, op *huma.Operation) {
		ops[method+" "+path] = op
		mux.HandleFunc(method+" "+path, func(http.ResponseWriter, *http.Request) {})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		_, pattern := mux.Handler(r)
		op := ops[pattern]
		if op == nil {
			return
		}
		what := fmt.Sprintf("%s %s → %d", r.Method, r.URL.Path, rec.Code)
		resp := op.Responses[strconv.Itoa(rec.Code)]
		if resp == nil {
			t.Errorf("%s: status not in the document (query %q, content type %q, %d body bytes): %.300s", what, r.URL.RawQuery, r.Header.Get("Content-Type"), r.ContentLength, rec.Body)
			return
		}
		ct, _, _ := strings.Cut(rec.Header().Get("Content-Type"), ";")
		if rec.Body.Len() == 0 || ct == "application/x-ndjson" {
			return
		}
		media := resp.Content[ct]
		if media == nil || media.Schema == nil {
			t.Errorf("%s: content type %q not in the document", what, ct)
			return
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Errorf("%s: body is not JSON: %v", what, err)
			return
		}
		res := &huma.ValidateResult{}
		huma.Validate(o.Components.Schemas, media.Schema, huma.NewPathBuffer([]byte{}, 0), huma.ModeReadFromServer, v, res)
		for _, e := range res.Errors {
			t.Errorf("%s: the body breaks the document: %v", what, e)
		}
		// A problem's code is one the operation declares (x-error-codes,
		// or one every operation may answer).
		if m, ok := v.(map[string]any); ok && ct == "application/problem+json" && strings.HasPrefix(pattern, r.Method+" /v1/") {
			if code, _ := m["code"].(string); !slices.Contains(declaredCodes(op), code) {
				t.Errorf("%s: code %s is not among the operation's codes (operationCodes in codes.go)", what, code)
			}
		}
	})
}
