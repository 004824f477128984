package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/fieldcrypt"
)

// IdempotencyStore keeps idempotency records (Redis, or in-process).
type IdempotencyStore interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	Del(ctx context.Context, keys ...string) error
}

const (
	idempotencyTTL     = 24 * time.Hour
	idempotencyRunning = 5 * time.Minute // a crashed request frees its key after this
	maxBody            = 1 << 20
)

// Idempotency errors.
var (
	errIdemReused     = apperr.New(apperr.Invalid, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request")
	errIdemInProgress = apperr.New(apperr.Conflict, "IDEMPOTENCY_IN_PROGRESS", "the first request with this Idempotency-Key is still running")
	errIdemInvalid    = apperr.New(apperr.BadRequest, "BAD_REQUEST", "Idempotency-Key must be 1 to 255 printable ASCII characters")
	errBodyTooLarge   = apperr.New(apperr.Invalid, "BODY_TOO_LARGE", "request body over 1 MiB")
)

type idemRecord struct {
	Done   bool              `json:"done"`
	Hash   []byte            `json:"hash"`
	Status int               `json:"status,omitempty"`
	Header map[string]string `json:"header,omitempty"`
	Body   []byte            `json:"body,omitempty"`
}

// idemNamespace derives the row id binding a stored record's ciphertext to
// its key.
var idemNamespace = uuid.MustParse("6f1d8a52-3c1e-4c59-9a4e-1d2f3a4b5c6d") //nolint:gochecknoglobals // constant

// idempotency replays the first response of a POST for the same
// credential, Idempotency-Key and request; see API.md. Stored responses are
// encrypted: they can hold personal data and, for new API keys, a secret.
func idempotency(store IdempotencyStore, ring *fieldcrypt.Keyring, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := r.Header.Get("Idempotency-Key")
			p, authed := auth.PrincipalFrom(r.Context())
			if r.Method != http.MethodPost || key == "" || !authed {
				next.ServeHTTP(w, r)
				return
			}
			fail := func(err error) { writeProblem(w, newProblem(r.Context(), err).Problem) }
			if !validIdemKey(key) {
				fail(errIdemInvalid)
				return
			}
			body, ok := readBody(w, r)
			if !ok {
				return
			}
			h := sha256.New()
			for _, part := range []string{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Tenant-ID"), r.Header.Get("Content-Type")} {
				h.Write([]byte(part))
				h.Write([]byte{0})
			}
			h.Write(body)
			hash := h.Sum(nil)
			sum := sha256.Sum256([]byte(key))
			skey := "idem:{" + p.Credential() + "}:" + hex.EncodeToString(sum[:])
			ad := fieldcrypt.AD{Table: "idempotency", Column: "record", Row: uuid.NewSHA1(idemNamespace, []byte(skey))}
			seal := func(rec idemRecord) ([]byte, error) {
				b, err := json.Marshal(rec)
				if err != nil {
					return nil, err
				}
				return ring.Seal(b, ad)
			}

			running, err := seal(idemRecord{Hash: hash})
			if err != nil {
				fail(err)
				return
			}
			for attempt := 0; ; attempt++ {
				won, err := store.SetNX(r.Context(), skey, running, idempotencyRunning)
				if err != nil {
					log.ErrorContext(r.Context(), "idempotency store failed", "err", err)
					fail(apperr.New(apperr.Unavailable, "IDEMPOTENCY_UNAVAILABLE", "idempotency store unavailable; retry later").Wrap(err))
					return
				}
				if won {
					break
				}
				raw, ok, err := store.Get(r.Context(), skey)
				if err != nil {
					fail(err)
					return
				}
				if !ok && attempt == 0 { // expired between the two calls
					continue
				}
				var rec idemRecord
				plain, oerr := ring.Open(raw, ad)
				if !ok || oerr != nil || json.Unmarshal(plain, &rec) != nil {
					fail(apperr.New(apperr.Internal, "IDEMPOTENCY_CORRUPT", "stored idempotency record unreadable"))
					return
				}
				switch {
				case !bytes.Equal(rec.Hash, hash):
					fail(errIdemReused)
				case !rec.Done:
					fail(errIdemInProgress)
				default:
					for k, v := range rec.Header {
						w.Header().Set(k, v)
					}
					w.Header().Set("Idempotent-Replayed", "true")
					w.WriteHeader(rec.Status)
					_, _ = w.Write(rec.Body)
				}
				return
			}

			rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
			ctx := context.WithoutCancel(r.Context())
			defer func() {
				if p := recover(); p != nil {
					_ = store.Del(ctx, skey) // a panic frees the key for a retry
					panic(p)
				}
			}()
			next.ServeHTTP(rec, r)
			if rec.status < 500 {
				hdr := map[string]string{}
				for _, k := range []string{"Content-Type", "Location"} {
					if v := rec.header.Get(k); v != "" {
						hdr[k] = v
					}
				}
				done, err := seal(idemRecord{Done: true, Hash: hash, Status: rec.status, Header: hdr, Body: rec.body.Bytes()})
				if err == nil {
					err = store.Set(ctx, skey, done, idempotencyTTL)
				}
				if err != nil {
					log.ErrorContext(ctx, "idempotency record not stored", "err", err)
				}
			} else if err := store.Del(ctx, skey); err != nil {
				log.ErrorContext(ctx, "idempotency key not released", "err", err)
			}
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
		})
	}
}

func validIdemKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := range len(k) {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// bufferedResponse holds a response until it is stored and sent.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}
