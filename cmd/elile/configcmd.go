package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
)

func cmdConfig(args []string, getenv func(string) string, stdout io.Writer) error {
	cmds := map[string]subcommand{"check": {"elile config check [--json]",
		"validate the configuration (environment variables, and .env in development) and print it, secrets redacted; exit 2 when invalid"}}
	if _, err := group("config", args, cmds, []string{"check"}, stdout); err != nil {
		return err
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout, cmds["check"].use, cmds["check"].about); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	pairs := cfg.Redacted()
	if *asJSON {
		m := make(map[string]string, len(pairs))
		for _, p := range pairs {
			m[p[0]] = p[1]
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"valid": true, "config": m})
	}
	fmt.Fprintln(stdout, "configuration is valid:")
	for _, p := range pairs {
		fmt.Fprintf(stdout, "  %s=%s\n", p[0], p[1])
	}
	return nil
}
