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
// and fails when the committed files differ (make docs rewrites them).
func TestERD_UpToDate(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dot"); err != nil {
		t.Fatal("graphviz dot not installed (apt-get install graphviz; .ci/run installs it)")
	}
	s, err := postgres.ReadSchema(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeERD(context.Background(), s, dir, ioDiscard{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"erd.md", "erd.dot", "erd.svg"} {
		got, _ := os.ReadFile(filepath.Join(dir, name))
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
