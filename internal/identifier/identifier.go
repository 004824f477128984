// Package identifier validates, normalises and masks the canonical
// identifiers of entities (SSN, EIN, passport, email, ...). Normalised
// values are what blind indexes are computed over, so "123-45-6789" and
// "123456789" find the same person.
//
// The vocabulary is closed: Kinds lists every kind elile knows, with what
// each means for storage, search and display, and the reference document
// and the OpenAPI document are generated from that table. A kind elile
// does not know is refused, unless it starts with CustomPrefix ("x_"):
// such custom kinds are stored as given (whitespace trimmed), always
// masked, never unique and never searchable.
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

// CustomPrefix starts a custom kind: x_drivers_license, x_employee_badge.
const CustomPrefix = "x_"

// MaxValueLen is the longest value accepted, in characters.
const MaxValueLen = 1024

// KindPattern is what a kind looks like (lower_snake_case), and MaxKindLen
// its longest.
const (
	KindPattern = `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`
	MaxKindLen  = 63
)

// Kind describes one identifier kind.
type Kind struct {
	Name string
	// Unique: no two entities of a tenant share its value (a second is
	// 409 ENTITY_DUPLICATE), and it is searchable by its blind index.
	Unique bool
	// Masked: shown masked (Mask) unless the caller may reveal it.
	Masked  bool
	Format  string // what a valid value is, for people
	Example string // a valid value as a client may send it
	Stored  string // Example normalised: what is stored and indexed
	norm    func(v string, now time.Time) (string, error)
}

// Kinds is every known kind, in the order the reference lists them.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// Lookup returns the known kind called name.
func Lookup(name string) (Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// UniqueKinds are the names of the unique (searchable) kinds.
func UniqueKinds() []string {
	var out []string
	for _, k := range kinds {
		if k.Unique {
			out = append(out, k.Name)
		}
	}
	return out
}

// Custom reports whether name is a custom kind (x_…).
func Custom(name string) bool { return strings.HasPrefix(name, CustomPrefix) && ValidKind(name) }

var kinds = []Kind{ //nolint:gochecknoglobals // the vocabulary
	{Name: SSN, Unique: true, Masked: true,
		Format:  "US Social Security number: 9 digits, dashes optional; area not 000, 666 or 900–999, group not 00, serial not 0000",
		Example: "123-45-6789", Stored: "123456789", norm: normalizeSSN},
	{Name: EIN, Unique: true, Masked: true,
		Format:  "US Employer Identification Number: 9 digits, dash optional, with a prefix the IRS assigns (not 00, 07–09, 17–19, 28, 29, 49, 69, 70, 78, 79, 89, 96, 97)",
		Example: "12-3456789", Stored: "123456789", norm: normalizeEIN},
	{Name: Passport, Unique: true, Masked: true,
		Format:  "5 to 20 letters and digits; spaces and dashes ignored, letters upper-cased",
		Example: "x12 345-678", Stored: "X12345678", norm: pattern(" -", true, passportRE, "a passport number is 5 to 20 letters and digits")},
	{Name: NationalID, Unique: true, Masked: true,
		Format:  "2 to 64 letters and digits; spaces, dashes and dots ignored, letters upper-cased",
		Example: "AB.12-34", Stored: "AB1234", norm: pattern(" -.", true, nationalRE, "a national id is 2 to 64 letters and digits")},
	{Name: Email, Unique: true, Masked: true,
		Format:  "an address (name@example.com, no display name), at most 254 characters, compared lower-cased",
		Example: "Jane.Doe@Example.com", Stored: "jane.doe@example.com", norm: func(v string, _ time.Time) (string, error) { return normalizeEmail(v) }},
	{Name: Phone, Masked: true,
		Format:  "E.164: + and 8 to 15 digits, the first not 0; spaces, dashes, dots and parentheses ignored",
		Example: "+1 (415) 555-0123", Stored: "+14155550123", norm: normalizePhone},
	{Name: DateOfBirth, Masked: true,
		Format:  "a calendar date YYYY-MM-DD that exists, not in the future, not before 1850",
		Example: "1980-02-29", Stored: "1980-02-29", norm: normalizeDate},
	{Name: FullName, Format: "free text; runs of whitespace become one space", Example: "Jane  Doe", Stored: "Jane Doe", norm: collapse},
	{Name: LegalName, Format: "free text; runs of whitespace become one space", Example: "Acme Holdings Ltd", Stored: "Acme Holdings Ltd", norm: collapse},
	{Name: AddressLine, Format: "free text; runs of whitespace become one space", Example: "1 Main Street", Stored: "1 Main Street", norm: collapse},
	{Name: PostalCode, Format: "2 to 16 letters, digits, spaces and dashes, upper-cased", Example: "sw1a 1aa", Stored: "SW1A 1AA", norm: normalizePostal},
	{Name: Country, Format: "an ISO 3166-1 alpha-2 code, upper-cased", Example: "us", Stored: "US", norm: normalizeCountry},
}

var (
	kindRE     = regexp.MustCompile(KindPattern)                          //nolint:gochecknoglobals // compiled once
	passportRE = regexp.MustCompile(`^[A-Z0-9]{5,20}$`)                   //nolint:gochecknoglobals // compiled once
	nationalRE = regexp.MustCompile(`^[A-Z0-9]{2,64}$`)                   //nolint:gochecknoglobals // compiled once
	postalRE   = regexp.MustCompile(`^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$`) //nolint:gochecknoglobals // compiled once
)

// Unique reports whether kind identifies an entity: no two entities of a
// tenant may share its value.
func Unique(kind string) bool {
	k, ok := Lookup(kind)
	return ok && k.Unique
}

// ValidKind reports whether kind is lower_snake_case of at most 63
// characters: the shape of a kind, known or not (a stored entity may hold
// a kind from before the vocabulary was closed; it can still be removed).
func ValidKind(kind string) bool { return len(kind) <= MaxKindLen && kindRE.MatchString(kind) }

// Accepted reports whether new values of kind are accepted: a known kind
// or a custom one.
func Accepted(kind string) bool {
	_, ok := Lookup(kind)
	return ok || Custom(kind)
}

// ErrInvalid is the base of every validation error Normalize returns.
var ErrInvalid = errors.New("invalid identifier")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Normalize validates value as an identifier of kind and returns its
// canonical form. now bounds dates of birth. A kind that is neither known
// nor custom (x_…) is refused.
func Normalize(kind, value string, now time.Time) (string, error) {
	if !ValidKind(kind) {
		return "", invalid("kind must be lower_snake_case, at most 63 characters")
	}
	k, known := Lookup(kind)
	if !known && !Custom(kind) {
		return "", invalid("unknown kind: use a known one (docs/reference.md#identifier-kinds) or, for your own, %s%s", CustomPrefix, kind)
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
	if !known {
		return v, nil
	}
	return k.norm(v, now)
}

func normalizeSSN(v string, _ time.Time) (string, error) {
	d, ok := digits(v, "-", 9)
	if !ok {
		return "", invalid("an SSN is 9 digits, dashes optional (123-45-6789)")
	}
	// The Social Security Administration never issues these: area 000,
	// 666 or 900–999 (the last are ITINs, not SSNs), group 00, serial 0000.
	switch area := d[:3]; {
	case area == "000" || area == "666" || area[0] == '9':
		return "", invalid("an SSN's first three digits are never 000, 666 or 900–999")
	case d[3:5] == "00":
		return "", invalid("an SSN's middle two digits are never 00")
	case d[5:] == "0000":
		return "", invalid("an SSN's last four digits are never 0000")
	}
	return d, nil
}

// einUnassigned are the two-digit EIN prefixes the IRS does not assign.
const einUnassigned = " 00 07 08 09 17 18 19 28 29 49 69 70 78 79 89 96 97 "

func normalizeEIN(v string, _ time.Time) (string, error) {
	d, ok := digits(v, "-", 9)
	if !ok {
		return "", invalid("an EIN is 9 digits, dash optional (12-3456789)")
	}
	if strings.Contains(einUnassigned, " "+d[:2]+" ") {
		return "", invalid("an EIN never starts with %s: the IRS assigns no such prefix", d[:2])
	}
	return d, nil
}

func pattern(ignore string, upper bool, re *regexp.Regexp, msg string) func(string, time.Time) (string, error) {
	return func(v string, _ time.Time) (string, error) {
		p := strip(v, ignore)
		if upper {
			p = strings.ToUpper(p)
		}
		if !re.MatchString(p) {
			return "", invalid("%s", msg)
		}
		return p, nil
	}
}

func normalizePhone(v string, _ time.Time) (string, error) {
	p := strip(v, " -().")
	d, ok := digits(strings.TrimPrefix(p, "+"), "", 0)
	if !strings.HasPrefix(p, "+") || !ok || len(d) < 8 || len(d) > 15 || d[0] == '0' {
		return "", invalid("a phone number is E.164: + and 8 to 15 digits (+14155550123)")
	}
	return "+" + d, nil
}

func normalizeDate(v string, now time.Time) (string, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return "", invalid("a date of birth is a date that exists, YYYY-MM-DD")
	}
	if t.After(now) {
		return "", invalid("a date of birth cannot be in the future")
	}
	if t.Year() < 1850 {
		return "", invalid("a date of birth before 1850 is not plausible")
	}
	return t.Format(time.DateOnly), nil
}

func collapse(v string, _ time.Time) (string, error) {
	return strings.Join(strings.Fields(v), " "), nil
}

func normalizePostal(v string, _ time.Time) (string, error) {
	p := strings.ToUpper(strings.Join(strings.Fields(v), " "))
	if !postalRE.MatchString(p) {
		return "", invalid("a postal code is 2 to 16 letters, digits, spaces and dashes")
	}
	return p, nil
}

func normalizeCountry(v string, _ time.Time) (string, error) {
	c := strings.ToUpper(v)
	if len(c) != 2 || !strings.Contains(iso3166, " "+c+" ") {
		return "", invalid("a country is an ISO 3166-1 alpha-2 code (US, DE, ...)")
	}
	return c, nil
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
// phone, every custom kind (x_…) and any kind stored before the vocabulary
// was closed — is masked to all but its last 4 characters: a kind elile
// does not know is assumed to be personal.
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

// SyntheticSSN is the n-th of about 658 million distinct SSNs that pass
// Normalize (area 001–665, group 01–99, serial 0001–9999): test and load
// data that the SSN rules accept.
func SyntheticSSN(n uint64) string {
	const serials, groups, areas = 9999, 99, 665
	return fmt.Sprintf("%03d%02d%04d", 1+(n/(serials*groups))%areas, 1+(n/serials)%groups, 1+n%serials)
}
