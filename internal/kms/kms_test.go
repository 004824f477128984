package kms_test

import (
	"bytes"
	"strings"

	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/elile/elile/internal/kms"
	"github.com/elile/elile/internal/kms/kmstest"
)

const softHSMModule = kmstest.SoftHSMModule

func newSoftHSM(t testing.TB) *kms.PKCS11 { return kmstest.SoftHSM(t) }

// conformance is what every provider must do, attacked the same way.
func conformance(t *testing.T, p kms.Provider, destroys bool) {
	ctx := context.Background()
	a, err := p.CreateKEK(ctx, "tenant/a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.CreateKEK(ctx, "tenant/b")
	if err != nil {
		t.Fatal(err)
	}
	dek := bytes.Repeat([]byte{0x42}, kms.DEKSize)
	ad := []byte("tenant/a data")
	w, err := p.Wrap(ctx, a, dek, ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, dek[:8]) {
		t.Error("the wrapped key holds the key in clear")
	}
	w2, _ := p.Wrap(ctx, a, dek, ad)
	if bytes.Equal(w, w2) {
		t.Error("wrapping twice gave the same bytes: the nonce is not fresh")
	}
	got, err := p.Unwrap(ctx, a, w, ad)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap = %x, %v; want the key back", got, err)
	}
	attacks := map[string]func() ([]byte, error){
		"OtherTenantsKEK": func() ([]byte, error) { return p.Unwrap(ctx, b, w, ad) },
		"OtherBinding":    func() ([]byte, error) { return p.Unwrap(ctx, a, w, []byte("tenant/b data")) },
		// Bits of the sealed key and of its tag. (Not a byte of a header:
		// the KMS emulator's blob starts with the key's ARN, which it
		// ignores when the caller names the key, as elile always does.)
		"FlippedKeyBit": func() ([]byte, error) {
			f := append([]byte(nil), w...)
			f[len(f)-20] ^= 1
			return p.Unwrap(ctx, a, f, ad)
		},
		"FlippedTagBit": func() ([]byte, error) {
			f := append([]byte(nil), w...)
			f[len(f)-1] ^= 0x80
			return p.Unwrap(ctx, a, f, ad)
		},
		"Truncated": func() ([]byte, error) { return p.Unwrap(ctx, a, w[:10], ad) },
		"OtherProvidersKEK": func() ([]byte, error) {
			o := a
			o.Provider = "elsewhere"
			return p.Unwrap(ctx, o, w, ad)
		},
	}
	for name, attack := range attacks {
		if got, err := attack(); err == nil || got != nil {
			t.Errorf("%s: Unwrap = %x, %v; want refused", name, got, err)
		}
	}
	err = p.DestroyKEK(ctx, a)
	if !destroys {
		if !errors.Is(err, kms.ErrCannotDestroy) {
			t.Errorf("DestroyKEK = %v, want ErrCannotDestroy from a provider that cannot", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("DestroyKEK: %v", err)
	}
	if got, err := p.Unwrap(ctx, a, w, ad); !errors.Is(err, kms.ErrKEKNotFound) || got != nil {
		t.Errorf("Unwrap after the KEK was destroyed = %x, %v; want ErrKEKNotFound", got, err)
	}
	if got, err := p.Unwrap(ctx, b, mustWrap(t, p, b, dek, ad), ad); err != nil || !bytes.Equal(got, dek) {
		t.Errorf("another tenant's KEK after one was destroyed: %v", err)
	}
}

func mustWrap(t *testing.T, p kms.Provider, kek kms.KEK, dek, ad []byte) []byte {
	t.Helper()
	w, err := p.Wrap(context.Background(), kek, dek, ad)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestLocal(t *testing.T) {
	t.Parallel()
	p, err := kms.NewLocal(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, p, false)
	if _, err := kms.NewLocal([]byte("short")); err == nil {
		t.Error("a short master key was accepted")
	}
}

func TestPKCS11_SoftHSM(t *testing.T) {
	p := newSoftHSM(t)
	conformance(t, p, true)
	// A KEK the token never had.
	if _, err := p.Unwrap(context.Background(), kms.KEK{Provider: "pkcs11", ID: "00ff"}, make([]byte, 40), nil); !errors.Is(err, kms.ErrKEKNotFound) {
		t.Errorf("Unwrap with an unknown KEK = %v, want ErrKEKNotFound", err)
	}
	// An unknown token or module is refused with a message that says which.
	// (A wrong PIN cannot be tried here: PKCS#11 logins are per process and
	// token, so once this process is logged in any PIN would pass; see
	// TestPKCS11_WrongPIN.)
	for name, c := range map[string]kms.PKCS11Config{
		"UnknownToken": {Module: softHSMModule, TokenLabel: "no-such-token", PIN: "1234"},
		"NoModule":     {Module: "/nonexistent/libpkcs11.so", TokenLabel: "elile-test", PIN: "1234"},
	} {
		if p2, err := kms.NewPKCS11(c); err == nil {
			_ = p2.Close()
			t.Errorf("%s: NewPKCS11 succeeded", name)
		}
	}
}

// A wrong PIN, in a process of its own (this test binary, re-run), which has
// never logged in to the token.
func TestPKCS11_WrongPIN(t *testing.T) {
	if os.Getenv("ELILE_KMS_WRONG_PIN") == "1" {
		_, err := kms.NewPKCS11(kms.PKCS11Config{Module: softHSMModule, TokenLabel: "elile-test", PIN: "0000"})
		if err == nil {
			t.Fatal("NewPKCS11 with a wrong PIN succeeded")
		}
		t.Logf("refused: %v", err)
		return
	}
	newSoftHSM(t).Close()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPKCS11_WrongPIN$", "-test.v")
	cmd.Env = append(os.Environ(), "ELILE_KMS_WRONG_PIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("refused:")) {
		t.Errorf("a wrong PIN in a fresh process: %v\n%s", err, out)
	}
}

func startLocalKMS(t testing.TB) string { return kmstest.LocalKMS(t) }

func TestAWSKMS_Emulator(t *testing.T) {
	t.Parallel()
	endpoint := startLocalKMS(t)
	ctx := context.Background()
	p, err := kms.NewAWS(ctx, kms.AWSConfig{Region: "eu-west-2", Endpoint: endpoint, AccessKey: "test", SecretKey: "test"})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, p, true)
	// The destroyed KEK (conformance's first) is disabled at once and
	// scheduled for deletion after KMS's shortest window.
	k, err := p.CreateKEK(ctx, "tenant/c")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DestroyKEK(ctx, k); err != nil {
		t.Fatal(err)
	}
	if state, err := p.State(ctx, k); err != nil || state != "PendingDeletion" {
		t.Errorf("state after DestroyKEK = %q, %v; want PendingDeletion", state, err)
	}

	// FindKEK: a usable key by id, and refusals that say why — a missing
	// key, a destroyed one, a key of the wrong type.
	good, err := p.CreateKEK(ctx, "tenant/d")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.FindKEK(ctx, good.ID); err != nil || got.ID != good.ID {
		t.Errorf("FindKEK of a usable key = %+v, %v", got, err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("eu-west-2"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	if err != nil {
		t.Fatal(err)
	}
	client := awskms.NewFromConfig(cfg, func(o *awskms.Options) { o.BaseEndpoint = aws.String(endpoint) })
	rsa, err := client.CreateKey(ctx, &awskms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"alias/none":                        "",
		k.ID:                                "PendingDeletion",
		aws.ToString(rsa.KeyMetadata.KeyId): "SYMMETRIC_DEFAULT",
	} {
		if _, err := p.FindKEK(ctx, ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FindKEK(%s) = %v, want a refusal naming %q", ref, err, want)
		}
	}
}

// BenchmarkUnwrap measures one cold unwrap (what a request whose tenant's
// DEK is not cached waits for) per provider, and a cache hit.
func BenchmarkUnwrap(b *testing.B) {
	ctx := context.Background()
	local, _ := kms.NewLocal(bytes.Repeat([]byte{3}, 32))
	aws, err := kms.NewAWS(ctx, kms.AWSConfig{Region: "eu-west-2", Endpoint: startLocalKMS(b), AccessKey: "test", SecretKey: "test"})
	if err != nil {
		b.Fatal(err)
	}
	providers := map[string]kms.Provider{"local": local, "awskms-emulator": aws, "pkcs11-softhsm2": newSoftHSM(b)}
	for name, p := range providers {
		kek, err := p.CreateKEK(ctx, "bench/"+name)
		if err != nil {
			b.Fatal(err)
		}
		dek := bytes.Repeat([]byte{9}, kms.DEKSize)
		w, err := p.Wrap(ctx, kek, dek, []byte("ad"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := p.Unwrap(ctx, kek, w, []byte("ad")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"-cached", func(b *testing.B) {
			c := kms.NewCache(p, time.Hour, 10, nil)
			ref := kms.Wrapped{Name: name, KEK: kek, Blob: w, AD: []byte("ad")}
			for b.Loop() {
				if _, err := c.DEK(ctx, ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
