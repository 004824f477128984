package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/elile/elile/internal/postgres"
	"github.com/elile/elile/internal/postgres/pgtest"
)

// TestERD_UpToDate migrates a fresh database, regenerates the ER diagram
// and fails when the committed files differ (make docs rewrites them). The
// Mermaid and DOT files need nothing but the database; the SVG needs
// Graphviz, and is compared only where `dot` is installed (.ci/run installs
// it), so `make test` passes on a fresh machine without it.
func TestERD_UpToDate(t *testing.T) {
	t.Parallel()
	s, err := postgres.ReadSchema(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"erd.md": []byte(s.Mermaid()), "erd.dot": []byte(s.DOT())}
	if _, err := exec.LookPath("dot"); err == nil {
		dir := t.TempDir()
		if err := writeERD(context.Background(), s, dir, ioDiscard{}); err != nil {
			t.Fatal(err)
		}
		if files["erd.svg"], err = os.ReadFile(filepath.Join(dir, "erd.svg")); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("graphviz dot not installed: docs/erd.svg not compared (apt-get install graphviz)")
	}
	for name, got := range files {
		want, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
		if err != nil || string(got) != string(want) {
			t.Errorf("docs/%s is out of date with the migrations: run make docs", name)
		}
	}
	if len(s.Tables) < 10 || len(s.Foreign) < 10 {
		t.Errorf("schema has %d tables and %d foreign keys", len(s.Tables), len(s.Foreign))
	}
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }
