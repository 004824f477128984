package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/postgres"
)

// Finding 14 of the hardening review: a seal inserted without the signing
// key, with a huge horizon_to, stopped sealing while the lag read 0.
func TestSealer_ForgedHorizonIsPassedOver(t *testing.T) {
	t.Parallel()
	b := auditSetup(t)
	ctx := context.Background()
	signer := testSigner(t, 1)
	a := seedTenant(t, b.url, "forged-horizon")
	write := func() {
		ev := event(a, audit.DataAccessed)
		if err := b.db.InTx(ctx, a, func(tx *postgres.Tx) error { return tx.AppendAudit(ctx, b.db, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if n := sealAll(t, b.db, signer, 1); n != 1 {
		t.Fatalf("sealed %d, want 1", n)
	}
	// The attacker: full write access, no signing key.
	superuser(t, b.url, fmt.Sprintf(`INSERT INTO audit_seals (seal_id, tenant_id, seq, horizon_from, horizon_to, event_count,
		cumulative_count, prev_hash, seal_hash, signature, signing_key_id, event_hashes)
		SELECT '%s', tenant_id, seq + 1, horizon_to, '4611686018427387904'::xid8, 0, cumulative_count, seal_hash,
			'\x%064x', '\x00', signing_key_id, '\x' FROM audit_seals WHERE tenant_id = '%s'`, newUUID(), 7, a))
	write()
	time.Sleep(20 * time.Millisecond)
	lag, err := b.db.SealingLag(ctx, signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if lag <= 0 {
		t.Errorf("sealing lag with an unsealed event behind a forged seal = %v, want > 0", lag)
	}
	if n := sealAll(t, b.db, signer, 1); n != 1 {
		t.Fatalf("sealed %d after the forged seal, want 1: the forged horizon stopped sealing", n)
	}
	if b.db.ForgedSealsSeen() == 0 {
		t.Error("the forged seal was not counted")
	}
	if rep := verify(t, b.db, a.UUID(), signer, nil); rep.Status != "tampered" {
		t.Errorf("verify with a forged seal in the chain: %+v, want tampered", rep)
	}
}
