package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
)

// OpenAPI returns the OpenAPI document the server serves, indented, for
// docs/openapi.json. The version is fixed so the file changes only when the
// API does.
func OpenAPI() ([]byte, error) { return document("/openapi.json") }

// OpenAPI30 is the same document downgraded to OpenAPI 3.0.3 (huma's
// downgrade), for code generators that read only 3.0.
func OpenAPI30() ([]byte, error) { return document("/openapi-3.0.json") }

func document(path string) ([]byte, error) {
	h := NewServer(Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "v1"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("openapi: status %d", rec.Code)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, rec.Body.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
