package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"go.uber.org/goleak"

	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"))
}

// env is a fake environment; development keys go to a file of the test's.
func env(m map[string]string) func(string) string {
	if m == nil {
		m = map[string]string{}
	}
	if _, ok := m["DEV_KEYS_FILE"]; !ok {
		m["DEV_KEYS_FILE"] = filepath.Join(os.TempDir(), "elile-test-"+uuid.NewString(), "dev-keys.env")
	}
	return func(k string) string { return m[k] }
}

// lockedBuffer is an io.Writer safe to read while run writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRun_Commands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		exit     int
		contains string
	}{
		{"Help", []string{"elile", "help"}, nil, 0, "Commands:"},
		{"Version", []string{"elile", "version"}, nil, 0, "dev"},
		{"Unknown", []string{"elile", "frobnicate"}, nil, 2, ""},
		// Its own database: config check compares the keys with the ones
		// the database recorded, and the developer's own may hold others.
		{"ConfigCheck", []string{"elile", "config", "check"}, map[string]string{"API_SECRET_KEY": strings.Repeat("z", 40), "DATABASE_URL": "template"}, 0, "API_SECRET_KEY=[redacted]"},
		{"ConfigCheckBad", []string{"elile", "config", "check"}, map[string]string{"API_PORT": "-3", "LOG_LEVEL": "loud"}, 2, ""},
		{"ConfigNoSub", []string{"elile", "config"}, nil, 2, ""},
		{"ConfigBadFlag", []string{"elile", "config", "check", "--nope"}, nil, 2, ""},
		{"MigrateNoAction", []string{"elile", "migrate"}, nil, 2, ""},
		{"MigrateBadAction", []string{"elile", "migrate", "sideways"}, nil, 2, ""},
		{"ServeBadFlag", []string{"elile", "serve", "--nope"}, nil, 2, ""},
		{"ServeBadConfig", []string{"elile", "serve"}, map[string]string{"ENVIRONMENT": "production"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.env["DATABASE_URL"] == "template" {
				tc.env["DATABASE_URL"] = pgtest.DB(t)
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, env(tc.env), &out, &errOut)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tc.exit {
				t.Fatalf("exit = %d (%v), want %d", code, err, tc.exit)
			}
			if !strings.Contains(out.String(), tc.contains) {
				t.Errorf("output lacks %q:\n%s", tc.contains, out.String())
			}
			if strings.Contains(out.String()+errOut.String(), strings.Repeat("z", 40)) {
				t.Error("a secret reached the output")
			}
		})
	}
}

func TestRun_ConfigCheckJSONAndErrors(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"elile", "config", "check", "--json"},
		env(map[string]string{"DATABASE_URL": "postgres://u:hunter2@db.internal:5432/elile?sslmode=require",
			"REDIS_URL": "redis://:hunter3@cache:6379/0", "MIGRATION_DATABASE_URL": "postgres://owner@db.internal/elile?password=hunter4"}), &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Valid  bool              `json:"valid"`
		Config map[string]string `json:"config"`
	}
	// Where a URL points is shown; only its password is hidden.
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || !got.Valid ||
		got.Config["DATABASE_URL"] != "postgres://u:xxxxx@db.internal:5432/elile?sslmode=require" ||
		got.Config["REDIS_URL"] != "redis://:xxxxx@cache:6379/0" ||
		got.Config["MIGRATION_DATABASE_URL"] != "postgres://owner@db.internal/elile?password=xxxxx" {
		t.Fatalf("config check --json = %s (%v)", out.String(), err)
	}
	if strings.Contains(out.String(), "hunter") {
		t.Fatalf("a password reached the output: %s", out.String())
	}
	err = run(context.Background(), []string{"elile", "config", "check"},
		env(map[string]string{"ENVIRONMENT": "staging"}), io.Discard, io.Discard)
	for _, name := range []string{"DATABASE_URL", "ENCRYPTION_KEY", "API_SECRET_KEY"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("staging config error does not name %s: %v", name, err)
		}
	}
}

func TestRun_Migrate(t *testing.T) {
	t.Parallel()
	name := "elile_test_cli_" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { pgtest.Drop(t, name) })
	e := env(map[string]string{"DATABASE_URL": pgtest.URLFor(name)})
	ctx := context.Background()
	step := func(action, want string) {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, []string{"elile", "migrate", action}, e, &out, io.Discard); err != nil {
			t.Fatalf("migrate %s: %v", action, err)
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("migrate %s printed %q, want %q", action, out.String(), want)
		}
	}
	latest := fmt.Sprint(postgres.LatestVersion())
	step("up", "applied "+latest) // creates the database in development
	step("up", "schema is up to date")
	step("status", "applied")
	step("redo", "redid "+latest)
	step("down", "rolled back "+latest)
	step("status", "pending")
	for range postgres.LatestVersion() - 1 {
		step("down", "rolled back")
	}
	step("down", "nothing to roll back")
}

// startServe runs "elile serve" in-process and returns its base URL.
func startServe(t *testing.T, ctx context.Context, vars map[string]string) (string, <-chan error) {
	t.Helper()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"elile", "serve"}, env(vars), out, io.Discard) }()
	re := regexp.MustCompile(`listening on (http://\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], done
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before listening: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("serve did not start listening within 20s")
	return "", nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // test
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRun_Serve is the smoke test: run with a fake environment, poll
// /health, stop, and expect a clean return.
func TestRun_Serve(t *testing.T) {
	t.Parallel()
	name := "elile_test_serve_" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { pgtest.Drop(t, name) })
	ctx, cancel := context.WithCancel(context.Background())
	base, done := startServe(t, ctx, map[string]string{
		"DATABASE_URL": pgtest.URLFor(name), "API_PORT": "0", "LOG_LEVEL": "warn",
	})
	if code, body := get(t, base+"/health"); code != 200 || !strings.Contains(body, `"healthy"`) {
		t.Errorf("/health = %d %s", code, body)
	}
	code, body := get(t, base+"/health/ready")
	if code != 200 || !strings.Contains(body, `"migrations"`) || !strings.Contains(body, `"redis"`) {
		t.Errorf("/health/ready = %d %s", code, body)
	}
	// Finding 10 of the hardening review: the audit writer's and sealer's
	// series were never registered, so their alerts could not fire.
	_, metrics := get(t, base+"/metrics")
	for _, family := range []string{"elile_audit_sealing_lag_seconds", "elile_audit_sealer_leading", "elile_audit_seal_rounds_total",
		"elile_audit_sealed_events_total", "elile_audit_forged_seals_seen_total", "elile_audit_writer_events_total",
		"elile_audit_writer_failures_total", "elile_audit_writer_rejected_events_total", "elile_audit_writer_queue_depth",
		"elile_audit_writer_batch_size", "elile_audit_error_events_summarised_total", "elile_http_requests_total",
		"elile_kms_unwraps_total"} {
		if !strings.Contains(metrics, "\n"+family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	checkDeployedMetrics(t, metrics)
	if !strings.Contains(metrics, `elile_http_request_duration_seconds_count{method="GET",route="GET /health/ready",status_class="2xx"}`) {
		t.Error("/metrics: request latency has no status class")
	}
	stopServe(t, cancel, done)
}

// stopServe cancels a server startServe started and waits for it to
// return nil.
func stopServe(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s")
	}
}

func TestRun_ServeRefusesSchemaBehind(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyDB(t)
	err := run(context.Background(), []string{"elile", "serve"}, env(map[string]string{
		"ENVIRONMENT": "staging", "DATABASE_URL": url, "ENCRYPTION_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
		"API_SECRET_KEY": strings.Repeat("s", 32), "API_PORT": "0", "AUDIT_SIGNING_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
		"JWT_ISSUER": "https://idp.test", "JWT_AUDIENCE": "elile",
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "elile migrate up") {
		t.Fatalf("serve on an unmigrated database in staging = %v, want a refusal naming migrate up", err)
	}
}

// Outside development the server refuses a login that is a superuser, has
// BYPASSRLS or owns the tables (finding 12 of the hardening review).
func TestRun_ServeRefusesPowerfulLogin(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	err := run(context.Background(), []string{"elile", "serve"}, env(map[string]string{
		"ENVIRONMENT": "staging", "DATABASE_URL": url, "ENCRYPTION_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
		"API_SECRET_KEY": strings.Repeat("s", 32), "API_PORT": "0", "AUDIT_SIGNING_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
		"JWT_ISSUER": "https://idp.test", "JWT_AUDIENCE": "elile",
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "superuser") || exitCode(err) != 2 {
		t.Fatalf("serve in staging as a superuser = %v (exit %d), want a refusal naming it (exit 2)", err, exitCode(err))
	}
}

func TestRun_ServeDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	for _, environment := range []string{"development", "production"} {
		t.Run(environment, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			err := run(context.Background(), []string{"elile", "serve"}, env(map[string]string{
				"ENVIRONMENT": environment, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/elile?sslmode=disable",
				"ENCRYPTION_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "API_SECRET_KEY": strings.Repeat("s", 32), "AUDIT_SIGNING_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
				"DATABASE_CONNECT_TIMEOUT": "1s", "API_PORT": "0", "JWT_ISSUER": "https://idp.test", "JWT_AUDIENCE": "elile",
			}), io.Discard, io.Discard)
			if err == nil || exitCode(err) == 0 {
				t.Fatalf("serve with PostgreSQL unreachable = %v, want a non-zero exit", err)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %s to give up, want under 15s", took)
			}
		})
	}
}

// TestServeHTTP_GracefulShutdown: a request in flight when the signal comes
// finishes; new connections are refused.
func TestServeHTTP_GracefulShutdown(t *testing.T) {
	t.Parallel()
	inHandler := make(chan struct{})
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		fmt.Fprint(w, "finished")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveHTTP(ctx, srv, ln, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow") //nolint:noctx // test
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-inHandler
	cancel() // the signal arrives mid-request
	// New connections are refused once shutdown starts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections still accepted 5s after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("serveHTTP returned %v before the in-flight request finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request = %d %q %v, want 200 finished", r.code, r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serveHTTP = %v, want nil", err)
	}
}

// TestBinary_SIGTERM builds the real binary, starts it, sends SIGTERM while
// a request is being handled, and expects the request to be answered and
// the process to exit 0. The slow request is a readiness check against a
// Redis that accepts connections and never answers (a black hole), so the
// handler runs for the client's read timeout.
func TestBinary_SIGTERM(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "elile")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	name := "elile_test_sigterm_" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { pgtest.Drop(t, name) })
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir() // no .env there
	cmd.Env = append(os.Environ(), "DATABASE_URL="+pgtest.URLFor(name), "API_PORT=0", "ENVIRONMENT=development",
		"LOG_LEVEL=WARN", "REDIS_URL=redis://"+hole.Addr().String()+"/0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	var addr string
	for lines.Scan() {
		if m := regexp.MustCompile(`listening on http://(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatal("the binary never printed its address")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	type result struct {
		code int
		took time.Duration
		err  error
	}
	res := make(chan result, 1)
	sent := time.Now()
	go func() {
		resp, err := http.Get("http://" + addr + "/health/ready") //nolint:noctx // test
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{code: resp.StatusCode, took: time.Since(sent)}
	}()
	time.Sleep(150 * time.Millisecond) // the handler is waiting on the black hole
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request = %d, %v; want 200 (degraded)", r.code, r.err)
	}
	if r.took < 300*time.Millisecond {
		t.Errorf("request took %s: it was not in flight when SIGTERM came", r.took)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("process still running 20s after SIGTERM")
	}
}

func TestRun_TenantAndKeyCommands(t *testing.T) {
	t.Parallel()
	url := pgtest.DB(t)
	e := env(map[string]string{"DATABASE_URL": url})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"elile", "tenant", "create", "--name", "Acme Screening", "--json"}, e, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var created struct {
		TenantID string `json:"tenant_id"`
		APIKey   struct {
			KeyID  string   `json:"key_id"`
			Secret string   `json:"secret"`
			Scopes []string `json:"scopes"`
		} `json:"api_key"`
	}
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || !strings.HasPrefix(created.APIKey.Secret, "elk_") || created.APIKey.Scopes[0] != "tenant:admin" {
		t.Fatalf("tenant create --json = %s (%v)", out.String(), err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"elile", "apikey", "create", "--tenant", created.TenantID, "--scopes", "entities:read,pii:read", "--json"}, e, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var key struct {
		KeyID    string   `json:"key_id"`
		Secret   string   `json:"secret"`
		Scopes   []string `json:"scopes"`
		TenantID *string  `json:"tenant_id"`
	}
	if err := json.Unmarshal(out.Bytes(), &key); err != nil || key.TenantID == nil || *key.TenantID != created.TenantID || len(key.Scopes) != 2 {
		t.Fatalf("apikey create --json = %s (%v)", out.String(), err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"elile", "apikey", "create", "--platform-admin", "--json"}, e, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"tenant_id":null`) || !strings.Contains(out.String(), "platform:admin") {
		t.Fatalf("platform key = %s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"elile", "tenant", "create", "--name", "Text Output", "--slug", "text-out"}, e, &out, io.Discard); err != nil || !strings.Contains(out.String(), "shown once") {
		t.Fatalf("tenant create = %q, %v", out.String(), err)
	}
	for _, args := range [][]string{
		{"tenant"}, {"tenant", "create"}, {"tenant", "create", "--name", "x", "--slug", "X!"},
		{"apikey"}, {"apikey", "create", "--tenant", "nope", "--scopes", "entities:read"},
		{"apikey", "create", "--tenant", created.TenantID, "--scopes", "platform:admin"},
		{"apikey", "create", "--platform-admin", "--tenant", created.TenantID},
		{"apikey", "create", "--tenant", "01a23866-854f-73bc-9b7e-c8ee4b018561", "--scopes", "entities:read"}, // no such tenant
	} {
		if err := run(context.Background(), append([]string{"elile"}, args...), e, io.Discard, io.Discard); exitCode(err) != 2 {
			t.Errorf("%v = %v, want a usage error", args, err)
		}
	}
	// A duplicate slug is a conflict, not a usage error.
	if err := run(context.Background(), []string{"elile", "tenant", "create", "--name", "Acme Screening"}, e, io.Discard, io.Discard); err == nil || exitCode(err) != 1 {
		t.Errorf("duplicate slug = %v, want exit 1", err)
	}
}

// TestRun_DevBootstrap: the first development start on an empty database
// prints a curl line whose key and tenant work.
func TestRun_DevBootstrap(t *testing.T) {
	t.Parallel()
	name := "elile_test_boot_" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { pgtest.Drop(t, name) })
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	vars := map[string]string{"DATABASE_URL": pgtest.URLFor(name), "API_PORT": "0", "LOG_LEVEL": "warn",
		"DEV_KEYS_FILE": filepath.Join(dir, "dev-keys.env")}
	go func() { done <- run(ctx, []string{"elile", "serve"}, env(vars), out, io.Discard) }()
	re := regexp.MustCompile(`Bearer (elk_\S+)' -H 'X-Tenant-ID: (\S+)'`)
	addrRE := regexp.MustCompile(`listening on (http://\S+)`)
	var m, a []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && (m == nil || a == nil); time.Sleep(20 * time.Millisecond) {
		m, a = re.FindStringSubmatch(out.String()), addrRE.FindStringSubmatch(out.String())
	}
	if m == nil || a == nil {
		t.Fatalf("no curl line and address in:\n%s", out.String())
	}
	req, _ := http.NewRequest("GET", a[1]+"/v1/tenant", nil) //nolint:noctx // test
	req.Header.Set("Authorization", "Bearer "+m[1])
	req.Header.Set("X-Tenant-ID", m[2])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the printed curl line answers %d", resp.StatusCode)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.env")); err != nil || !strings.Contains(string(b), m[1]) {
		t.Errorf("credentials file: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
