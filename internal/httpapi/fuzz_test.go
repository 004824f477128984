package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/elile/elile/internal/apperr"
)

// FuzzCursor: cursor decoding never panics, and what it accepts round-trips.
func FuzzCursor(f *testing.F) {
	f.Add("")
	f.Add("AQAAAAAAAAAAAAAAAAAAAAA")
	f.Add(auditCursor(timeZero(), [16]byte{1}))
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, c string) {
		if id, err := (ListParams{Cursor: c}).after(); err == nil && c != "" {
			if got := page([]int{1, 2}, 1, func(int) uuid.UUID { return id }, func(i int) int { return i }); got.NextCursor == nil {
				t.Fatal("no cursor")
			}
		}
		if at, id, err := parseAuditCursor(c); err == nil {
			if auditCursor(at, id) != c {
				t.Fatalf("audit cursor %q does not round-trip", c)
			}
		}
	})
}

// FuzzCheckJSON: the body guard never panics and never passes a document
// encoding/json cannot decode.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `[[[[]]]]`, `{"a":{"b":[1,"x",null,true]}}`, `{"a":"\u0000"}`, `"x"`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := checkJSON(b); err == nil {
			var v any
			if json.Unmarshal(b, &v) != nil {
				t.Fatalf("checkJSON passed what encoding/json refuses: %q", b)
			}
		}
	})
}

func timeZero() time.Time { return time.Unix(1700000000, 0).UTC() }

// Every error kind has exactly one status, and the statuses huma raises
// map back to the same kind: the one table decides both ways.
func TestKindStatus_OneMapping(t *testing.T) {
	t.Parallel()
	seen := map[int]apperr.Kind{}
	for k := apperr.Internal; k <= apperr.ClientClosed; k++ {
		status, category := statusOf(k)
		if status == http.StatusInternalServerError && k != apperr.Internal {
			t.Errorf("kind %s has no status of its own", k)
		}
		if category == "" {
			t.Errorf("kind %s has no category", k)
		}
		if other, dup := seen[status]; dup {
			t.Errorf("kinds %s and %s share status %d", k, other, status)
		}
		seen[status] = k
		if back, _ := kindOfStatus(status); back != k {
			t.Errorf("status %d maps back to %s, want %s", status, back, k)
		}
	}
	for _, want := range []int{405, 413, 415, 499} {
		if _, ok := seen[want]; !ok {
			t.Errorf("no kind answers %d", want)
		}
	}
}
