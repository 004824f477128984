package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// ChainReader reads a chain for verification.
type ChainReader interface {
	// AuditChain calls each for every seal of tenant t's chain in order,
	// with the seal's hash list and the events now stored in its range.
	AuditChain(ctx context.Context, t uuid.UUID, each func(Seal, [][32]byte, []Ref) error) error
	// RetentionRecords lists the retention records as stored, signed or
	// not: Verify decides which to trust.
	RetentionRecords(ctx context.Context) ([]Retention, error)
	// UnsealedEvents counts chain t's events created at or after since that
	// are neither waiting for a seal nor sealed: every event passes
	// through one or the other.
	UnsealedEvents(ctx context.Context, t uuid.UUID, since time.Time) (int64, error)
}

// Ref is a stored event as verification needs it: its id and hash.
type Ref struct {
	ID   uuid.UUID
	Hash [32]byte
}

// Finding is one problem verification found.
type Finding struct {
	Seq     int64     `json:"seal_seq,omitempty"`
	AuditID uuid.UUID `json:"audit_id,omitzero"`
	Kind    string    `json:"kind"` // modified, deleted, inserted, reordered, bad_signature, broken_link, checkpoint
	Detail  string    `json:"detail"`
}

// MaxFindings bounds the problems one verification reports.
const MaxFindings = 100

// Report is the outcome of verifying a chain.
type Report struct {
	Status        string      `json:"status"` // intact or tampered
	EventsChecked int64       `json:"events_checked"`
	SealsChecked  int         `json:"seals_checked"`
	LastSealedAt  *time.Time  `json:"last_sealed_at"`
	Head          *Checkpoint `json:"head,omitempty"`
	Problems      []Finding   `json:"problems"`
}

// retentionGrace: seals made this long after the retention cutoff may
// cover events that were dropped with their partition.
const retentionGrace = time.Hour

// Verify recomputes tenant t's chain: every seal's signature with pub, its
// link to the one before, and the hashes of the events now stored in its
// range against the authenticated list, naming the first bad event. With a
// checkpoint saved earlier, it also proves the chain still contains it, so
// a rewrite or truncation by someone with database access is caught.
func Verify(ctx context.Context, r ChainReader, t uuid.UUID, pub ed25519.PublicKey, cp *Checkpoint) (Report, error) {
	rep := Report{Status: "intact", Problems: []Finding{}}
	var prev *Seal
	first := true
	var cpFound bool
	add := func(f Finding) {
		if len(rep.Problems) < MaxFindings {
			rep.Problems = append(rep.Problems, f)
		}
	}
	cutoff, err := trustedCutoff(ctx, r, pub, add)
	if err != nil {
		return rep, err
	}
	err = r.AuditChain(ctx, t, func(s Seal, hashes [][32]byte, evs []Ref) error {
		rep.SealsChecked++
		at := s.At
		rep.LastSealedAt = &at
		c := CheckpointOf(s)
		if err := VerifyCheckpoint(c, pub); err != nil {
			add(Finding{Seq: s.Seq, Kind: "bad_signature", Detail: "seal signature does not verify with the audit public key"})
		}
		if prev != nil && (s.Seq != prev.Seq+1 || s.PrevHash != prev.Hash || s.CumulativeCount != prev.CumulativeCount+int64(s.EventCount)) {
			add(Finding{Seq: s.Seq, Kind: "broken_link", Detail: "seal does not follow the one before it (removed, inserted or altered seal)"})
		}
		if prev == nil && s.Seq == 1 && s.PrevHash != ([32]byte{}) {
			add(Finding{Seq: s.Seq, Kind: "broken_link", Detail: "first seal has a predecessor hash"})
		}
		if SealHash(s.PrevHash, s.Tenant, s.Seq, s.HorizonFrom, s.HorizonTo, s.CumulativeCount, hashes) != s.Hash || len(hashes) != s.EventCount {
			add(Finding{Seq: s.Seq, Kind: "modified", Detail: "seal's event hash list does not match its hash"})
		}
		if cp != nil && cp.Seq == s.Seq {
			cpFound = true
			if cp.SealHash != hex.EncodeToString(s.Hash[:]) || cp.CumulativeCount != s.CumulativeCount {
				add(Finding{Seq: s.Seq, Kind: "checkpoint", Detail: "the log no longer contains the saved checkpoint: it was rewritten"})
			}
		}
		prev = &s
		if !cutoff.IsZero() && s.At.Before(cutoff.Add(retentionGrace)) {
			return nil // events dropped by retention: links and signatures only
		}
		first = false
		rep.EventsChecked += int64(len(evs))
		compareEvents(s, hashes, evs, add)
		return nil
	})
	if err != nil {
		return rep, err
	}
	if prev != nil {
		h := CheckpointOf(*prev)
		rep.Head = &h
		if !first {
			// Events since the retention cutoff that no seal lists and no
			// round is waiting to seal were written past the sealer.
			n, err := r.UnsealedEvents(ctx, t, cutoff)
			if err != nil {
				return rep, err
			}
			if n > 0 {
				add(Finding{Kind: "inserted", Detail: fmt.Sprintf("%d events are neither sealed nor waiting for a seal", n)})
			}
		}
	}
	if cp != nil {
		if err := VerifyCheckpoint(*cp, pub); err != nil {
			add(Finding{Kind: "checkpoint", Detail: "the saved checkpoint's signature does not verify"})
		} else if !cpFound {
			add(Finding{Seq: cp.Seq, Kind: "checkpoint", Detail: "the saved checkpoint's seal is missing: the log was truncated or rewritten"})
		}
	}
	if len(rep.Problems) > 0 {
		rep.Status = "tampered"
	}
	return rep, nil
}

// trustedCutoff is the latest cutoff of a retention record signed with
// pub: events before it were dropped on purpose. A record that does not
// verify is reported and ignored.
func trustedCutoff(ctx context.Context, r ChainReader, pub ed25519.PublicKey, add func(Finding)) (time.Time, error) {
	recs, err := r.RetentionRecords(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var cutoff time.Time
	for _, rec := range recs {
		if VerifyRetention(rec, pub) != nil {
			add(Finding{Kind: "bad_signature", Detail: fmt.Sprintf("retention record (cutoff %s) is not signed by the audit key: ignored", rec.Cutoff.UTC().Format(time.RFC3339))})
			continue
		}
		if rec.Cutoff.After(cutoff) {
			cutoff = rec.Cutoff
		}
	}
	return cutoff, nil
}

// compareEvents walks the authenticated hashes and the stored events side
// by side and reports the first difference: a sealed event missing
// (deleted), a stored event the seal does not have (inserted), one found
// elsewhere in the seal (reordered), or one whose content changed
// (modified).
func compareEvents(s Seal, want [][32]byte, evs []Ref, add func(Finding)) {
	got := make([][32]byte, len(evs))
	for i, e := range evs {
		got[i] = e.Hash
	}
	index := make(map[[32]byte]int, len(want))
	for i, h := range want {
		index[h] = i
	}
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(got):
			add(Finding{Seq: s.Seq, Kind: "deleted", Detail: fmt.Sprintf("sealed event %d of %d is missing", i+1, len(want))})
			return
		case i >= len(want):
			add(Finding{Seq: s.Seq, AuditID: evs[i].ID, Kind: "inserted", Detail: "event in a sealed range that the seal does not cover"})
			return
		case got[i] == want[i]:
			continue
		}
		j, known := index[got[i]]
		switch {
		case known && j > i && len(got) < len(want):
			add(Finding{Seq: s.Seq, Kind: "deleted", Detail: fmt.Sprintf("sealed event %d of %d is missing (next present: %s)", i+1, len(want), evs[i].ID)})
		case !known && i+1 < len(got) && got[i+1] == want[i]:
			add(Finding{Seq: s.Seq, AuditID: evs[i].ID, Kind: "inserted", Detail: fmt.Sprintf("event at position %d was not sealed", i+1)})
		case known:
			add(Finding{Seq: s.Seq, AuditID: evs[i].ID, Kind: "reordered", Detail: fmt.Sprintf("sealed as event %d, now at position %d", j+1, i+1)})
		default:
			add(Finding{Seq: s.Seq, AuditID: evs[i].ID, Kind: "modified", Detail: fmt.Sprintf("event %d of the seal differs from what was sealed", i+1)})
		}
		return
	}
}
