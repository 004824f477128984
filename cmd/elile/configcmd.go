package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
)

func cmdConfig(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usageError{fmt.Errorf("usage: elile config check [--json]")}
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
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
