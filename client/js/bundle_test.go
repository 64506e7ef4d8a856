package js

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesBundleAndTypes(t *testing.T) {
	for _, c := range []struct{ path, ctype, want string }{
		{"/switchyard.js", "text/javascript; charset=utf-8", "export {"},
		{"/switchyard.d.ts", "application/typescript; charset=utf-8", "export declare function connect("},
	} {
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != c.ctype {
			t.Errorf("%s: %d %q", c.path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s lacks %q", c.path, c.want)
		}
	}
}
