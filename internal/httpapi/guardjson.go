package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/elile/elile/internal/apperr"
)

// maxJSONDepth bounds nesting: no request of this API needs more.
const maxJSONDepth = 32

var (
	errJSONDuplicate = apperr.New(apperr.BadRequest, "BAD_REQUEST", "JSON object has a duplicate key")
	errJSONDepth     = apperr.New(apperr.BadRequest, "BAD_REQUEST", "JSON nested too deeply")
	errJSONMalformed = apperr.New(apperr.BadRequest, "BAD_REQUEST", "malformed JSON")
)

// checkJSON walks a JSON document once: it rejects duplicate keys (two
// parsers could read two different requests from one body) and nesting
// deeper than maxJSONDepth.
func checkJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // inside an object: next string token is a key
	}
	var stack []frame
	values := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) != 0 || values != 1 {
				return errJSONMalformed.Withf("malformed JSON: want exactly one value")
			}
			return nil
		}
		if len(stack) == 0 {
			if values++; values > 1 {
				return errJSONMalformed.Withf("malformed JSON: more than one value")
			}
		}
		if err != nil {
			return errJSONMalformed.Withf("malformed JSON: %v", err)
		}
		if str, ok := tok.(string); ok && !cleanText(str) {
			return errText
		}
		if num, ok := tok.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(num), 64); err != nil {
				return errJSONMalformed.Withf("a JSON number is out of range")
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].expect {
			top := &stack[len(stack)-1]
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return errJSONDuplicate.Withf("JSON object has the key %q twice", truncate(k, 64))
				}
				top.keys[k] = true
				top.expect = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return errJSONDepth.Withf("JSON nested deeper than %d levels", maxJSONDepth)
			}
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].expect = true
			}
			stack = append(stack, frame{object: tok == json.Delim('{'), keys: map[string]bool{}, expect: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].expect = true
		}
	}
}

var errText = apperr.New(apperr.BadRequest, "BAD_REQUEST", "text holds a NUL character or invalid UTF-8")

// cleanText reports whether s can be stored as text: valid UTF-8 without
// NUL, which PostgreSQL refuses.
func cleanText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// queryGuard refuses query strings whose values cannot be text.
func queryGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, vs := range r.URL.Query() {
			for _, v := range vs {
				if !cleanText(v) {
					writeProblem(w, newProblem(r.Context(), errText.Withf("a query parameter holds a NUL character or invalid UTF-8")).Problem)
					return
				}
			}
		}
		if !cleanText(r.URL.Path) {
			writeProblem(w, newProblem(r.Context(), errText.Withf("the path holds a NUL character or invalid UTF-8")).Problem)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var errMediaType = apperr.New(apperr.UnsupportedMedia, "UNSUPPORTED_MEDIA_TYPE", "a request body must be JSON, sent with Content-Type: application/json")

// jsonContentType reports whether ct names JSON (application/json or a
// +json type, any parameters).
func jsonContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// jsonGuard checks request bodies before anything decodes them: every
// non-empty body must be declared JSON (415 otherwise: a decoder further
// in must never parse a body this guard did not check), and must pass
// checkJSON.
func jsonGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if len(body) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if !jsonContentType(r.Header.Get("Content-Type")) {
			p := newProblem(r.Context(), errMediaType).Problem
			writeProblem(w, p)
			return
		}
		if err := checkJSON(body); err != nil {
			writeProblem(w, newProblem(r.Context(), err).Problem)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// readBody reads a request body of at most maxBody bytes and puts a copy
// back for the next reader; on failure it answers (413 or 400) and
// reports false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p := newProblem(r.Context(), errBodyTooLarge).Problem
			writeProblem(w, p)
			return nil, false
		}
		writeProblem(w, newProblem(r.Context(), errJSONMalformed.Withf("could not read the request body")).Problem)
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, true
}

// deadline bounds each request's work: when it passes, database calls in
// flight are cancelled and the request answers 503.
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if d <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
