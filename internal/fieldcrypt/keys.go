package fieldcrypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/kms"
)

// DEKBase is the first id of a tenant data key. Ciphertexts name their key
// in the same four header bytes as environment keyring versions, which
// stay below it.
const DEKBase = 1 << 24

// Purpose says what a tenant key is for.
type Purpose string

// Purposes of tenant keys.
const (
	PurposeData  Purpose = "data"  // seals values; the newest is active
	PurposeBlind Purpose = "blind" // blind indexes; one per tenant (two during a re-index), never rotated with the data key
)

// KEKRecord is a tenant's key-encryption key as stored: which provider key
// and which of the tenant's versions.
type KEKRecord struct {
	Tenant  uuid.UUID
	Version int
	KEK     kms.KEK
	BYOK    bool
}

// DEK is a tenant's data key as stored: only wrapped.
type DEK struct {
	ID         uint32 // 0 until stored
	Tenant     uuid.UUID
	Purpose    Purpose
	KEKVersion int
	KEK        kms.KEK
	Wrapped    []byte
}

// wrapAD binds a wrapped DEK to its tenant and purpose: a wrapped key
// copied to another tenant's row does not unwrap.
func wrapAD(tenant uuid.UUID, p Purpose) []byte {
	b := append([]byte("elile-dek-v1"), tenant[:]...)
	return append(b, p...)
}

func (d DEK) wrapped() kms.Wrapped {
	return kms.Wrapped{Name: fmt.Sprintf("dek/%d", d.ID), KEK: d.KEK, Blob: d.Wrapped, AD: wrapAD(d.Tenant, d.Purpose)}
}

// TenantKeys is what a tenant needs: the KEK, the active data key and the
// blind-index key.
type TenantKeys struct {
	KEK   KEKRecord
	Data  DEK
	Blind DEK
	// OldBlind is the blind key a re-index is replacing: while it is set,
	// every unique identifier is indexed, and looked up, under both.
	OldBlind *DEK
}

// DEKStore keeps wrapped tenant keys (postgres implements it).
type DEKStore interface {
	// TenantKeys returns the tenant's newest data key and its blind key;
	// ErrNoTenantKeys when it has none yet, ErrKeyDestroyed when its KEK
	// was destroyed.
	TenantKeys(ctx context.Context, tenant uuid.UUID) (TenantKeys, error)
	// DEK returns the key with id; ErrUnknownKey when there is none,
	// ErrKeyDestroyed when its KEK was destroyed.
	DEK(ctx context.Context, id uint32) (DEK, error)
	// SaveTenantKeys stores the keys of a tenant that has none (in their own
	// transaction) and returns them with their ids; ErrTenantKeysExist when
	// another process stored some first.
	SaveTenantKeys(ctx context.Context, k TenantKeys) (TenantKeys, error)
}

// Errors of tenant keys.
var (
	ErrNoTenantKeys    = errors.New("fieldcrypt: the tenant has no keys yet")
	ErrTenantKeysExist = errors.New("fieldcrypt: the tenant has keys already")
	// ErrKeyDestroyed: the tenant was erased; what was sealed for it is gone.
	ErrKeyDestroyed = apperr.New(apperr.NotFound, "KEY_DESTROYED", "the tenant's keys were destroyed: its data was erased")
	// ErrKeyUnavailable: the key provider could not be reached and the key
	// is not in memory. Other tenants are not affected.
	ErrKeyUnavailable = apperr.New(apperr.Unavailable, "KEY_UNAVAILABLE", "the tenant's data key is not available: the key provider could not be reached; retry later")
)

// KeyFailure reports whether err means that a tenant's key could not be
// used — the provider is unreachable, the KEK is gone, the tenant was
// erased — rather than a fault of the value or of the caller.
func KeyFailure(err error) bool {
	return errors.Is(err, ErrKeyUnavailable) || errors.Is(err, ErrKeyDestroyed) ||
		errors.Is(err, kms.ErrKEKNotFound) || errors.Is(err, kms.ErrUnwrap)
}

// KeysConfig configures Keys.
type KeysConfig struct {
	Provider kms.Provider
	Cache    *kms.Cache // unwrapped DEKs in memory: TTL, bound, zeroing, metrics
	Store    DEKStore
	// Legacy is the environment keyring: it opens what was sealed before
	// envelope encryption (key ids below DEKBase) and derives the blind keys
	// of tenants that had data under it, so their lookups survive the move.
	// Nothing new is sealed with it. May be nil.
	Legacy *Keyring
	// PlatformKEK, when set, wraps the platform's keys (shared data, system
	// events) instead of a KEK created for them.
	PlatformKEK *kms.KEK
	// MetaTTL is how long a tenant's key rows are trusted before they are
	// read again (a rotation elsewhere is seen within it). Default 1 minute.
	MetaTTL time.Duration
	Now     func() time.Time
}

// Keys seals, opens and blind-indexes values with per-tenant keys: each
// tenant (uuid.Nil: the platform) has its own KEK in the provider, a data
// key and a blind-index key wrapped by it. A tenant without keys gets them
// the first time it needs them (its creation normally makes them). It is
// safe for concurrent use; a request whose keys are in memory reaches
// neither the store nor the provider.
type Keys struct {
	c       KeysConfig
	mu      sync.RWMutex
	tenants map[uuid.UUID]tenantEntry
	ids     map[uint32]DEK
	flights singleflight.Group
}

type tenantEntry struct {
	keys TenantKeys
	at   time.Time
}

// NewKeys returns Keys over c.
func NewKeys(c KeysConfig) *Keys {
	if c.MetaTTL <= 0 {
		c.MetaTTL = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Keys{c: c, tenants: map[uuid.UUID]tenantEntry{}, ids: map[uint32]DEK{}}
}

// MetaTTL is how long a server trusts the key rows it read.
func (k *Keys) MetaTTL() time.Duration { return k.c.MetaTTL }

// Provider is the key provider.
func (k *Keys) Provider() kms.Provider { return k.c.Provider }

// Cache is the in-memory cache of unwrapped DEKs.
func (k *Keys) Cache() *kms.Cache { return k.c.Cache }

// Legacy is the environment keyring (nil when none).
func (k *Keys) Legacy() *Keyring { return k.c.Legacy }

// NewTenantKeys makes keys for a new tenant: a KEK in the provider (or
// kek, a key the tenant brings) and random data and blind keys wrapped by
// it. Nothing is stored: the caller stores them in the unit of work that
// creates the tenant and calls undo if that fails, which destroys a KEK
// created here (never one the tenant brought).
func (k *Keys) NewTenantKeys(ctx context.Context, tenant uuid.UUID, byok *kms.KEK) (tk TenantKeys, undo func(context.Context), err error) {
	return k.newTenantKeys(ctx, tenant, byok, nil)
}

func (k *Keys) newTenantKeys(ctx context.Context, tenant uuid.UUID, byok *kms.KEK, blind []byte) (TenantKeys, func(context.Context), error) {
	undo := func(context.Context) {}
	rec := KEKRecord{Tenant: tenant, Version: 1}
	if byok != nil {
		rec.KEK, rec.BYOK = *byok, true
	} else {
		kek, err := k.c.Provider.CreateKEK(ctx, KEKLabel(tenant))
		if err != nil {
			return TenantKeys{}, undo, providerError(err)
		}
		rec.KEK = kek
		undo = func(ctx context.Context) { _ = k.c.Provider.DestroyKEK(ctx, kek) }
	}
	tk := TenantKeys{KEK: rec}
	var err error
	if tk.Data, err = k.wrapNew(ctx, rec, PurposeData, nil); err != nil {
		undo(ctx)
		return TenantKeys{}, func(context.Context) {}, err
	}
	if tk.Blind, err = k.wrapNew(ctx, rec, PurposeBlind, blind); err != nil {
		undo(ctx)
		return TenantKeys{}, func(context.Context) {}, err
	}
	return tk, undo, nil
}

// KEKLabel is the label of the KEKs elile makes for tenant (uuid.Nil: the
// platform) in the provider.
func KEKLabel(tenant uuid.UUID) string {
	if tenant == uuid.Nil {
		return "elile/platform"
	}
	return "elile/tenant/" + tenant.String()
}

// wrapNew wraps key (a fresh random key when nil) under rec.
func (k *Keys) wrapNew(ctx context.Context, rec KEKRecord, p Purpose, key []byte) (DEK, error) {
	if key == nil {
		key = GenerateKey()
		defer clear(key)
	}
	w, err := k.c.Provider.Wrap(ctx, rec.KEK, key, wrapAD(rec.Tenant, p))
	if err != nil {
		return DEK{}, providerError(err)
	}
	return DEK{Tenant: rec.Tenant, Purpose: p, KEKVersion: rec.Version, KEK: rec.KEK, Wrapped: w}, nil
}

// NewDataKey makes a new data key for a tenant under its KEK (a DEK
// rotation: the caller stores it, and values move to it with Reseal).
func (k *Keys) NewDataKey(ctx context.Context, rec KEKRecord) (DEK, error) {
	return k.wrapNew(ctx, rec, PurposeData, nil)
}

// Rewrap re-wraps d under rec (a KEK rotation or a tenant bringing its own
// key): the key inside does not change, so no value is re-encrypted.
func (k *Keys) Rewrap(ctx context.Context, d DEK, rec KEKRecord) (DEK, error) {
	key, err := k.c.Provider.Unwrap(ctx, d.KEK, d.Wrapped, wrapAD(d.Tenant, d.Purpose))
	if err != nil {
		return DEK{}, providerError(err)
	}
	defer clear(key)
	nd, err := k.wrapNew(ctx, rec, d.Purpose, key)
	nd.ID = d.ID
	return nd, err
}

// providerError keeps the provider's own errors (KEK gone, unwrap refused)
// and makes every other failure (network, token) ErrKeyUnavailable.
func providerError(err error) error {
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return err
	}
	return ErrKeyUnavailable.Wrap(err)
}

// Adopt puts keys just made for a tenant (stored ids included) in memory,
// so that the unit of work storing them can seal with them before it
// commits. Forget undoes it if that unit fails.
func (k *Keys) Adopt(tk TenantKeys) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.tenants[tk.KEK.Tenant] = tenantEntry{keys: tk, at: k.c.Now()}
	k.ids[tk.Data.ID] = tk.Data
	k.ids[tk.Blind.ID] = tk.Blind
}

// Blind is one blind index of a value and the key that made it.
type Blind struct {
	Key   uint32
	Index []byte
}

// Forget drops what is in memory about tenant (after its erasure or a
// rotation), so the next use reads the store again.
func (k *Keys) Forget(tenant uuid.UUID) {
	k.mu.Lock()
	te, ok := k.tenants[tenant]
	delete(k.tenants, tenant)
	for id, d := range k.ids {
		if d.Tenant == tenant {
			delete(k.ids, id)
			k.c.Cache.Forget(d.wrapped().Name)
		}
	}
	k.mu.Unlock()
	if ok {
		k.c.Cache.Forget(te.keys.Data.wrapped().Name)
		k.c.Cache.Forget(te.keys.Blind.wrapped().Name)
		if te.keys.OldBlind != nil {
			k.c.Cache.Forget(te.keys.OldBlind.wrapped().Name)
		}
	}
}

// tenantKeys returns the tenant's key rows: from memory while fresh, else
// from the store, making the keys when the tenant has none.
func (k *Keys) tenantKeys(ctx context.Context, tenant uuid.UUID) (TenantKeys, error) {
	now := k.c.Now()
	k.mu.RLock()
	te, ok := k.tenants[tenant]
	k.mu.RUnlock()
	if ok && now.Sub(te.at) < k.c.MetaTTL {
		return te.keys, nil
	}
	ch := k.flights.DoChan(tenant.String(), func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		tk, err := k.c.Store.TenantKeys(ctx, tenant)
		if errors.Is(err, ErrNoTenantKeys) {
			tk, err = k.provision(ctx, tenant)
		}
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		k.tenants[tenant] = tenantEntry{keys: tk, at: now}
		k.ids[tk.Data.ID] = tk.Data
		k.ids[tk.Blind.ID] = tk.Blind
		k.mu.Unlock()
		return tk, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return TenantKeys{}, r.Err
		}
		return r.Val.(TenantKeys), nil //nolint:forcetypeassert // the function returns only TenantKeys
	case <-ctx.Done():
		return TenantKeys{}, ctx.Err()
	}
}

// provision makes and stores keys for a tenant that has none: one that
// existed before envelope encryption (its blind key is the one the
// environment keyring derived for it, so its blind indexes stay valid), or
// the platform on a new database. Two servers doing it at once: one wins,
// the other destroys its KEK and reads the winner's.
func (k *Keys) provision(ctx context.Context, tenant uuid.UUID) (TenantKeys, error) {
	var blind []byte
	if k.c.Legacy != nil {
		blind = k.c.Legacy.tenantKey(tenant)
	}
	var byok *kms.KEK
	if tenant == uuid.Nil && k.c.PlatformKEK != nil {
		byok = k.c.PlatformKEK
	}
	tk, undo, err := k.newTenantKeys(ctx, tenant, byok, blind)
	if err != nil {
		return TenantKeys{}, err
	}
	if byok != nil {
		tk.KEK.BYOK = false // the platform's configured key, not a tenant's
	}
	saved, err := k.c.Store.SaveTenantKeys(ctx, tk)
	if errors.Is(err, ErrTenantKeysExist) {
		undo(ctx)
		return k.c.Store.TenantKeys(ctx, tenant)
	}
	if err != nil {
		undo(ctx)
		return TenantKeys{}, err
	}
	return saved, nil
}

// dek returns the key with id, from memory or the store.
func (k *Keys) dek(ctx context.Context, id uint32) (DEK, error) {
	k.mu.RLock()
	d, ok := k.ids[id]
	k.mu.RUnlock()
	if ok {
		return d, nil
	}
	v, err, _ := k.flights.Do(fmt.Sprintf("id/%d", id), func() (any, error) {
		d, err := k.c.Store.DEK(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		k.ids[id] = d
		k.mu.Unlock()
		return d, nil
	})
	if err != nil {
		return DEK{}, err
	}
	return v.(DEK), nil //nolint:forcetypeassert // the function returns only DEK
}

// key returns a copy of d's unwrapped bytes: clear it after use.
func (k *Keys) key(ctx context.Context, d DEK) ([]byte, error) {
	b, err := k.c.Cache.DEK(ctx, d.wrapped())
	if err != nil {
		return nil, providerError(err)
	}
	return b, nil
}

// aead is AES-256-GCM under d, built from the cached key bytes each time
// (so that only the cache holds them, and zeroes them when they leave it).
func (k *Keys) aead(ctx context.Context, d DEK) (cipher.AEAD, error) {
	key, err := k.key(ctx, d)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext under the active data key of ad.Tenant, bound to
// ad, with a fresh random nonce.
func (k *Keys) Seal(ctx context.Context, plaintext []byte, ad AD) ([]byte, error) {
	tk, err := k.tenantKeys(ctx, ad.Tenant)
	if err != nil {
		return nil, err
	}
	return k.sealWith(ctx, tk.Data, plaintext, ad)
}

func (k *Keys) sealWith(ctx context.Context, d DEK, plaintext []byte, ad AD) ([]byte, error) {
	aead, err := k.aead(ctx, d)
	if err != nil {
		return nil, err
	}
	out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+TagSize)
	out[0] = FormatVersion
	binary.BigEndian.PutUint32(out[1:5], d.ID)
	if _, err := rand.Read(out[5:HeaderSize]); err != nil {
		return nil, fmt.Errorf("fieldcrypt: nonce: %w", err)
	}
	return aead.Seal(out, out[5:HeaderSize], plaintext, ad.bytes()), nil
}

// Open decrypts a ciphertext sealed for ad: by a tenant key (which must be
// ad.Tenant's own) or, for values from before envelope encryption, by the
// environment keyring. Errors: those of Keyring.Open, ErrKeyDestroyed,
// ErrKeyUnavailable.
func (k *Keys) Open(ctx context.Context, ciphertext []byte, ad AD) ([]byte, error) {
	v, err := KeyVersion(ciphertext)
	if err != nil {
		return nil, err
	}
	if v < DEKBase {
		if k.c.Legacy == nil {
			return nil, fmt.Errorf("%w: version %d (no environment keyring)", ErrUnknownKey, v)
		}
		return k.c.Legacy.Open(ciphertext, ad)
	}
	d, err := k.dek(ctx, v)
	if err != nil {
		return nil, err
	}
	if d.Tenant != ad.Tenant || d.Purpose != PurposeData {
		return nil, ErrAuthentication // another tenant's key: never tried
	}
	aead, err := k.aead(ctx, d)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, ciphertext[5:HeaderSize], ciphertext[HeaderSize:], ad.bytes())
	if err != nil {
		return nil, ErrAuthentication
	}
	return pt, nil
}

// Reseal re-encrypts a ciphertext under ad.Tenant's active data key with the
// same ad. It reports false, with the input unchanged, when the value uses
// that key already.
func (k *Keys) Reseal(ctx context.Context, ciphertext []byte, ad AD) ([]byte, bool, error) {
	v, err := KeyVersion(ciphertext)
	if err != nil {
		return nil, false, err
	}
	tk, err := k.tenantKeys(ctx, ad.Tenant)
	if err != nil {
		return nil, false, err
	}
	if v == tk.Data.ID {
		return ciphertext, false, nil
	}
	pt, err := k.Open(ctx, ciphertext, ad)
	if err != nil {
		return nil, false, err
	}
	out, err := k.sealWith(ctx, tk.Data, pt, ad)
	return out, err == nil, err
}

// Active returns the id of tenant's active data key.
func (k *Keys) Active(ctx context.Context, tenant uuid.UUID) (uint32, error) {
	tk, err := k.tenantKeys(ctx, tenant)
	return tk.Data.ID, err
}

// BlindIndex returns HMAC-SHA256 over kind and an already normalised value
// under the tenant's blind-index key (uuid.Nil: the platform's). Equal
// inputs in one tenant give equal indexes; the same value in two tenants,
// or under two kinds, gives unrelated ones.
func (k *Keys) BlindIndex(ctx context.Context, tenant uuid.UUID, kind, normalized string) ([]byte, error) {
	bs, err := k.BlindIndexes(ctx, tenant, kind, normalized)
	if err != nil {
		return nil, err
	}
	return bs[0].Index, nil
}

// BlindIndexes returns the value's blind index under each of the tenant's
// blind keys, the newest first: one, or two while a re-index runs.
// Uniqueness is kept by storing and looking up all of them.
func (k *Keys) BlindIndexes(ctx context.Context, tenant uuid.UUID, kind, normalized string) ([]Blind, error) {
	tk, err := k.tenantKeys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	ds := []DEK{tk.Blind}
	if tk.OldBlind != nil {
		ds = append(ds, *tk.OldBlind)
	}
	out := make([]Blind, 0, len(ds))
	for _, d := range ds {
		key, err := k.key(ctx, d)
		if err != nil {
			return nil, err
		}
		out = append(out, Blind{Key: d.ID, Index: blindIndex(key, kind, normalized)})
		clear(key)
	}
	return out, nil
}

// NewBlindKey makes a fresh random blind-index key under rec, for a
// re-index (the caller stores it).
func (k *Keys) NewBlindKey(ctx context.Context, rec KEKRecord) (DEK, error) {
	return k.wrapNew(ctx, rec, PurposeBlind, nil)
}

func blindIndex(key []byte, kind, normalized string) []byte {
	mac := hmac.New(sha256.New, key)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(kind))) //nolint:gosec // kinds are short identifiers
	mac.Write(n[:])
	mac.Write([]byte(kind))
	mac.Write([]byte(normalized))
	return mac.Sum(nil)
}

// Check asks the provider to unwrap the platform's blind key (not from
// the cache): whether a tenant whose keys are not in memory could be
// served now. It returns how many keys are in memory either way.
func (k *Keys) Check(ctx context.Context) (cached int, err error) {
	cached = k.c.Cache.Len()
	tk, err := k.tenantKeys(ctx, uuid.Nil)
	if err != nil {
		return cached, err
	}
	key, err := k.c.Provider.Unwrap(ctx, tk.Blind.KEK, tk.Blind.Wrapped, wrapAD(uuid.Nil, PurposeBlind))
	clear(key)
	return cached, err
}

// LocalMaster derives the local provider's master key from the environment
// keyring's blind-index root (stable across rotations of the encryption
// keys). For development and tests only.
func LocalMaster(k *Keyring) []byte {
	b, err := hkdf.Key(sha256.New, k.blind, nil, "elile local kms master v1", KeySize)
	if err != nil {
		panic(err) // only for lengths over 255*32 bytes
	}
	return b
}
