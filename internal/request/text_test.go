package request

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "curl/8.0", 512, "curl/8.0"},
		{"invalid byte", "a\xffb", 512, "a\uFFFDb"},
		{"NUL", "a\x00b", 512, "a\uFFFDb"},
		{"CRLF", "a\r\nb", 512, "a\uFFFD\uFFFDb"},
		{"bidi override", "a\u202eb", 512, "a\uFFFDb"},
		{"cut inside a character", strings.Repeat("a", 511) + "é", 512, strings.Repeat("a", 511)},
		{"cut at the limit", strings.Repeat("é", 300), 512, strings.Repeat("é", 256)},
		{"zero limit", "abc", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := CleanText(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("CleanText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

func FuzzCleanText(f *testing.F) {
	f.Add("Mozilla/5.0", 512)
	f.Add("\xff\xfe\x00\r\n", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%2048 + 1
		if max < 0 {
			max = -max
		}
		got := CleanText(s, max)
		if !utf8.ValidString(got) || len(got) > max || strings.ContainsAny(got, "\x00\r\n") {
			t.Fatalf("CleanText(%q, %d) = %q: not clean", s, max, got)
		}
		if CleanText(got, max) != got {
			t.Fatalf("CleanText is not idempotent on %q", got)
		}
	})
}

func TestMethod(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "OTHER", strings.Repeat("X", 60000): "OTHER", "PROPFIND": "OTHER"} {
		if got := Method(in); got != want {
			t.Errorf("Method(%.20q) = %q, want %q", in, got, want)
		}
	}
}
