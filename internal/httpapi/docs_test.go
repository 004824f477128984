package httpapi

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDocs_RendersOffline opens /docs in headless Chromium with every
// address but this server's sent to a dead proxy, and checks that the
// operation list was rendered by the embedded script.
func TestDocs_RendersOffline(t *testing.T) {
	t.Parallel()
	h, _ := setup(t, setupOpts{})
	rec := do(t, h, "GET", "/docs", nil)
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("/docs: %d CSP %q", rec.Code, rec.Header().Get("Content-Security-Policy"))
	}
	if strings.Contains(rec.Body.String(), "was not built") {
		t.Fatal("the docs renderer is not embedded: run make docs-assets (make test does)")
	}
	if strings.Contains(rec.Body.String(), "https://") {
		t.Fatal("/docs references an outside address")
	}
	bin := "/usr/bin/chromium"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Chromium not installed (apt-get install chromium; .ci/run installs it): /docs rendering not checked")
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--user-data-dir="+t.TempDir(),
		"--proxy-server=127.0.0.1:9", // the network is cut off: loopback alone bypasses the dead proxy
		"--virtual-time-budget=20000", "--dump-dom", srv.URL+"/docs")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	for _, want := range []string{"elile API", "Create an API key", "Revoke an API key", "Readiness"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered /docs lacks %q (%d bytes of DOM)", want, len(dom))
		}
	}
}
