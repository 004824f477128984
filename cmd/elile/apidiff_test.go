package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	ack := filepath.Join(dir, "ack.txt")
	if err := os.WriteFile(ack, []byte("DELETE /v1/tenants/{tenant_id} api removed without deprecation\n"), 0o600); err != nil {
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
