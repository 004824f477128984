package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/logging"
	"github.com/elile/elile/internal/postgres"
)

// loadConfig reads .env (development only) and the environment.
func loadConfig(getenv func(string) string) (config.Config, error) {
	getenv, err := config.WithDotEnv(getenv, ".env")
	if err != nil {
		return config.Config{}, configError{err}
	}
	getenv, _, err = config.WithDevKeys(getenv)
	if err != nil {
		return config.Config{}, configError{err}
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return config.Config{}, configError{err}
	}
	return cfg, nil
}

func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, error) {
	log, err := logging.New(w, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return nil, configError{err}
	}
	return log.With("service", "elile", "env", string(cfg.Environment)), nil
}

// newKeyring builds the encryption keyring from the configuration. The
// blind-index root is BLIND_INDEX_KEY, or derived from key version 1.
func newKeyring(cfg config.Config) (*fieldcrypt.Keyring, error) {
	keys, active, blind := cfg.EncryptionKeyring()
	if len(keys) == 0 {
		return nil, configError{errors.New("ENCRYPTION_KEY: no encryption key configured")}
	}
	if blind == nil {
		var err error
		if blind, err = fieldcrypt.DeriveBlindRoot(keys[1]); err != nil {
			return nil, err
		}
	}
	k, err := fieldcrypt.NewKeyring(keys, active, blind)
	if err != nil {
		return nil, configError{err}
	}
	return k, nil
}

// openKMS opens the key provider the configuration names, and the
// platform's configured KEK when one is named. A wrong PIN, an unknown
// token or key, a key of the wrong type: an error that says which.
func openKMS(ctx context.Context, cfg config.Config, ring *fieldcrypt.Keyring) (kms.Provider, *kms.KEK, error) {
	var (
		p   kms.Provider
		ref string
		err error
	)
	switch cfg.KMSProvider {
	case "pkcs11":
		p, err = kms.NewPKCS11(kms.PKCS11Config{Module: cfg.PKCS11Module, TokenLabel: cfg.PKCS11TokenLabel, PIN: cfg.PKCS11PIN.Reveal()})
		ref = cfg.PKCS11KeyLabel
	case "awskms":
		p, err = kms.NewAWS(ctx, kms.AWSConfig{Region: cfg.AWSRegion, Endpoint: cfg.AWSKMSEndpoint})
		ref = cfg.AWSKMSKeyID
	default:
		p, err = kms.NewLocal(fieldcrypt.LocalMaster(ring))
	}
	if err != nil {
		return nil, nil, configError{fmt.Errorf("KMS_PROVIDER=%s: %w", cfg.KMSProvider, err)}
	}
	if ref == "" {
		return p, nil, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kek, err := p.FindKEK(fctx, ref)
	if err != nil {
		_ = p.Close()
		return nil, nil, configError{fmt.Errorf("KMS_PROVIDER=%s: the platform key %q: %w", cfg.KMSProvider, ref, err)}
	}
	return p, &kek, nil
}

// storeOptions are the pool options for cfg with its keys: the
// environment keyring and the key provider. close releases the provider.
func storeOptions(ctx context.Context, cfg config.Config, maxConns int32) (postgres.Options, func(), error) {
	ring, err := newKeyring(cfg)
	if err != nil {
		return postgres.Options{}, nil, err
	}
	p, kek, err := openKMS(ctx, cfg, ring)
	if err != nil {
		return postgres.Options{}, nil, err
	}
	return postgres.Options{
		URL: cfg.DatabaseURL.Reveal(), MaxConns: maxConns, AcquireTimeout: cfg.DatabaseAcquireTimeout,
		TransactionPooler: cfg.DatabasePoolMode == "transaction", ExecMode: cfg.DatabaseExecMode, DirectURL: cfg.DatabaseDirectURL.Reveal(),
		Keyring: ring, KMS: p, KMSCache: kms.NewCache(p, cfg.KMSCacheTTL, cfg.KMSCacheSize, nil), PlatformKEK: kek,
	}, func() { _ = p.Close() }, nil
}

// retry calls fn until it succeeds, ctx ends or timeout passes, pausing
// between attempts, and returns fn's last error.
func retry(ctx context.Context, timeout time.Duration, log *slog.Logger, what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if attempt == 1 || attempt%5 == 0 {
			log.WarnContext(ctx, what+": not yet", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: gave up after %s: %w", what, timeout, err)
			}
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
