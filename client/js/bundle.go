// Package js embeds the browser SDK (TypeScript in src/, built with
// esbuild into a minified dist/switchyard.js with its source map
// dist/switchyard.js.map, declarations in dist/switchyard.d.ts) so that a
// node serves it at /switchyard.js without npm. `npm run check` verifies
// that the committed dist/ matches a fresh build of src/.
package js

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed dist/switchyard.js
var bundle []byte

//go:embed dist/switchyard.js.map
var sourceMap []byte

//go:embed dist/switchyard.d.ts
var types []byte

// Bundle returns the ES module. Do not modify it.
func Bundle() []byte { return bundle }

// asset is one file as served: its bytes as they are and gzipped, each
// with a strong ETag (a SHA-256 of the bytes sent).
type asset struct {
	ctype        string
	plain, gz    []byte
	etag, gzETag string
}

func newAsset(ctype string, b []byte) *asset {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
	_, _ = zw.Write(b)                                       // into a bytes.Buffer: no error
	_ = zw.Close()
	return &asset{ctype: ctype, plain: b, gz: buf.Bytes(), etag: etagOf(b), gzETag: etagOf(buf.Bytes())}
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
}

type assetSet struct{ js, sourceMap, types *asset }

// assets compresses the files once, on the first Handler call.
var assets = sync.OnceValue(func() assetSet {
	return assetSet{
		js:        newAsset("text/javascript; charset=utf-8", bundle),
		sourceMap: newAsset("application/json; charset=utf-8", sourceMap),
		types:     newAsset("application/typescript; charset=utf-8", types),
	}
})

// Handler serves the ES module (at /switchyard.js), its source map (at any
// path ending in .map, e.g. /switchyard.js.map, where the module's
// sourceMappingURL points) and its type declarations (at any path ending in
// .d.ts). Each is compressed once, not per request: a request that accepts
// gzip gets the gzipped bytes. Every answer has a strong ETag, and a
// request whose If-None-Match holds it gets 304 Not Modified. The SDK is
// public: any origin may load it, as a cross-origin module script needs.
func Handler() http.Handler {
	set := assets()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := set.js
		switch {
		case strings.HasSuffix(r.URL.Path, ".d.ts"):
			a = set.types
		case strings.HasSuffix(r.URL.Path, ".map"):
			a = set.sourceMap
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Cache-Control", "no-cache") // revalidate: the ETag makes that a 304
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Type", a.ctype)
		h.Add("Vary", "Accept-Encoding")
		body, tag := a.plain, a.etag
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, tag = a.gz, a.gzETag
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("ETag", tag)
		// ServeContent answers If-None-Match (304), HEAD and ranges.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or x-gzip) with a
// non-zero quality.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				k, val, ok := strings.Cut(p, "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil {
						f = 0
					}
					q = f
				}
			}
			return q > 0
		}
	}
	return false
}
