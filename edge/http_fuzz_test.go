package edge

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/protocols"
)

// FuzzAPIPublish: any body gets 200 or a 4xx with a JSON error, never a
// panic or a 5xx.
func FuzzAPIPublish(f *testing.F) {
	for _, s := range []string{
		`{"channel":"news","data":"hello"}`,
		`{"channel":"news","data_base64":"AAEC"}`,
		`{"channel":"a b","data":"x"}`,
		`{"channel":"news","data":"x"} {}`,
		`{"channel":"news","data":"x","data_base64":"eA=="}`,
		`{`, `null`, `[]`, `""`,
	} {
		f.Add(s)
	}
	n, err := New(Config{APIKey: "k", Session: protocols.SessionConfig{MaxFrameSize: 1024}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(body))
		req.Header.Set("X-API-Key", "k")
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("body %q is not JSON", rec.Body.String())
		}
	})
}
