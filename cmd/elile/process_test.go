package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/loadtest"
	"github.com/elile/elile/internal/postgres/pgtest"
)

var (
	binOnce sync.Once //nolint:gochecknoglobals // one build per test run
	binPath string    //nolint:gochecknoglobals
	binErr  error     //nolint:gochecknoglobals
)

// elileBinary builds the real binary once for the process tests.
func elileBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "elile-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "elile")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// server is a running elile serve process.
type server struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr strings.Builder
	exited chan error
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

func startServer(t *testing.T, env []string) *server {
	t.Helper()
	cmd := exec.Command(elileBinary(t), "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), append([]string{"API_PORT=0", "LOG_FORMAT=text", "LOG_LEVEL=INFO",
		"DEV_KEYS_FILE=" + filepath.Join(cmd.Dir, "keys.env")}, env...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			s.url = m[1]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if s.url == "" {
		t.Fatalf("server did not start:\n%s", s.logs())
	}
	return s
}

// sharedEnv is the configuration two instances share: one database, one
// Redis prefix is implied by one Redis, the same keys.
func sharedEnv(t *testing.T, dbURL string, extra ...string) []string {
	t.Helper()
	seed := []string{
		"DATABASE_URL=" + dbURL,
		"ENCRYPTION_KEY=QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
		"API_SECRET_KEY=" + strings.Repeat("s", 40),
		"AUDIT_SIGNING_KEY=QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
		"ENVIRONMENT=development",
		// Small pools: several servers and test packages share one
		// PostgreSQL with 100 connections.
		"DATABASE_POOL_SIZE=4", "DATABASE_MAX_OVERFLOW=2",
	}
	return append(seed, extra...)
}

func platformKey(t *testing.T, env []string) string {
	t.Helper()
	vars := map[string]string{"DEV_KEYS_FILE": filepath.Join(t.TempDir(), "k.env")}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"elile", "apikey", "create", "--platform-admin", "--json"}, env2(vars), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var k struct {
		Secret string `json:"secret"`
	}
	_ = json.Unmarshal([]byte(out.String()), &k)
	return k.Secret
}

// apiCall sends one API request to a server process as key (in tenant tid
// when not empty) and returns its status and body.
func apiCall(client *http.Client, base, method, path, key, tid, body string) (int, []byte, error) {
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body)) //nolint:noctx // test
	req.Header.Set("Authorization", "Bearer "+key)
	if tid != "" {
		req.Header.Set("X-Tenant-ID", tid)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func env2(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestProcess_SIGTERMDuringLoad: in-flight requests complete, nothing
// answers 5xx, the process exits 0.
func TestProcess_SIGTERMDuringLoad(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.DB(t)
	env := sharedEnv(t, dbURL, "RATE_LIMIT_PER_MINUTE=10000000", "RATE_LIMIT_BURST=1000000")
	s := startServer(t, env)
	admin := platformKey(t, env)
	done := make(chan loadtest.Report, 1)
	go func() {
		rep, err := loadtest.Run(context.Background(), loadtest.Config{BaseURL: s.url, AdminKey: admin, Concurrency: 20,
			Duration: 4 * time.Second, Mix: map[string]int{"create_entity": 1, "get_entity": 2}, Seed: 5})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM under load: %v\n%s", err, s.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
	rep := <-done
	if rep.Status5xx != 0 {
		t.Fatalf("%d responses were 5xx during shutdown: %+v", rep.Status5xx, rep.Operations)
	}
	if rep.Requests < 50 {
		t.Fatalf("only %d requests ran before the signal", rep.Requests)
	}
	t.Logf("%d requests answered, %d refused after shutdown began (connection errors), 0 5xx", rep.Requests-rep.Errors, rep.Errors)
}

func leaders(s *server, what string) int { return strings.Count(s.logs(), what+": leading") }

// TestProcess_TwoInstances: two servers, one database, one Redis. A key
// revoked through one is refused by the other within a second; the rate
// limit holds across both; exactly one sealer and one maintainer run, and
// killing their instance hands the work over within 10 s; the audit log
// verifies after both wrote at once.
func TestProcess_TwoInstances(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.DB(t)
	env := sharedEnv(t, dbURL, "RATE_LIMIT_PER_MINUTE=60", "RATE_LIMIT_BURST=6")
	a := startServer(t, env)
	b := startServer(t, env)
	admin := platformKey(t, env)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(base, method, path, key, tid string, body string) (int, string) {
		code, b, err := apiCall(client, base, method, path, key, tid, body)
		if err != nil {
			t.Fatal(err)
		}
		return code, string(b)
	}
	code, body := do(a.url, "POST", "/v1/tenants", admin, "", `{"name":"Two"}`)
	if code != 201 {
		t.Fatalf("tenant: %d %s", code, body)
	}
	var tn struct {
		TenantID string `json:"tenant_id"`
	}
	_ = json.Unmarshal([]byte(body), &tn)
	mkKey := func() (string, string) {
		code, body := do(a.url, "POST", "/v1/api-keys", admin, tn.TenantID, `{"name":"k","scopes":["tenant:admin"]}`)
		if code != 201 {
			t.Fatalf("key: %d %s", code, body)
		}
		var k struct {
			KeyID  string `json:"key_id"`
			Secret string `json:"secret"`
		}
		_ = json.Unmarshal([]byte(body), &k)
		return k.KeyID, k.Secret
	}
	victimID, victim := mkKey()
	_, revoker := mkKey()
	if code, _ := do(b.url, "GET", "/v1/tenant", victim, tn.TenantID, ""); code != 200 {
		t.Fatalf("victim on b before revocation: %d", code)
	}
	if code, _ := do(a.url, "DELETE", "/v1/api-keys/"+victimID, revoker, tn.TenantID, ""); code != 204 {
		t.Fatalf("revoke on a: %d", code)
	}
	start := time.Now()
	for {
		code, _ := do(b.url, "GET", "/v1/tenant", victim, tn.TenantID, "")
		if code == 401 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("b still accepts the key revoked on a after %s", time.Since(start))
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("revoked key refused by the other instance after %s", time.Since(start).Round(time.Millisecond))

	// Shared rate limit: burst 6 over both instances.
	_, shared := mkKey()
	var codes []int
	for i := range 8 {
		base := a.url
		if i%2 == 1 {
			base = b.url
		}
		c, _ := do(base, "GET", "/v1/tenant", shared, tn.TenantID, "")
		codes = append(codes, c)
	}
	if fmt.Sprint(codes) != "[200 200 200 200 200 200 429 429]" {
		t.Fatalf("alternating instances with burst 6: %v", codes)
	}

	// Both write audit events at once.
	_, writer := mkKey()
	_ = writer
	var wg sync.WaitGroup
	for _, s := range []*server{a, b} {
		wg.Go(func() {
			for range 4 {
				do(s.url, "POST", "/v1/entities", admin, tn.TenantID, `{"entity_type":"individual","canonical_identifiers":{"full_name":"x"}}`)
			}
		})
	}
	wg.Wait()

	// Exactly one sealer and one maintainer.
	time.Sleep(3 * time.Second)
	sealers, maint := leaders(a, "audit sealer")+leaders(b, "audit sealer"), leaders(a, "audit partition maintenance")+leaders(b, "audit partition maintenance")
	if sealers != 1 || maint != 1 {
		t.Fatalf("leaders: %d sealers, %d maintainers, want 1 each\nA:\n%s\nB:\n%s", sealers, maint, a.logs(), b.logs())
	}
	leader, other := a, b
	if leaders(b, "audit sealer") == 1 {
		leader, other = b, a
	}
	// Kill the leader hard: the other takes over within 10 s.
	_ = leader.cmd.Process.Kill()
	killed := time.Now()
	for leaders(other, "audit sealer") == 0 || leaders(other, "audit partition maintenance") == 0 {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("no handover within 10s:\n%s", other.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("leadership moved after %s", time.Since(killed).Round(time.Millisecond))
	do(other.url, "POST", "/v1/entities", admin, tn.TenantID, `{"entity_type":"individual","canonical_identifiers":{"full_name":"after"}}`)
	time.Sleep(1500 * time.Millisecond)

	vars := map[string]string{"DEV_KEYS_FILE": filepath.Join(t.TempDir(), "k.env")}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"elile", "audit", "verify"}, env2(vars), &out, io.Discard); err != nil {
		t.Fatalf("audit verify after two writers: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), tn.TenantID+": intact") {
		t.Fatalf("verify output:\n%s", out.String())
	}
	_ = uuid.Nil
}
