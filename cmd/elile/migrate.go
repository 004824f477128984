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

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("usage: elile migrate up|down|status|redo")}
	}
	action := fs.Arg(0)
	switch action {
	case "up", "down", "status", "redo":
	default:
		return usageError{fmt.Errorf("unknown migrate action %q: want up, down, status or redo", action)}
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
