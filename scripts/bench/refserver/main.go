// Command refserver is the reference program elile's write and read paths
// are measured against (issue 12): the program a competent developer
// writes first. Plain net/http and pgx, no framework, no authentication,
// no row-level security, no rate limit, no seals; prepared statements; one
// statement per round trip, no pipelining. A create is BEGIN, the entity
// insert, the blind-index insert, the audit insert, COMMIT, with the
// identifiers sealed with AES-256-GCM and the unique ones blind-indexed
// with HMAC-SHA256; a read is BEGIN, the select, an audit insert, COMMIT.
//
// It answers just enough of elile's API for `elile loadtest` (tenants and
// API keys are accepted and ignored beyond a tenant row), on elile's own
// tables: scripts/bench.sh migrates a database with elile and removes its
// row-level security and triggers for this program. Not part of elile.
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type server struct {
	pool  *pgxpool.Pool
	aead  cipher.AEAD
	blind []byte
}

func main() {
	dsn := flag.String("db", "postgres://postgres@127.0.0.1:5432/elile_ref?sslmode=disable", "database URL")
	addr := flag.String("addr", "127.0.0.1:18130", "listen address")
	conns := flag.Int("conns", 30, "pool size (elile's default: 20 + 10 overflow)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConns = int32(*conns) //nolint:gosec // a small flag value
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		log.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{pool: pool, aead: aead, blind: key}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tenants", s.createTenant)
	mux.HandleFunc("POST /v1/api-keys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]string{"secret": "elk_reference"})
	})
	mux.HandleFunc("POST /v1/entities", s.createEntity)
	mux.HandleFunc("GET /v1/entities/{id}", s.getEntity)
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "healthy"})
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *server) createTenant(w http.ResponseWriter, r *http.Request) {
	var in struct{ Name, Slug string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	id := uuid.Must(uuid.NewV7())
	if _, err := s.pool.Exec(r.Context(), `INSERT INTO tenants (tenant_id, name, slug) VALUES ($1, $2, $3)`, id, in.Name, in.Slug); err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"tenant_id": id.String()})
}

var unique = map[string]bool{"ssn": true, "ein": true, "passport": true, "national_id": true, "email": true} //nolint:gochecknoglobals // constant set

func (s *server) seal(plain []byte, row, tenant uuid.UUID) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, append(row[:], tenant[:]...))
}

func (s *server) blindIndex(tenant uuid.UUID, kind, value string) []byte {
	m := hmac.New(sha256.New, s.blind)
	m.Write(tenant[:])
	m.Write([]byte(kind + ":" + value))
	return m.Sum(nil)
}

func (s *server) createEntity(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenant, err := uuid.Parse(r.Header.Get("X-Tenant-ID"))
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	var in struct {
		EntityType           string            `json:"entity_type"`
		CanonicalIdentifiers map[string]string `json:"canonical_identifiers"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	id := uuid.Must(uuid.NewV7())
	plain, _ := json.Marshal(in.CanonicalIdentifiers)
	sealed := s.seal(plain, id, tenant)
	var kinds []string
	var indexes [][]byte
	for k := range in.CanonicalIdentifiers {
		if unique[k] {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	ids := make([]uuid.UUID, len(kinds))
	for i, k := range kinds {
		indexes = append(indexes, s.blindIndex(tenant, k, in.CanonicalIdentifiers[k]))
		ids[i] = uuid.Must(uuid.NewV7())
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var created time.Time
	if err := tx.QueryRow(ctx, `INSERT INTO entities (entity_id, tenant_id, entity_type, identifiers) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		id, tenant, in.EntityType, sealed).Scan(&created); err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	if len(kinds) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index)
			SELECT i, $2, $3, k, b FROM unnest($1::uuid[], $4::text[], $5::bytea[]) AS x(i, k, b)`, ids, id, tenant, kinds, indexes); err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
	}
	if err := audit(ctx, tx, tenant, id, "entity.created"); err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"entity_id": id.String(), "entity_type": in.EntityType, "tenant_id": tenant.String(),
		"created_at": created})
}

func audit(ctx context.Context, tx pgx.Tx, tenant, entity uuid.UUID, typ string) error {
	data, _ := json.Marshal(map[string]any{"entity_type": "individual"})
	_, err := tx.Exec(ctx, `INSERT INTO audit_events (audit_id, tenant_id, event_type, severity, actor_type, correlation_id, entity_id,
		resource_type, resource_id, event_data) VALUES ($1, $2, $3, 'info', 'service', $4, $5, 'entity', $6, $7)`,
		uuid.Must(uuid.NewV7()), tenant, typ, uuid.Must(uuid.NewV7()), entity, entity.String(), data)
	return err
}

func (s *server) getEntity(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenant, err := uuid.Parse(r.Header.Get("X-Tenant-ID"))
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		fail(w, http.StatusNotFound, err)
		return
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var typ string
	var sealed []byte
	var created time.Time
	err = tx.QueryRow(ctx, `SELECT entity_type, identifiers, created_at FROM entities WHERE entity_id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)`,
		id, tenant).Scan(&typ, &sealed, &created)
	if err != nil {
		fail(w, http.StatusNotFound, err)
		return
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], append(id[:], tenant[:]...))
	if err != nil {
		fail(w, http.StatusInternalServerError, fmt.Errorf("open: %w", err))
		return
	}
	var ids map[string]string
	_ = json.Unmarshal(plain, &ids)
	if err := audit(ctx, tx, tenant, id, "data.accessed"); err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entity_id": id.String(), "entity_type": typ, "canonical_identifiers": ids, "created_at": created})
}
