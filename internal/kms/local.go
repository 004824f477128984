package kms

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

// Local derives each KEK from one master key in the environment (HKDF-SHA256
// with the KEK's label). For development and tests: anyone with the master
// key has every KEK, and a KEK cannot be destroyed (DestroyKEK returns
// ErrCannotDestroy), so erasure by key destruction does not hold with it.
type Local struct{ master []byte }

// NewLocal returns the local provider over a 32-byte master key.
func NewLocal(master []byte) (*Local, error) {
	if len(master) != 32 {
		return nil, errors.New("kms local: the master key is 32 bytes")
	}
	return &Local{master: append([]byte(nil), master...)}, nil
}

// Name implements Provider.
func (l *Local) Name() string { return "local" }

// CreateKEK implements Provider: the KEK of label is derived, not stored.
func (l *Local) CreateKEK(_ context.Context, label string) (KEK, error) {
	return KEK{Provider: l.Name(), ID: label, Label: label}, nil
}

// FindKEK implements Provider: any reference names a derived KEK.
func (l *Local) FindKEK(_ context.Context, ref string) (KEK, error) {
	if ref == "" {
		return KEK{}, ErrKEKNotFound.Withf("empty key reference")
	}
	return KEK{Provider: l.Name(), ID: ref, Label: ref}, nil
}

func (l *Local) aead(kek KEK) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, l.master, nil, "elile kek "+kek.ID, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Wrap implements Provider: AES-256-GCM under the derived KEK, a random
// nonce in front.
func (l *Local) Wrap(_ context.Context, kek KEK, dek, ad []byte) ([]byte, error) {
	if err := checkProvider(l, kek); err != nil {
		return nil, err
	}
	a, err := l.aead(kek)
	if err != nil {
		return nil, err
	}
	return seal(a, dek, ad)
}

// Unwrap implements Provider.
func (l *Local) Unwrap(_ context.Context, kek KEK, wrapped, ad []byte) ([]byte, error) {
	if err := checkProvider(l, kek); err != nil {
		return nil, err
	}
	a, err := l.aead(kek)
	if err != nil {
		return nil, err
	}
	return open(a, wrapped, ad)
}

// DestroyKEK implements Provider: a derived key cannot be destroyed.
func (l *Local) DestroyKEK(context.Context, KEK) error {
	return ErrCannotDestroy.Withf("the local provider derives every key-encryption key from the environment's master key: use a pkcs11 or KMS provider for erasure by key destruction")
}

// Close implements Provider.
func (l *Local) Close() error { clear(l.master); return nil }

func seal(a cipher.AEAD, plain, ad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plain, ad), nil
}

func open(a cipher.AEAD, wrapped, ad []byte) ([]byte, error) {
	n := a.NonceSize()
	if len(wrapped) < n+a.Overhead() {
		return nil, ErrUnwrap
	}
	out, err := a.Open(nil, wrapped[:n], wrapped[n:], ad)
	if err != nil {
		return nil, ErrUnwrap.Wrap(err)
	}
	return out, nil
}
