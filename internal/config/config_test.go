package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elile/elile/internal/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad_DevelopmentDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(env(nil))
	if err != nil {
		t.Fatalf("Load with no environment: %v", err)
	}
	if cfg.Environment != config.Development || cfg.Addr() != "127.0.0.1:8000" || cfg.LogFormat != "text" || cfg.LogLevel != "INFO" {
		t.Errorf("defaults = env %s addr %s format %s level %s", cfg.Environment, cfg.Addr(), cfg.LogFormat, cfg.LogLevel)
	}
	if cfg.DatabaseURL.Reveal() != config.DevDatabaseURL || cfg.RedisURL.Reveal() != config.DevRedisURL {
		t.Errorf("development connection defaults = %q, %q", cfg.DatabaseURL.Reveal(), cfg.RedisURL.Reveal())
	}
	if cfg.DatabasePoolSize != 20 || cfg.DatabaseMaxOverflow != 10 || cfg.ShutdownTimeout != 30*time.Second {
		t.Errorf("pool %d+%d, shutdown %s", cfg.DatabasePoolSize, cfg.DatabaseMaxOverflow, cfg.ShutdownTimeout)
	}
}

func TestLoad_ProductionNeedsExplicitSecrets(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env(map[string]string{"ENVIRONMENT": "production", "DEBUG": "true"}))
	if err == nil {
		t.Fatal("production with no secrets loaded")
	}
	for _, name := range []string{"DATABASE_URL", "ENCRYPTION_KEY", "API_SECRET_KEY", "AUDIT_SIGNING_KEY", "DEBUG", "JWT_ISSUER", "JWT_AUDIENCE"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	cfg, err := config.Load(env(map[string]string{
		"ENVIRONMENT": "staging", "DATABASE_URL": "postgres://u:p@db:5432/elile",
		"ENCRYPTION_KEY": strings.Repeat("A", 43) + "=", "API_SECRET_KEY": strings.Repeat("s", 32), "AUDIT_SIGNING_KEY": strings.Repeat("B", 43) + "=",
		"JWT_ISSUER": "https://idp.example", "JWT_AUDIENCE": "elile",
	}))
	if err != nil {
		t.Fatalf("staging with secrets: %v", err)
	}
	if cfg.LogFormat != "json" || cfg.RedisURL != "" {
		t.Errorf("staging: format %q redis %q, want json and no default Redis", cfg.LogFormat, cfg.RedisURL)
	}
}

// Behind a transaction pooler: named prepared statements are refused, and
// outside development leader election needs a direct URL.
func TestLoad_TransactionPooler(t *testing.T) {
	t.Parallel()
	prod := map[string]string{
		"ENVIRONMENT": "production", "DATABASE_URL": "postgres://u:p@pgbouncer:6432/elile", "DATABASE_POOL_MODE": "transaction",
		"ENCRYPTION_KEY": strings.Repeat("A", 43) + "=", "API_SECRET_KEY": strings.Repeat("s", 32), "AUDIT_SIGNING_KEY": strings.Repeat("B", 43) + "=",
		"JWT_ISSUER": "https://idp.example", "JWT_AUDIENCE": "elile", "KMS_PROVIDER": "aws", "AWS_KMS_KEY_ID": "alias/elile",
	}
	_, err := config.Load(env(prod))
	if err == nil || !strings.Contains(err.Error(), "DATABASE_DIRECT_URL:") {
		t.Errorf("transaction pooling without a direct URL: %v", err)
	}
	prod["DATABASE_DIRECT_URL"] = "postgres://u:p@db:5432/elile"
	prod["DATABASE_EXEC_MODE"] = "cache_statement"
	if _, err := config.Load(env(prod)); err == nil || !strings.Contains(err.Error(), "DATABASE_EXEC_MODE:") {
		t.Errorf("transaction pooling with named prepared statements: %v", err)
	}
	delete(prod, "DATABASE_EXEC_MODE")
	if _, err := config.Load(env(prod)); err != nil && strings.Contains(err.Error(), "DATABASE_") {
		t.Errorf("transaction pooling, direct URL, default exec mode: %v", err)
	}
	for k, v := range map[string]string{"DATABASE_POOL_MODE": "statement", "DATABASE_EXEC_MODE": "fast", "DATABASE_DIRECT_URL": "http://x"} {
		if _, err := config.Load(env(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), k+":") {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

// Every bad variable is reported at once, by name and why.
func TestLoad_ReportsEveryProblem(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"ENVIRONMENT":           "qa",
		"LOG_LEVEL":             "chatty",
		"LOG_FORMAT":            "xml",
		"API_PORT":              "70000",
		"API_HOST":              "a b",
		"DATABASE_URL":          "mysql://x/y",
		"DATABASE_POOL_SIZE":    "0",
		"DATABASE_MAX_OVERFLOW": "-1",
		"REDIS_URL":             "http://x",
		"DEFAULT_TENANT_ID":     "nope",
		"CORS_ORIGINS":          "https://ok.example,ftp://bad",
		"SHUTDOWN_TIMEOUT":      "-1s",
		"API_SECRET_KEY":        "short",
	}
	_, err := config.Load(env(bad))
	if err == nil {
		t.Fatal("bad configuration loaded")
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("error repeats a secret's value:\n%v", err)
	}

	_, err = config.Load(env(map[string]string{"API_PORT": "eighty", "DEBUG": "maybe", "HTTP_READ_TIMEOUT": "soon"}))
	for _, name := range []string{"API_PORT", "DEBUG", "HTTP_READ_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("type error does not name %s: %v", name, err)
		}
	}
}

func TestSecret_NeverPrinted(t *testing.T) {
	t.Parallel()
	s := config.Secret("hunter2-very-secret")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "s", s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "s", s)
	js, _ := json.Marshal(struct{ S config.Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s", s, s), logs.String(), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2-very-secret" || config.Secret("").String() != "" {
		t.Error("Reveal or empty String wrong")
	}
	cfg, err := config.Load(env(map[string]string{"DATABASE_URL": "postgres://u:pw-123@h/db", "API_SECRET_KEY": strings.Repeat("k", 40)}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range cfg.Redacted() {
		if strings.Contains(p[1], "pw-123") || strings.Contains(p[1], "kkkk") {
			t.Errorf("Redacted shows %s=%s", p[0], p[1])
		}
	}
}

func TestWithDotEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	if err := os.WriteFile(path, []byte("API_PORT=9001\nLOG_LEVEL=debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv, err := config.WithDotEnv(env(map[string]string{"LOG_LEVEL": "WARN"}), path)
	if err != nil {
		t.Fatal(err)
	}
	if getenv("API_PORT") != "9001" || getenv("LOG_LEVEL") != "WARN" {
		t.Errorf("API_PORT=%q LOG_LEVEL=%q; want the file's port and the process's level", getenv("API_PORT"), getenv("LOG_LEVEL"))
	}
	getenv, err = config.WithDotEnv(env(map[string]string{"ENVIRONMENT": "production"}), path)
	if err != nil || getenv("API_PORT") != "" {
		t.Errorf("production read .env: API_PORT=%q, %v", getenv("API_PORT"), err)
	}
	if _, err := config.WithDotEnv(env(nil), filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing .env: %v", err)
	}
	if err := os.WriteFile(path, []byte("BROKEN='unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.WithDotEnv(env(nil), path); err == nil {
		t.Error("malformed .env accepted")
	}
}

// TestEnvExample keeps .env.example and the configuration code in step.
func TestEnvExample(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#?\s?([A-Z][A-Z0-9_]+)=`)
	var documented []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	var names []string
	for _, v := range config.Variables() {
		names = append(names, v.Name)
		if !slices.Contains(documented, v.Name) {
			t.Errorf(".env.example lacks %s", v.Name)
		}
		if v.Description == "" || v.Type == "" {
			t.Errorf("%s has no description or type", v.Name)
		}
	}
	for _, d := range documented {
		if !slices.Contains(names, d) {
			t.Errorf(".env.example documents %s, which the code does not read", d)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("API_PORT", "8000")
	f.Add("CORS_ORIGINS", "https://a.example,https://b.example")
	f.Add("DATABASE_URL", "postgres://u@h/db")
	f.Fuzz(func(t *testing.T, key, value string) {
		_, _ = config.Load(env(map[string]string{key: value})) // must not panic
	})
}

func TestWithDevKeys(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "dev.env")
	vars := map[string]string{"DEV_KEYS_FILE": path}
	getenv, generated, err := config.WithDevKeys(env(vars))
	if err != nil || len(generated) != 3 {
		t.Fatalf("first run: generated %v, %v; want three keys", generated, err)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatalf("Load with generated keys: %v", err)
	}
	keys, active, _ := cfg.EncryptionKeyring()
	if len(keys[1]) != 32 || active != 1 {
		t.Fatalf("generated keyring: %d keys, active %d", len(keys), active)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v, %v; want mode 0600", st, err)
	}
	// The second run reuses the same keys.
	getenv2, generated, err := config.WithDevKeys(env(vars))
	if err != nil || len(generated) != 0 || getenv2("ENCRYPTION_KEY") != getenv("ENCRYPTION_KEY") {
		t.Fatalf("second run generated %v (%v) or changed the key", generated, err)
	}
	// The environment wins over the file; production never generates.
	getenv3, _, _ := config.WithDevKeys(env(map[string]string{"DEV_KEYS_FILE": path, "API_SECRET_KEY": "from-env"}))
	if getenv3("API_SECRET_KEY") != "from-env" {
		t.Error("environment did not take precedence over the keys file")
	}
	prodPath := filepath.Join(t.TempDir(), "prod.env")
	getenv4, generated, err := config.WithDevKeys(env(map[string]string{"ENVIRONMENT": "production", "DEV_KEYS_FILE": prodPath}))
	if err != nil || len(generated) != 0 || getenv4("ENCRYPTION_KEY") != "" {
		t.Errorf("production generated keys: %v %v", generated, err)
	}
	if _, err := os.Stat(prodPath); err == nil {
		t.Error("production wrote a keys file")
	}
}

func TestEncryptionKeys(t *testing.T) {
	t.Parallel()
	k1 := strings.Repeat("A", 43) + "="
	k2 := strings.Repeat("B", 43) + "="
	cfg, err := config.Load(env(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ", 2:" + k2}))
	if err != nil {
		t.Fatal(err)
	}
	keys, active, blind := cfg.EncryptionKeyring()
	if len(keys) != 2 || active != 2 || blind != nil {
		t.Errorf("keyring: %d keys, active %d, blind %v", len(keys), active, blind)
	}
	cfg, err = config.Load(env(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ",2:" + k2, "ENCRYPTION_ACTIVE_KEY": "1"}))
	if _, active, _ := cfg.EncryptionKeyring(); err != nil || active != 1 {
		t.Errorf("explicit active: %d, %v", active, err)
	}
	for name, vars := range map[string]map[string]string{
		"ENCRYPTION_KEY":        {"ENCRYPTION_KEY": "c2hvcnQ="},
		"ENCRYPTION_KEYS":       {"ENCRYPTION_KEYS": "1:" + k1 + ",x"},
		"ENCRYPTION_ACTIVE_KEY": {"ENCRYPTION_KEYS": "1:" + k1, "ENCRYPTION_ACTIVE_KEY": "3"},
		"BLIND_INDEX_KEY":       {"ENCRYPTION_KEYS": "2:" + k2},
	} {
		_, err := config.Load(env(vars))
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("%v: %v, want an error naming %s", vars, err, name)
		}
		if err != nil && (strings.Contains(err.Error(), k1) || strings.Contains(err.Error(), k2)) {
			t.Errorf("error shows key material: %v", err)
		}
	}
	if _, err := config.Load(env(map[string]string{"ENCRYPTION_KEYS": "1:" + k1 + ",1:" + k2})); err == nil {
		t.Error("a version given twice was accepted")
	}
	if _, err := config.Load(env(map[string]string{"ENCRYPTION_KEYS": "2:" + k2, "BLIND_INDEX_KEY": k1})); err != nil {
		t.Errorf("version 2 with a pinned blind-index key: %v", err)
	}
}

// TestConfigurationDoc: docs/configuration.md is what the code generates
// (make docs rewrites it).
func TestConfigurationDoc(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != config.Markdown() {
		t.Fatal("docs/configuration.md is out of date: run make docs")
	}
	for _, v := range config.Variables() {
		if v.Rule == "" {
			t.Errorf("%s has no validation rule documented", v.Name)
		}
	}
}
