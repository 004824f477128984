package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret (the Standard Webhooks form:
// whsec_ and the key in base64).
const SecretPrefix = "whsec_"

// NewSecret returns a new signing secret: 32 random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the HMAC key of a secret.
func secretKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) < 24 {
		return nil, errors.New("webhook secret: not whsec_ and at least 24 bytes of base64")
	}
	return k, nil
}

// Signature returns the webhook-signature header of a message: one
// "v1,<base64 HMAC-SHA256>" per secret, separated by spaces (two while a
// rotated secret's overlap lasts). The signed content is
// id.timestamp.body, as the Standard Webhooks specification says.
func Signature(id string, at time.Time, body []byte, secrets ...string) (string, error) {
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		k, err := secretKey(s)
		if err != nil {
			return "", err
		}
		parts = append(parts, "v1,"+sign(k, id, at.Unix(), body))
	}
	return strings.Join(parts, " "), nil
}

func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
