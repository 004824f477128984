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
		{"x_favourite_colour", "  blue ", "blue"},
		{"ssn", "899-99-9999", "899999999"},
		{"ein", "98-7654321", "987654321"},
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
		// The SSA never issues these SSNs, nor the IRS these EIN prefixes.
		{"ssn", "000-12-3456"}, {"ssn", "666-12-3456"}, {"ssn", "900-12-3456"}, {"ssn", "999999999"},
		{"ssn", "123-00-4567"}, {"ssn", "123-45-0000"}, {"ssn", "000-00-0000"},
		{"ein", "00-1234567"}, {"ein", "07-1234567"}, {"ein", "89-1234567"}, {"ein", "97-1234567"},
		{"date_of_birth", "1981-02-29"}, {"date_of_birth", "1980-04-31"},
		// A kind elile does not know, unless custom (x_…).
		{"social_security_number", "123-45-6789"}, {"dob", "1980-01-01"}, {"x", "1"}, {"x_", "1"},
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
		{"x_drivers_license", "D1234-5678", "******5678"},
		{"drivers_license", "D1234-5678", "******5678"}, // stored before the vocabulary was closed
		{"tax_id", "ab", "**"},
		{"x_custom", "Émilie Noël", "*******Noël"},
	} {
		if got := identifier.Mask(tc.kind, tc.in); got != tc.want {
			t.Errorf("Mask(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

// TestKinds: the table the reference is generated from says what the code
// does — every example normalises to its stored form, is masked exactly
// when the table says so, and unique kinds are the searchable ones.
func TestKinds(t *testing.T) {
	t.Parallel()
	for _, k := range identifier.Kinds() {
		got, err := identifier.Normalize(k.Name, k.Example, now)
		if err != nil || got != k.Stored {
			t.Errorf("%s: example %q normalises to %q, %v; the table says %q", k.Name, k.Example, got, err, k.Stored)
		}
		if masked := identifier.Mask(k.Name, k.Stored) != k.Stored; masked != k.Masked {
			t.Errorf("%s: masked = %v, the table says %v", k.Name, masked, k.Masked)
		}
		if k.Unique && !k.Masked {
			t.Errorf("%s: unique but not masked", k.Name)
		}
		if !identifier.Accepted(k.Name) || identifier.Custom(k.Name) {
			t.Errorf("%s: not accepted as a known kind", k.Name)
		}
	}
	if !identifier.Custom("x_badge") || identifier.Custom("x_") || identifier.Custom("badge") {
		t.Error("Custom: x_badge is custom, x_ and badge are not")
	}
}

func TestSyntheticSSN(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, n := range []uint64{0, 1, 9998, 9999, 9999 * 99, 9999*99*665 - 1, 1 << 20, 123456789} {
		s := identifier.SyntheticSSN(n)
		if got, err := identifier.Normalize(identifier.SSN, s, now); err != nil || got != s || seen[s] {
			t.Errorf("SyntheticSSN(%d) = %q: %q, %v (seen before: %v)", n, s, got, err, seen[s])
		}
		seen[s] = true
	}
}

func TestUnique(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"ssn", "ein", "passport", "national_id", "email"} {
		if !identifier.Unique(k) {
			t.Errorf("%s not unique", k)
		}
	}
	for _, k := range []string{"phone", "full_name", "country", "x", "x_ssn"} {
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
