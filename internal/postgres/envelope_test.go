package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/kms/kmstest"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/tenant"
)

// watched is a provider that counts its calls and can be made unreachable.
type watched struct {
	kms.Provider
	calls atomic.Int64
	down  atomic.Bool
}

var errDown = errors.New("connection refused")

func (w *watched) call() error {
	w.calls.Add(1)
	if w.down.Load() {
		return errDown
	}
	return nil
}

func (w *watched) CreateKEK(ctx context.Context, label string) (kms.KEK, error) {
	if err := w.call(); err != nil {
		return kms.KEK{}, err
	}
	return w.Provider.CreateKEK(ctx, label)
}

func (w *watched) Wrap(ctx context.Context, k kms.KEK, dek, ad []byte) ([]byte, error) {
	if err := w.call(); err != nil {
		return nil, err
	}
	return w.Provider.Wrap(ctx, k, dek, ad)
}

func (w *watched) Unwrap(ctx context.Context, k kms.KEK, wrapped, ad []byte) ([]byte, error) {
	if err := w.call(); err != nil {
		return nil, err
	}
	return w.Provider.Unwrap(ctx, k, wrapped, ad)
}

// TestEnvelope_EveryProvider runs the same attacks on tenant keys over each
// provider: SoftHSM2 (PKCS#11), the AWS KMS emulator, and the local one.
// Not parallel: the PKCS#11 library reads SOFTHSM2_CONF once per process.
func TestEnvelope_EveryProvider(t *testing.T) {
	local, err := kms.NewLocal(bytes.Repeat([]byte{5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]func(t *testing.T) kms.Provider{
		"local":  func(*testing.T) kms.Provider { return local },
		"pkcs11": func(t *testing.T) kms.Provider { return kmstest.SoftHSM(t) },
		"awskms": func(t *testing.T) kms.Provider { return kmstest.AWS(t) },
	} {
		t.Run(name, func(t *testing.T) { envelopeAttacks(t, &watched{Provider: p(t)}) })
	}
}

func envelopeAttacks(t *testing.T, p *watched) {
	ctx := context.Background()
	b := setup(t, postgres.Options{KMS: p})
	keys := b.db.DataKeys()
	a, c := seedTenant(t, b.url, "env-a"), seedTenant(t, b.url, "env-c")
	adOf := func(row uuid.UUID, tn uuid.UUID) fieldcrypt.AD {
		return fieldcrypt.AD{Table: "entities", Column: "identifiers", Row: row, Tenant: tn}
	}
	r1, r2 := newUUID(), newUUID()
	seal := func(pt string, ad fieldcrypt.AD) []byte {
		t.Helper()
		ct, err := keys.Seal(ctx, []byte(pt), ad)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	ct1 := seal(`{"ssn":"123456789"}`, adOf(r1, a.UUID()))
	ct2 := seal(`{"ssn":"987654321"}`, adOf(r2, a.UUID()))
	ctC := seal(`{"ssn":"123456789"}`, adOf(r1, c.UUID()))

	if pt, err := keys.Open(ctx, ct1, adOf(r1, a.UUID())); err != nil || string(pt) != `{"ssn":"123456789"}` {
		t.Fatalf("round trip: %q, %v", pt, err)
	}
	va, _ := fieldcrypt.KeyVersion(ct1)
	vc, _ := fieldcrypt.KeyVersion(ctC)
	if va < fieldcrypt.DEKBase || vc < fieldcrypt.DEKBase || va == vc {
		t.Fatalf("key ids: tenant a %d, tenant c %d; want two tenant keys", va, vc)
	}

	attacks := map[string]func() error{
		"SwappedRows":       func() error { _, err := keys.Open(ctx, ct2, adOf(r1, a.UUID())); return err },
		"OtherTenantsAD":    func() error { _, err := keys.Open(ctx, ct1, adOf(r1, c.UUID())); return err },
		"OtherTenantsValue": func() error { _, err := keys.Open(ctx, ctC, adOf(r1, a.UUID())); return err },
		"OtherTenantsKeyIDSet": func() error {
			x := bytes.Clone(ctC)
			copy(x[1:5], ct1[1:5])
			_, err := keys.Open(ctx, x, adOf(r1, c.UUID()))
			return err
		},
	}
	for i := range ct1 {
		attacks["FlipByte"+string(rune('A'+i%26))+string(rune('a'+i/26))] = func() error {
			x := bytes.Clone(ct1)
			x[i] ^= 0x01
			_, err := keys.Open(ctx, x, adOf(r1, a.UUID()))
			return err
		}
	}
	for name, attack := range attacks {
		if err := attack(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}

	// Blind indexes: per tenant, stable when re-read from the database.
	bi := func(tn uuid.UUID) []byte {
		x, err := keys.BlindIndex(ctx, tn, "ssn", "123456789")
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	biA := bi(a.UUID())
	if bytes.Equal(biA, bi(c.UUID())) {
		t.Error("two tenants' blind indexes of one value are equal")
	}
	keys.Forget(a.UUID())
	if !bytes.Equal(biA, bi(a.UUID())) {
		t.Error("the blind index changed when the keys were read again")
	}

	// A wrapped key copied to another tenant's row does not unwrap there.
	pgtest.Exec(t, b.url, `UPDATE tenant_keys SET wrapped = (SELECT wrapped FROM tenant_keys WHERE tenant_id = $1 AND purpose = 'data')
		WHERE tenant_id = $2 AND purpose = 'data'`, a.UUID(), c.UUID())
	keys.Forget(c.UUID())
	if _, err := keys.Open(ctx, ctC, adOf(r1, c.UUID())); err == nil {
		t.Error("tenant c's value opened under tenant a's wrapped key")
	}

	// Warm: a thousand seals and opens reach neither the provider nor the
	// database, from many goroutines at once.
	if _, err := keys.Open(ctx, ct1, adOf(r1, a.UUID())); err != nil {
		t.Fatal(err)
	}
	before := p.calls.Load()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 100 {
				ct, err := keys.Seal(ctx, []byte("x"), adOf(r1, a.UUID()))
				if err == nil {
					_, err = keys.Open(ctx, ct, adOf(r1, a.UUID()))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := p.calls.Load() - before; n != 0 {
		t.Errorf("%d provider calls with the keys cached, want 0", n)
	}

	// Provider unreachable: the cached tenant keeps working; another, not
	// cached, gets KEY_UNAVAILABLE (503), and a new tenant cannot be made.
	p.down.Store(true)
	defer p.down.Store(false)
	if _, err := keys.Open(ctx, ct1, adOf(r1, a.UUID())); err != nil {
		t.Errorf("cached tenant with the provider down: %v", err)
	}
	d := seedTenant(t, b.url, "env-d")
	if _, err := keys.Seal(ctx, []byte("x"), adOf(r1, d.UUID())); !errors.Is(err, fieldcrypt.ErrKeyUnavailable) {
		t.Errorf("uncached tenant with the provider down = %v, want KEY_UNAVAILABLE", err)
	}
}

// BenchmarkKeys_Warm seals and opens a 300-byte value with the tenant's
// keys in memory, per provider, against the environment keyring alone
// (how every value was sealed before envelope encryption). With warm keys
// no provider is called, so the providers should cost the same; the gap to
// the keyring is the envelope's own overhead (a map look-up and building
// the AES-GCM cipher from the cached key).
func BenchmarkKeys_Warm(b *testing.B) {
	ctx := context.Background()
	legacy := testRing(&testing.T{}, 1, 1)
	local, _ := kms.NewLocal(bytes.Repeat([]byte{5}, 32))
	providers := []struct {
		name string
		p    func(b *testing.B) kms.Provider
	}{
		{"local", func(*testing.B) kms.Provider { return local }},
		{"pkcs11-softhsm2", func(b *testing.B) kms.Provider { return kmstest.SoftHSM(b) }},
		{"awskms-emulator", func(b *testing.B) kms.Provider { return kmstest.AWS(b) }},
	}
	pt := bytes.Repeat([]byte("x"), 300)
	tn := uuid.Must(uuid.NewV7())
	ad := fieldcrypt.AD{Table: "entities", Column: "identifiers", Row: tn, Tenant: tn}
	b.Run("environment-keyring", func(b *testing.B) {
		for b.Loop() {
			ct, _ := legacy.Seal(pt, ad)
			if _, err := legacy.Open(ct, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, pr := range providers {
		b.Run(pr.name, func(b *testing.B) {
			url := pgtest.DB(b)
			db, err := postgres.Open(ctx, postgres.Options{URL: url, KMS: pr.p(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			keys := db.DataKeys()
			if _, err := keys.Seal(ctx, pt, ad); err != nil { // warm
				b.Fatal(err)
			}
			for b.Loop() {
				ct, err := keys.Seal(ctx, pt, ad)
				if err == nil {
					_, err = keys.Open(ctx, ct, ad)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// One tenant's missing key never fails another tenant's audit events: in
// one group-commit batch, the event whose tenant key cannot be had is
// written without its data and only its request fails (KEY_UNAVAILABLE);
// the other tenant's event is written whole.
func TestWriter_OneTenantsKeyNeverFailsABatch(t *testing.T) {
	t.Parallel()
	local, err := kms.NewLocal(bytes.Repeat([]byte{6}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := &watched{Provider: local}
	b := setup(t, postgres.Options{KMS: p})
	ctx := context.Background()
	a, c := seedTenant(t, b.url, "writer-keys-a"), seedTenant(t, b.url, "writer-keys-c")
	if _, err := b.db.DataKeys().Seal(ctx, []byte("warm"), fieldcrypt.AD{Tenant: a.UUID()}); err != nil {
		t.Fatal(err)
	}
	p.down.Store(true) // c has no keys yet and cannot get them now

	w := audit.NewWriter(b.db, quietLog(), 100, 100)
	wctx, stop := context.WithCancel(ctx)
	go w.Run(wctx)
	defer func() { stop(); w.Wait() }()
	evA, evC := event(a, audit.DataAccessed), event(c, audit.DataAccessed)
	errs := make(chan error, 2)
	go func() { errs <- w.Write(ctx, evA) }()
	go func() { errs <- w.Write(ctx, evC) }()
	var failed []error
	for range 2 {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) != 1 || !errors.Is(failed[0], fieldcrypt.ErrKeyUnavailable) {
		t.Fatalf("write errors = %v, want one KEY_UNAVAILABLE", failed)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1 AND event_data IS NOT NULL", evA.ID); n != 1 {
		t.Error("tenant a's event was not written whole")
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM audit_events WHERE audit_id = $1 AND event_data IS NULL", evC.ID); n != 1 {
		t.Error("tenant c's event was not written without its data")
	}
}

// destroys counts DestroyKEK calls.
type destroys struct {
	*watched
	destroyed []kms.KEK
}

func (d *destroys) DestroyKEK(ctx context.Context, k kms.KEK) error {
	d.destroyed = append(d.destroyed, k)
	return d.watched.DestroyKEK(ctx, k)
}

// Creating a tenant is atomic, provider included: when its unit of work
// fails (a taken slug, found at commit) the KEK made for it is destroyed
// and no row of it stays; with the provider down, nothing is made at all.
func TestTenantCreate_AtomicWithItsKeys(t *testing.T) {
	t.Parallel()
	local, err := kms.NewLocal(bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := &destroys{watched: &watched{Provider: local}}
	b := setup(t, postgres.Options{KMS: p})
	ctx := context.Background()
	svc := tenancy.NewService(b.db.Tenancy(), nil)
	if _, err := svc.Create(ctx, tenancy.NewTenant{Name: "First", Slug: "atomic"}); err != nil {
		t.Fatal(err)
	}
	second := tenant.NewID()
	if _, err := svc.Create(ctx, tenancy.NewTenant{ID: second, Name: "Second", Slug: "atomic"}); !errors.Is(err, tenant.ErrSlugTaken) {
		t.Fatalf("second tenant with the slug = %v", err)
	}
	if len(p.destroyed) != 1 || p.destroyed[0].Label != "elile/tenant/"+second.String() {
		t.Fatalf("KEKs destroyed after the failed creation = %+v, want the second tenant's", p.destroyed)
	}
	for _, q := range []string{"SELECT count(*) FROM tenant_keks WHERE tenant_id = $1", "SELECT count(*) FROM tenant_keys WHERE tenant_id = $1",
		"SELECT count(*) FROM tenants WHERE tenant_id = $1"} {
		if n := countRows(t, b.url, q, second.UUID()); n != 0 {
			t.Errorf("%s = %d after the failed creation", q, n)
		}
	}
	p.down.Store(true)
	third := tenant.NewID()
	if _, err := svc.Create(ctx, tenancy.NewTenant{ID: third, Name: "Third", Slug: "atomic-3"}); !errors.Is(err, fieldcrypt.ErrKeyUnavailable) {
		t.Fatalf("creation with the provider down = %v, want KEY_UNAVAILABLE", err)
	}
	if n := countRows(t, b.url, "SELECT count(*) FROM tenants WHERE tenant_id = $1", third.UUID()); n != 0 {
		t.Error("a tenant was stored without its keys")
	}
}
