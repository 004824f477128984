// Package loadtest drives a running elile server with realistic mixed
// traffic and reports throughput, latency percentiles and errors per
// operation. It talks HTTP only, like any client, and makes its own tenant
// and key from a platform-admin key.
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elile/elile/internal/identifier"
)

// Config says what to run.
type Config struct {
	BaseURL     string         // e.g. http://127.0.0.1:8000
	AdminKey    string         // platform-admin API key
	Concurrency int            // workers (closed loop) or most requests in flight (open loop)
	Rate        float64        // requests per second; 0: closed loop
	Duration    time.Duration  // stop after this long (0: no limit)
	Requests    int            // stop after this many (0: no limit)
	Mix         map[string]int // operation -> weight
	Seed        int            // entities created before the run, for reads
	Progress    io.Writer      // progress lines (nil: none)
	// Webhooks: subscribe a receiver on loopback to the run's tenant's
	// entity.created events and report their delivery (the server must
	// have WEBHOOK_ALLOW_LOOPBACK=true).
	Webhooks bool
}

// Operations the mix can name.
var Operations = []string{"create_entity", "get_entity", "search", "create_profile", "read_cache", "query_audit", "health"} //nolint:gochecknoglobals // fixed list

// ParseMix reads "create_entity=1,get_entity=4".
func ParseMix(s string) (map[string]int, error) {
	mix := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		var n int
		if _, err := fmt.Sscanf(w, "%d", &n); !ok || err != nil || n < 0 || !slices.Contains(Operations, name) {
			return nil, fmt.Errorf("mix entry %q: want OPERATION=WEIGHT with an operation of %s", part, strings.Join(Operations, ", "))
		}
		mix[name] = n
	}
	return mix, nil
}

// OpStats are one operation's results.
type OpStats struct {
	Count     int            `json:"count"`
	Errors    int            `json:"errors"`
	ByStatus  map[string]int `json:"by_status"`
	P50MS     float64        `json:"p50_ms"`
	P95MS     float64        `json:"p95_ms"`
	P99MS     float64        `json:"p99_ms"`
	MaxMS     float64        `json:"max_ms"`
	PerSecond float64        `json:"per_second"`
	latencies []time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Seconds    float64             `json:"seconds"`
	Requests   int                 `json:"requests"`
	Errors     int                 `json:"errors"`
	Status5xx  int                 `json:"status_5xx"`
	PerSecond  float64             `json:"per_second"`
	Operations map[string]*OpStats `json:"operations"`
	Late       int                 `json:"late,omitempty"` // open loop: requests started late because all slots were busy
	Webhooks   *WebhookStats       `json:"webhooks,omitempty"`
}

type client struct {
	http     *http.Client
	base     string
	key      string
	tenant   string
	mu       sync.Mutex
	entities []string
	ssns     []string
	serial   atomic.Int64
}

func (c *client) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if c.tenant != "" {
		req.Header.Set("X-Tenant-ID", c.tenant)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// setup makes the run's own tenant and a tenant-admin key.
func setup(ctx context.Context, cfg Config, hc *http.Client) (*client, error) {
	admin := &client{http: hc, base: cfg.BaseURL, key: cfg.AdminKey}
	slug := fmt.Sprintf("load-%d", time.Now().UnixNano())
	status, body, err := admin.do(ctx, "POST", "/v1/tenants", map[string]any{"name": "Load test " + slug, "slug": slug})
	if err != nil || status != 201 {
		return nil, fmt.Errorf("create tenant: %d %s %v", status, body, err)
	}
	var t struct {
		TenantID string `json:"tenant_id"`
	}
	_ = json.Unmarshal(body, &t)
	admin.tenant = t.TenantID
	status, body, err = admin.do(ctx, "POST", "/v1/api-keys", map[string]any{"name": "load test", "scopes": []string{"tenant:admin"}})
	if err != nil || status != 201 {
		return nil, fmt.Errorf("create key: %d %s %v", status, body, err)
	}
	var k struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal(body, &k)
	return &client{http: hc, base: cfg.BaseURL, key: k.Secret, tenant: t.TenantID}, nil
}

func (c *client) randomEntity(r *rand.Rand) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entities) == 0 {
		return "", ""
	}
	i := r.IntN(len(c.entities))
	return c.entities[i], c.ssns[i]
}

// op runs one operation and returns its status.
func (c *client) op(ctx context.Context, name string, r *rand.Rand) (int, error) {
	switch name {
	case "create_entity":
		// Unique within the run's own tenant: no 409 is expected.
		n := c.serial.Add(1)
		ssn := identifier.SyntheticSSN(uint64(n))
		status, body, err := c.do(ctx, "POST", "/v1/entities", map[string]any{"entity_type": "individual",
			"canonical_identifiers": map[string]string{"ssn": ssn, "full_name": fmt.Sprintf("Person %d", n), "email": fmt.Sprintf("p%d.%d@example.com", n, r.IntN(1e6))}})
		if status == 201 {
			var e struct {
				EntityID string `json:"entity_id"`
			}
			if json.Unmarshal(body, &e) == nil {
				c.mu.Lock()
				c.entities = append(c.entities, e.EntityID)
				c.ssns = append(c.ssns, ssn)
				c.mu.Unlock()
			}
		}
		return status, err
	case "get_entity":
		id, _ := c.randomEntity(r)
		status, _, err := c.do(ctx, "GET", "/v1/entities/"+id, nil)
		return status, err
	case "search":
		_, ssn := c.randomEntity(r)
		status, _, err := c.do(ctx, "POST", "/v1/entities/search", map[string]any{"kind": "ssn", "value": ssn})
		return status, err
	case "create_profile":
		id, _ := c.randomEntity(r)
		status, _, err := c.do(ctx, "POST", "/v1/entities/"+id+"/profiles", map[string]any{"trigger_type": "screening",
			"findings": []any{map[string]any{"id": fmt.Sprint(r.IntN(5)), "category": "criminal"}}, "risk_score": map[string]any{"overall": r.Float64()},
			"connections": []any{}, "data_sources_used": []any{"acme"}, "stale_data_used": []any{}})
		return status, err
	case "read_cache":
		id, _ := c.randomEntity(r)
		status, _, err := c.do(ctx, "GET", "/v1/entities/"+id+"/cache?check_type=criminal", nil)
		return status, err
	case "query_audit":
		status, _, err := c.do(ctx, "GET", "/v1/audit-events?limit=20", nil)
		return status, err
	default: // health
		status, _, err := c.do(ctx, "GET", "/health", nil)
		return status, err
	}
}

func pick(mix map[string]int, names []string, total int, r *rand.Rand) string {
	n := r.IntN(total)
	for _, name := range names {
		if n < mix[name] {
			return name
		}
		n -= mix[name]
	}
	return names[len(names)-1]
}

// Run sets up, seeds and runs the load, then reports.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Concurrency < 1 {
		return Report{}, errors.New("concurrency must be at least 1")
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		return Report{}, errors.New("give a duration or a request count")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency + 10, MaxConnsPerHost: cfg.Concurrency + 10}}
	c, err := setup(ctx, cfg, hc)
	if err != nil {
		return Report{}, err
	}
	var recv *receiver
	if cfg.Webhooks {
		if recv, err = startReceiver(); err != nil {
			return Report{}, err
		}
		if err := recv.subscribe(ctx, c); err != nil {
			return Report{}, err
		}
	}
	seedRand := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // load generation, not security
	for range max(cfg.Seed, 1) {
		if status, err := c.op(ctx, "create_entity", seedRand); err != nil || status >= 300 {
			return Report{}, fmt.Errorf("seeding entities: %d %v", status, err)
		}
	}
	names := make([]string, 0, len(cfg.Mix))
	total := 0
	for _, n := range Operations {
		if cfg.Mix[n] > 0 {
			names = append(names, n)
			total += cfg.Mix[n]
		}
	}
	if total == 0 {
		return Report{}, errors.New("the mix has no weight")
	}

	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var mu sync.Mutex
	stats := map[string]*OpStats{}
	for _, n := range names {
		stats[n] = &OpStats{ByStatus: map[string]int{}}
	}
	var issued, done atomic.Int64
	record := func(name string, status int, err error, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		s := stats[name]
		s.Count++
		s.latencies = append(s.latencies, took)
		key := fmt.Sprint(status)
		if err != nil {
			key = "transport_error"
		}
		s.ByStatus[key]++
		if err != nil || status >= 400 {
			s.Errors++
		}
		done.Add(1)
	}
	take := func() bool {
		n := issued.Add(1)
		return (cfg.Requests == 0 || n <= int64(cfg.Requests)) && runCtx.Err() == nil
	}
	start := time.Now()
	stopProgress := make(chan struct{})
	var progress sync.WaitGroup
	if cfg.Progress != nil {
		progress.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var last int64
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					d := done.Load()
					fmt.Fprintf(cfg.Progress, "%5.0fs  %8d requests  %7d/s\n", time.Since(start).Seconds(), d, d-last)
					last = d
				}
			}
		})
	}
	late := 0
	var wg sync.WaitGroup
	if cfg.Rate <= 0 { // closed loop
		for w := range cfg.Concurrency {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 99)) //nolint:gosec // load generation
				for take() {
					name := pick(cfg.Mix, names, total, r)
					t0 := time.Now()
					status, err := c.op(runCtx, name, r)
					if runCtx.Err() != nil && err != nil {
						return // cut off by the deadline, not a failure
					}
					record(name, status, err, time.Since(t0))
					if err != nil {
						time.Sleep(10 * time.Millisecond) // the server is gone: do not spin
					}
				}
			})
		}
	} else { // open loop: start requests on a schedule
		slots := make(chan struct{}, cfg.Concurrency)
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		r := rand.New(rand.NewPCG(7, 7)) //nolint:gosec // load generation
		next := time.Now()
		for take() {
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-runCtx.Done():
				}
			}
			next = next.Add(interval)
			select {
			case slots <- struct{}{}:
			default:
				late++
				slots <- struct{}{}
			}
			name := pick(cfg.Mix, names, total, r)
			seed := r.Uint64()
			wg.Go(func() {
				defer func() { <-slots }()
				rr := rand.New(rand.NewPCG(seed, 1)) //nolint:gosec // load generation
				t0 := time.Now()
				status, err := c.op(runCtx, name, rr)
				if runCtx.Err() != nil && err != nil {
					return
				}
				record(name, status, err, time.Since(t0))
			})
		}
	}
	wg.Wait()
	close(stopProgress)
	progress.Wait()
	elapsed := time.Since(start).Seconds()
	rep := Report{Seconds: elapsed, Operations: stats, Late: late}
	for _, s := range stats {
		sort.Slice(s.latencies, func(i, j int) bool { return s.latencies[i] < s.latencies[j] })
		if n := len(s.latencies); n > 0 {
			q := func(p float64) float64 {
				return float64(s.latencies[min(n-1, int(p*float64(n)))].Microseconds()) / 1000
			}
			s.P50MS, s.P95MS, s.P99MS, s.MaxMS = q(.50), q(.95), q(.99), float64(s.latencies[n-1].Microseconds())/1000
		}
		s.PerSecond = float64(s.Count) / elapsed
		rep.Requests += s.Count
		rep.Errors += s.Errors
		for k, v := range s.ByStatus {
			if len(k) == 3 && k[0] == '5' {
				rep.Status5xx += v
			}
		}
	}
	rep.PerSecond = float64(rep.Requests) / elapsed
	if recv != nil {
		created := max(cfg.Seed, 1)
		if s := stats["create_entity"]; s != nil {
			created += s.ByStatus["201"]
		}
		st := recv.finish(created, start.Add(time.Duration(elapsed*float64(time.Second))), time.Minute)
		rep.Webhooks = &st
	}
	return rep, nil
}

// Text renders the report as a table.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %.1fs: %.0f/s, %d errors (%d 5xx)\n", r.Requests, r.Seconds, r.PerSecond, r.Errors, r.Status5xx)
	fmt.Fprintf(&b, "%-15s %8s %9s %8s %8s %8s %8s  %s\n", "operation", "count", "per sec", "p50 ms", "p95 ms", "p99 ms", "max ms", "statuses")
	names := make([]string, 0, len(r.Operations))
	for n := range r.Operations {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := r.Operations[n]
		fmt.Fprintf(&b, "%-15s %8d %9.0f %8.1f %8.1f %8.1f %8.1f  %v\n", n, s.Count, s.PerSecond, s.P50MS, s.P95MS, s.P99MS, s.MaxMS, s.ByStatus)
	}
	if r.Late > 0 {
		fmt.Fprintf(&b, "%d requests started late (all %s slots busy)\n", r.Late, "concurrency")
	}
	if w := r.Webhooks; w != nil {
		fmt.Fprintf(&b, "webhooks: %d of %d events received (%d repeats); lag p50 %.1f ms, p99 %.1f ms, max %.1f ms; last %.1fs after the load\n",
			w.Received, w.Expected, w.Repeats, w.LagP50MS, w.LagP99MS, w.LagMaxMS, w.DrainSeconds)
	}
	return b.String()
}
