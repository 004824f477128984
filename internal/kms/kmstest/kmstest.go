// Package kmstest starts the key providers tests run against: a SoftHSM2
// token initialised in a temporary directory, and the AWS KMS emulator
// (github.com/nsmithuk/local-kms, pinned in tools/go.mod and kept out of
// elile's go.mod) on a free loopback port. For tests only.
package kmstest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elile/elile/internal/kms"
)

// SoftHSMModule is where Debian's softhsm2 package puts the library; CI
// installs it (scripts/services.sh).
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM token and PINs InitSoftHSM creates.
const (
	TokenLabel = "elile-test"
	PIN        = "1234"
)

// InitSoftHSM initialises a fresh SoftHSM2 token in a temporary directory
// and points SOFTHSM2_CONF at it. The library reads the variable when the
// first context of the process opens it: tests of one process share one
// token and do not run in parallel with each other.
func InitSoftHSM(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", TokenLabel, "--pin", PIN, "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token (install Debian's softhsm2): %v: %s", err, out)
	}
}

// SoftHSM initialises a token (InitSoftHSM) and logs in to it.
func SoftHSM(t testing.TB) *kms.PKCS11 {
	t.Helper()
	InitSoftHSM(t)
	p, err := kms.NewPKCS11(kms.PKCS11Config{Module: SoftHSMModule, TokenLabel: TokenLabel, PIN: PIN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// LocalKMS builds the AWS KMS emulator (the Go build cache keeps it after
// the first time) and starts it on a free loopback port with its data in a
// temporary directory; it stops with the test. It returns the endpoint.
func LocalKMS(t testing.TB) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	tools := filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), "tools", "go.mod")
	dir := t.TempDir()
	bin := filepath.Join(dir, "local-kms")
	build := exec.Command("go", "build", "-modfile="+tools, "-o", bin, "github.com/nsmithuk/local-kms")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build local-kms: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port) //nolint:forcetypeassert // a TCP listener
	_ = l.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_REGION=eu-west-2",
		"KMS_SEED_PATH="+filepath.Join(dir, "none.yaml"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			_ = c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("local-kms did not listen on %s: %s", port, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://127.0.0.1:" + port
}

// AWS starts the emulator (LocalKMS) and returns the provider over it.
func AWS(t testing.TB) *kms.AWS {
	t.Helper()
	p, err := kms.NewAWS(context.Background(), kms.AWSConfig{Region: "eu-west-2", Endpoint: LocalKMS(t), AccessKey: "test", SecretKey: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
