package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/ThalesGroup/crypto11"
)

// PKCS11Config locates the token.
type PKCS11Config struct {
	Module     string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string
	PIN        string
}

// PKCS11 keeps one AES-256 key object per KEK in a PKCS#11 token (created
// on the token, never extractable) and wraps DEKs with AES-GCM on the token.
type PKCS11 struct {
	ctx   *crypto11.Context
	close sync.Once
	err   error
}

// NewPKCS11 logs in to the token. A missing module, an unknown token label
// or a wrong PIN is an error that says which.
func NewPKCS11(c PKCS11Config) (*PKCS11, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{Path: c.Module, TokenLabel: c.TokenLabel, Pin: c.PIN})
	if err != nil {
		return nil, fmt.Errorf("kms pkcs11: open token %q with module %s: %w", c.TokenLabel, c.Module, err)
	}
	return &PKCS11{ctx: ctx}, nil
}

// Name implements Provider.
func (p *PKCS11) Name() string { return "pkcs11" }

// CreateKEK implements Provider: a new AES-256 key object labelled label,
// identified by a random CKA_ID.
func (p *PKCS11) CreateKEK(_ context.Context, label string) (KEK, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return KEK{}, err
	}
	if _, err := p.ctx.GenerateSecretKeyWithLabel(id, []byte(label), 256, crypto11.CipherAES); err != nil {
		return KEK{}, fmt.Errorf("kms pkcs11: create key %q: %w", label, err)
	}
	return KEK{Provider: p.Name(), ID: hex.EncodeToString(id), Label: label}, nil
}

// FindKEK implements Provider: ref is the CKA_LABEL of one AES key object
// on the token.
func (p *PKCS11) FindKEK(ctx context.Context, ref string) (KEK, error) {
	ks, err := p.ctx.FindKeys(nil, []byte(ref))
	if err != nil {
		return KEK{}, fmt.Errorf("kms pkcs11: find key labelled %q: %w", ref, err)
	}
	switch {
	case len(ks) == 0:
		return KEK{}, ErrKEKNotFound.Withf("no key object labelled %q on the token", ref)
	case len(ks) > 1:
		return KEK{}, fmt.Errorf("kms pkcs11: %d key objects labelled %q on the token: labels must be unique", len(ks), ref)
	}
	if ks[0].Cipher != crypto11.CipherAES {
		return KEK{}, fmt.Errorf("kms pkcs11: key %q is not an AES key", ref)
	}
	id, err := p.ctx.GetAttribute(ks[0], crypto11.CkaId)
	if err != nil {
		return KEK{}, fmt.Errorf("kms pkcs11: read the id of key %q: %w", ref, err)
	}
	kek := KEK{Provider: p.Name(), ID: hex.EncodeToString(id.Value), Label: ref}
	return kek, selfTest(ctx, p, kek)
}

func (p *PKCS11) key(kek KEK) (*crypto11.SecretKey, error) {
	if err := checkProvider(p, kek); err != nil {
		return nil, err
	}
	id, err := hex.DecodeString(kek.ID)
	if err != nil {
		return nil, ErrKEKNotFound.Withf("key-encryption key id %q is not hex", kek.ID)
	}
	// FindKeys, not FindKey: it tells "none" (an empty list) from a
	// failure of the token.
	ks, err := p.ctx.FindKeys(id, nil)
	if err != nil {
		return nil, fmt.Errorf("kms pkcs11: find key %s: %w", kek.ID, err)
	}
	if len(ks) == 0 {
		return nil, ErrKEKNotFound.Withf("no key object %s (%s) on the token", kek.ID, kek.Label)
	}
	return ks[0], nil
}

// aead is AES-GCM on the token under kek's key object.
func (p *PKCS11) aead(kek KEK) (cipher.AEAD, error) {
	k, err := p.key(kek)
	if err != nil {
		return nil, err
	}
	return k.NewGCM()
}

// Wrap implements Provider: AES-256-GCM on the token, a random nonce in
// front.
func (p *PKCS11) Wrap(_ context.Context, kek KEK, dek, ad []byte) ([]byte, error) {
	a, err := p.aead(kek)
	if err != nil {
		return nil, err
	}
	return seal(a, dek, ad)
}

// Unwrap implements Provider.
func (p *PKCS11) Unwrap(_ context.Context, kek KEK, wrapped, ad []byte) ([]byte, error) {
	a, err := p.aead(kek)
	if err != nil {
		return nil, err
	}
	return open(a, wrapped, ad)
}

// DestroyKEK implements Provider: the key object is destroyed on the token.
func (p *PKCS11) DestroyKEK(_ context.Context, kek KEK) error {
	k, err := p.key(kek)
	if err != nil {
		return err
	}
	return k.Delete()
}

// Close implements Provider; closing twice does nothing (crypto11 panics).
func (p *PKCS11) Close() error {
	p.close.Do(func() { p.err = p.ctx.Close() })
	return p.err
}
