package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/elile/elile/internal/kms/kmstest"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// A key provider that cannot be used stops the server before it serves,
// with a message that says which setting is wrong: a missing module, an
// unknown token, a platform key label the token does not have. (A wrong
// PIN: kms TestPKCS11_WrongPIN, in a fresh process.) Not parallel: the
// PKCS#11 library reads SOFTHSM2_CONF once per process.
func TestRun_ServeRefusesUnusableKeyProvider(t *testing.T) {
	kmstest.InitSoftHSM(t)
	url := pgtest.DB(t)
	base := map[string]string{"DATABASE_URL": url, "API_PORT": "0", "KMS_PROVIDER": "pkcs11",
		"PKCS11_MODULE": kmstest.SoftHSMModule, "PKCS11_TOKEN_LABEL": kmstest.TokenLabel, "PKCS11_PIN": kmstest.PIN}
	for name, tc := range map[string]struct {
		set  map[string]string
		want string
	}{
		"NoModule":     {map[string]string{"PKCS11_MODULE": "/nonexistent/libpkcs11.so"}, "/nonexistent/libpkcs11.so"},
		"UnknownToken": {map[string]string{"PKCS11_TOKEN_LABEL": "no-such-token"}, "no-such-token"},
		"NoKeyLabel":   {map[string]string{"PKCS11_KEY_LABEL": "no-such-key"}, `no key object labelled "no-such-key"`},
		"NoPIN":        {map[string]string{"PKCS11_PIN": ""}, "PKCS11_PIN"},
	} {
		t.Run(name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			for k, v := range tc.set {
				m[k] = v
			}
			err := run(context.Background(), []string{"elile", "serve"}, env(m), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
				t.Fatalf("serve = %v (exit %d), want a refusal naming %q (exit 2)", err, exitCode(err), tc.want)
			}
		})
	}
}
