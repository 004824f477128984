package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/elile/elile/internal/config"
	"github.com/elile/elile/internal/httpapi"
)

// cmdDocs prints the generated documents: docs/configuration.md and
// docs/openapi.json (make docs writes them).
func cmdDocs(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{errors.New("usage: elile docs config|openapi")}
	}
	switch args[0] {
	case "config":
		fmt.Fprint(stdout, config.Markdown())
		return nil
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
	return usageError{errors.New("usage: elile docs config|openapi|openapi-3.0")}
}
