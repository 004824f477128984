package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// AWSConfig reaches AWS KMS (or a compatible endpoint).
type AWSConfig struct {
	Region   string
	Endpoint string // empty: AWS's own; set for an emulator or a VPC endpoint
	// AccessKey and SecretKey are static credentials, for an emulator;
	// empty: the default AWS credential chain (environment, shared
	// config, the instance or task role).
	AccessKey, SecretKey string
	// DeletionWindowDays is how long a destroyed KEK stays restorable in
	// KMS before AWS deletes it: 7 (KMS's shortest, the default) to 30.
	DeletionWindowDays int32
}

// AWS keeps one KMS key per KEK. KMS holds no versions to re-wrap to:
// versions of a tenant's keys are elile's own.
type AWS struct {
	c      *awskms.Client
	window int32
}

// NewAWS returns the AWS KMS provider.
func NewAWS(ctx context.Context, c AWSConfig) (*AWS, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(c.Region)}
	if c.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kms awskms: load configuration: %w", err)
	}
	client := awskms.NewFromConfig(cfg, func(o *awskms.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
	window := c.DeletionWindowDays
	if window == 0 {
		window = 7
	}
	return &AWS{c: client, window: window}, nil
}

// Name implements Provider.
func (p *AWS) Name() string { return "awskms" }

// CreateKEK implements Provider: a symmetric encryption key described by
// label.
func (p *AWS) CreateKEK(ctx context.Context, label string) (KEK, error) {
	out, err := p.c.CreateKey(ctx, &awskms.CreateKeyInput{
		Description: aws.String("elile " + label),
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		KeySpec:     types.KeySpecSymmetricDefault,
		Tags:        []types.Tag{{TagKey: aws.String("elile"), TagValue: aws.String(label)}},
	})
	if err != nil {
		return KEK{}, fmt.Errorf("kms awskms: create key %q: %w", label, err)
	}
	return KEK{Provider: p.Name(), ID: aws.ToString(out.KeyMetadata.KeyId), Label: label}, nil
}

// FindKEK implements Provider: ref is a key id, ARN or alias; the key must
// be enabled, symmetric and for encryption.
func (p *AWS) FindKEK(ctx context.Context, ref string) (KEK, error) {
	out, err := p.c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(ref)})
	if err != nil {
		return KEK{}, p.kmsError(KEK{ID: ref, Label: ref}, err)
	}
	m := out.KeyMetadata
	switch {
	case m.KeyState != types.KeyStateEnabled:
		return KEK{}, ErrKEKNotFound.Withf("KMS key %s is %s, not Enabled", ref, m.KeyState)
	case m.KeySpec != types.KeySpecSymmetricDefault || m.KeyUsage != types.KeyUsageTypeEncryptDecrypt:
		return KEK{}, fmt.Errorf("kms awskms: key %s is %s for %s, want SYMMETRIC_DEFAULT for ENCRYPT_DECRYPT", ref, m.KeySpec, m.KeyUsage)
	}
	kek := KEK{Provider: p.Name(), ID: aws.ToString(m.KeyId), Label: ref}
	return kek, selfTest(ctx, p, kek)
}

// context binds a wrapped DEK to ad through KMS's encryption context.
func encryptionContext(ad []byte) map[string]string {
	return map[string]string{"elile": base64.RawStdEncoding.EncodeToString(ad)}
}

// Wrap implements Provider: KMS Encrypt under the KEK, ad as its encryption
// context.
func (p *AWS) Wrap(ctx context.Context, kek KEK, dek, ad []byte) ([]byte, error) {
	if err := checkProvider(p, kek); err != nil {
		return nil, err
	}
	out, err := p.c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(kek.ID), Plaintext: dek, EncryptionContext: encryptionContext(ad)})
	if err != nil {
		return nil, p.kmsError(kek, err)
	}
	return out.CiphertextBlob, nil
}

// Unwrap implements Provider: KMS Decrypt, naming the KEK (a blob of
// another key is refused) and the same encryption context.
func (p *AWS) Unwrap(ctx context.Context, kek KEK, wrapped, ad []byte) ([]byte, error) {
	if err := checkProvider(p, kek); err != nil {
		return nil, err
	}
	out, err := p.c.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String(kek.ID), CiphertextBlob: wrapped, EncryptionContext: encryptionContext(ad)})
	if err != nil {
		return nil, p.kmsError(kek, err)
	}
	return out.Plaintext, nil
}

// DestroyKEK implements Provider: the key is disabled at once (nothing
// decrypts with it from then on) and its deletion scheduled after the
// shortest window KMS allows (AWS can restore it until then; say so to
// whoever relies on the erasure).
func (p *AWS) DestroyKEK(ctx context.Context, kek KEK) error {
	if err := checkProvider(p, kek); err != nil {
		return err
	}
	if _, err := p.c.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: aws.String(kek.ID)}); err != nil {
		return p.kmsError(kek, err)
	}
	if _, err := p.c.ScheduleKeyDeletion(ctx, &awskms.ScheduleKeyDeletionInput{KeyId: aws.String(kek.ID), PendingWindowInDays: aws.Int32(p.window)}); err != nil {
		return p.kmsError(kek, err)
	}
	return nil
}

// State reports a KEK's state in KMS (Enabled, Disabled, PendingDeletion…).
func (p *AWS) State(ctx context.Context, kek KEK) (string, error) {
	out, err := p.c.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(kek.ID)})
	if err != nil {
		return "", p.kmsError(kek, err)
	}
	return string(out.KeyMetadata.KeyState), nil
}

// Close implements Provider.
func (p *AWS) Close() error { return nil }

// kmsError maps KMS's refusals to the provider errors.
func (p *AWS) kmsError(kek KEK, err error) error {
	var (
		disabled  *types.DisabledException
		state     *types.KMSInvalidStateException
		notFound  *types.NotFoundException
		invalid   *types.InvalidCiphertextException
		incorrect *types.IncorrectKeyException
	)
	switch {
	case errors.As(err, &disabled), errors.As(err, &state), errors.As(err, &notFound):
		return ErrKEKNotFound.Withf("KMS key %s (%s) is disabled, pending deletion or gone", kek.ID, kek.Label).Wrap(err)
	case errors.As(err, &invalid), errors.As(err, &incorrect):
		return ErrUnwrap.Wrap(err)
	}
	return fmt.Errorf("kms awskms: key %s: %w", kek.ID, err)
}
