package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Stored is an audit row exactly as the database holds it: what the seal
// hashes cover.
type Stored struct {
	ID            uuid.UUID
	At            time.Time // microsecond precision, as PostgreSQL stores it
	TxID          uint64
	Tenant        uuid.UUID // uuid.Nil: system event
	Type          string
	Severity      string
	UserID        uuid.UUID
	Actor         string
	CorrelationID uuid.UUID
	EntityID      uuid.UUID
	ResourceType  string
	ResourceID    string
	Data          []byte // ciphertext
	IP            string
	UserAgent     string
}

// Hash is SHA-256 over a canonical, length-prefixed encoding of every
// stored column: changing any of them changes the hash.
func (s Stored) Hash() [32]byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	u64 := func(v uint64) { binary.BigEndian.PutUint64(n[:], v); h.Write(n[:]) }
	h.Write([]byte("elile-audit-event-v1"))
	field(s.ID[:])
	u64(uint64(s.At.UnixMicro())) //nolint:gosec // timestamps after 1970
	u64(s.TxID)
	field(s.Tenant[:])
	field([]byte(s.Type))
	field([]byte(s.Severity))
	field(s.UserID[:])
	field([]byte(s.Actor))
	field(s.CorrelationID[:])
	field(s.EntityID[:])
	field([]byte(s.ResourceType))
	field([]byte(s.ResourceID))
	field(s.Data)
	field([]byte(s.IP))
	field([]byte(s.UserAgent))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Filter selects a tenant's audit events. Zero fields do not filter.
type Filter struct {
	Type, Severity, ResourceType, ResourceID string
	EntityID, CorrelationID, UserID          uuid.UUID
	Since, Until                             time.Time
	// Keyset: events strictly older than (BeforeAt, BeforeID), and strictly
	// newer than (AfterAt, AfterID).
	BeforeAt time.Time
	BeforeID uuid.UUID
	AfterAt  time.Time
	AfterID  uuid.UUID
}

// Record is a decrypted audit event.
type Record struct {
	Stored
	Data map[string]any
}

// Seal links one tenant's events of one sealing round to the seal before.
type Seal struct {
	ID     uuid.UUID
	Tenant uuid.UUID // uuid.Nil: the system chain
	Seq    int64
	// The bounds the seal's hash covers: chain positions (events with
	// HorizonFrom <= seq < HorizonTo; migration 00010), or for a seal made
	// before positions existed, transaction ids.
	HorizonFrom     uint64
	HorizonTo       uint64
	EventCount      int
	CumulativeCount int64
	PrevHash        [32]byte
	Hash            [32]byte
	Signature       []byte
	KeyID           string
	At              time.Time
}

// SealHash chains the previous seal's hash and the round's event hashes,
// in order, with the seal's position.
func SealHash(prev [32]byte, tenant uuid.UUID, seq int64, from, to uint64, cumulative int64, events [][32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("elile-audit-seal-v1"))
	h.Write(prev[:])
	h.Write(tenant[:])
	var n [8]byte
	for _, v := range []uint64{uint64(seq), from, to, uint64(len(events)), uint64(cumulative)} { //nolint:gosec // non-negative
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	for _, e := range events {
		h.Write(e[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Checkpoint is a signed statement of a tenant's log: its seal count,
// event count and head hash at a time. Saved outside the database, it
// proves later that the log only grew.
type Checkpoint struct {
	Tenant          string    `json:"tenant_id"` // "" for the system chain
	Seq             int64     `json:"seal_seq"`
	HorizonTo       uint64    `json:"horizon"`
	CumulativeCount int64     `json:"event_count"`
	SealHash        string    `json:"seal_hash"` // hex
	At              time.Time `json:"sealed_at"`
	KeyID           string    `json:"key_id"`
	Signature       string    `json:"signature"`  // base64 Ed25519
	PublicKey       string    `json:"public_key"` // base64, informative: verify against a key you trust
}

// message is what the signature covers.
func (c Checkpoint) message() []byte {
	return []byte("elile-checkpoint-v1\n" + c.Tenant + "\n" + strconv.FormatInt(c.Seq, 10) + "\n" +
		strconv.FormatUint(c.HorizonTo, 10) + "\n" + strconv.FormatInt(c.CumulativeCount, 10) + "\n" +
		c.SealHash + "\n" + strconv.FormatInt(c.At.UTC().UnixMicro(), 10) + "\n" + c.KeyID)
}

// CheckpointOf is the checkpoint of seal s (unsigned fields filled).
func CheckpointOf(s Seal) Checkpoint {
	c := Checkpoint{Seq: s.Seq, HorizonTo: s.HorizonTo, CumulativeCount: s.CumulativeCount,
		SealHash: hex.EncodeToString(s.Hash[:]), At: s.At.UTC().Truncate(time.Microsecond), KeyID: s.KeyID,
		Signature: base64.StdEncoding.EncodeToString(s.Signature)}
	if s.Tenant != uuid.Nil {
		c.Tenant = s.Tenant.String()
	}
	return c
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner makes a signer from a 32-byte Ed25519 seed. The key id is the
// first bytes of the public key's hash, so a verifier can tell keys apart.
func NewSigner(seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit signing key is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	k := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(k.Public().(ed25519.PublicKey))
	return &Signer{key: k, keyID: "ed25519:" + hex.EncodeToString(sum[:8])}, nil
}

// KeyID names the signing key.
func (s *Signer) KeyID() string { return s.keyID }

// Public returns the verification key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign fills in s's key id and signature.
func (s *Signer) Sign(seal *Seal) {
	seal.KeyID = s.keyID
	c := CheckpointOf(*seal)
	seal.Signature = ed25519.Sign(s.key, c.message())
}

// ErrBadSignature reports a checkpoint or seal whose signature does not verify.
var ErrBadSignature = errors.New("audit: signature does not verify")

// VerifyCheckpoint checks c's signature with pub.
func VerifyCheckpoint(c Checkpoint, pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, c.message(), sig) {
		return ErrBadSignature
	}
	return nil
}

// Retention is the record of one retention run: every audit partition
// that ended before Cutoff was dropped on purpose. It is signed by the
// application before anything is dropped; verification trusts only
// records whose signature verifies, so a row someone adds to the table
// cannot excuse missing events.
type Retention struct {
	ID        uuid.UUID
	Cutoff    time.Time
	At        time.Time
	KeyID     string
	Signature []byte
}

func (r Retention) message() []byte {
	return []byte("elile-retention-v1\n" + r.ID.String() + "\n" + strconv.FormatInt(r.Cutoff.UTC().UnixMicro(), 10) + "\n" +
		strconv.FormatInt(r.At.UTC().UnixMicro(), 10) + "\n" + r.KeyID)
}

// SignRetention fills in r's key id and signature.
func (s *Signer) SignRetention(r *Retention) {
	r.Cutoff, r.At = r.Cutoff.UTC().Truncate(time.Microsecond), r.At.UTC().Truncate(time.Microsecond)
	r.KeyID = s.keyID
	r.Signature = ed25519.Sign(s.key, r.message())
}

// VerifyRetention checks r's signature with pub.
func VerifyRetention(r Retention, pub ed25519.PublicKey) error {
	if len(r.Signature) != ed25519.SignatureSize || !ed25519.Verify(pub, r.message(), r.Signature) {
		return ErrBadSignature
	}
	return nil
}
