package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elile/elile/internal/httpapi"
)

// TestAPIDiff_GateCatchesABreakingChange runs the breaking-change gate
// (make api-diff: oasdiff, pinned in tools/go.mod, reading the 3.1
// document) the way CI does: the served document against the baseline
// passes; the same document with an operation removed fails, naming it;
// acknowledged, it passes again.
func TestAPIDiff_GateCatchesABreakingChange(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ops := doc["paths"].(map[string]any)["/v1/tenants/{tenant_id}"].(map[string]any) //nolint:forcetypeassert // the document's shape
	delete(ops, "delete")
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	out, _ := json.Marshal(doc)
	if err := os.WriteFile(broken, out, 0o600); err != nil {
		t.Fatal(err)
	}
	// The committed acknowledgements, and the removal.
	committed, err := os.ReadFile(filepath.Join(root, "docs", "api-breaking-acknowledged.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ack := filepath.Join(dir, "ack.txt")
	if err := os.WriteFile(ack, append(committed, "DELETE /v1/tenants/{tenant_id} api removed without deprecation\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	diff := func(current, ignore string) (string, error) {
		cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "oasdiff", "breaking", "docs/openapi.baseline.json", current,
			"--fail-on", "ERR", "--err-ignore", ignore)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	acknowledged := filepath.Join("docs", "api-breaking-acknowledged.txt")
	if out, err := diff(filepath.Join("docs", "openapi.json"), acknowledged); err != nil {
		t.Errorf("the served document breaks the baseline (acknowledge on purpose in %s):\n%s", acknowledged, out)
	}
	if out, err := diff(broken, acknowledged); err == nil || !strings.Contains(out, "api-removed-without-deprecation") {
		t.Errorf("a removed operation passed the gate: %v\n%s", err, out)
	}
	if out, err := diff(broken, ack); err != nil {
		t.Errorf("an acknowledged removal failed the gate: %v\n%s", err, out)
	}
}

// TestClients_UpToDate fails when the generated Go client (make clients)
// lags behind the served document: the 3.0 downgrade it is generated from,
// and the code oapi-codegen (pinned in tools/go.mod) makes from it.
func TestClients_UpToDate(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	doc, err := httpapi.OpenAPI30()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(root, "clients", "openapi-3.0.json"))
	if err != nil || string(committed) != string(doc) {
		t.Fatalf("clients/openapi-3.0.json is out of date with the API: run make clients")
	}
	// The committed settings, writing elsewhere.
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	settings, err := os.ReadFile(filepath.Join(root, "clients", "go", "oapi-codegen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "oapi-codegen.yaml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(settings), "output: clients/go/elile/client.gen.go", "output: "+out, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "oapi-codegen", "-config", cfg, "clients/openapi-3.0.json")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if current, err := os.ReadFile(filepath.Join(root, "clients", "go", "elile", "client.gen.go")); err != nil || string(current) != string(fresh) {
		t.Error("clients/go/elile/client.gen.go is out of date: run make clients")
	}
}
