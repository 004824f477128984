package identifier_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/elile/elile/internal/identifier"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) //nolint:gochecknoglobals // fixed test clock

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind, in, want string
	}{
		{"ssn", "123-45-6789", "123456789"},
		{"ssn", " 123456789 ", "123456789"},
		{"ein", "12-3456789", "123456789"},
		{"passport", "x12 345-678", "X12345678"},
		{"national_id", "ab.12-34", "AB1234"},
		{"email", "Jane.Doe@Example.COM", "jane.doe@example.com"},
		{"phone", "+1 (415) 555-0123", "+14155550123"},
		{"date_of_birth", "1980-02-29", "1980-02-29"},
		{"full_name", "  Zoë   Ñúñez ", "Zoë Ñúñez"},
		{"postal_code", "sw1a  1aa", "SW1A 1AA"},
		{"country", "de", "DE"},
		{"favourite_colour", "  blue ", "blue"},
	} {
		got, err := identifier.Normalize(tc.kind, tc.in, now)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q", tc.kind, tc.in, got, err, tc.want)
		}
	}
}

func TestNormalize_Rejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ kind, in string }{
		{"ssn", "12-345-678"}, {"ssn", "1234567890"}, {"ssn", "12345678a"}, {"ssn", "123 45 6789"},
		{"ein", "12345678"}, {"passport", "ab"}, {"passport", "AB#12345"}, {"national_id", "!"},
		{"email", "not-an-email"}, {"email", "Jane <jane@example.com>"}, {"email", "a@localhost"},
		{"phone", "4155550123"}, {"phone", "+0123456789"}, {"phone", "+1234"},
		{"date_of_birth", "1980-13-01"}, {"date_of_birth", "2027-01-01"}, {"date_of_birth", "1700-01-01"}, {"date_of_birth", "01/02/1980"},
		{"postal_code", "#"}, {"country", "XX"}, {"country", "USA"},
		{"Bad-Kind", "x"}, {"ssn", ""}, {"full_name", "   "}, {"full_name", "a\x00b"},
		{"full_name", strings.Repeat("a", 1025)}, {"full_name", "\xff"},
		{strings.Repeat("k", 64), "x"},
	} {
		if got, err := identifier.Normalize(tc.kind, tc.in, now); !errors.Is(err, identifier.ErrInvalid) {
			t.Errorf("Normalize(%s, %q) = %q, %v; want ErrInvalid", tc.kind, tc.in, got, err)
		}
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ kind, in, want string }{
		{"ssn", "123456789", "***-**-6789"},
		{"ein", "123456789", "**-***6789"},
		{"passport", "X12345678", "*****5678"},
		{"national_id", "AB1", "***"},
		{"phone", "+14155550123", "********0123"},
		{"email", "jane@example.com", "j***@example.com"},
		{"email", "broken", "***"},
		{"date_of_birth", "1980-02-29", "****-**-**"},
		{"full_name", "Zoë Ñúñez", "Zoë Ñúñez"},
		{"legal_name", "Acme Ltd", "Acme Ltd"},
		{"country", "US", "US"},
		// Kinds elile does not know are personal until shown otherwise.
		{"drivers_license", "D1234-5678", "******5678"},
		{"tax_id", "ab", "**"},
		{"x_custom", "Émilie Noël", "*******Noël"},
	} {
		if got := identifier.Mask(tc.kind, tc.in); got != tc.want {
			t.Errorf("Mask(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestUnique(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"ssn", "ein", "passport", "national_id", "email"} {
		if !identifier.Unique(k) {
			t.Errorf("%s not unique", k)
		}
	}
	for _, k := range []string{"phone", "full_name", "country", "x"} {
		if identifier.Unique(k) {
			t.Errorf("%s unique", k)
		}
	}
}

// FuzzNormalize: never panics; a normalised value normalises to itself and
// its mask never shows a unique kind whole.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"123-45-6789", "a@b.co", "+14155550123", "1980-01-01", "SW1A 1AA", "x"} {
		f.Add("ssn", s)
		f.Add("email", s)
	}
	f.Fuzz(func(t *testing.T, kind, v string) {
		n, err := identifier.Normalize(kind, v, now)
		if err != nil {
			return
		}
		again, err := identifier.Normalize(kind, n, now)
		if err != nil || again != n {
			t.Fatalf("Normalize(%s) not idempotent: %q -> %q -> %q (%v)", kind, v, n, again, err)
		}
		m := identifier.Mask(kind, n)
		switch {
		case kind == identifier.Email:
			// Only the first character and the domain show.
			local, domain, _ := strings.Cut(n, "@")
			first, _ := utf8.DecodeRuneInString(local)
			if m != string(first)+"***@"+domain {
				t.Fatalf("Mask(email, %q) = %q", n, m)
			}
		case identifier.Unique(kind) && len(n) > 4 && m == n:
			t.Fatalf("Mask(%s, %q) shows the whole value", kind, n)
		}
	})
}
