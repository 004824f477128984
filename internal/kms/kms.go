// Package kms keeps key-encryption keys (KEKs) where they cannot be read —
// a PKCS#11 HSM, or, for development and tests, a key derived from the
// environment — and wraps and unwraps data-encryption keys (DEKs) with
// them. Only wrapped DEKs are ever stored; destroying a KEK makes
// everything wrapped under it unreadable, backups included.
//
// This is the provider layer of envelope encryption; fieldcrypt.Keys
// keeps the per-tenant DEKs on top of it.
package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"

	"github.com/elile/elile/internal/apperr"
)

// KEK names a key-encryption key in its provider.
type KEK struct {
	Provider string // "local", "pkcs11"
	ID       string // the provider's handle: a PKCS#11 CKA_ID (hex), a derivation label
	Label    string // what it was created for, e.g. "tenant/<uuid>"
}

// Provider keeps KEKs and wraps DEKs with them. ad binds a wrapped DEK to
// what it is for (a tenant and a purpose): unwrapping with other ad fails.
type Provider interface {
	// Name is the provider's name, as in KEK.Provider.
	Name() string
	// CreateKEK makes a new KEK for label (one per tenant).
	CreateKEK(ctx context.Context, label string) (KEK, error)
	// FindKEK resolves a KEK that exists already — one named in the
	// configuration or brought by a tenant (a PKCS#11 key label, a KMS key
	// id, ARN or alias) — and checks that it can wrap and unwrap: a missing
	// key or a key of the wrong type is an error that says which.
	FindKEK(ctx context.Context, ref string) (KEK, error)
	// Wrap encrypts dek under kek.
	Wrap(ctx context.Context, kek KEK, dek, ad []byte) ([]byte, error)
	// Unwrap decrypts a wrapped DEK: ErrUnwrap when it was not wrapped
	// under kek with ad or was changed; ErrKEKNotFound when kek is gone.
	Unwrap(ctx context.Context, kek KEK, wrapped, ad []byte) ([]byte, error)
	// DestroyKEK destroys kek: nothing wrapped under it can be unwrapped
	// again. ErrCannotDestroy where the provider cannot promise that.
	DestroyKEK(ctx context.Context, kek KEK) error
	// Close releases the provider's sessions.
	Close() error
}

// Errors of providers.
var (
	ErrKEKNotFound   = apperr.New(apperr.Unavailable, "KEK_NOT_FOUND", "the key-encryption key is not in the key provider")
	ErrUnwrap        = apperr.New(apperr.Internal, "DEK_UNWRAP_FAILED", "a data key did not unwrap: wrong key, wrong binding or changed")
	ErrCannotDestroy = apperr.New(apperr.Internal, "KEK_NOT_DESTROYABLE", "this key provider cannot destroy a key-encryption key")
	ErrWrongProvider = apperr.New(apperr.Internal, "KEK_OTHER_PROVIDER", "the key-encryption key belongs to another provider")
)

// DEKSize is the size of a data-encryption key (AES-256).
const DEKSize = 32

// selfTest wraps and unwraps a random key under kek: the proof that a
// KEK found by reference is usable (a key of the wrong type fails here).
func selfTest(ctx context.Context, p Provider, kek KEK) error {
	dek := make([]byte, DEKSize)
	if _, err := rand.Read(dek); err != nil {
		return err
	}
	ad := []byte("elile kek self-test")
	w, err := p.Wrap(ctx, kek, dek, ad)
	if err != nil {
		return fmt.Errorf("kms %s: key %q cannot wrap (wrong type or usage?): %w", p.Name(), kek.Label, err)
	}
	got, err := p.Unwrap(ctx, kek, w, ad)
	if err != nil || !bytes.Equal(got, dek) {
		return fmt.Errorf("kms %s: key %q cannot unwrap what it wrapped: %w", p.Name(), kek.Label, err)
	}
	return nil
}

func checkProvider(p Provider, kek KEK) error {
	if kek.Provider != p.Name() {
		return ErrWrongProvider.Withf("key-encryption key of %q given to the %q provider", kek.Provider, p.Name())
	}
	return nil
}
