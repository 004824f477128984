package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// KeyCheck compares the environment keys a process holds with what the
// database remembers (key_fingerprints).
type KeyCheck struct {
	// Wrong: versions configured with another key than the one the
	// database remembers under that version (0: the blind-index root).
	// Data written under them cannot be read with this configuration.
	Wrong []uint32
	// Missing: versions the database remembers that this process does
	// not hold. Values may still be sealed under them (elile keys status
	// says how many); reading those fails.
	Missing []uint32
}

// Err is the check as an error that names what to fix: nil unless a key
// is wrong.
func (c KeyCheck) Err() error {
	if len(c.Wrong) == 0 {
		return nil
	}
	return fmt.Errorf("ENCRYPTION_KEYS / BLIND_INDEX_KEY: key version(s) %v are not the keys this database was written with "+
		"(their fingerprints differ from the ones it recorded; version 0 is the blind-index root). "+
		"Configure the original keys for these versions; a new key needs a new version number", c.Wrong)
}

// CheckKeys compares fps (version -> fieldcrypt.Fingerprint) with the
// fingerprints the database remembers. With record, it first records the
// versions it has never seen (the first holder of a version defines it;
// two processes recording at once cannot both win).
func (db *DB) CheckKeys(ctx context.Context, fps map[uint32]string, record bool) (KeyCheck, error) {
	var out KeyCheck
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		if record {
			vs := slices.Sorted(maps.Keys(fps))
			ints := make([]int32, len(vs))
			prints := make([]string, len(vs))
			for i, v := range vs {
				ints[i], prints[i] = int32(v), fps[v] //nolint:gosec // versions are below 2^24
			}
			if _, err := tx.Exec(ctx, `INSERT INTO key_fingerprints (version, fingerprint)
				SELECT * FROM unnest($1::int[], $2::text[]) ON CONFLICT (version) DO NOTHING`, ints, prints); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT version, fingerprint FROM key_fingerprints ORDER BY version`)
		if err != nil {
			return err
		}
		known := map[uint32]string{}
		defer rows.Close()
		for rows.Next() {
			var v int32
			var f string
			if err := rows.Scan(&v, &f); err != nil {
				return err
			}
			known[uint32(v)] = f //nolint:gosec // checked: 0..2^24
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, v := range slices.Sorted(maps.Keys(known)) {
			f, held := fps[v]
			switch {
			case !held:
				out.Missing = append(out.Missing, v)
			case f != known[v]:
				out.Wrong = append(out.Wrong, v)
			}
		}
		return nil
	})
	return out, err
}

// Instance is a running server as it reports itself.
type Instance struct {
	ID           uuid.UUID
	Build, Host  string
	KMSProvider  string
	Fingerprints map[uint32]string // environment key versions held (0: the blind-index root)
	Started      time.Time
	Seen         time.Time
}

// Holds reports whether in holds version v with fingerprint f.
func (in Instance) Holds(v uint32, f string) bool {
	held, ok := in.Fingerprints[v]
	return ok && held == f
}

// Heartbeat records in as running now, and forgets servers not seen for a
// day (killed without deregistering). The update takes its values from
// EXCLUDED: Citus refuses a function such as now() in DO UPDATE SET on a
// reference table (found on the local cluster, docs/citus-trial.md §7).
func (db *DB) Heartbeat(ctx context.Context, in Instance) error {
	vs := slices.Sorted(maps.Keys(in.Fingerprints))
	ints := make([]int32, len(vs))
	prints := make([]string, len(vs))
	for i, v := range vs {
		ints[i], prints[i] = int32(v), in.Fingerprints[v] //nolint:gosec // versions are below 2^24
	}
	return db.InPlatformTx(ctx, func(tx *Tx) error {
		tx.Queue(`INSERT INTO server_instances (instance_id, build, host, kms_provider, key_versions, fingerprints, started_at, seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, now())
			ON CONFLICT (instance_id) DO UPDATE SET seen_at = EXCLUDED.seen_at, key_versions = EXCLUDED.key_versions, fingerprints = EXCLUDED.fingerprints`,
			in.ID, in.Build, in.Host, in.KMSProvider, ints, prints, in.Started)
		tx.Queue(`DELETE FROM server_instances WHERE seen_at < now() - interval '1 day'`)
		return nil
	})
}

// Deregister removes a stopping server.
func (db *DB) Deregister(ctx context.Context, id uuid.UUID) error {
	return db.InPlatformTx(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM server_instances WHERE instance_id = $1`, id)
		return err
	})
}

// LiveInstances are the servers that reported within the last `within`.
func (db *DB) LiveInstances(ctx context.Context, within time.Duration) ([]Instance, error) {
	var out []Instance
	err := db.InPlatformTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT instance_id, build, host, kms_provider, key_versions, fingerprints, started_at, seen_at
			FROM server_instances WHERE seen_at > now() - make_interval(secs => $1) ORDER BY started_at`, within.Seconds())
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Instance, error) {
			var in Instance
			var vs []int32
			var fs []string
			if err := r.Scan(&in.ID, &in.Build, &in.Host, &in.KMSProvider, &vs, &fs, &in.Started, &in.Seen); err != nil {
				return in, err
			}
			in.Fingerprints = make(map[uint32]string, len(vs))
			for i, v := range vs {
				in.Fingerprints[uint32(v)] = fs[i] //nolint:gosec // checked: 0..2^24
			}
			return in, nil
		})
		return err
	})
	return out, err
}
