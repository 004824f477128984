package webhook_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elile/elile/docs/webhooks/receiver"
	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
	"github.com/elile/elile/internal/webhook"
)

// bundle is a database with the webhook store and the services that make
// changes (and so events).
type bundle struct {
	url      string
	db       *postgres.DB
	store    *postgres.WebhookStore
	tenancy  *tenancy.Service
	entities *entity.Service
	hooks    *webhook.Service
}

func setup(t *testing.T) *bundle { t.Helper(); return setupWith(t, "") }

// setupWith is setup with the pool through the transaction pooler at
// pooler (none when empty).
func setupWith(t *testing.T, pooler string) *bundle {
	t.Helper()
	url := pgtest.DB(t)
	ring, err := fieldcrypt.NewKeyring(map[uint32][]byte{1: bytes.Repeat([]byte{1}, 32)}, 1, bytes.Repeat([]byte{0xbb}, 32))
	if err != nil {
		t.Fatal(err)
	}
	o := postgres.Options{URL: url, Keyring: ring}
	if pooler != "" {
		o.URL, o.TransactionPooler, o.DirectURL = strings.Replace(url, "127.0.0.1:5432", pooler, 1), true, url
	}
	db, err := postgres.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	writer := audit.NewWriter(db, log, 1000, 100)
	ctx, stop := context.WithCancel(context.Background())
	go writer.Run(ctx)
	t.Cleanup(func() { stop(); writer.Wait() })
	return &bundle{url: url, db: db, store: db.Webhooks(), tenancy: tenancy.NewService(db.Tenancy(), nil),
		entities: entity.NewService(db.Entities(), writer, nil),
		hooks:    webhook.NewService(db.Webhooks(), webhook.Options{AllowLoopback: true})}
}

func (b *bundle) tenant(t *testing.T, name string) tenant.ID {
	t.Helper()
	c, err := b.tenancy.Create(context.Background(), tenancy.NewTenant{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return c.Tenant.ID
}

func (b *bundle) entity(t *testing.T, id tenant.ID) string {
	t.Helper()
	e, err := b.entities.Create(context.Background(), tenant.Of(id), entity.NewEntity{Type: "individual",
		Identifiers: map[string]string{"full_name": "Ada"}})
	if err != nil {
		t.Fatal(err)
	}
	return e.ID.String()
}

func (b *bundle) endpoint(t *testing.T, id tenant.ID, url string, types ...string) (webhook.Endpoint, string) {
	t.Helper()
	ep, secret, err := b.hooks.Create(context.Background(), id, webhook.NewEndpoint{URL: url, EventTypes: types})
	if err != nil {
		t.Fatal(err)
	}
	return ep, secret
}

// clock is an injectable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sink is a receiver: it verifies each delivery with the documented code
// and records what it accepted; status decides its answer.
type sink struct {
	t       *testing.T
	srv     *httptest.Server
	secret  atomic.Value // string
	status  atomic.Int32
	now     func() time.Time
	mu      sync.Mutex
	got     []delivered
	bad     int
	arrived chan struct{}
}

type delivered struct {
	id      string
	payload []byte
	sigs    string
}

func newSink(t *testing.T, now func() time.Time) *sink {
	t.Helper()
	s := &sink{t: t, now: now, arrived: make(chan struct{}, 100000)}
	s.status.Store(http.StatusOK)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		st := int(s.status.Load())
		if st >= 200 && st < 300 {
			if sec, _ := s.secret.Load().(string); sec != "" {
				if err := receiver.Verify(sec, r.Header, body, 5*time.Minute, s.now()); err != nil {
					s.mu.Lock()
					s.bad++
					s.mu.Unlock()
					http.Error(w, err.Error(), http.StatusUnauthorized)
					return
				}
			}
			s.mu.Lock()
			s.got = append(s.got, delivered{id: r.Header.Get("webhook-id"), payload: body, sigs: r.Header.Get("webhook-signature")})
			s.mu.Unlock()
			s.arrived <- struct{}{}
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte("status " + strconv.Itoa(st)))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) received() []delivered {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivered(nil), s.got...)
}

func (s *sink) ids() map[string]int {
	out := map[string]int{}
	for _, d := range s.received() {
		out[d.id]++
	}
	return out
}
