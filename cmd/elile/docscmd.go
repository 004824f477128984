package main

import (
	"fmt"
	"io"

	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/httpapi"
)

// cmdDocs prints the generated documents: docs/configuration.md,
// docs/reference.md and docs/openapi.json (make docs writes them).
func cmdDocs(args []string, stdout io.Writer) error {
	cmds := map[string]subcommand{
		"config":      {"elile docs config", "print docs/configuration.md: every setting, its default and rule"},
		"openapi":     {"elile docs openapi", "print the OpenAPI 3.1 document (docs/openapi.json)"},
		"openapi-3.0": {"elile docs openapi-3.0", "print the OpenAPI document down-converted to 3.0, for generators that read only 3.0"},
		"reference":   {"elile docs reference", "print docs/reference.md: identifier kinds, scopes, JWT claims, error codes, check types, event types and the guides"},
	}
	sub, err := group("docs", args, cmds, []string{"config", "openapi", "openapi-3.0", "reference"}, stdout)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		if isHelp(args[1]) {
			fmt.Fprintf(stdout, "Usage: %s\n\n%s\n", cmds[sub].use, cmds[sub].about)
			return errHelp
		}
		return usageError{fmt.Errorf("unexpected argument %q\nusage: %s", args[1], cmds[sub].use)}
	}
	switch sub {
	case "config":
		fmt.Fprint(stdout, config.Markdown())
		return nil
	case "reference":
		_, err := stdout.Write(httpapi.Reference())
		return err
	case "openapi", "openapi-3.0":
		openapi := httpapi.OpenAPI
		if args[0] == "openapi-3.0" {
			openapi = httpapi.OpenAPI30 // for generators that read 3.0 only
		}
		b, err := openapi()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	return nil
}
