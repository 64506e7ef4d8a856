package js

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// gzipBudget is the most the minified bundle may weigh gzipped (README:
// "Bundle size"). It was 15 KiB when set; signaling (rooms), history
// recovery and presence have been added since, presence taking the bundle
// over it (by about 500 bytes, which trimming could not win back).
const gzipBudget = 17 << 10

func get(t *testing.T, method, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHandlerServesBundleMapAndTypes(t *testing.T) {
	for _, c := range []struct {
		path, ctype, want string
		body              []byte
	}{
		{"/switchyard.js", "text/javascript; charset=utf-8", "//# sourceMappingURL=switchyard.js.map", bundle},
		{"/switchyard.js.map", "application/json; charset=utf-8", `"../src/switchyard.ts"`, sourceMap},
		{"/switchyard.d.ts", "application/typescript; charset=utf-8", "export declare function connect(", types},
	} {
		rec := get(t, http.MethodGet, c.path, nil)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != c.ctype {
			t.Errorf("%s: %d %q", c.path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec.Header().Get("Content-Encoding") != "" || !bytes.Equal(rec.Body.Bytes(), c.body) {
			t.Errorf("%s: not the embedded bytes as they are", c.path)
		}
		if !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s lacks %q", c.path, c.want)
		}
		for k, want := range map[string]string{"Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding", "Cache-Control": "no-cache"} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", c.path, k, got, want)
			}
		}

		// gzip when accepted: the same bytes once decompressed, another ETag.
		gz := get(t, http.MethodGet, c.path, map[string]string{"Accept-Encoding": "br;q=1, gzip;q=0.8"})
		if gz.Code != http.StatusOK || gz.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s with gzip: %d %q", c.path, gz.Code, gz.Header().Get("Content-Encoding"))
		}
		if !bytes.Equal(gunzip(t, gz.Body.Bytes()), c.body) {
			t.Errorf("%s: gzipped body differs", c.path)
		}
		if gz.Header().Get("ETag") == rec.Header().Get("ETag") {
			t.Errorf("%s: gzip and identity share ETag %s", c.path, gz.Header().Get("ETag"))
		}
	}
}

func TestHandlerETag(t *testing.T) {
	rec := get(t, http.MethodGet, "/switchyard.js", nil)
	tag := rec.Header().Get("ETag")
	if !strings.HasPrefix(tag, `"`) || !strings.HasSuffix(tag, `"`) || len(tag) < 20 {
		t.Fatalf("ETag %q: want a strong one", tag)
	}
	if again := get(t, http.MethodGet, "/switchyard.js", nil).Header().Get("ETag"); again != tag {
		t.Fatalf("ETag changed: %s then %s", tag, again)
	}
	for _, c := range []struct {
		inm, enc string
		want     int
	}{
		{tag, "", http.StatusNotModified},
		{`"other", ` + tag, "", http.StatusNotModified},
		{"*", "", http.StatusNotModified},
		{`"other"`, "", http.StatusOK},
		{tag, "gzip", http.StatusOK}, // the gzipped representation has its own tag
	} {
		h := map[string]string{"If-None-Match": c.inm}
		if c.enc != "" {
			h["Accept-Encoding"] = c.enc
		}
		r := get(t, http.MethodGet, "/switchyard.js", h)
		if r.Code != c.want {
			t.Errorf("If-None-Match %s, Accept-Encoding %q: %d, want %d", c.inm, c.enc, r.Code, c.want)
		}
		if r.Code == http.StatusNotModified && (r.Body.Len() != 0 || r.Header().Get("ETag") != tag) {
			t.Errorf("304 with %d bytes, ETag %q", r.Body.Len(), r.Header().Get("ETag"))
		}
	}
	gzTag := get(t, http.MethodGet, "/switchyard.js", map[string]string{"Accept-Encoding": "gzip"}).Header().Get("ETag")
	if r := get(t, http.MethodGet, "/switchyard.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}); r.Code != http.StatusNotModified {
		t.Errorf("gzip revalidation: %d", r.Code)
	}
	// HEAD: the headers without the body.
	head := get(t, http.MethodHead, "/switchyard.js", map[string]string{"Accept-Encoding": "gzip"})
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("HEAD: %d, %d bytes, %q", head.Code, head.Body.Len(), head.Header().Get("Content-Encoding"))
	}
}

func TestAcceptsGzip(t *testing.T) {
	for in, want := range map[string]bool{
		"":                          false,
		"identity":                  false,
		"gzip":                      true,
		"GZIP":                      true,
		"x-gzip":                    true,
		"gzip, deflate, br, zstd":   true,
		"br;q=1.0, gzip;q=0.5":      true,
		"gzip;q=0":                  false,
		"gzip; q=0.000":             false,
		"gzip;q=nonsense":           false,
		"deflate, gzipper":          false,
		"*":                         false, // not worth guessing: browsers name gzip
		"identity;q=1, gzip ; q=.1": true,
	} {
		if got := acceptsGzip([]string{in}); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

// The bundle's gzipped size stays within its budget. The figure is the
// README's "Bundle size"; raise the budget only with a reason there.
func TestBundleGzipBudget(t *testing.T) {
	size := len(assets().js.gz)
	t.Logf("switchyard.js: %d bytes minified, %d gzipped (budget %d)", len(bundle), size, gzipBudget)
	if size > gzipBudget {
		t.Fatalf("switchyard.js is %d bytes gzipped, over the %d-byte budget", size, gzipBudget)
	}
	if !bytes.HasSuffix(bytes.TrimSpace(bundle), []byte("//# sourceMappingURL=switchyard.js.map")) {
		t.Error("the bundle does not point at its source map")
	}
}
