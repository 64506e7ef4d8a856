// Package js embeds the browser SDK (TypeScript in src/, built with
// esbuild into dist/switchyard.js, declarations in dist/switchyard.d.ts) so
// that a node serves it at /switchyard.js without npm. `npm run check`
// verifies that the committed dist/ matches a fresh build of src/.
package js

import (
	_ "embed"
	"net/http"
	"strings"
)

//go:embed dist/switchyard.js
var bundle []byte

//go:embed dist/switchyard.d.ts
var types []byte

// Bundle returns the ES module. Do not modify it.
func Bundle() []byte { return bundle }

// Handler serves the ES module (at /switchyard.js) and its type
// declarations (at any path ending in .d.ts). The SDK is public: any origin
// may load it, as a cross-origin module script needs.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasSuffix(r.URL.Path, ".d.ts") {
			h.Set("Content-Type", "application/typescript; charset=utf-8")
			_, _ = w.Write(types)
			return
		}
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(bundle)
	})
}
