package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// docsAssets holds the renderer copied in by `make docs-assets` from the
// npm package locked in web/docs: the page works offline, nothing comes
// from a CDN.
//
//go:embed docsassets
var docsAssets embed.FS

const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

const docsPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>elile API reference</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button="false"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
`

const docsMissing = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>elile API reference</title></head>
<body><h1>elile API reference</h1>
<p>The renderer was not built into this binary. Run <code>make build</code> (it runs <code>make docs-assets</code>),
or read the raw document at <a href="/openapi.json">/openapi.json</a>.</p></body></html>
`

// docsHandler serves /docs and its script.
func docsHandler() http.Handler {
	sub, _ := fs.Sub(docsAssets, "docsassets")
	_, err := fs.Stat(sub, "redoc.standalone.js")
	built := err == nil
	mux := http.NewServeMux()
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", docsCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		if !built {
			_, _ = w.Write([]byte(docsMissing))
			return
		}
		_, _ = w.Write([]byte(docsPage))
	})
	mux.HandleFunc("GET /docs/redoc.standalone.js", func(w http.ResponseWriter, r *http.Request) {
		if !built {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeFileFS(w, r, sub, "redoc.standalone.js")
	})
	return mux
}
