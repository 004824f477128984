package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
)

const keysUsage = "usage: elile keys generate | status [--json] | rotate [--batch N] [--json] | blind-index-key"

func cmdKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New(keysUsage)}
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "JSON output")
	batch := fs.Int("batch", 500, "rows per transaction (rotate)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if *batch < 1 || *batch > 10000 {
		return usageError{fmt.Errorf("--batch must be 1..10000")}
	}
	switch args[0] {
	case "generate":
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(fieldcrypt.GenerateKey()))
		return nil
	case "status", "rotate", "blind-index-key":
	default:
		return usageError{fmt.Errorf("unknown keys command %q; %s", args[0], keysUsage)}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	ring, err := newKeyring(cfg)
	if err != nil {
		return err
	}
	if args[0] == "blind-index-key" {
		keys, _, blind := cfg.EncryptionKeyring()
		if blind == nil {
			blind, _ = fieldcrypt.DeriveBlindRoot(keys[1])
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(blind))
		return nil
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, postgres.Options{URL: cfg.DatabaseURL.Reveal(), MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.WaitReady(ctx, cfg.DatabaseConnectTimeout, log); err != nil {
		return err
	}
	if args[0] == "status" {
		return keysStatus(ctx, db, ring, *asJSON, stdout)
	}
	return keysRotate(ctx, db, ring, *batch, *asJSON || !isTerminal(stdout), stdout)
}

func keysStatus(ctx context.Context, db *postgres.DB, ring *fieldcrypt.Keyring, asJSON bool, stdout io.Writer) error {
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	inUse := map[uint32]bool{}
	for _, u := range usage {
		inUse[u.Version] = true
	}
	var removable, missing []uint32
	for _, v := range ring.Versions() {
		if !inUse[v] && v != ring.Active() {
			removable = append(removable, v)
		}
	}
	for v := range inUse {
		if !slices.Contains(ring.Versions(), v) {
			missing = append(missing, v)
		}
	}
	slices.Sort(missing)
	if asJSON {
		type col struct {
			Table   string `json:"table"`
			Column  string `json:"column"`
			Version uint32 `json:"version"`
			Count   int64  `json:"count"`
		}
		cols := make([]col, 0, len(usage))
		for _, u := range usage {
			cols = append(cols, col{u.Table, u.Column, u.Version, u.Count})
		}
		return json.NewEncoder(stdout).Encode(map[string]any{
			"active": ring.Active(), "configured": ring.Versions(), "usage": cols,
			"removable": nonNil(removable), "missing": nonNil(missing),
		})
	}
	fmt.Fprintf(stdout, "active key version: %d\nconfigured versions: %v\n\n", ring.Active(), ring.Versions())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tCOLUMN\tVERSION\tVALUES")
	for _, u := range usage {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", u.Table, u.Column, u.Version, u.Count)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nversions no value uses (safe to remove): %v\n", removable)
	if len(missing) > 0 {
		fmt.Fprintf(stdout, "versions in use but NOT configured (those values cannot be read): %v\n", missing)
	}
	fmt.Fprintln(stdout, "audit_events keep the key they were written with (they are sealed): keep those versions while the events are retained.")
	return nil
}

func nonNil(s []uint32) []uint32 {
	if s == nil {
		return []uint32{}
	}
	return s
}

func keysRotate(ctx context.Context, db *postgres.DB, ring *fieldcrypt.Keyring, batch int, jsonLines bool, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	var lastDraw time.Time
	res, err := db.RotateKeys(ctx, ring, batch, func(p postgres.RotationProgress) {
		rate := float64(p.Done) / max(p.Elapsed.Seconds(), 1e-3)
		if jsonLines {
			_ = enc.Encode(map[string]any{"event": "progress", "table": p.Table, "column": p.Column,
				"done": p.Done, "total": p.Total, "failed": p.Failed, "rows_per_second": int64(rate)})
			return
		}
		if time.Since(lastDraw) < 100*time.Millisecond && p.Done < p.Total {
			return
		}
		lastDraw = time.Now()
		const width = 30
		filled := int(float64(width) * float64(p.Done) / float64(max(p.Total, 1)))
		fmt.Fprintf(stdout, "\r[%s%s] %3d%% %d/%d values  %.0f/s  %s.%s   ",
			strings.Repeat("#", filled), strings.Repeat("-", width-filled),
			100*p.Done/max(p.Total, 1), p.Done, p.Total, rate, p.Table, p.Column)
	})
	if !jsonLines {
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return fmt.Errorf("rotation stopped (run it again to continue): %w", err)
	}
	if jsonLines {
		_ = enc.Encode(map[string]any{"event": "done", "rotated": res.Rotated, "failed": len(res.Failures),
			"seconds": res.Elapsed.Seconds(), "active": ring.Active()})
	} else {
		fmt.Fprintf(stdout, "re-encrypted %d values to key version %d in %s; %d failed\n",
			res.Rotated, ring.Active(), res.Elapsed.Round(time.Millisecond), len(res.Failures))
	}
	for _, f := range res.Failures {
		fmt.Fprintf(stdout, "failed: %s.%s %s: %v\n", f.Table, f.Column, f.ID, f.Err)
	}
	if len(res.Failures) > 0 {
		return failedCheck{fmt.Sprintf("%d values could not be re-encrypted", len(res.Failures))}
	}
	return nil
}

// isTerminal reports whether w is a terminal (character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
