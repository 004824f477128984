package httpapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// flaky is a provider whose unwraps fail while down is set.
type flaky struct {
	kms.Provider
	down atomic.Bool
}

func (f *flaky) Unwrap(ctx context.Context, k kms.KEK, w, ad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	return f.Provider.Unwrap(ctx, k, w, ad)
}

// The kms component: healthy while the provider answers; degraded when it
// does not but data keys in memory serve; unhealthy when none is.
func TestReady_KMSComponent(t *testing.T) {
	t.Parallel()
	local, err := kms.NewLocal(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := &flaky{Provider: local}
	url := pgtest.DB(t)
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url, KMS: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	c := checker{keys: db.DataKeys(), now: time.Now}
	ctx := context.Background()
	if got := c.kms(ctx); got.Status != statusHealthy || got.Detail != "local" {
		t.Fatalf("provider up: %+v", got)
	}
	tn := uuid.Must(uuid.NewV7())
	if _, err := db.DataKeys().Seal(ctx, []byte("x"), fieldcrypt.AD{Table: "t", Column: "c", Row: tn, Tenant: tn}); err != nil {
		t.Fatal(err)
	}
	p.down.Store(true)
	if got := c.kms(ctx); got.Status != statusDegraded {
		t.Fatalf("provider down, keys in memory: %+v", got)
	}
	cold, err := postgres.Open(ctx, postgres.Options{URL: url, KMS: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cold.Close)
	if got := (checker{keys: cold.DataKeys(), now: time.Now}).kms(ctx); got.Status != statusUnhealthy {
		t.Fatalf("provider down, nothing in memory: %+v", got)
	}
}
