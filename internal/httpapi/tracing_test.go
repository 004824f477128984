package httpapi

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/telemetry"
)

// otlpReceiver is a minimal OTLP/HTTP trace endpoint: it decodes the
// protobuf requests the exporter sends and keeps their spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	raw   []byte
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.raw = append(o.raw, b...)
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			v := a.GetValue()
			if v.GetStringValue() != "" {
				return v.GetStringValue()
			}
			if i := v.GetIntValue(); i != 0 {
				return strconv.FormatInt(i, 10)
			}
		}
	}
	return ""
}

// TestTracing_OneCreate sends one traced create (continuing the caller's
// trace) and receives the spans over OTLP/HTTP: the server span named
// after the route, carrying status, correlation id and tenant id, with the
// PostgreSQL and Redis spans under it; no attribute anywhere carries the
// identifiers, the user agent or the client address.
func TestTracing_OneCreate(t *testing.T) {
	t.Parallel()
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)
	tracing, err := telemetry.New(context.Background(), telemetry.Config{Endpoint: collector.URL, Service: "elile-test", Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tracing.Shutdown(context.Background()) })
	h, b := setup(t, setupOpts{tracer: tracing.Tracer("elile"), rate: kv.Rate{Limit: 1000, Period: time.Minute, Burst: 100}})
	w := world{h: h, b: b, a: mkTenant(t, b, "traced")}
	w.admin = mkKey(t, b, w.a, "tenant:admin")

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := w.as(w.admin, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
		"canonical_identifiers": map[string]string{"ssn": "219-09-9999", "full_name": "Tracy Traced"}})
	r.hdr = map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01", "User-Agent": "secret-agent/7.1"}
	rec := call(t, h, r)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	if tp := rec.Header().Get("traceparent"); !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Fatalf("response traceparent %q does not continue the caller's trace", tp)
	}
	if err := tracing.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	var server *tracepb.Span
	for _, s := range recv.spans {
		if s.GetName() == "POST /v1/entities" && hex.EncodeToString(s.GetTraceId()) == traceID {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span for the create among %d spans", len(recv.spans))
	}
	if hex.EncodeToString(server.GetParentSpanId()) != parentID || server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span parent %x kind %v, want the caller's span %s", server.GetParentSpanId(), server.GetKind(), parentID)
	}
	for key, want := range map[string]string{"http.route": "POST /v1/entities", "http.response.status_code": "201",
		"elile.correlation_id": rec.Header().Get("X-Correlation-ID"), "elile.tenant_id": w.a.String(), "http.request.method": "POST"} {
		if got := attr(server, key); got != want {
			t.Errorf("server span %s = %q, want %q", key, got, want)
		}
	}
	children := map[string]int{}
	for _, s := range recv.spans {
		if string(s.GetParentSpanId()) == string(server.GetSpanId()) {
			children[attr(s, "db.system.name")]++
		}
	}
	if children["postgresql"] == 0 || children["redis"] == 0 {
		t.Errorf("spans under the server span by system = %v, want postgresql and redis", children)
	}
	for _, leak := range []string{"219099999", "219-09-9999", "Tracy", "secret-agent", "127.0.0.1"} {
		if strings.Contains(string(recv.raw), leak) {
			t.Errorf("the exported spans contain %q", leak)
		}
	}
}
