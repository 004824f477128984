package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
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
	IncrBy(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error)
}

const (
	idempotencyTTL     = 24 * time.Hour
	idempotencyRunning = 5 * time.Minute // a crashed request frees its key after this
	maxBody            = 1 << 20
	// maxIdemResponse is the largest response body an idempotency record
	// keeps. A larger one (a profile with a large delta, say) is recorded
	// as done but not kept: its replay is a 409 that points at the result
	// (Location) instead of a copy, and the work is still done once.
	maxIdemResponse = 2 << 20
	// DefaultIdempotencyBudget is how many bytes of records one credential
	// may keep at once (within idempotencyTTL) unless configured.
	DefaultIdempotencyBudget = 64 << 20
)

// Idempotency errors.
var (
	errIdemReused     = apperr.New(apperr.Invalid, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request")
	errIdemInProgress = apperr.New(apperr.Conflict, "IDEMPOTENCY_IN_PROGRESS", "the first request with this Idempotency-Key is still running")
	errIdemInvalid    = apperr.New(apperr.BadRequest, "BAD_REQUEST", "Idempotency-Key must be 1 to 255 printable ASCII characters")
	errBodyTooLarge   = apperr.New(apperr.TooLarge, "BODY_TOO_LARGE", "request body over 1 MiB")
	errIdemNotKept    = apperr.New(apperr.Conflict, "IDEMPOTENCY_RESPONSE_NOT_KEPT",
		"the first request with this Idempotency-Key succeeded, but its response was too large to keep; fetch the result instead")
	errIdemBudget = apperr.New(apperr.RateLimited, "IDEMPOTENCY_BUDGET_EXCEEDED",
		"this credential keeps too many bytes of idempotency records; retry later or without Idempotency-Key")
)

// idemRecord is a stored idempotency record: what encode writes is a
// length-prefixed JSON head followed by the response body as raw bytes
// (no base64), so a record costs about its response's size.
type idemRecord struct {
	Done    bool              `json:"done"`
	Hash    []byte            `json:"hash"`
	Status  int               `json:"status,omitempty"`
	Header  map[string]string `json:"header,omitempty"`
	NotKept bool              `json:"not_kept,omitempty"`
	Body    []byte            `json:"-"`
}

func (rec idemRecord) encode() ([]byte, error) {
	head, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(head)+len(rec.Body)), uint32(len(head))) //nolint:gosec // small
	return append(append(out, head...), rec.Body...), nil
}

func decodeIdemRecord(b []byte) (idemRecord, error) {
	var rec idemRecord
	if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
		return rec, errors.New("idempotency record truncated")
	}
	n := binary.BigEndian.Uint32(b)
	if err := json.Unmarshal(b[4:4+n], &rec); err != nil {
		return rec, err
	}
	rec.Body = b[4+n:]
	return rec, nil
}

// idemNamespace derives the row id binding a stored record's ciphertext to
// its key.
var idemNamespace = uuid.MustParse("6f1d8a52-3c1e-4c59-9a4e-1d2f3a4b5c6d") //nolint:gochecknoglobals // constant

// idempotency replays the first response of a POST for the same
// credential, Idempotency-Key and request; see API.md. Stored responses are
// encrypted: they can hold personal data and, for new API keys, a secret.
//
// Records are bounded three ways: a response over maxIdemResponse is not
// kept (see errIdemNotKept), one credential's records may hold at most
// budget bytes at a time (429 IDEMPOTENCY_BUDGET_EXCEEDED beyond), and the
// in-process fallback store has a byte bound of its own.
func idempotency(store IdempotencyStore, keys *fieldcrypt.Keys, budget int64, log *slog.Logger) func(http.Handler) http.Handler {
	if budget <= 0 {
		budget = DefaultIdempotencyBudget
	}
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
				fail(headerError(errIdemInvalid, "Idempotency-Key", "1 to 255 printable ASCII characters"))
				return
			}
			body, ok := readBody(w, r)
			if !ok {
				return
			}
			hash := requestHash(r, body)
			sum := sha256.Sum256([]byte(key))
			skey := "idem:{" + p.Credential() + "}:" + hex.EncodeToString(sum[:])
			// Sealed under the tenant's data key (the platform's for platform
			// work): a record of an erased tenant cannot be read either.
			ad := fieldcrypt.AD{Table: "idempotency", Column: "record", Row: uuid.NewSHA1(idemNamespace, []byte(skey)),
				Tenant: scopeOf(r.Context()).Tenant().UUID()}
			seal := func(rec idemRecord) ([]byte, error) {
				b, err := rec.encode()
				if err != nil {
					return nil, err
				}
				return keys.Seal(r.Context(), b, ad)
			}
			bkey := "idemb:{" + p.Credential() + "}"
			used, err := store.IncrBy(r.Context(), bkey, 0, idempotencyTTL)
			if err != nil {
				log.ErrorContext(r.Context(), "idempotency store failed", "err", err)
				fail(apperr.New(apperr.Unavailable, "IDEMPOTENCY_UNAVAILABLE", "idempotency store unavailable; retry later").Wrap(err))
				return
			}
			if used+int64(len(body)) > budget {
				w.Header().Set("Retry-After", "3600")
				fail(errIdemBudget)
				return
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
				plain, oerr := keys.Open(r.Context(), raw, ad)
				if v, _ := fieldcrypt.KeyVersion(raw); oerr != nil && v < fieldcrypt.DEKBase {
					// Written before envelope encryption (at most a day ago),
					// when records were bound to no tenant.
					legacy := ad
					legacy.Tenant = uuid.Nil
					plain, oerr = keys.Open(r.Context(), raw, legacy)
				}
				if oerr == nil {
					rec, oerr = decodeIdemRecord(plain)
				}
				if !ok || oerr != nil {
					fail(apperr.New(apperr.Internal, "IDEMPOTENCY_CORRUPT", "stored idempotency record unreadable"))
					return
				}
				switch {
				case !bytes.Equal(rec.Hash, hash):
					fail(errIdemReused)
				case !rec.Done:
					w.Header().Set("Retry-After", "1")
					fail(errIdemInProgress)
				case rec.NotKept:
					if loc := rec.Header["Location"]; loc != "" {
						w.Header().Set("Location", loc)
					}
					fail(errIdemNotKept.Withf("the first request with this Idempotency-Key succeeded (status %d), but its response was too large to keep; fetch the result instead", rec.Status))
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
				stored := idemRecord{Done: true, Hash: hash, Status: rec.status, Header: hdr, Body: rec.body.Bytes()}
				if len(stored.Body) > maxIdemResponse {
					stored.Body, stored.NotKept = nil, true
				}
				done, err := seal(stored)
				if err == nil {
					err = store.Set(ctx, skey, done, idempotencyTTL)
				}
				if err == nil {
					_, err = store.IncrBy(ctx, bkey, int64(len(done)), idempotencyTTL)
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

// requestHash identifies a request for idempotency: what it asks for, not
// how its bytes are laid out. The body counts as canonical JSON (object
// keys sorted, no insignificant white space, numbers as written), and the
// Content-Type as its media type: the same request re-indented, with its
// keys in another order or a charset parameter added is the same request.
// A body that is not JSON counts as its bytes (it is refused anyway).
func requestHash(r *http.Request, body []byte) []byte {
	h := sha256.New()
	media := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(media); err == nil {
		media = mt
	}
	for _, part := range []string{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Tenant-ID"), media} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(canonicalJSON(body))
	return h.Sum(nil)
}

func canonicalJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return body
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return out
}
