package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The command line behaves like a good Unix tool: --help everywhere prints
// the command's own usage and flags on stdout and exits 0; a command line
// that cannot be acted on exits 2 with the usage line on stderr; a bare
// elile does not start a server.
func TestCLI_HelpAndExitCodes(t *testing.T) {
	t.Parallel()
	cli := func(args ...string) (stdout, stderr string, code int) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"elile"}, args...), env(nil), &out, &errOut)
		if err != nil {
			code = exitCode(err)
			errOut.WriteString(err.Error())
		}
		return out.String(), errOut.String(), code
	}

	// Every command answers --help (and -h) with its own usage, on stdout.
	for cmd, want := range map[string]struct {
		usage      string
		has, hasNo []string
	}{
		"":                     {"Usage: elile COMMAND", []string{"Exit status", "serve", "keys"}, nil},
		"serve":                {"Usage: elile serve", nil, []string{"-json"}},
		"migrate":              {"Usage: elile migrate COMMAND", []string{"elile migrate up", "elile migrate redo"}, nil},
		"migrate up":           {"Usage: elile migrate up", []string{"Citus"}, nil},
		"migrate status":       {"Usage: elile migrate status", nil, nil},
		"config":               {"Usage: elile config COMMAND", []string{"elile config check"}, nil},
		"config check":         {"Usage: elile config check [--json]", []string{"-json", "encryption keys"}, nil},
		"tenant":               {"Usage: elile tenant COMMAND", []string{"elile tenant create", "elile tenant erase"}, nil},
		"tenant create":        {"Usage: elile tenant create --name", []string{"-name", "-slug"}, []string{"-confirm"}},
		"tenant erase":         {"Usage: elile tenant erase TENANT_ID", []string{"-confirm"}, []string{"-name"}},
		"apikey":               {"Usage: elile apikey COMMAND", nil, nil},
		"apikey create":        {"Usage: elile apikey create", []string{"-platform-admin", "-scopes"}, nil},
		"audit":                {"Usage: elile audit COMMAND", []string{"elile audit verify", "elile audit checkpoint"}, nil},
		"audit verify":         {"Usage: elile audit verify", []string{"-checkpoint", "-tenant"}, nil},
		"audit checkpoint":     {"Usage: elile audit checkpoint", []string{"-tenant"}, []string{"-checkpoint", "-json"}},
		"keys":                 {"Usage: elile keys COMMAND", []string{"elile keys rotate-kek"}, nil},
		"keys generate":        {"Usage: elile keys generate", nil, []string{"-batch", "-tenant", "-json", "Flags:"}},
		"keys status":          {"Usage: elile keys status", []string{"-json"}, []string{"-batch", "-tenant", "-force"}},
		"keys rotate":          {"Usage: elile keys rotate", []string{"-batch", "-json", "-force"}, []string{"-tenant", "-older-than"}},
		"keys rotate-dek":      {"Usage: elile keys rotate-dek", []string{"-tenant", "-force"}, []string{"-batch", "-json"}},
		"keys rotate-kek":      {"Usage: elile keys rotate-kek", []string{"-older-than", "-force"}, []string{"-tenant", "-batch"}},
		"keys reindex":         {"Usage: elile keys reindex", []string{"-tenant", "-batch", "-force"}, []string{"-older-than"}},
		"keys blind-index-key": {"Usage: elile keys blind-index-key", nil, []string{"Flags:"}},
		"loadtest":             {"Usage: elile loadtest", []string{"-admin-key", "-concurrency"}, nil},
		"schema":               {"Usage: elile schema COMMAND", nil, nil},
		"schema erd":           {"Usage: elile schema erd", []string{"-out"}, nil},
		"docs":                 {"Usage: elile docs COMMAND", []string{"elile docs openapi-3.0"}, nil},
		"docs openapi":         {"Usage: elile docs openapi", nil, nil},
		"docs reference":       {"Usage: elile docs reference", nil, nil},
	} {
		for _, flag := range []string{"--help", "-h"} {
			args := append(strings.Fields(cmd), flag)
			out, errOut, code := cli(args...)
			if code != 0 || !strings.Contains(out, want.usage) || errOut != "" {
				t.Errorf("elile %s: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", strings.Join(args, " "), code, out, errOut, want.usage)
				continue
			}
			for _, s := range want.has {
				if !strings.Contains(out, s) {
					t.Errorf("elile %s: help lacks %q:\n%s", strings.Join(args, " "), s, out)
				}
			}
			for _, s := range want.hasNo {
				if strings.Contains(out, s) {
					t.Errorf("elile %s: help shows %q, another command's:\n%s", strings.Join(args, " "), s, out)
				}
			}
		}
	}

	// What cannot be acted on: exit 2, the usage on stderr, nothing started.
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"keys"}, {"keys", "spin"}, {"keys", "rotate", "--nope"}, {"keys", "generate", "extra"},
		{"keys", "generate", "--batch", "5"}, {"migrate"}, {"migrate", "sideways"}, {"migrate", "up", "now"},
		{"audit", "checkpoint"}, {"docs", "config", "extra"}, {"tenant", "erase"}, {"serve", "--port", "1"},
	} {
		out, errOut, code := cli(args...)
		if code != 2 || !strings.Contains(strings.ToLower(errOut), "usage") || out != "" {
			t.Errorf("elile %s: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", strings.Join(args, " "), code, out, errOut)
		}
	}
}
