package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp says the help a user asked for (--help, -h, help) was printed:
// run turns it into success (exit 0).
var errHelp = errors.New("help shown")

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// parseFlags parses a command's flags. --help prints its usage line, what
// it does and its own flags, on stdout (errHelp); a bad flag is a usage
// error (exit 2) that repeats the usage line.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, use, about string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs, use, about)
		return errHelp
	case err != nil:
		return usageError{fmt.Errorf("%w\nusage: %s", err, use)}
	}
	return nil
}

func printHelp(w io.Writer, fs *flag.FlagSet, use, about string) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", use, strings.TrimSpace(about))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// subcommand is one command of a group (elile keys rotate): its usage
// line and what it does.
type subcommand struct{ use, about string }

// group handles the group level of "elile GROUP SUB …" and returns the
// known subcommand given: none is a usage error listing them (exit 2),
// --help lists them on stdout (errHelp: exit 0), an unknown one is a usage
// error.
func group(name string, args []string, subs map[string]subcommand, order []string, stdout io.Writer) (sub string, err error) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: elile %s COMMAND [flags]\n\nCommands:\n", name)
	for _, s := range order {
		fmt.Fprintf(&b, "  %s\n      %s\n", subs[s].use, subs[s].about)
	}
	fmt.Fprintf(&b, "\nRun elile %s COMMAND --help for a command's flags.\n", name)
	switch {
	case len(args) == 0:
		return "", usageError{errors.New(strings.TrimSuffix(b.String(), "\n"))}
	case isHelp(args[0]):
		fmt.Fprint(stdout, b.String())
		return "", errHelp
	}
	if _, ok := subs[args[0]]; !ok {
		return "", usageError{fmt.Errorf("unknown %s command %q\n%s", name, args[0], strings.TrimSuffix(b.String(), "\n"))}
	}
	return args[0], nil
}
