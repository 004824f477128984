package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/tenant"
)

// A record stored before envelope encryption (sealed by the environment
// keyring, bound to no tenant) is still replayed after the upgrade, for
// the day it lives.
func TestIdempotency_ReplaysARecordFromBeforeEnvelopeEncryption(t *testing.T) {
	t.Parallel()
	store := kv.NewMemory(nil)
	tid := tenant.NewID()
	var ran int
	h := withRequestContext(time.Now)(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := auth.NewPrincipal("key:legacy", uuid.Nil, uuid.Nil, auth.ActorService, tid, nil, time.Time{})
			next.ServeHTTP(w, r.WithContext(tenant.WithScope(auth.WithPrincipal(r.Context(), p), tid)))
		})
	}(idempotency(store, testKeys(t), 0, quietLogger())(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ran++
		w.WriteHeader(201)
	}))))

	// The record as the previous version wrote it.
	hash := sha256.New()
	for _, part := range []string{"POST", "/v1/x", "", "", "application/json"} {
		hash.Write([]byte(part))
		hash.Write([]byte{0})
	}
	hash.Write([]byte("{}"))
	sum := sha256.Sum256([]byte("before-upgrade"))
	skey := "idem:{key:legacy}:" + hex.EncodeToString(sum[:])
	b, err := idemRecord{Done: true, Hash: hash.Sum(nil), Status: 201, Body: []byte(`{"from":"before"}`)}.encode()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := testKeyring(t).Seal(b, fieldcrypt.AD{Table: "idempotency", Column: "record", Row: uuid.NewSHA1(idemNamespace, []byte(skey))})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Set(context.Background(), skey, ct, time.Hour); err != nil {
		t.Fatal(err)
	}

	rec := call(t, h, req{method: "POST", path: "/v1/x", body: "{}", hdr: map[string]string{"Idempotency-Key": "before-upgrade"}})
	if rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "true" || rec.Body.String() != `{"from":"before"}` || ran != 0 {
		t.Fatalf("replay of a record from before the upgrade: %d %q (handler ran %d times)", rec.Code, rec.Body, ran)
	}
}
