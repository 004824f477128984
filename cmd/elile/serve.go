package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"go.opentelemetry.io/otel/trace"

	"github.com/elile/elile/internal/audit"
	"github.com/elile/elile/internal/auth"
	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/entity"
	"github.com/elile/elile/internal/httpapi"
	"github.com/elile/elile/internal/kv"
	"github.com/elile/elile/internal/logging"
	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/sourcecache"
	"github.com/elile/elile/internal/telemetry"
	"github.com/elile/elile/internal/tenancy"
	"github.com/elile/elile/internal/webhook"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := parseFlags(fs, args, stdout, "elile serve",
		"run the HTTP API; configuration from the environment (docs/configuration.md). In development it creates and migrates the database and a first tenant."); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, stdout)
}

// serve wires the server together and runs it until ctx ends.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error { //nolint:funlen // the wiring, in one place
	started := time.Now()
	tracing, err := telemetry.New(ctx, telemetry.Config{Endpoint: strings.TrimRight(cfg.OTLPEndpoint, "/"), Service: "elile", Version: buildVersion()})
	if err != nil {
		return configError{err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(sctx)
	}()
	tracer := tracing.Tracer("elile")
	o, closeKMS, err := storeOptions(ctx, cfg, int32(cfg.DatabasePoolSize+cfg.DatabaseMaxOverflow)) //nolint:gosec // both bounded by validation
	if err != nil {
		return err
	}
	defer closeKMS()
	o.Tracer = tracer
	if err := prepareSchema(ctx, cfg, log); err != nil {
		return err
	}
	db, err := postgres.Open(ctx, o)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.WaitReady(ctx, cfg.DatabaseConnectTimeout, log); err != nil {
		return err
	}
	if cfg.Environment != config.Development {
		if err := db.CheckLogin(ctx); err != nil {
			return configError{err}
		}
	}

	// The environment keys must be the ones the data was written with: a
	// wrong one would answer 500 to every read of old data.
	fingerprints := o.Keyring.Fingerprints()
	keyCheck, err := db.CheckKeys(ctx, fingerprints, true)
	if err != nil {
		return err
	}
	if err := keyCheck.Err(); err != nil {
		if cfg.Environment == config.Development {
			err = fmt.Errorf("%w\n(in development the keys are generated into DEV_KEYS_FILE, %s: if that file was deleted or replaced, "+
				"this development database can no longer be read — drop it and make run creates a new one)", err, cfg.DevKeysFile)
		}
		return configError{err}
	}
	if len(keyCheck.Missing) > 0 {
		log.WarnContext(ctx, "environment key versions the database remembers are not configured: values sealed under them cannot be read (elile keys status)",
			"missing", keyCheck.Missing)
	}

	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopBG(); bg.Wait() }()
	// Report this server and its keys: key commands refuse to change keys
	// a live server could not follow.
	host, _ := os.Hostname()
	self := postgres.Instance{ID: uuid.Must(uuid.NewV7()), Build: buildVersion(), Host: host, KMSProvider: o.KMS.Name(),
		Fingerprints: fingerprints, Started: started}
	// The first report before the server answers: a key command run once
	// it listens sees it.
	if err := db.Heartbeat(ctx, self); err != nil {
		log.WarnContext(ctx, "server heartbeat failed", "err", err)
	}
	bg.Go(func() { heartbeat(bgCtx, db, self, log) })

	store, closeKV, err := openKV(bgCtx, cfg, log, tracer)
	if err != nil {
		return err
	}
	defer closeKV()
	bg.Go(func() { store.Run(bgCtx) })

	if cfg.Environment == config.Development {
		if err := bootstrapDev(ctx, cfg, db, stdout); err != nil {
			return err
		}
	}

	signer, err := audit.NewSigner(cfg.AuditSeed())
	if err != nil {
		return configError{fmt.Errorf("AUDIT_SIGNING_KEY: %w", err)}
	}
	// The audit writer outlives the HTTP server: it stops after the last
	// request has finished, flushing what they queued.
	writer := audit.NewWriter(db, log, 10_000, 1_000)
	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	go writer.Run(writerCtx)
	defer func() { stopWriter(); writer.Wait() }()
	sealer := audit.NewSealer(db, signer, log, 250*time.Millisecond)
	bg.Go(func() { db.Leader(bgCtx, postgres.LockSealer, 2*time.Second, sealer.Run) })
	// Erasures the API started and could not finish in a request's time:
	// their keys are destroyed already; the sweeper deletes their rows.
	tenancySvc := tenancy.NewService(db.Tenancy(), nil)
	bg.Go(func() {
		db.Leader(bgCtx, postgres.LockErasure, 5*time.Second, func(ctx context.Context) {
			for {
				if err := tenancySvc.FinishErasures(ctx, db.Tenancy().PendingErasures); err != nil && ctx.Err() == nil {
					log.Error("tenant erasure sweep failed", "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Second):
				}
			}
		})
	})
	bg.Go(func() {
		db.Leader(bgCtx, postgres.LockMaintenance, 5*time.Second, func(ctx context.Context) {
			audit.Maintain(ctx, db, signer, log, 3, time.Duration(cfg.AuditRetentionDays)*24*time.Hour, time.Hour)
		})
	})

	// Webhooks: events out, delivered by jobs on River (docs/webhooks.md).
	// The job queue stops after the HTTP server (its deferred stop runs
	// first): running deliveries finish or are handed back to the queue.
	webhooks := db.Webhooks()
	deliverer := webhook.NewDeliverer(webhooks, webhook.DelivererOptions{Log: log,
		Client: webhook.NewClient(webhook.ClientOptions{AllowLoopback: cfg.WebhookAllowLoopback})})
	whJobs := webhook.NewJobs(deliverer, log, time.Duration(cfg.WebhookRetentionDays)*24*time.Hour)
	stopJobs, err := startJobs(bgCtx, db, whJobs, cfg, log)
	if err != nil {
		return err
	}
	defer stopJobs()
	db.OnWebhookEvent(whJobs.Kick)
	bg.Go(func() { whJobs.RunKicks(bgCtx, 50*time.Millisecond) })

	handler := httpapi.NewServer(httpapi.Deps{
		Log: log, DB: db, KV: store, Keys: db.DataKeys(), Tracer: tracer,
		Audit: writer, Audits: audit.NewService(db, writer, signer.Public(), audit.NewGate(2, 8)),
		Auth: auth.NewAuthenticator(db, []byte(cfg.APISecretKey.Reveal()), nil).WithJWTPolicy(auth.JWTPolicy{
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, MaxLifetime: cfg.JWTMaxLifetime, AllowPlatformAdmin: cfg.JWTAllowPlatformAdmin}),
		IdempotencyBudget: cfg.IdempotencyMaxBytes,
		AuthLookups:       kv.Rate{Limit: cfg.AuthLookupsPerMinute, Period: time.Minute, Burst: max(cfg.AuthLookupsPerMinute/6, 1)},
		TrustedProxies:    trustedProxies(cfg),
		Tenants:           db,
		Tenancy:           tenancySvc,
		Entities:          entity.NewService(db.Entities(), writer, nil),
		Profiles:          entity.NewProfileService(db.Profiles(), writer),
		Cache:             sourcecache.NewService(db.Cache(), writer, nil),
		Webhooks: webhook.NewService(webhooks, webhook.Options{RequireHTTPS: cfg.Environment != config.Development,
			AllowLoopback: cfg.WebhookAllowLoopback, Settle: postgres.EndpointCacheTTL}),
		Rate:        kv.Rate{Limit: cfg.RateLimitPerMinute, Period: time.Minute, Burst: cfg.RateLimitBurst},
		CORSOrigins: cfg.CORSOrigins,
		Collectors: slices.Concat([]prometheus.Collector{postgres.NewPoolCollector(db), keyInfo(fingerprints)}, writer.Collectors(), sealer.Collectors(), o.KMSCache.Collectors(),
			deliverer.Metrics().Collectors()),
		LatestSchema: postgres.LatestVersion(), Version: buildVersion(), Started: started, KeysMissing: keyCheck.Missing,
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	log.InfoContext(ctx, "listening", "addr", ln.Addr().String(), "version", buildVersion())
	fmt.Fprintf(stdout, "elile %s listening on http://%s\n", buildVersion(), ln.Addr())
	return serveHTTP(ctx, srv, ln, cfg.ShutdownTimeout, log)
}

// heartbeatEvery is how often a server reports itself; key commands count
// a server live for three periods after its last report.
const heartbeatEvery = 15 * time.Second

// heartbeat reports self every heartbeatEvery until ctx ends, then
// removes it.
func heartbeat(ctx context.Context, db *postgres.DB, self postgres.Instance, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := db.Deregister(dctx, self.ID); err != nil {
				log.Warn("server deregistration failed (its row expires)", "err", err)
			}
			return
		case <-time.After(heartbeatEvery):
		}
		if err := db.Heartbeat(ctx, self); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "server heartbeat failed", "err", err)
		}
	}
}

// keyInfo reports the environment key versions this server holds, by
// fingerprint (0: the blind-index root): servers that differ are visible
// on one dashboard before a rotation.
func keyInfo(fps map[uint32]string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "elile_encryption_key_info",
		Help: "Environment key versions this server holds (1 per version), labelled with their fingerprints; version 0 is the blind-index root."},
		[]string{"version", "fingerprint"})
	for v, f := range fps {
		g.WithLabelValues(strconv.FormatUint(uint64(v), 10), f).Set(1)
	}
	return g
}

// startJobs starts the job queue (River) in this process: every instance
// works jobs; River's elected leader inserts the periodic ones. The
// returned function stops it: jobs running get the shutdown timeout to
// finish, then their context is cancelled (a drain cut short leaves its
// deliveries pending, and its lease runs out).
func startJobs(ctx context.Context, db *postgres.DB, wh *webhook.Jobs, cfg config.Config, log *slog.Logger) (func(), error) {
	workers := river.NewWorkers()
	wh.Workers(workers)
	rc, closePool, err := db.Jobs(ctx, postgres.JobsOptions{Config: &river.Config{
		Logger:            logging.AtLeast(log, slog.LevelWarn).With("component", "jobs"), // River logs routine work at Info
		Queues:            wh.Queues(cfg.WebhookWorkers),
		Workers:           workers,
		PeriodicJobs:      wh.Periodic(),
		FetchPollInterval: 250 * time.Millisecond, // what a poll-only client waits at most
		// A job a killed process left running is worked again after
		// this (a drain runs at most 70 s).
		RescueStuckJobsAfter: 5 * time.Minute,
	}})
	if err != nil {
		return nil, err
	}
	wh.Use(rc)
	if err := rc.Start(ctx); err != nil {
		closePool()
		return nil, fmt.Errorf("start the job queue: %w", err)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := rc.Stop(sctx); err != nil {
			_ = rc.StopAndCancel(context.WithoutCancel(ctx))
		}
		closePool()
	}, nil
}

func trustedProxies(cfg config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range cfg.TrustedProxies {
		if p, err := config.ParsePrefix(s); err == nil { // validated by config.Load
			out = append(out, p)
		}
	}
	return out
}

// prepareSchema makes sure the schema is current. Development creates the
// database and migrates it; elsewhere only "elile migrate" changes the
// schema, and a server whose schema is behind refuses to start.
func prepareSchema(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	url := cfg.MigrationURL()
	if cfg.Environment == config.Development {
		err := retry(ctx, cfg.DatabaseConnectTimeout, log, "connect to PostgreSQL", func(ctx context.Context) error {
			created, err := postgres.EnsureDatabase(ctx, url)
			if created {
				log.InfoContext(ctx, "created the development database")
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	m, err := postgres.NewMigrator(url)
	if err != nil {
		return err
	}
	defer m.Close()
	if cfg.Environment == config.Development {
		applied, err := m.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if len(applied) > 0 {
			log.InfoContext(ctx, "applied migrations", "versions", applied)
		}
		return nil
	}
	var current, latest int64
	err = retry(ctx, cfg.DatabaseConnectTimeout, log, "connect to PostgreSQL", func(ctx context.Context) error {
		current, latest, err = m.Versions(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if current < latest {
		return fmt.Errorf("database schema is at version %d, this binary needs %d: run `elile migrate up` first", current, latest)
	}
	return nil
}

// openKV returns the key-value store: Redis with an in-process fallback, or
// in-process only when REDIS_URL is empty.
func openKV(ctx context.Context, cfg config.Config, log *slog.Logger, tracer trace.Tracer) (*kv.Failover, func(), error) {
	mem := kv.NewMemory(nil)
	if cfg.RedisURL == "" {
		log.WarnContext(ctx, "REDIS_URL not set: rate limits, idempotency and caches are per instance")
		return kv.NewFailover(nil, mem, log, time.Second), func() {}, nil
	}
	r, err := kv.NewRedis(cfg.RedisURL.Reveal(), "elile:")
	if err != nil {
		return nil, nil, configError{fmt.Errorf("REDIS_URL: %w", err)}
	}
	if tracer != nil {
		r.Trace(tracer)
	}
	f := kv.NewFailover(r, mem, log, time.Second)
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	_ = f.Ping(pctx) // sets the initial mode; unreachable means fallback, not failure
	cancel()
	return f, func() { r.Close() }, nil
}

// serveHTTP serves on ln until ctx ends, then shuts down gracefully: the
// listener closes at once (new connections are refused), in-flight requests
// get up to timeout to finish.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", timeout)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
