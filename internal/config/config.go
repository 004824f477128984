// Package config loads and validates elile's configuration from environment
// variables. It is the only reader of the environment: every other package
// receives the values it needs from a Config.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/google/uuid"
	"github.com/joho/godotenv"
)

// Environment names the deployment environment.
type Environment string

// The environments elile knows.
const (
	Development Environment = "development"
	Staging     Environment = "staging"
	Production  Environment = "production"
)

// Development defaults. Outside development no secret or connection string
// has a default: staging and production must say what they use.
const (
	DevDatabaseURL = "postgres://postgres@127.0.0.1:5432/elile_dev?sslmode=disable"
	DevRedisURL    = "redis://127.0.0.1:6379/0"
)

// Secret is a configuration value that must never be printed or logged.
// Its String, LogValue and MarshalText all return "[redacted]"; Reveal
// returns the value itself.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// LogValue keeps the secret out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of JSON and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// Config is elile's whole configuration. Each field's `env` tag names its
// variable, `envDefault` its default in every environment, and `desc` what it
// is for; docs/configuration.md is generated from these tags.
type Config struct {
	Environment Environment `env:"ENVIRONMENT" envDefault:"development" desc:"Deployment environment: development, staging or production. Outside development there are no default secrets, logs are JSON and DEBUG must be off." rule:"one of development, staging, production"`
	Debug       bool        `env:"DEBUG" envDefault:"false" desc:"Verbose diagnostics. Only allowed in development." rule:"true or false; false outside development"`
	LogLevel    string      `env:"LOG_LEVEL" envDefault:"INFO" desc:"Minimum log level: DEBUG, INFO, WARN or ERROR (any case)." rule:"DEBUG, INFO, WARN or ERROR"`
	LogFormat   string      `env:"LOG_FORMAT" envDefault:"auto" desc:"auto (text in development, JSON elsewhere), text or json." rule:"auto, text or json"`

	APIHost           string        `env:"API_HOST" envDefault:"127.0.0.1" desc:"Address the HTTP server listens on." rule:"host name or IP address"`
	APIPort           int           `env:"API_PORT" envDefault:"8000" desc:"TCP port the HTTP server listens on (0 picks a free one)." rule:"0..65535"`
	CORSOrigins       []string      `env:"CORS_ORIGINS" envSeparator:"," desc:"Comma-separated origins allowed to call the API from a browser. Empty: no cross-origin access." rule:"each an origin: scheme://host[:port], or *"`
	ReadHeaderTimeout time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"5s" desc:"Longest time to read a request's headers." rule:"positive Go duration (5s, 1m)"`
	ReadTimeout       time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s" desc:"Longest time to read a whole request." rule:"positive Go duration"`
	WriteTimeout      time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"60s" desc:"Longest time to write a response." rule:"positive Go duration"`
	IdleTimeout       time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"120s" desc:"How long an idle keep-alive connection is kept." rule:"positive Go duration"`
	RequestTimeout    time.Duration `env:"REQUEST_TIMEOUT" envDefault:"30s" desc:"Deadline of each request's work: database calls still running then are cancelled and the request gets 503." rule:"positive Go duration"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" desc:"On SIGTERM/SIGINT, how long in-flight requests may take to finish." rule:"positive Go duration"`

	MigrationDatabaseURL   Secret        `env:"MIGRATION_DATABASE_URL" desc:"Connection string of the role that owns the schema, used only by elile migrate (and by serve in development, which migrates itself). Default: DATABASE_URL. In staging and production it must be a different role from DATABASE_URL's: the server refuses to start when its own login role is a superuser, has BYPASSRLS or owns the tables." rule:"postgres:// or postgresql:// URL naming a database, or empty"`
	DatabaseURL            Secret        `env:"DATABASE_URL" desc:"PostgreSQL connection string (postgres://user:pass@host:port/db). Development default: postgres://postgres@127.0.0.1:5432/elile_dev?sslmode=disable. Required elsewhere." rule:"postgres:// or postgresql:// URL naming a database" required:"staging, production"`
	DatabasePoolMode       string        `env:"DATABASE_POOL_MODE" envDefault:"session" desc:"session: DATABASE_URL reaches PostgreSQL directly (or through a pooler in session mode). transaction: through a pooler in transaction mode (PgBouncer): elile keeps no session state on its connections and prepares no named statements; leader election then needs DATABASE_DIRECT_URL." rule:"session or transaction"`
	DatabaseExecMode       string        `env:"DATABASE_EXEC_MODE" desc:"How statements are sent (pgx): cache_statement (named prepared statements, the fastest), cache_describe, describe_exec, exec or simple_protocol. Default: cache_statement, or cache_describe with DATABASE_POOL_MODE=transaction (which refuses cache_statement)." rule:"cache_statement, cache_describe, describe_exec, exec, simple_protocol or empty"`
	DatabaseDirectURL      Secret        `env:"DATABASE_DIRECT_URL" desc:"A connection string that reaches PostgreSQL without a transaction pooler, used only for the session advisory locks that elect the leader of the sealer and the maintenance jobs. Default: DATABASE_URL. Required in staging and production with DATABASE_POOL_MODE=transaction: behind transaction pooling a session lock does not hold, and two leaders could run." rule:"postgres:// or postgresql:// URL naming a database, or empty"`
	DatabasePoolSize       int           `env:"DATABASE_POOL_SIZE" envDefault:"20" desc:"Connections the pool keeps for steady load." rule:"1..1000"`
	DatabaseMaxOverflow    int           `env:"DATABASE_MAX_OVERFLOW" envDefault:"10" desc:"Extra connections the pool may open under peaks (max connections = pool size + overflow)." rule:"0..1000"`
	DatabaseAcquireTimeout time.Duration `env:"DATABASE_ACQUIRE_TIMEOUT" envDefault:"5s" desc:"How long a request waits for a free pooled connection before it gets 503 with Retry-After." rule:"positive Go duration"`
	DatabaseConnectTimeout time.Duration `env:"DATABASE_CONNECT_TIMEOUT" envDefault:"10s" desc:"At start-up, how long to keep trying to reach PostgreSQL before giving up." rule:"positive Go duration"`

	RedisURL Secret `env:"REDIS_URL" desc:"Redis connection string (redis://host:port/db). Development default: redis://127.0.0.1:6379/0. Empty outside development: an in-process fallback serves a single instance and readiness reports degraded." rule:"redis:// or rediss:// URL, or empty"`

	EncryptionKey         Secret        `env:"ENCRYPTION_KEY" desc:"Base64 of a 32-byte AES-256 key, used as key version 1. Development generates one into DEV_KEYS_FILE. Required elsewhere unless ENCRYPTION_KEYS is set." rule:"base64 of exactly 32 bytes" required:"staging, production (unless ENCRYPTION_KEYS)"`
	EncryptionKeys        Secret        `env:"ENCRYPTION_KEYS" desc:"Several key versions at once, for rotation: 1:<base64>,2:<base64>. Takes the place of ENCRYPTION_KEY." rule:"VERSION:BASE64 pairs, comma-separated; versions from 1, each key 32 bytes"`
	EncryptionActiveKey   int           `env:"ENCRYPTION_ACTIVE_KEY" envDefault:"0" desc:"Key version new values are encrypted with (0: the highest configured)." rule:"0 or a configured version"`
	BlindIndexKey         Secret        `env:"BLIND_INDEX_KEY" desc:"Base64 of 32 bytes: root of the per-tenant blind-index keys. Default: derived (HKDF) from key version 1. Required once version 1 leaves the keyring; get its value with elile keys blind-index-key before removing it." rule:"base64 of exactly 32 bytes; required when version 1 is not configured"`
	KMSProvider           string        `env:"KMS_PROVIDER" envDefault:"local" desc:"Where the tenants' key-encryption keys live: pkcs11 (an HSM), awskms (AWS KMS or a compatible endpoint) or local (derived from the environment keyring: development and tests only, refused in production, where the environment keyring only opens data written before envelope encryption)." rule:"local, pkcs11 or awskms; not local in production"`
	PKCS11Module          string        `env:"PKCS11_MODULE" desc:"pkcs11: path of the HSM's PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)." rule:"a file path" required:"KMS_PROVIDER=pkcs11"`
	PKCS11TokenLabel      string        `env:"PKCS11_TOKEN_LABEL" desc:"pkcs11: label of the token holding the keys." rule:"a token label" required:"KMS_PROVIDER=pkcs11"`
	PKCS11PIN             Secret        `env:"PKCS11_PIN" desc:"pkcs11: the user PIN of the token." rule:"the PIN" required:"KMS_PROVIDER=pkcs11"`
	PKCS11KeyLabel        string        `env:"PKCS11_KEY_LABEL" desc:"pkcs11: label of an existing AES key on the token that wraps the platform's own data keys. Empty: elile creates one. The server refuses to start when it is missing or not an AES key." rule:"a key label, or empty"`
	AWSKMSKeyID           string        `env:"AWS_KMS_KEY_ID" desc:"awskms: id, ARN or alias of an existing symmetric KMS key that wraps the platform's own data keys. Empty: elile creates one. Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID…, a role)." rule:"a KMS key id, ARN or alias, or empty"`
	AWSKMSEndpoint        string        `env:"AWS_KMS_ENDPOINT" desc:"awskms: endpoint override (a VPC endpoint, or a local emulator in tests). Empty: AWS's own." rule:"http(s) URL, or empty"`
	AWSRegion             string        `env:"AWS_REGION" desc:"awskms: the AWS region." rule:"an AWS region" required:"KMS_PROVIDER=awskms"`
	OTLPEndpoint          string        `env:"OTEL_EXPORTER_OTLP_ENDPOINT" desc:"OpenTelemetry: base URL of an OTLP/HTTP collector (spans go to <url>/v1/traces). Empty: no tracing, at no cost. Spans carry route, status, correlation id and tenant id, never personal data." rule:"http(s) URL, or empty"`
	KMSCacheTTL           time.Duration `env:"KMS_CACHE_TTL" envDefault:"15m" desc:"How long an unwrapped data key stays in memory (then it is zeroed and unwrapped again). Also how long another server may keep using a key after a tenant's erasure." rule:"1s..24h"`
	KMSCacheSize          int           `env:"KMS_CACHE_SIZE" envDefault:"10000" desc:"Most unwrapped data keys kept in memory at once (two per active tenant)." rule:"10..1000000"`
	APISecretKey          Secret        `env:"API_SECRET_KEY" desc:"Secret for HS256 JWTs (at least 32 bytes). Development generates one into DEV_KEYS_FILE. Required elsewhere." rule:"at least 32 bytes" required:"staging, production"`
	JWTIssuer             string        `env:"JWT_ISSUER" desc:"The iss every JWT must carry. Required in staging and production; in development, checked when set." rule:"any string" required:"staging, production"`
	JWTAudience           string        `env:"JWT_AUDIENCE" desc:"A value the aud of every JWT must contain. Required in staging and production; in development, checked when set." rule:"any string" required:"staging, production"`
	JWTMaxLifetime        time.Duration `env:"JWT_MAX_LIFETIME" envDefault:"1h" desc:"Longest a JWT may live: exp at most this far after iat (and after now)." rule:"1m..24h"`
	JWTAllowPlatformAdmin bool          `env:"JWT_ALLOW_PLATFORM_ADMIN" envDefault:"false" desc:"Whether a JWT may carry the platform:admin scope. Off: the scope is ignored in JWTs, and platform admins use API keys." rule:"true or false"`
	AuditSigningKey       Secret        `env:"AUDIT_SIGNING_KEY" desc:"Base64 of a 32-byte Ed25519 seed that signs audit seals and checkpoints. Development generates one into DEV_KEYS_FILE. Required elsewhere." rule:"base64 of a 32-byte Ed25519 seed" required:"staging, production"`
	AuditRetentionDays    int           `env:"AUDIT_RETENTION_DAYS" envDefault:"2557" desc:"Audit events are kept this many days (default 7 years); older monthly partitions are detached and dropped whole." rule:"30..36500"`

	RateLimitPerMinute   int      `env:"RATE_LIMIT_PER_MINUTE" envDefault:"1200" desc:"Requests per minute each credential may make (shared by all instances through Redis)." rule:"1..10000000"`
	IdempotencyMaxBytes  int64    `env:"IDEMPOTENCY_MAX_BYTES" envDefault:"67108864" desc:"Bytes of idempotency records one credential may keep at once (24 h window); beyond it, POSTs with Idempotency-Key get 429." rule:"1048576..1073741824"`
	AuthLookupsPerMinute int      `env:"AUTH_LOOKUPS_PER_MINUTE" envDefault:"600" desc:"Per client address: API-key look-ups in the database for keys not already cached (unknown keys cost one each). Beyond it: 429 before any database work." rule:"1..10000000"`
	TrustedProxies       []string `env:"TRUSTED_PROXIES" envSeparator:"," desc:"Comma-separated CIDRs of proxies in front of elile whose X-Forwarded-For is believed. Empty: the TCP peer is the client." rule:"each a CIDR (10.0.0.0/8) or IP"`
	RateLimitBurst       int      `env:"RATE_LIMIT_BURST" envDefault:"100" desc:"Requests a credential may make at once before the per-minute pace applies." rule:"1..1000000"`

	WebhookWorkers       int  `env:"WEBHOOK_WORKERS" envDefault:"20" desc:"Endpoints this instance delivers to at once (each drained in order by one worker). A tenant has at most 16 endpoints, so one tenant's backlog holds at most 16 workers." rule:"1..1000"`
	WebhookRetentionDays int  `env:"WEBHOOK_RETENTION_DAYS" envDefault:"30" desc:"Delivered webhook deliveries (the delivery log) are kept this many days." rule:"1..3650"`
	WebhookAllowLoopback bool `env:"WEBHOOK_ALLOW_LOOPBACK" envDefault:"false" desc:"Development only: let webhook endpoints be on this machine (127.0.0.1, ::1, localhost) and plain http. Every other private, link-local, shared or reserved address stays refused. Refused outside development." rule:"true or false; only in development"`

	DefaultTenantID string `env:"DEFAULT_TENANT_ID" envDefault:"00000000-0000-0000-0000-000000000000" desc:"Id of the tenant that development creates on an empty database for local use (the nil UUID: a fresh id)." rule:"a UUID"`
	DevKeysFile     string `env:"DEV_KEYS_FILE" envDefault:".elile/dev-keys.env" desc:"Development only: file where generated keys are kept between runs (git-ignored)." rule:"a file path"`
}

// Load reads the configuration through getenv and validates it, reporting
// every problem at once (errors.Join), each naming its variable.
func Load(getenv func(string) string) (Config, error) {
	var cfg Config
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return Config{}, fmt.Errorf("read config fields: %w", err)
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return Config{}, parseErrors(err)
	}
	cfg.applyEnvironmentDefaults()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseErrors restates the env library's aggregate error as one error per
// variable, so the caller sees every bad variable by name.
func parseErrors(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			errs = append(errs, fmt.Errorf("%s: not a valid %s", envName(pe.Name), pe.Type))
			continue
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func envName(field string) string {
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		return field
	}
	name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return name
}

func (c *Config) applyEnvironmentDefaults() {
	c.LogLevel = strings.ToUpper(c.LogLevel)
	c.LogFormat = strings.ToLower(c.LogFormat)
	if c.LogFormat == "auto" {
		c.LogFormat = "json"
		if c.Environment == Development {
			c.LogFormat = "text"
		}
	}
	if c.Environment == Development {
		if c.DatabaseURL == "" {
			c.DatabaseURL = DevDatabaseURL
		}
		if c.RedisURL == "" {
			c.RedisURL = DevRedisURL
		}
	}
}

func (c Config) validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	switch c.Environment {
	case Development, Staging, Production:
	default:
		bad("ENVIRONMENT", "%q is not one of development, staging, production", c.Environment)
	}
	if c.Debug && c.Environment != Development {
		bad("DEBUG", "must be false outside development")
	}
	if !slices.Contains([]string{"DEBUG", "INFO", "WARN", "ERROR"}, c.LogLevel) {
		bad("LOG_LEVEL", "%q is not one of DEBUG, INFO, WARN, ERROR", c.LogLevel)
	}
	if !slices.Contains([]string{"text", "json"}, c.LogFormat) {
		bad("LOG_FORMAT", "%q is not one of auto, text, json", c.LogFormat)
	}
	if c.APIHost == "" || strings.ContainsAny(c.APIHost, " /") {
		bad("API_HOST", "%q is not a host name or address", c.APIHost)
	}
	if c.APIPort < 0 || c.APIPort > 65535 {
		bad("API_PORT", "%d is outside 0..65535", c.APIPort)
	}
	for _, o := range c.CORSOrigins {
		u, err := url.Parse(strings.TrimSpace(o))
		if o == "*" {
			continue
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			bad("CORS_ORIGINS", "%q is not an origin like https://app.example.com", o)
		}
	}
	for name, d := range map[string]time.Duration{
		"HTTP_READ_HEADER_TIMEOUT": c.ReadHeaderTimeout, "HTTP_READ_TIMEOUT": c.ReadTimeout,
		"HTTP_WRITE_TIMEOUT": c.WriteTimeout, "HTTP_IDLE_TIMEOUT": c.IdleTimeout,
		"SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "DATABASE_CONNECT_TIMEOUT": c.DatabaseConnectTimeout,
		"REQUEST_TIMEOUT": c.RequestTimeout, "DATABASE_ACQUIRE_TIMEOUT": c.DatabaseAcquireTimeout,
	} {
		if d <= 0 {
			bad(name, "must be a positive duration such as 5s")
		}
	}
	if c.DatabaseURL == "" {
		bad("DATABASE_URL", "required in %s", c.Environment)
	} else if u, err := url.Parse(c.DatabaseURL.Reveal()); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || strings.TrimPrefix(u.Path, "/") == "" {
		bad("DATABASE_URL", "must be a postgres:// URL naming a database")
	}
	switch c.DatabasePoolMode {
	case "session":
	case "transaction":
		if c.DatabaseExecMode == "cache_statement" {
			bad("DATABASE_EXEC_MODE", "cache_statement prepares named statements, which a transaction pooler does not keep (DATABASE_POOL_MODE=transaction)")
		}
		if c.DatabaseDirectURL == "" && c.Environment != Development {
			bad("DATABASE_DIRECT_URL", "required in %s with DATABASE_POOL_MODE=transaction: leader election holds a session lock, which transaction pooling does not keep", c.Environment)
		}
	default:
		bad("DATABASE_POOL_MODE", "%q is not one of session, transaction", c.DatabasePoolMode)
	}
	if c.DatabaseExecMode != "" && !slices.Contains([]string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}, c.DatabaseExecMode) {
		bad("DATABASE_EXEC_MODE", "%q is not one of cache_statement, cache_describe, describe_exec, exec, simple_protocol", c.DatabaseExecMode)
	}
	if c.DatabaseDirectURL != "" {
		if u, err := url.Parse(c.DatabaseDirectURL.Reveal()); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || strings.TrimPrefix(u.Path, "/") == "" {
			bad("DATABASE_DIRECT_URL", "must be a postgres:// URL naming a database")
		}
	}
	if c.DatabasePoolSize < 1 || c.DatabasePoolSize > 1000 {
		bad("DATABASE_POOL_SIZE", "%d is outside 1..1000", c.DatabasePoolSize)
	}
	if c.DatabaseMaxOverflow < 0 || c.DatabaseMaxOverflow > 1000 {
		bad("DATABASE_MAX_OVERFLOW", "%d is outside 0..1000", c.DatabaseMaxOverflow)
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL.Reveal()); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("REDIS_URL", "must be a redis:// or rediss:// URL")
		}
	}
	if c.AuditSigningKey != "" {
		if _, err := decodeKey(c.AuditSigningKey.Reveal()); err != nil {
			bad("AUDIT_SIGNING_KEY", "%v", err)
		}
	}
	if c.WebhookWorkers < 1 || c.WebhookWorkers > 1000 {
		bad("WEBHOOK_WORKERS", "%d is outside 1..1000", c.WebhookWorkers)
	}
	if c.WebhookRetentionDays < 1 || c.WebhookRetentionDays > 3650 {
		bad("WEBHOOK_RETENTION_DAYS", "%d is outside 1..3650", c.WebhookRetentionDays)
	}
	if c.WebhookAllowLoopback && c.Environment != Development {
		bad("WEBHOOK_ALLOW_LOOPBACK", "only in development: outside it, deliveries reach public addresses only")
	}
	if c.AuditRetentionDays < 30 || c.AuditRetentionDays > 36500 {
		bad("AUDIT_RETENTION_DAYS", "%d is outside 30..36500", c.AuditRetentionDays)
	}
	if c.RateLimitPerMinute < 1 || c.RateLimitPerMinute > 10_000_000 {
		bad("RATE_LIMIT_PER_MINUTE", "%d is outside 1..10000000", c.RateLimitPerMinute)
	}
	if c.RateLimitBurst < 1 || c.RateLimitBurst > 1_000_000 {
		bad("RATE_LIMIT_BURST", "%d is outside 1..1000000", c.RateLimitBurst)
	}
	if _, err := uuid.Parse(c.DefaultTenantID); err != nil {
		bad("DEFAULT_TENANT_ID", "%q is not a UUID", c.DefaultTenantID)
	}
	if c.Environment != Development {
		if c.EncryptionKey == "" && c.EncryptionKeys == "" {
			bad("ENCRYPTION_KEY", "required in %s (or ENCRYPTION_KEYS)", c.Environment)
		}
		if c.APISecretKey == "" {
			bad("API_SECRET_KEY", "required in %s", c.Environment)
		}
		if c.AuditSigningKey == "" {
			bad("AUDIT_SIGNING_KEY", "required in %s", c.Environment)
		}
		if c.JWTIssuer == "" {
			bad("JWT_ISSUER", "required in %s", c.Environment)
		}
		if c.JWTAudience == "" {
			bad("JWT_AUDIENCE", "required in %s", c.Environment)
		}
	}
	switch c.KMSProvider {
	case "local":
		if c.Environment == Production {
			bad("KMS_PROVIDER", "local keeps every key in the environment: use pkcs11 or awskms in production")
		}
	case "pkcs11":
		if c.PKCS11Module == "" || c.PKCS11TokenLabel == "" || c.PKCS11PIN == "" {
			bad("KMS_PROVIDER", "pkcs11 needs PKCS11_MODULE, PKCS11_TOKEN_LABEL and PKCS11_PIN")
		}
	case "awskms":
		if c.AWSRegion == "" {
			bad("AWS_REGION", "required with KMS_PROVIDER=awskms")
		}
		if c.AWSKMSEndpoint != "" {
			if u, err := url.Parse(c.AWSKMSEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("AWS_KMS_ENDPOINT", "must be an http(s) URL")
			}
		}
	default:
		bad("KMS_PROVIDER", "%q is not one of local, pkcs11, awskms", c.KMSProvider)
	}
	if c.OTLPEndpoint != "" {
		if u, err := url.Parse(c.OTLPEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT", "must be an http(s) URL")
		}
	}
	if c.KMSCacheTTL < time.Second || c.KMSCacheTTL > 24*time.Hour {
		bad("KMS_CACHE_TTL", "%s is outside 1s..24h", c.KMSCacheTTL)
	}
	if c.KMSCacheSize < 10 || c.KMSCacheSize > 1_000_000 {
		bad("KMS_CACHE_SIZE", "%d is outside 10..1000000", c.KMSCacheSize)
	}
	if c.JWTMaxLifetime < time.Minute || c.JWTMaxLifetime > 24*time.Hour {
		bad("JWT_MAX_LIFETIME", "%s is outside 1m..24h", c.JWTMaxLifetime)
	}
	if c.IdempotencyMaxBytes < 1<<20 || c.IdempotencyMaxBytes > 1<<30 {
		bad("IDEMPOTENCY_MAX_BYTES", "%d is outside 1048576..1073741824", c.IdempotencyMaxBytes)
	}
	if c.AuthLookupsPerMinute < 1 || c.AuthLookupsPerMinute > 10_000_000 {
		bad("AUTH_LOOKUPS_PER_MINUTE", "%d is outside 1..10000000", c.AuthLookupsPerMinute)
	}
	for _, p := range c.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad("TRUSTED_PROXIES", "%q is not a CIDR or IP", p)
		}
	}
	if c.MigrationDatabaseURL != "" && !strings.HasPrefix(c.MigrationDatabaseURL.Reveal(), "postgres://") && !strings.HasPrefix(c.MigrationDatabaseURL.Reveal(), "postgresql://") {
		bad("MIGRATION_DATABASE_URL", "must be a postgres:// or postgresql:// URL")
	}
	if _, _, _, err := c.keyMaterial(); err != nil {
		errs = append(errs, err)
	}
	if c.APISecretKey != "" && len(c.APISecretKey) < 32 {
		bad("API_SECRET_KEY", "must be at least 32 bytes")
	}
	return errors.Join(errs...)
}

// ParsePrefix parses a CIDR, or a single IP as a one-address prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// MigrationURL is the connection string migrations use: the owner's.
func (c Config) MigrationURL() string {
	if c.MigrationDatabaseURL != "" {
		return c.MigrationDatabaseURL.Reveal()
	}
	return c.DatabaseURL.Reveal()
}

// keyMaterial parses the encryption keys: versions to 32-byte keys, the
// active version and the blind-index root. Errors name their variable and
// never contain key material. With no key configured it returns nil maps.
func (c Config) keyMaterial() (map[uint32][]byte, uint32, []byte, error) {
	keys := make(map[uint32][]byte)
	switch {
	case c.EncryptionKeys != "":
		for i, part := range strings.Split(c.EncryptionKeys.Reveal(), ",") {
			vs, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
			v, err := strconv.ParseUint(vs, 10, 32)
			if !ok || err != nil || v == 0 {
				return nil, 0, nil, fmt.Errorf("ENCRYPTION_KEYS: entry %d is not VERSION:BASE64 with a version from 1", i+1)
			}
			if _, dup := keys[uint32(v)]; dup {
				return nil, 0, nil, fmt.Errorf("ENCRYPTION_KEYS: version %d given twice", v)
			}
			k, err := decodeKey(b64)
			if err != nil {
				return nil, 0, nil, fmt.Errorf("ENCRYPTION_KEYS: version %d: %w", v, err)
			}
			keys[uint32(v)] = k
		}
	case c.EncryptionKey != "":
		k, err := decodeKey(c.EncryptionKey.Reveal())
		if err != nil {
			return nil, 0, nil, fmt.Errorf("ENCRYPTION_KEY: %w", err)
		}
		keys[1] = k
	default:
		if c.EncryptionActiveKey != 0 {
			return nil, 0, nil, errors.New("ENCRYPTION_ACTIVE_KEY: set, but no key is configured")
		}
		return nil, 0, nil, nil
	}
	var active uint32
	for v := range keys {
		active = max(active, v)
	}
	if c.EncryptionActiveKey < 0 || c.EncryptionActiveKey > math.MaxUint32 {
		return nil, 0, nil, fmt.Errorf("ENCRYPTION_ACTIVE_KEY: %d is not a key version", c.EncryptionActiveKey)
	}
	if c.EncryptionActiveKey != 0 {
		active = uint32(c.EncryptionActiveKey)
		if _, ok := keys[active]; !ok {
			return nil, 0, nil, fmt.Errorf("ENCRYPTION_ACTIVE_KEY: version %d is not among the configured keys", active)
		}
	}
	var blind []byte
	if c.BlindIndexKey != "" {
		b, err := decodeKey(c.BlindIndexKey.Reveal())
		if err != nil {
			return nil, 0, nil, fmt.Errorf("BLIND_INDEX_KEY: %w", err)
		}
		blind = b
	} else if _, ok := keys[1]; !ok {
		return nil, 0, nil, errors.New("BLIND_INDEX_KEY: required when key version 1 is not configured " +
			"(run `elile keys blind-index-key` with version 1 still configured, and set its output here)")
	}
	return keys, active, blind, nil
}

func decodeKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("decodes to %d bytes, want 32", len(k))
	}
	return k, nil
}

// EncryptionKeyring returns the configured keys by version, the active
// version, and the blind-index root key (nil: derive it from version 1).
// Load has validated them; with no key configured the map is empty.
func (c Config) EncryptionKeyring() (keys map[uint32][]byte, active uint32, blindRoot []byte) {
	keys, active, blindRoot, _ = c.keyMaterial()
	return keys, active, blindRoot
}

// AuditSeed returns the decoded audit signing seed (nil when unset).
func (c Config) AuditSeed() []byte {
	k, _ := decodeKey(c.AuditSigningKey.Reveal())
	return k
}

// Addr is the host:port the HTTP server listens on.
func (c Config) Addr() string { return net.JoinHostPort(c.APIHost, strconv.Itoa(c.APIPort)) }

// WithDotEnv returns a getenv that answers from the process environment
// first and from the dotenv file at path second. A missing file is not an
// error. The file is read only in development: when the process environment
// names another environment, getenv is returned unchanged.
func WithDotEnv(getenv func(string) string, path string) (func(string) string, error) {
	if e := getenv("ENVIRONMENT"); e != "" && Environment(e) != Development {
		return getenv, nil
	}
	vars, err := godotenv.Read(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return getenv, nil
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vars[k]
	}, nil
}

// Variable describes one configuration variable, for documentation.
type Variable struct {
	Name        string
	Type        string
	Default     string
	Secret      bool
	Description string
	Rule        string // what validation accepts
	Required    string // environments that require it ("" : none)
}

// Variables lists every configuration variable in declaration order.
func Variables() []Variable {
	t := reflect.TypeFor[Config]()
	vars := make([]Variable, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		typ := f.Type.Kind().String()
		switch f.Type {
		case reflect.TypeFor[time.Duration]():
			typ = "duration"
		case reflect.TypeFor[[]string]():
			typ = "list"
		case reflect.TypeFor[Environment]():
			typ = "enum"
		}
		vars = append(vars, Variable{
			Name: name, Type: typ, Default: f.Tag.Get("envDefault"),
			Secret: f.Type == reflect.TypeFor[Secret](), Description: f.Tag.Get("desc"),
			Rule: f.Tag.Get("rule"), Required: f.Tag.Get("required"),
		})
	}
	return vars
}

// Markdown renders the configuration reference (docs/configuration.md).
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from `internal/config` by `elile docs config`; a test fails when this file falls behind the code.\n\n")
	b.WriteString("Every setting is an environment variable. In development a `.env` file in the working directory is read too ")
	b.WriteString("(the process environment wins), and missing secrets are generated once into `DEV_KEYS_FILE`. ")
	b.WriteString("Staging and production read the process environment only and refuse to start without their required secrets. ")
	b.WriteString("Invalid values are reported all at once, each by name, and the process exits with status 2. ")
	b.WriteString("`elile config check` prints the effective configuration with secrets redacted.\n\n")
	b.WriteString("| variable | type | default | required in | rule | description |\n|---|---|---|---|---|---|\n")
	esc := strings.NewReplacer("|", "\\|", "\n", " ")
	for _, v := range Variables() {
		def := v.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		typ := v.Type
		if v.Secret {
			typ += " (secret)"
		}
		req := v.Required
		if req == "" {
			req = "—"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", v.Name, typ, esc.Replace(def), esc.Replace(req), esc.Replace(v.Rule), esc.Replace(v.Description))
	}
	return b.String()
}

// Redacted lists the configuration as NAME=value pairs in declaration order,
// secrets replaced by "[redacted]".
func (c Config) Redacted() [][2]string {
	v := reflect.ValueOf(c)
	t := v.Type()
	out := make([][2]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		var s string
		switch x := v.Field(i).Interface().(type) {
		case Secret:
			s = x.String()
			if strings.HasSuffix(name, "_URL") {
				s = redactURL(string(x))
			}
		case []string:
			s = strings.Join(x, ",")
		default:
			s = fmt.Sprint(x)
		}
		out = append(out, [2]string{name, s})
	}
	return out
}

// redactURL shows a connection URL with only its password hidden (in the
// user information and in a password query parameter): where it points is
// what an operator checks. A value that is not a URL stays hidden whole.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return redacted
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
