package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/postgres"
)

//nolint:gochecknoglobals // the migrate commands' usage, read-only
var migrateCommands = map[string]subcommand{
	"up":     {"elile migrate up", "apply every pending migration; on a Citus coordinator, then distribute the schema (docs/scaling.md)"},
	"down":   {"elile migrate down", "roll back the latest migration"},
	"status": {"elile migrate status", "list the migrations and whether each is applied"},
	"redo":   {"elile migrate redo", "roll back the latest migration and apply it again"},
}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	action, err := group("migrate", args, migrateCommands, []string{"up", "down", "status", "redo"}, stdout)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("migrate "+action, flag.ContinueOnError)
	if err := parseFlags(fs, args[1:], stdout, migrateCommands[action].use, migrateCommands[action].about+
		"\n\nConnects with MIGRATION_DATABASE_URL (else DATABASE_URL), as the schema owner."); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q\nusage: %s", fs.Arg(0), migrateCommands[action].use)}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.Environment == config.Development {
		err := retry(ctx, cfg.DatabaseConnectTimeout, log, "create database", func(ctx context.Context) error {
			_, err := postgres.EnsureDatabase(ctx, cfg.MigrationURL())
			return err
		})
		if err != nil {
			return err
		}
	}
	m, err := postgres.NewMigrator(cfg.MigrationURL())
	if err != nil {
		return err
	}
	defer m.Close()

	switch action {
	case "up":
		applied, err := m.Up(ctx)
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied %d\n", v)
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if m.Distributed {
			fmt.Fprintln(stdout, "distributed the schema on the Citus cluster")
		}
		if len(applied) == 0 && !m.Distributed {
			fmt.Fprintln(stdout, "schema is up to date")
		}
	case "down":
		v, err := m.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		if v == 0 {
			fmt.Fprintln(stdout, "nothing to roll back")
		} else {
			fmt.Fprintf(stdout, "rolled back %d\n", v)
		}
	case "redo":
		v, err := m.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate redo: %w", err)
		}
		if _, err := m.Up(ctx); err != nil {
			return fmt.Errorf("migrate redo: %w", err)
		}
		fmt.Fprintf(stdout, "redid %d\n", v)
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range st {
			state, at := "pending", "-"
			if s.Applied {
				state, at = "applied", s.At
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Version, state, at, s.Name)
		}
		return tw.Flush()
	}
	return nil
}
