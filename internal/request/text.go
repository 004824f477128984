package request

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxUserAgent bounds the user agent kept from a request (audit column
// user_agent holds at most 512 characters).
const MaxUserAgent = 512

// CleanText makes a value taken from a request safe to store, log or use
// as a label: invalid UTF-8 becomes U+FFFD, control and format characters
// (NUL, CR, LF, bidi overrides…) become U+FFFD, and the result is cut on a
// character boundary to at most maxBytes bytes. Whatever the bytes of the
// request, the result is valid UTF-8 that PostgreSQL accepts as text.
func CleanText(s string, maxBytes int) string {
	if maxBytes <= 0 {
		return ""
	}
	clean := len(s) <= maxBytes
	for i := 0; clean && i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 || !printable(r) {
			clean = false
		}
		i += size
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), maxBytes))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 || !printable(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > maxBytes {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func printable(r rune) bool {
	return r != utf8.RuneError && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r)
}

// Method returns m when it is one of the methods elile knows and "OTHER"
// otherwise: methods become metric labels and audit fields, and a client
// may send any token of any length as its method.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
