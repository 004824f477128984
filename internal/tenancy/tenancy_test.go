package tenancy

import (
	"strings"
	"testing"
)

func TestSlugFor(t *testing.T) {
	t.Parallel()
	fixed := func(b []byte) {
		for i := range b {
			b[i] = 0xab
		}
	}
	tests := []struct{ name, want string }{
		{"Acme Screening Ltd.", "acme-screening-ltd"},
		{"  --Ünïcode & Co--  ", "n-code-co"},
		{"AB", "ab-ababab"},
		{"", "ababab"},
		{"日本", "ababab"},
		{strings.Repeat("a", 49) + " b" + strings.Repeat("c", 20), strings.Repeat("a", 49)},
	}
	for _, tc := range tests {
		got := SlugFor(tc.name, fixed)
		if got != tc.want {
			t.Errorf("SlugFor(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if !slugRE.MatchString(got) {
			t.Errorf("SlugFor(%q) = %q, which the slug rule refuses", tc.name, got)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	if errs := checkConfig(map[string]any{"retention": 7}); len(errs) != 0 {
		t.Errorf("small config refused: %v", errs)
	}
	if errs := checkConfig(map[string]any{"blob": strings.Repeat("x", MaxConfigBytes)}); len(errs) != 1 || errs[0].Path != "config" {
		t.Errorf("config over 64 KiB: %v", errs)
	}
}
