package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// WebhookStats is what the run's receiver saw: every entity.created event
// of the run's tenant, how long after the change each arrived (its
// payload's timestamp to its arrival: the age of the oldest pending
// delivery is at most the largest), and how long after the load ended the
// last one came.
type WebhookStats struct {
	Expected     int     `json:"expected"` // entities created (seeded and under load)
	Received     int     `json:"received"` // distinct events
	Repeats      int     `json:"repeats"`
	LagP50MS     float64 `json:"lag_p50_ms"`
	LagP99MS     float64 `json:"lag_p99_ms"`
	LagMaxMS     float64 `json:"lag_max_ms"`
	DrainSeconds float64 `json:"drain_seconds"` // after the load ended, until the last expected event arrived
}

// receiver is the run's webhook endpoint on loopback (the server must
// allow it: WEBHOOK_ALLOW_LOOPBACK=true, in development).
type receiver struct {
	srv  *http.Server
	url  string
	mu   sync.Mutex
	seen map[string]bool
	lags []time.Duration
	reps int
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hooks", seen: map[string]bool{}}
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		var p struct {
			Timestamp time.Time `json:"timestamp"`
		}
		_ = json.Unmarshal(body, &p)
		lag := time.Since(p.Timestamp)
		r.mu.Lock()
		if id := req.Header.Get("webhook-id"); r.seen[id] {
			r.reps++
		} else {
			r.seen[id] = true
			r.lags = append(r.lags, lag)
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// subscribe registers the receiver for the run's tenant's entity.created.
func (r *receiver) subscribe(ctx context.Context, c *client) error {
	status, body, err := c.do(ctx, "POST", "/v1/webhook-endpoints", map[string]any{"url": r.url, "event_types": []string{"entity.created"}})
	if err != nil || status != 201 {
		return fmt.Errorf("create webhook endpoint (the server needs WEBHOOK_ALLOW_LOOPBACK=true): %d %s %v", status, body, err)
	}
	return nil
}

// finish waits up to wait for expected events, then stops the receiver.
func (r *receiver) finish(expected int, ended time.Time, wait time.Duration) WebhookStats {
	deadline := time.Now().Add(wait)
	for r.received() < expected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(ended)
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.srv.Shutdown(sctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := WebhookStats{Expected: expected, Received: len(r.seen), Repeats: r.reps, DrainSeconds: drained.Seconds()}
	sort.Slice(r.lags, func(i, j int) bool { return r.lags[i] < r.lags[j] })
	if n := len(r.lags); n > 0 {
		q := func(p float64) float64 { return float64(r.lags[min(n-1, int(p*float64(n)))].Microseconds()) / 1000 }
		st.LagP50MS, st.LagP99MS, st.LagMaxMS = q(.50), q(.99), float64(r.lags[n-1].Microseconds())/1000
	}
	return st
}
