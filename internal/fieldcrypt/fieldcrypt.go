// Package fieldcrypt encrypts personal data for storage: AES-256-GCM under
// a keyring of versioned keys, each ciphertext bound by its associated data
// to the table, column, row and tenant it belongs to; and blind indexes
// (HMAC-SHA256 under a per-tenant key) that find a value without decrypting
// anything and without relating one tenant's values to another's.
//
// Ciphertext format (binary, stored in bytea columns):
//
//	version (1 byte, = 1) | key id (4 bytes, big-endian) | nonce (12 bytes) | sealed data + tag (16 bytes)
package fieldcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/google/uuid"
)

// Sizes of the ciphertext format.
const (
	FormatVersion = 1
	KeySize       = 32
	NonceSize     = 12
	TagSize       = 16
	HeaderSize    = 1 + 4 + NonceSize
	Overhead      = HeaderSize + TagSize
)

// Errors Open returns. Each is distinct so callers and operators can tell a
// missing key (configuration) from tampering or a misplaced value (attack
// or bug) from a cut-off value (storage).
var (
	ErrTruncated          = errors.New("fieldcrypt: ciphertext truncated")
	ErrUnsupportedVersion = errors.New("fieldcrypt: unsupported ciphertext format version")
	ErrUnknownKey         = errors.New("fieldcrypt: ciphertext key version not in the keyring")
	ErrAuthentication     = errors.New("fieldcrypt: ciphertext tampered with or bound to another row, column or tenant")
)

// AD is the associated data a value is bound to. A ciphertext opens only
// with the AD it was sealed with: copied to another row, column or tenant,
// it fails.
type AD struct {
	Table  string
	Column string
	Row    uuid.UUID
	Tenant uuid.UUID // uuid.Nil for platform-shared rows and system events
}

// bytes encodes ad without ambiguity: length-prefixed strings, fixed-size ids.
func (ad AD) bytes() []byte {
	b := make([]byte, 0, 16+len(ad.Table)+len(ad.Column)+32)
	b = append(b, "elile-ad-v1"...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ad.Table))) //nolint:gosec // table names are short identifiers
	b = append(b, ad.Table...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ad.Column))) //nolint:gosec // column names are short identifiers
	b = append(b, ad.Column...)
	b = append(b, ad.Row[:]...)
	return append(b, ad.Tenant[:]...)
}

// Keyring holds every key version that may still be needed to decrypt,
// the active version new values are sealed with, and the blind-index root
// key (independent of the encryption keys, so rotation never changes a
// lookup). It is safe for concurrent use.
type Keyring struct {
	aeads        map[uint32]cipher.AEAD
	fingerprints map[uint32]string // version -> Fingerprint; 0: the blind-index root
	active       uint32
	blind        []byte

	tenantKeys sync.Map // uuid.UUID -> []byte, derived blind-index keys
}

// NewKeyring builds a keyring from 32-byte keys by version, the active
// version, and the 32-byte blind-index root key.
func NewKeyring(keys map[uint32][]byte, active uint32, blindRoot []byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("fieldcrypt: no keys")
	}
	if _, ok := keys[active]; !ok {
		return nil, fmt.Errorf("fieldcrypt: active key version %d not in the keyring", active)
	}
	if len(blindRoot) != KeySize {
		return nil, fmt.Errorf("fieldcrypt: blind-index key is %d bytes, want %d", len(blindRoot), KeySize)
	}
	k := &Keyring{aeads: make(map[uint32]cipher.AEAD, len(keys)), active: active, blind: append([]byte(nil), blindRoot...),
		fingerprints: map[uint32]string{BlindRootVersion: Fingerprint(blindRoot)}}
	for v, key := range keys {
		if v == 0 {
			return nil, errors.New("fieldcrypt: key version 0 is reserved")
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("fieldcrypt: key version %d is %d bytes, want %d", v, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("fieldcrypt: key version %d: %w", v, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("fieldcrypt: key version %d: %w", v, err)
		}
		k.aeads[v] = aead
		k.fingerprints[v] = Fingerprint(key)
	}
	return k, nil
}

// BlindRootVersion is the version under which Fingerprints reports the
// blind-index root (key versions start at 1).
const BlindRootVersion = 0

// Fingerprint names a key without revealing it: the first 8 bytes of
// HMAC-SHA256(key, a fixed label), in hex. Two keys with the same
// fingerprint are, for every practical purpose, the same key; the
// fingerprint tells nothing about the key (HMAC is a PRF).
func Fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("elile key fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// Fingerprints returns the fingerprint of every key version, and of the
// blind-index root under BlindRootVersion: what a server reports and what
// the database remembers, so a wrong key is caught before it is used.
func (k *Keyring) Fingerprints() map[uint32]string { return maps.Clone(k.fingerprints) }

// DeriveBlindRoot derives a blind-index root key from an encryption key
// (the key of version 1 by convention). Operators who later remove that
// key must first pin the derived value as BLIND_INDEX_KEY.
func DeriveBlindRoot(key []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, key, nil, "elile blind-index root v1", KeySize)
}

// Active returns the version new values are sealed with.
func (k *Keyring) Active() uint32 { return k.active }

// Versions returns the key versions in the keyring, ascending.
func (k *Keyring) Versions() []uint32 {
	vs := make([]uint32, 0, len(k.aeads))
	for v := range k.aeads {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	return vs
}

// Seal encrypts plaintext under the active key, bound to ad, with a fresh
// random nonce.
func (k *Keyring) Seal(plaintext []byte, ad AD) ([]byte, error) {
	out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+TagSize)
	out[0] = FormatVersion
	binary.BigEndian.PutUint32(out[1:5], k.active)
	if _, err := rand.Read(out[5:HeaderSize]); err != nil {
		return nil, fmt.Errorf("fieldcrypt: nonce: %w", err)
	}
	return k.aeads[k.active].Seal(out, out[5:HeaderSize], plaintext, ad.bytes()), nil
}

// Open decrypts a ciphertext made by Seal with the same ad. It returns
// ErrTruncated, ErrUnsupportedVersion, ErrUnknownKey or ErrAuthentication.
func (k *Keyring) Open(ciphertext []byte, ad AD) ([]byte, error) {
	v, err := KeyVersion(ciphertext)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[v]
	if !ok {
		return nil, fmt.Errorf("%w: version %d", ErrUnknownKey, v)
	}
	pt, err := aead.Open(nil, ciphertext[5:HeaderSize], ciphertext[HeaderSize:], ad.bytes())
	if err != nil {
		return nil, ErrAuthentication
	}
	return pt, nil
}

// Reseal re-encrypts a ciphertext under the active key with the same ad.
// It reports false, with the input unchanged, when the value already uses
// the active key.
func (k *Keyring) Reseal(ciphertext []byte, ad AD) ([]byte, bool, error) {
	v, err := KeyVersion(ciphertext)
	if err != nil {
		return nil, false, err
	}
	if v == k.active {
		return ciphertext, false, nil
	}
	pt, err := k.Open(ciphertext, ad)
	if err != nil {
		return nil, false, err
	}
	out, err := k.Seal(pt, ad)
	return out, err == nil, err
}

// KeyVersion returns the key version a ciphertext was sealed with, without
// decrypting it.
func KeyVersion(ciphertext []byte) (uint32, error) {
	if len(ciphertext) < Overhead {
		if len(ciphertext) > 0 && ciphertext[0] != FormatVersion {
			return 0, ErrUnsupportedVersion
		}
		return 0, ErrTruncated
	}
	if ciphertext[0] != FormatVersion {
		return 0, ErrUnsupportedVersion
	}
	return binary.BigEndian.Uint32(ciphertext[1:5]), nil
}

// BlindIndex returns HMAC-SHA256 over kind and an already normalised value,
// under the tenant's blind-index key (HKDF of the root key with the tenant
// id; uuid.Nil for platform-shared data). Equal inputs in one tenant give
// equal indexes; the same value in two tenants, or under two kinds, gives
// unrelated ones.
func (k *Keyring) BlindIndex(tenant uuid.UUID, kind, normalized string) []byte {
	return blindIndex(k.tenantKey(tenant), kind, normalized)
}

func (k *Keyring) tenantKey(tenant uuid.UUID) []byte {
	if v, ok := k.tenantKeys.Load(tenant); ok {
		return v.([]byte)
	}
	key, err := hkdf.Key(sha256.New, k.blind, tenant[:], "elile blind-index tenant v1", KeySize)
	if err != nil {
		panic(err) // only for lengths over 255*32 bytes
	}
	k.tenantKeys.Store(tenant, key)
	return key
}

// GenerateKey returns a fresh random 32-byte key.
func GenerateKey() []byte {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}
