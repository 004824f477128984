// Package identifier validates, normalises and masks the canonical
// identifiers of entities (SSN, EIN, passport, email, ...). Normalised
// values are what blind indexes are computed over, so "123-45-6789" and
// "123456789" find the same person.
package identifier

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Known kinds.
const (
	SSN         = "ssn"
	EIN         = "ein"
	Passport    = "passport"
	NationalID  = "national_id"
	Email       = "email"
	Phone       = "phone"
	DateOfBirth = "date_of_birth"
	FullName    = "full_name"
	LegalName   = "legal_name"
	AddressLine = "address_line"
	PostalCode  = "postal_code"
	Country     = "country"
)

// MaxValueLen is the longest value accepted, in characters.
const MaxValueLen = 1024

// KindPattern is what a kind looks like (lower_snake_case), and MaxKindLen
// its longest.
const (
	KindPattern = `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`
	MaxKindLen  = 63
)

var (
	kindRE     = regexp.MustCompile(KindPattern)                          //nolint:gochecknoglobals // compiled once
	passportRE = regexp.MustCompile(`^[A-Z0-9]{5,20}$`)                   //nolint:gochecknoglobals // compiled once
	nationalRE = regexp.MustCompile(`^[A-Z0-9]{2,64}$`)                   //nolint:gochecknoglobals // compiled once
	postalRE   = regexp.MustCompile(`^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$`) //nolint:gochecknoglobals // compiled once
)

// Unique reports whether kind identifies an entity: no two entities of a
// tenant may share its value.
func Unique(kind string) bool {
	switch kind {
	case SSN, EIN, Passport, NationalID, Email:
		return true
	}
	return false
}

// ValidKind reports whether kind is lower_snake_case of at most 63 characters.
func ValidKind(kind string) bool { return len(kind) <= MaxKindLen && kindRE.MatchString(kind) }

// ErrInvalid is the base of every validation error Normalize returns.
var ErrInvalid = errors.New("invalid identifier")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Normalize validates value as an identifier of kind and returns its
// canonical form. now bounds dates of birth. Unknown (but well-formed)
// kinds are accepted with whitespace trimmed.
func Normalize(kind, value string, now time.Time) (string, error) {
	if !ValidKind(kind) {
		return "", invalid("kind must be lower_snake_case, at most 63 characters")
	}
	if !utf8.ValidString(value) {
		return "", invalid("not valid UTF-8")
	}
	if utf8.RuneCountInString(value) > MaxValueLen {
		return "", invalid("longer than %d characters", MaxValueLen)
	}
	for _, r := range value {
		if unicode.IsControl(r) {
			return "", invalid("contains control characters")
		}
	}
	v := strings.TrimSpace(value)
	if v == "" {
		return "", invalid("empty")
	}
	switch kind {
	case SSN:
		d, ok := digits(v, "-", 9)
		if !ok {
			return "", invalid("an SSN is 9 digits, dashes optional (123-45-6789)")
		}
		return d, nil
	case EIN:
		d, ok := digits(v, "-", 9)
		if !ok {
			return "", invalid("an EIN is 9 digits, dash optional (12-3456789)")
		}
		return d, nil
	case Passport:
		p := strings.ToUpper(strip(v, " -"))
		if !passportRE.MatchString(p) {
			return "", invalid("a passport number is 5 to 20 letters and digits")
		}
		return p, nil
	case NationalID:
		p := strings.ToUpper(strip(v, " -."))
		if !nationalRE.MatchString(p) {
			return "", invalid("a national id is 2 to 64 letters and digits")
		}
		return p, nil
	case Email:
		return normalizeEmail(v)
	case Phone:
		p := strip(v, " -().")
		d, ok := digits(strings.TrimPrefix(p, "+"), "", 0)
		if !strings.HasPrefix(p, "+") || !ok || len(d) < 8 || len(d) > 15 || d[0] == '0' {
			return "", invalid("a phone number is E.164: + and 8 to 15 digits (+14155550123)")
		}
		return "+" + d, nil
	case DateOfBirth:
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return "", invalid("a date of birth is YYYY-MM-DD")
		}
		if t.After(now) {
			return "", invalid("a date of birth cannot be in the future")
		}
		if t.Year() < 1850 {
			return "", invalid("a date of birth before 1850 is not plausible")
		}
		return t.Format(time.DateOnly), nil
	case FullName, LegalName, AddressLine:
		return strings.Join(strings.Fields(v), " "), nil
	case PostalCode:
		p := strings.ToUpper(strings.Join(strings.Fields(v), " "))
		if !postalRE.MatchString(p) {
			return "", invalid("a postal code is 2 to 16 letters, digits, spaces and dashes")
		}
		return p, nil
	case Country:
		c := strings.ToUpper(v)
		if len(c) != 2 || !strings.Contains(iso3166, " "+c+" ") {
			return "", invalid("a country is an ISO 3166-1 alpha-2 code (US, DE, ...)")
		}
		return c, nil
	}
	return v, nil
}

// digits removes the characters in sep from s and returns the digits, if
// that is all that is left and there are n of them (any number when n = 0).
func digits(s, sep string, n int) (string, bool) {
	d := strip(s, sep)
	if d == "" || (n > 0 && len(d) != n) {
		return "", false
	}
	for i := range len(d) {
		if d[i] < '0' || d[i] > '9' {
			return "", false
		}
	}
	return d, true
}

func strip(s, chars string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(chars, r) {
			return -1
		}
		return r
	}, s)
}

func normalizeEmail(v string) (string, error) {
	addr, err := mail.ParseAddress(v)
	if err != nil || addr.Name != "" || addr.Address != v || len(v) > 254 {
		return "", invalid("not an email address (name@example.com)")
	}
	_, domain, _ := strings.Cut(addr.Address, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", invalid("not an email address (name@example.com)")
	}
	// Lower-cased whole: mailboxes are case-insensitive in practice, and a
	// duplicate must not hide behind a capital letter.
	return strings.ToLower(addr.Address), nil
}

// Mask hides an identifier for display: ssn ***-**-6789, ein **-***6789,
// email the first letter and domain, date_of_birth entirely. Names and
// address fields (full_name, legal_name, address_line, postal_code,
// country) are shown as stored. Every other kind — passport, national_id,
// phone, and any custom kind such as drivers_license or tax_id — is masked
// to all but its last 4 characters: a kind elile does not know is assumed
// to be personal.
func Mask(kind, v string) string {
	switch kind {
	case FullName, LegalName, AddressLine, PostalCode, Country:
		return v
	case SSN:
		return "***-**-" + last(v, 4)
	case EIN:
		return "**-***" + last(v, 4)
	case Email:
		local, domain, ok := strings.Cut(v, "@")
		if !ok || local == "" {
			return "***"
		}
		r, _ := utf8.DecodeRuneInString(local)
		return string(r) + "***@" + domain
	case DateOfBirth:
		return "****-**-**"
	}
	n := utf8.RuneCountInString(v)
	if n <= 4 {
		return strings.Repeat("*", n)
	}
	return strings.Repeat("*", n-4) + last(v, 4)
}

func last(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[len(r)-n:])
}

// iso3166 lists the ISO 3166-1 alpha-2 codes, space-separated.
const iso3166 = " AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ" +
	" CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR" +
	" GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP" +
	" KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT" +
	" MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW" +
	" SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG" +
	" UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW "
