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

Usage: elile [command] [flags]

Commands:
  serve                         run the HTTP API (the default)
  migrate up|down|status|redo   manage the database schema
  config check [--json]         validate the configuration and print it, secrets redacted
  tenant create --name N [--json]             create a tenant and print its first admin API key
  apikey create --tenant T --scopes a,b [--json] | --platform-admin
                                print a new API key once
  audit verify [--tenant T] [--checkpoint FILE] [--json]
                                check the audit log's signed seals; exit 1 on any tampering
  audit checkpoint --tenant T   print the latest signed checkpoint, to save outside the database
  loadtest --admin-key K [--concurrency N] [--duration D | --requests N] [--rate R] [--mix ...] [--json]
                                drive a running server with mixed traffic and report latencies
  schema erd [--out docs]       write the ER diagram of the live schema (Mermaid, DOT, SVG)
  docs config|openapi           print docs/configuration.md or the OpenAPI document
  keys generate                 print a new random key (base64, 32 bytes)
  keys status [--json]          key versions configured and in use, per table and column
  keys rotate [--batch N]       re-encrypt stored data to the active key, online and resumable
  keys blind-index-key          print the blind-index root key, to pin as BLIND_INDEX_KEY
  version                       print the build version

Configuration comes from environment variables (and .env in development):
see docs/configuration.md.
`

// run is the whole program: main only adds the process around it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", []string(nil)
	if len(args) > 1 {
		cmd, rest = args[1], args[2:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, getenv, stdout, stderr)
	case "config":
		return cmdConfig(rest, getenv, stdout)
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
