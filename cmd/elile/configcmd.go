package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/elile/elile/internal/config"
)

func cmdConfig(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmds := map[string]subcommand{"check": {"elile config check [--json]",
		"validate the configuration (environment variables, and .env in development) and print it, secrets redacted; " +
			"when the database answers, check the encryption keys are the ones it was written with; exit 2 when invalid"}}
	if _, err := group("config", args, cmds, []string{"check"}, stdout); err != nil {
		return err
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout, cmds["check"].use, cmds["check"].about); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	keys, keysErr := checkKeysAgainstDB(ctx, cfg, stderr)
	pairs := cfg.Redacted()
	if *asJSON {
		m := make(map[string]string, len(pairs))
		for _, p := range pairs {
			m[p[0]] = p[1]
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"valid": keysErr == nil, "config": m, "keys": keys}); err != nil {
			return err
		}
		return keysErr
	}
	if keysErr != nil {
		return keysErr
	}
	fmt.Fprintln(stdout, "configuration is valid:")
	for _, p := range pairs {
		fmt.Fprintf(stdout, "  %s=%s\n", p[0], p[1])
	}
	fmt.Fprintf(stdout, "encryption keys: %s\n", keys)
	return nil
}

// checkKeysAgainstDB compares the configured environment keys with the
// fingerprints the database remembers (without recording any): a wrong
// key is a configuration error (exit 2). A database that does not answer
// within 5 s leaves the keys unchecked, which is said, not an error.
func checkKeysAgainstDB(ctx context.Context, cfg config.Config, stderr io.Writer) (string, error) {
	ring, err := newKeyring(cfg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	db, closeDB, err := openDB(ctx, cfg, io.Discard)
	if err != nil {
		return fmt.Sprintf("not checked against the database (%v)", err), nil
	}
	defer closeDB()
	check, err := db.CheckKeys(ctx, ring.Fingerprints(), false)
	if err != nil {
		return fmt.Sprintf("not checked against the database (%v)", err), nil
	}
	if err := check.Err(); err != nil {
		return "wrong", configError{err}
	}
	if len(check.Missing) > 0 {
		fmt.Fprintf(stderr, "warning: environment key version(s) %v are remembered by the database but not configured: values sealed under them cannot be read (elile keys status)\n", check.Missing)
		return fmt.Sprintf("match the database; versions %v not configured", check.Missing), nil
	}
	return "match the database", nil
}
