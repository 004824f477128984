package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/fieldcrypt"
	"github.com/elile/elile/internal/postgres"
)

//nolint:gochecknoglobals // the keys commands' usage, read-only
var (
	keysCommands = map[string]subcommand{
		"generate":        {"elile keys generate", "print a new random key (base64, 32 bytes)"},
		"status":          {"elile keys status [--json]", "key versions configured and in use, per table and column; tenants' key-encryption keys"},
		"rotate":          {"elile keys rotate [--batch N] [--json] [--force]", "re-encrypt stored data to the active keys, online and resumable"},
		"rotate-dek":      {"elile keys rotate-dek --tenant ID|platform [--force]", "give a tenant a new data key (then run elile keys rotate)"},
		"rotate-kek":      {"elile keys rotate-kek [--older-than 720h] [--json] [--force]", "re-wrap tenants' data keys under new key-encryption keys"},
		"reindex":         {"elile keys reindex --tenant ID|platform [--batch N] [--force]", "give a tenant a new blind-index key and re-index its identifiers"},
		"blind-index-key": {"elile keys blind-index-key", "print the blind-index root key, to pin as BLIND_INDEX_KEY"},
	}
	keysOrder = []string{"generate", "status", "rotate", "rotate-dek", "rotate-kek", "reindex", "blind-index-key"}
)

func cmdKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, err := group("keys", args, keysCommands, keysOrder, stdout)
	if err != nil {
		return err
	}
	// Each command takes only its own flags.
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	var asJSON, force bool
	batch, tenantFlag, olderThan := 500, "", 30*24*time.Hour
	const forceDoc = "go ahead although a live server holds other keys or another key provider than this command"
	switch sub {
	case "rotate", "rotate-dek", "rotate-kek", "reindex":
		fs.BoolVar(&force, "force", false, forceDoc)
	}
	switch sub {
	case "status":
		fs.BoolVar(&asJSON, "json", false, "JSON output")
	case "rotate":
		fs.IntVar(&batch, "batch", batch, "rows per transaction (1..10000)")
		fs.BoolVar(&asJSON, "json", false, "JSON lines: progress, then the result")
	case "rotate-dek":
		fs.StringVar(&tenantFlag, "tenant", "", "the tenant id, or platform (required)")
	case "rotate-kek":
		fs.DurationVar(&olderThan, "older-than", olderThan, "rotate the key-encryption keys at least this old (0: all)")
		fs.BoolVar(&asJSON, "json", false, "JSON lines: progress, then the result")
	case "reindex":
		fs.StringVar(&tenantFlag, "tenant", "", "the tenant id, or platform (required)")
		fs.IntVar(&batch, "batch", batch, "entities per transaction (1..10000)")
	}
	if err := parseFlags(fs, args[1:], stdout, keysCommands[sub].use, keysCommands[sub].about); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q\nusage: %s", fs.Arg(0), keysCommands[sub].use)}
	}
	if batch < 1 || batch > 10000 {
		return usageError{fmt.Errorf("--batch must be 1..10000")}
	}
	if sub == "generate" {
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(fieldcrypt.GenerateKey()))
		return nil
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if sub == "blind-index-key" {
		keys, _, blind := cfg.EncryptionKeyring()
		if blind == nil {
			blind, _ = fieldcrypt.DeriveBlindRoot(keys[1])
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(blind))
		return nil
	}
	db, closeDB, err := openDB(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	if sub == "status" {
		return keysStatus(ctx, db, asJSON, stdout)
	}
	// Every change of keys below must be one every live server can follow:
	// the same key provider, and the environment keys this command holds.
	live, err := db.LiveInstances(ctx, liveWithin)
	if err != nil {
		return err
	}
	if problems := serverMismatches(live, db.DataKeys()); len(problems) > 0 {
		if !force {
			return fmt.Errorf("refusing to change keys: %s\nstart those servers with this configuration's keys (or stop them), or pass --force", strings.Join(problems, "; "))
		}
		fmt.Fprintf(stderr, "warning: going ahead (--force) although %s\n", strings.Join(problems, "; "))
	}
	if sub == "rotate-kek" {
		return keysRotateKEK(ctx, db, olderThan, asJSON, isTerminal(stdout), stdout)
	}
	t := uuid.Nil
	if sub == "rotate-dek" || sub == "reindex" {
		if tenantFlag != "platform" {
			if t, err = uuid.Parse(tenantFlag); err != nil {
				return usageError{errors.New("--tenant must be a tenant id or platform")}
			}
		}
	}
	if sub == "reindex" {
		res, err := db.Reindex(ctx, t, batch, func(d time.Duration) error {
			fmt.Fprintf(stdout, "new blind key in place; waiting %s for every server to index under both keys\n", d.Round(time.Second))
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, nil)
		if err != nil {
			return fmt.Errorf("re-index stopped (run it again to continue): %w", err)
		}
		fmt.Fprintf(stdout, "blind key %d: %d entities indexed, %d old indexes deleted, old key retired, in %s\n",
			res.NewKey, res.Indexed, res.Dropped, res.Elapsed.Round(time.Millisecond))
		return nil
	}
	if sub == "rotate-dek" {
		id, err := db.RotateDataKey(ctx, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new data key %d; run elile keys rotate to re-encrypt the values under the old one\n", id)
		return nil
	}
	return keysRotate(ctx, db, batch, asJSON, isTerminal(stdout), stdout)
}

// liveWithin is how recently a server must have reported to count as
// live: three heartbeats.
const liveWithin = 3 * heartbeatEvery

// serverMismatches lists the live servers that could not follow a key
// change made with this command's configuration: another key provider,
// or an environment key version this command holds that they lack or hold
// with another key.
func serverMismatches(live []postgres.Instance, keys *fieldcrypt.Keys) []string {
	var fps map[uint32]string
	if ring := keys.Legacy(); ring != nil {
		fps = ring.Fingerprints()
	}
	var out []string
	for _, in := range live {
		name := fmt.Sprintf("server %s on %s (seen %s ago)", in.ID, in.Host, time.Since(in.Seen).Round(time.Second))
		if in.KMSProvider != keys.Provider().Name() {
			out = append(out, fmt.Sprintf("%s uses key provider %s, this command %s", name, in.KMSProvider, keys.Provider().Name()))
		}
		for _, v := range slices.Sorted(maps.Keys(fps)) {
			if !in.Holds(v, fps[v]) {
				out = append(out, fmt.Sprintf("%s lacks environment key version %d (fingerprint %s)", name, v, fps[v]))
			}
		}
	}
	return out
}

func keysStatus(ctx context.Context, db *postgres.DB, asJSON bool, stdout io.Writer) error {
	keys := db.DataKeys()
	ring := keys.Legacy()
	usage, err := db.KeyUsage(ctx)
	if err != nil {
		return err
	}
	keks, err := db.KEKVersions(ctx)
	if err != nil {
		return err
	}
	stale, err := db.StaleValues(ctx)
	if err != nil {
		return err
	}
	inUse := map[uint32]bool{}
	type col struct {
		Table   string `json:"table"`
		Column  string `json:"column"`
		Key     string `json:"key"`
		Version uint32 `json:"version,omitempty"`
		Count   int64  `json:"count"`
	}
	// Tenant keys are summed per column; environment versions are listed.
	var cols []col
	tenantCount := map[string]int{}
	for _, u := range usage {
		if u.Version >= fieldcrypt.DEKBase {
			k := u.Table + "." + u.Column
			if i, ok := tenantCount[k]; ok {
				cols[i].Count += u.Count
				continue
			}
			tenantCount[k] = len(cols)
			cols = append(cols, col{u.Table, u.Column, "tenant", 0, u.Count})
			continue
		}
		inUse[u.Version] = true
		cols = append(cols, col{u.Table, u.Column, "environment", u.Version, u.Count})
	}
	var configured, removable, missing []uint32
	if ring != nil {
		configured = ring.Versions()
	}
	for _, v := range configured {
		if !inUse[v] {
			removable = append(removable, v)
		}
	}
	for v := range inUse {
		if !slices.Contains(configured, v) {
			missing = append(missing, v)
		}
	}
	slices.Sort(missing)
	type kekVersion struct {
		Version   int   `json:"version"`
		Tenants   int   `json:"tenants"`
		DataKeys  int64 `json:"data_keys"`
		Destroyed int   `json:"destroyed"`
		BYOK      int   `json:"byok"`
	}
	byVersion := map[int]*kekVersion{}
	for _, k := range keks {
		v := byVersion[k.Version]
		if v == nil {
			v = &kekVersion{Version: k.Version}
			byVersion[k.Version] = v
		}
		v.Tenants++
		v.DataKeys += k.DataKeys
		if k.DestroyedAt != nil {
			v.Destroyed++
		}
		if k.BYOK {
			v.BYOK++
		}
	}
	versions := make([]kekVersion, 0, len(byVersion))
	for _, n := range slices.Sorted(maps.Keys(byVersion)) {
		versions = append(versions, *byVersion[n])
	}
	live, err := db.LiveInstances(ctx, liveWithin)
	if err != nil {
		return err
	}
	mismatches := serverMismatches(live, keys)
	type server struct {
		ID           string            `json:"instance_id"`
		Host         string            `json:"host"`
		Build        string            `json:"build"`
		Provider     string            `json:"kms_provider"`
		Fingerprints map[uint32]string `json:"key_fingerprints"`
		SeenAt       time.Time         `json:"seen_at"`
	}
	servers := make([]server, 0, len(live))
	for _, in := range live {
		servers = append(servers, server{in.ID.String(), in.Host, in.Build, in.KMSProvider, in.Fingerprints, in.Seen.UTC()})
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"servers": servers, "server_mismatches": append([]string{}, mismatches...),
			"provider": keys.Provider().Name(), "kek_versions": versions, "usage": cols,
			"environment_keyring":  map[string]any{"configured": nonNil(configured), "removable": nonNil(removable), "missing": nonNil(missing)},
			"not_under_active_key": stale,
		})
	}
	fmt.Fprintf(stdout, "key provider: %s\n\n", keys.Provider().Name())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEK VERSION\tTENANTS\tDATA KEYS\tDESTROYED\tBYOK")
	for _, v := range versions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\n", v.Version, v.Tenants, v.DataKeys, v.Destroyed, v.BYOK)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tCOLUMN\tKEY\tVALUES")
	for _, c := range cols {
		key := "tenant keys"
		if c.Key == "environment" {
			key = fmt.Sprintf("environment v%d", c.Version)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", c.Table, c.Column, key, c.Count)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nvalues not under their tenant's active data key: %d", stale)
	if stale > 0 {
		fmt.Fprint(stdout, " (elile keys rotate re-encrypts them)")
	}
	fmt.Fprintf(stdout, "\nenvironment keyring versions configured: %v; used by no value (safe to remove): %v\n", configured, removable)
	if len(missing) > 0 {
		fmt.Fprintf(stdout, "environment versions in use but NOT configured (those values cannot be read): %v\n", missing)
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIVE SERVER\tHOST\tBUILD\tPROVIDER\tKEYS (version:fingerprint; 0 = blind-index root)")
	for _, sv := range servers {
		var ks []string
		for _, v := range slices.Sorted(maps.Keys(sv.Fingerprints)) {
			ks = append(ks, fmt.Sprintf("%d:%s", v, sv.Fingerprints[v]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sv.ID, sv.Host, sv.Build, sv.Provider, strings.Join(ks, " "))
	}
	tw.Flush()
	for _, m := range mismatches {
		fmt.Fprintf(stdout, "NOT LIKE THIS COMMAND: %s (key commands refuse to run without --force)\n", m)
	}
	fmt.Fprintln(stdout, "audit_events keep the key they were written with (they are sealed): keep those environment versions while the events are retained.")
	return nil
}

func nonNil(s []uint32) []uint32 {
	if s == nil {
		return []uint32{}
	}
	return s
}

// keysRotate reports as JSON lines with --json; else, on a terminal, with
// a progress bar, and otherwise with the summary alone.
func keysRotate(ctx context.Context, db *postgres.DB, batch int, jsonLines, tty bool, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	var lastDraw time.Time
	res, err := db.RotateKeys(ctx, batch, func(p postgres.RotationProgress) {
		rate := float64(p.Done) / max(p.Elapsed.Seconds(), 1e-3)
		if jsonLines {
			_ = enc.Encode(map[string]any{"event": "progress", "table": p.Table, "column": p.Column,
				"done": p.Done, "total": p.Total, "failed": p.Failed, "rows_per_second": int64(rate)})
			return
		}
		if !tty || time.Since(lastDraw) < 100*time.Millisecond && p.Done < p.Total {
			return
		}
		lastDraw = time.Now()
		const width = 30
		filled := int(float64(width) * float64(p.Done) / float64(max(p.Total, 1)))
		fmt.Fprintf(stdout, "\r[%s%s] %3d%% %d/%d values  %.0f/s  %s.%s   ",
			strings.Repeat("#", filled), strings.Repeat("-", width-filled),
			100*p.Done/max(p.Total, 1), p.Done, p.Total, rate, p.Table, p.Column)
	})
	if !jsonLines && tty {
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return fmt.Errorf("rotation stopped (run it again to continue): %w", err)
	}
	if jsonLines {
		_ = enc.Encode(map[string]any{"event": "done", "rotated": res.Rotated, "failed": len(res.Failures),
			"seconds": res.Elapsed.Seconds()})
	} else {
		fmt.Fprintf(stdout, "re-encrypted %d values to their tenants' active data keys in %s; %d failed\n",
			res.Rotated, res.Elapsed.Round(time.Millisecond), len(res.Failures))
	}
	for _, f := range res.Failures {
		fmt.Fprintf(stdout, "failed: %s.%s %s: %v\n", f.Table, f.Column, f.ID, f.Err)
	}
	if len(res.Failures) > 0 {
		return failedCheck{fmt.Sprintf("%d values could not be re-encrypted", len(res.Failures))}
	}
	return nil
}

// keysRotateKEK gives every tenant whose KEK is older than olderThan a new
// KEK version and re-wraps its data keys (postgres.RotateKEKs).
func keysRotateKEK(ctx context.Context, db *postgres.DB, olderThan time.Duration, jsonLines, tty bool, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	res, err := db.RotateKEKs(ctx, olderThan, func(p postgres.KEKRotationProgress) {
		if jsonLines {
			_ = enc.Encode(map[string]any{"event": "progress", "tenant_id": p.Tenant, "done": p.Done, "total": p.Total})
			return
		}
		if tty {
			fmt.Fprintf(stdout, "\r%d/%d tenants   ", p.Done, p.Total)
		}
	})
	if !jsonLines && tty {
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return fmt.Errorf("KEK rotation stopped (run it again to continue): %w", err)
	}
	if jsonLines {
		return enc.Encode(map[string]any{"event": "done", "rotated": res.Rotated, "finished": res.Finished,
			"rewrapped": res.Rewraps, "seconds": res.Elapsed.Seconds()})
	}
	fmt.Fprintf(stdout, "%d tenants given a new KEK version, %d interrupted re-wraps finished, %d data keys re-wrapped in %s\n",
		res.Rotated, res.Finished, res.Rewraps, res.Elapsed.Round(time.Millisecond))
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
