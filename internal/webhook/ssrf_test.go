package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/elile/elile/internal/apperr"
	"github.com/elile/elile/internal/webhook"
)

// TestPublicAddr refuses every address inside a platform's network, in
// each of its IPv4 and IPv6 spellings.
func TestPublicAddr(t *testing.T) {
	t.Parallel()
	refused := []string{
		"127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.254", "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.1",
		"203.0.113.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1", "100::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", // IPv4-mapped, IPv4-compatible
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", // NAT64 of loopback, metadata, private
		"2002:7f00:1::", "2002:a9fe:a9fe::1", // 6to4 of loopback and metadata
		"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo whose client is 127.0.0.1
		"fe80::1%eth0",
	}
	for _, s := range refused {
		if webhook.PublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s is public", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if !webhook.PublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s refused", s)
		}
	}
}

// TestClient_RefusesWhatResolvesInside: the client refuses to connect to
// a loopback receiver, by address or by a name that resolves to it,
// unless loopback is allowed; it follows no redirect and ignores the
// environment's proxy.
func TestClient_RefusesWhatResolvesInside(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/away" {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// A proxy that would be reached for every request if it were used.
	proxyHit := false
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { proxyHit = true }))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)

	closed := webhook.NewClient(webhook.ClientOptions{Timeout: 2 * time.Second})
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, u := range []string{srv.URL, "http://localhost" + port, "http://[::ffff:127.0.0.1]" + port} {
		resp, err := closed.Get(u)
		if err == nil {
			_ = resp.Body.Close()
			t.Errorf("%s: connected", u)
		} else if !errors.Is(err, webhook.ErrForbiddenTarget) {
			t.Errorf("%s: %v, want ErrForbiddenTarget", u, err)
		}
	}
	open := webhook.NewClient(webhook.ClientOptions{AllowLoopback: true, Timeout: 2 * time.Second})
	resp, err := open.Get(srv.URL)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("loopback allowed: %v", err)
	}
	_ = resp.Body.Close()
	resp, err = open.Get(srv.URL + "/away")
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %v, want the 302 itself", err)
	}
	_ = resp.Body.Close()
	if proxyHit {
		t.Fatal("the environment's proxy was used")
	}
}

// TestDeliver_HostileResponse: what is kept of a receiver's answer is
// bounded and clean, whatever it sends.
func TestDeliver_HostileResponse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("\x00\x1b[31mred\xff\xfe" + strings.Repeat("<script>x</script>", 100000)))
	}))
	defer srv.Close()
	a := b.tenant(t, "Acme")
	ep, _ := b.endpoint(t, a, srv.URL)
	b.entity(t, a)
	if err := deliverer(b, nil, 5*time.Second).Drain(ctx, webhook.Ref{Tenant: a, Endpoint: ep.ID}); err != nil {
		t.Fatal(err)
	}
	ds, err := b.hooks.Deliveries(ctx, a, ep.ID, "", [16]byte{}, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("%v %v", ds, err)
	}
	d := ds[0]
	if d.State != webhook.Pending || d.ResponseStatus != http.StatusTeapot || len([]rune(d.ResponseExcerpt)) > webhook.MaxExcerpt ||
		strings.ContainsAny(d.ResponseExcerpt, "\x00\x1b") || !utf8.ValidString(d.ResponseExcerpt) || d.Error != "HTTP 418" {
		t.Fatalf("kept of a hostile answer: %+v", d)
	}
}

// TestService_EndpointURLs: what an endpoint URL may be.
func TestService_EndpointURLs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.tenant(t, "Acme")
	prod := webhook.NewService(b.store, webhook.Options{RequireHTTPS: true})
	for _, u := range []string{"http://hooks.example.com/", "https://user:pw@hooks.example.com/", "https://hooks.example.com/#frag",
		"https://127.0.0.1/", "https://[::1]/", "https://169.254.169.254/", "https://10.1.2.3/", "https://localhost/", "https://a.localhost./",
		"ftp://hooks.example.com/", "//hooks.example.com/", "https:///x", "https://[::ffff:10.0.0.1]/", "https://" + strings.Repeat("a", 2048)} {
		_, _, err := prod.Create(context.Background(), a, webhook.NewEndpoint{URL: u})
		if f := apperr.FieldsOf(err); len(f) != 1 || f[0].Path != "url" {
			t.Errorf("%q: %v, want one problem at url", u, err)
		}
	}
	_, _, err := prod.Create(context.Background(), a, webhook.NewEndpoint{URL: "https://hooks.example.com/in", EventTypes: []string{"entity.created", "nope", "data.accessed"}})
	if f := apperr.FieldsOf(err); len(f) != 2 || f[0].Path != "event_types[1]" || f[1].Path != "event_types[2]" {
		t.Errorf("unknown event types: %v", f)
	}
	for i := range webhook.MaxEndpoints {
		if _, _, err := prod.Create(context.Background(), a, webhook.NewEndpoint{URL: "https://hooks.example.com/" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := prod.Create(context.Background(), a, webhook.NewEndpoint{URL: "https://hooks.example.com/17"}); !errors.Is(err, webhook.ErrTooManyEndpoints) {
		t.Fatalf("the 17th endpoint: %v", err)
	}
}

// TestRotateSecret_BothSign: during the overlap a delivery carries both
// signatures; after it, only the new one.
func TestRotateSecret_BothSign(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c := &clock{now: time.Now()}
	d := deliverer(b, c, 5*time.Second)
	a := b.tenant(t, "Acme")
	s := newSink(t, c.Now)
	ep, oldSecret := b.endpoint(t, a, s.srv.URL)
	rotated, newSecret, err := webhook.NewService(b.store, webhook.Options{AllowLoopback: true, Now: c.Now}).RotateSecret(ctx, a, ep.ID, time.Hour)
	if err != nil || newSecret == oldSecret || !rotated.PreviousUntil.After(c.Now()) {
		t.Fatalf("rotate: %+v %v", rotated, err)
	}
	ref := webhook.Ref{Tenant: a, Endpoint: ep.ID}
	b.entity(t, a)
	s.secret.Store(oldSecret) // a receiver not yet updated still accepts
	if err := d.Drain(ctx, ref); err != nil || len(s.received()) != 1 || len(strings.Fields(s.received()[0].sigs)) != 2 {
		t.Fatalf("during the overlap: %v, %+v", err, s.received())
	}
	c.Add(2 * time.Hour)
	b.entity(t, a)
	s.secret.Store(newSecret)
	if err := d.Drain(ctx, ref); err != nil || len(s.received()) != 2 || len(strings.Fields(s.received()[1].sigs)) != 1 {
		t.Fatalf("after the overlap: %v, %+v", err, s.received())
	}
}
