package receiver_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elile/elile/docs/webhooks/receiver"
	"github.com/elile/elile/internal/webhook"
)

// signedCase is a delivery as elile signs it, possibly tampered with,
// and whether the documented code must accept it.
type signedCase struct {
	Name    string            `json:"name"`
	Secret  string            `json:"secret"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"` // base64
	Now     int64             `json:"now"`
	want    bool
}

// cases signs a payload with internal/webhook (what the server sends),
// then changes one thing at a time: every byte of the body, the id, the
// timestamp, the secret; and ages the delivery past the tolerance.
func cases(t *testing.T) []signedCase {
	t.Helper()
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	body := []byte(`{"id":"0193a0c4-4f1e-7c36-9d0e-2b6a1c9e5f01","type":"entity.created","timestamp":"2026-12-02T10:00:00Z","data":{"tenant_id":"0193a0c4-0000-7000-8000-000000000001","resource_type":"entity","resource_id":"0193a0c4-4f1e-7c36-9d0e-2b6a1c9e5f02"}}`)
	at := time.Unix(1_796_205_600, 0)
	id := "0193a0c4-4f1e-7c36-9d0e-2b6a1c9e5f01"
	mk := func(name string, secretUsed string, sigSecrets []string, b []byte, now time.Time, want bool, edit func(h map[string]string)) signedCase {
		sig, err := webhook.Signature(id, at, b, sigSecrets...)
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]string{"webhook-id": id, "webhook-timestamp": strconv.FormatInt(at.Unix(), 10), "webhook-signature": sig}
		if edit != nil {
			edit(h)
		}
		return signedCase{Name: name, Secret: secretUsed, Headers: h, Body: base64.StdEncoding.EncodeToString(b), Now: now.Unix(), want: want}
	}
	out := []signedCase{
		mk("valid", secret, []string{secret}, body, at.Add(10*time.Second), true, nil),
		mk("rotation-new-secret", secret, []string{secret, other}, body, at, true, nil),
		mk("rotation-old-secret", other, []string{secret, other}, body, at, true, nil),
		mk("wrong-secret", other, []string{secret}, body, at, false, nil),
		mk("old-timestamp", secret, []string{secret}, body, at.Add(6*time.Minute), false, nil),
		mk("future-timestamp", secret, []string{secret}, body, at.Add(-6*time.Minute), false, nil),
		mk("id-changed", secret, []string{secret}, body, at, false, func(h map[string]string) { h["webhook-id"] = "0193a0c4-4f1e-7c36-9d0e-2b6a1c9e5f09" }),
		mk("timestamp-changed", secret, []string{secret}, body, at, false, func(h map[string]string) {
			h["webhook-timestamp"] = strconv.FormatInt(at.Unix()+1, 10)
		}),
		mk("no-signature", secret, []string{secret}, body, at, false, func(h map[string]string) { delete(h, "webhook-signature") }),
		mk("other-version", secret, []string{secret}, body, at, false, func(h map[string]string) {
			h["webhook-signature"] = strings.Replace(h["webhook-signature"], "v1,", "v2,", 1)
		}),
	}
	// Every single byte of the body changed (signed over the original).
	for i := range body {
		sig, err := webhook.Signature(id, at, body, secret)
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(body)
		b[i] ^= 0x01
		out = append(out, signedCase{Name: "byte-" + strconv.Itoa(i), Secret: secret, Now: at.Unix(),
			Headers: map[string]string{"webhook-id": id, "webhook-timestamp": strconv.FormatInt(at.Unix(), 10), "webhook-signature": sig},
			Body:    base64.StdEncoding.EncodeToString(b)})
	}
	return out
}

// TestVerify_Go runs the Go receiver code of docs/webhooks.md.
func TestVerify_Go(t *testing.T) {
	t.Parallel()
	for _, c := range cases(t) {
		h := http.Header{}
		for k, v := range c.Headers {
			h.Set(k, v)
		}
		body, _ := base64.StdEncoding.DecodeString(c.Body)
		err := receiver.Verify(c.Secret, h, body, 5*time.Minute, time.Unix(c.Now, 0))
		if (err == nil) != c.want {
			t.Errorf("%s: Verify = %v, want accepted %v", c.Name, err, c.want)
		}
	}
}

// TestVerify_TypeScript compiles the TypeScript receiver code of
// docs/webhooks.md with the TypeScript client's compiler (make ts-client
// installs it; CI does) and runs it with Node.js on the same cases.
func TestVerify_TypeScript(t *testing.T) {
	t.Parallel()
	root, _ := filepath.Abs("../../..")
	tsc := filepath.Join(root, "clients/ts/node_modules/.bin/tsc")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(tsc); serr != nil || err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this test: tsc (%v) or node (%v) missing: run make ts-client first", serr, err)
		}
		t.Skip("no TypeScript compiler (make ts-client) or node")
	}
	dir := t.TempDir()
	cmd := exec.Command(tsc, "--strict", "--target", "es2022", "--module", "commonjs", "--types", "node",
		"--typeRoots", filepath.Join(root, "clients/ts/node_modules/@types"), "--outDir", dir, "--rootDir", ".",
		"verify.ts", "testdata/run.ts")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	cs := cases(t)
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cases.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, filepath.Join(dir, "testdata/run.js"), file).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, res, _ := strings.Cut(line, " ")
		got[name] = res
	}
	for _, c := range cs {
		if got[c.Name] != strconv.FormatBool(c.want) {
			t.Errorf("%s: verifyWebhook = %q, want %v", c.Name, got[c.Name], c.want)
		}
	}
}

// TestDocsShowTheTestedCode: docs/webhooks.md holds both files verbatim,
// so what a reader copies is what these tests ran.
func TestDocsShowTheTestedCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../webhooks.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"verify.go", "verify.ts"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, src) {
			t.Errorf("docs/webhooks.md does not hold %s verbatim: paste it again", f)
		}
	}
}
