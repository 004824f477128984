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
func OpenAPI() ([]byte, error) {
	h := NewServer(Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "v1"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
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
