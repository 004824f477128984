package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/postgres"
)

// cmdSchema writes the ER diagram of the live schema: docs/erd.md
// (Mermaid), docs/erd.dot and docs/erd.svg (Graphviz dot).
func cmdSchema(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmds := map[string]subcommand{"erd": {"elile schema erd [--out DIR]",
		"write the ER diagram of the live schema: erd.md (Mermaid), erd.dot and erd.svg (Graphviz)"}}
	if _, err := group("schema", args, cmds, []string{"erd"}, stdout); err != nil {
		return err
	}
	fs := flag.NewFlagSet("schema erd", flag.ContinueOnError)
	out := fs.String("out", "docs", "directory to write erd.md, erd.dot and erd.svg into")
	if err := parseFlags(fs, args[1:], stdout, cmds["erd"].use, cmds["erd"].about); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Environment == config.Development {
		if _, err := postgres.EnsureDatabase(ctx, cfg.DatabaseURL.Reveal()); err != nil {
			return err
		}
		m, err := postgres.NewMigrator(cfg.DatabaseURL.Reveal())
		if err != nil {
			return err
		}
		_, err = m.Up(ctx)
		m.Close()
		if err != nil {
			return err
		}
	}
	s, err := postgres.ReadSchema(ctx, cfg.DatabaseURL.Reveal())
	if err != nil {
		return err
	}
	return writeERD(ctx, s, *out, stdout)
}

func writeERD(ctx context.Context, s postgres.Schema, dir string, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dot := s.DOT()
	svg, err := renderDOT(ctx, dot)
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{"erd.md": []byte(s.Mermaid()), "erd.dot": []byte(dot), "erd.svg": svg} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil { //nolint:gosec // documentation
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(dir, name))
	}
	return nil
}

// renderDOT runs Graphviz (Debian's graphviz package).
func renderDOT(ctx context.Context, dot string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "dot", "-Tsvg")
	cmd.Stdin = bytes.NewReader([]byte(dot))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("graphviz dot (apt-get install graphviz): %w: %s", err, errb.String())
	}
	return out.Bytes(), nil
}
