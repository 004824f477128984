// Command elile is the elile server and its administration tools in one
// binary. Run "elile help" for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/elile/elile/internal/kv"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "" //nolint:gochecknoglobals // set by the linker

func main() {
	kv.QuietDriverLogs()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "elile:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is a command line the program cannot act on: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// configError is an invalid configuration: exit 2.
type configError struct{ err error }

func (e configError) Error() string { return "invalid configuration:\n" + indent(e.err.Error()) }
func (e configError) Unwrap() error { return e.err }

// failedCheck is a check that ran and found a problem (exit 1) after it
// printed its own report.
type failedCheck struct{ msg string }

func (e failedCheck) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	var ce configError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return 2
	}
	return 1
}

const usage = `elile: multi-tenant risk-assessment core.

Usage: elile COMMAND [flags]

Commands:
  serve                         run the HTTP API
  migrate up|down|status|redo   manage the database schema (on Citus, up also distributes it)
  config check [--json]         validate the configuration and print it, secrets redacted;
                                check the encryption keys against the database
  tenant create|erase           create a tenant (and its first admin API key), or erase one
  apikey create                 print a new API key once (a tenant's, or --platform-admin)
  audit verify|checkpoint       check the audit log's signed seals; print a checkpoint to keep
  keys generate|status|rotate|rotate-dek|rotate-kek|reindex|blind-index-key
                                encryption keys: status, rotation, re-indexing
  loadtest                      drive a running server with mixed traffic and report latencies
  schema erd                    write the ER diagram of the live schema
  docs config|openapi|openapi-3.0|reference
                                print the configuration reference, the OpenAPI document
                                or the integration reference
  version                       print the build version
  help                          print this

Run elile COMMAND --help for a command's usage and flags.

Exit status: 0 success; 1 a failure, or a check that ran and found a
problem (audit verify: tampering); 2 a command line or configuration that
cannot be acted on.

Configuration comes from environment variables (and .env in development):
see docs/configuration.md.
`

// run is the whole program: main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given (elile serve runs the server)")}
	}
	err := dispatch(ctx, args[1], args[2:], getenv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil // the help asked for was printed
	}
	return err
}

func dispatch(ctx context.Context, cmd string, rest []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, getenv, stdout, stderr)
	case "config":
		return cmdConfig(ctx, rest, getenv, stdout, stderr)
	case "keys":
		return cmdKeys(ctx, rest, getenv, stdout, stderr)
	case "tenant":
		return cmdTenant(ctx, rest, getenv, stdout, stderr)
	case "apikey":
		return cmdAPIKey(ctx, rest, getenv, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, getenv, stdout, stderr)
	case "loadtest":
		return cmdLoadtest(ctx, rest, getenv, stdout, stderr)
	case "schema":
		return cmdSchema(ctx, rest, getenv, stdout, stderr)
	case "docs":
		return cmdDocs(rest, stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, buildVersion())
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// buildVersion is the linker-set version, else the VCS revision Go
// recorded, else "dev".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) >= 12 {
			return "dev-" + rev[:12] + dirty
		}
	}
	return "dev"
}

func indent(s string) string {
	out := "  "
	for _, r := range s {
		out += string(r)
		if r == '\n' {
			out += "  "
		}
	}
	return out
}
