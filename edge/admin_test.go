package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// adminStats is the part of GET /admin/api/stats the tests read.
type adminStats struct {
	Node          string  `json:"node"`
	Region        string  `json:"region"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Sessions      struct {
		Total       int            `json:"total"`
		ByTransport map[string]int `json:"by_transport"`
	} `json:"sessions"`
	Channels int `json:"channels"`
	Totals   struct {
		MessagesIn  uint64 `json:"messages_in"`
		MessagesOut uint64 `json:"messages_out"`
		Deliveries  uint64 `json:"deliveries"`
		Published   uint64 `json:"published"`
	} `json:"totals"`
	Connects struct {
		OK      uint64            `json:"ok"`
		Refused map[string]uint64 `json:"refused"`
	} `json:"connects"`
	Disconnects map[string]uint64 `json:"disconnects"`
	Latency     struct {
		Count   uint64   `json:"count"`
		P50     *float64 `json:"p50_seconds"`
		P99     *float64 `json:"p99_seconds"`
		Buckets []struct {
			LE    float64 `json:"le"`
			Count uint64  `json:"count"`
		} `json:"buckets"`
	} `json:"latency"`
	Mesh    *json.RawMessage `json:"mesh"`
	Runtime struct {
		Goroutines int    `json:"goroutines"`
		HeapBytes  uint64 `json:"heap_alloc_bytes"`
		GoVersion  string `json:"go_version"`
	} `json:"runtime"`
	Nodes []edge.NodeInfo `json:"nodes"`
}

// adminGet sends GET path with key (none when empty) and returns the
// status, the Content-Type and the body.
func adminGet(t *testing.T, n *testNode, key, path string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.http+path, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func readStats(t *testing.T, n *testNode, key string) adminStats {
	t.Helper()
	code, _, body := adminGet(t, n, key, "/admin/api/stats")
	if code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, body)
	}
	var s adminStats
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("stats are not JSON: %v\n%s", err, body)
	}
	return s
}

// logRecords keeps the messages and attributes of log records.
type logRecords struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, m)
	l.mu.Unlock()
	return nil
}

func (l *logRecords) find(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestAdminStatsNeedsAdminKey: the stats answer 401 without a key or
// with a wrong one and 403 to a key without the admin scope, with a JSON
// reason; an admin key reads them, and its use is logged once, not on
// every poll.
func TestAdminStatsNeedsAdminKey(t *testing.T) {
	keys, err := auth.NewAPIKeys([]auth.APIKey{
		{Name: "backend", Key: "publisher-key-0123456789", Scopes: []string{auth.ScopePublish}},
		{Name: "ops", Key: "admin-key-0123456789abcde", Scopes: []string{auth.ScopeAdmin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecords{}
	n := startNode(t, func(c *edge.Config) {
		c.APIKey = ""
		c.APIKeys = keys
		c.Logger = slog.New(logs)
	})
	for _, tc := range []struct {
		key    string
		status int
		reason string
	}{
		{"", 401, "missing_api_key"},
		{"admin-key-0123456789abcdX", 401, "bad_api_key"},
		{"publisher-key-0123456789", 403, "forbidden"},
	} {
		code, h, body := adminGet(t, n, tc.key, "/admin/api/stats")
		var e struct{ Error, Message string }
		if err := json.Unmarshal(body, &e); err != nil || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("key %q: %d %q is not a JSON error (%v)", tc.key, code, body, err)
		}
		if code != tc.status || e.Error != tc.reason {
			t.Errorf("key %q: %d %s, want %d %s", tc.key, code, body, tc.status, tc.reason)
		}
	}
	if got := logs.find("admin api access"); len(got) != 0 {
		t.Fatalf("refused requests were logged as access: %v", got)
	}
	for range 3 {
		if s := readStats(t, n, "admin-key-0123456789abcde"); s.Node != "test-node" || s.Region != "test" {
			t.Fatalf("stats of %s/%s", s.Node, s.Region)
		}
	}
	got := logs.find("admin api access")
	if len(got) != 1 || got[0]["key"] != "ops" || got[0]["level"] != "INFO" {
		t.Fatalf("audit log: %v, want one Info record for the key ops", got)
	}
}

// TestAdminStats: with real sessions on both transports and publications
// going on, the stats count them.
func TestAdminStats(t *testing.T) {
	n := startNode(t, nil)
	ctx := ctxT(t)
	ws1 := n.dial(t, protocols.WebSocket)
	ws2 := n.dial(t, protocols.WebSocket)
	wt := n.dial(t, protocols.WebTransport)
	subWS, err := ws2.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	subWT, err := wt.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	const pubs = 10
	for range pubs {
		if _, err := ws1.Publish(ctx, "news", []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, subWS, pubs)
	receive(t, subWT, pubs)

	var s adminStats
	waitFor(t, 5*time.Second, "the stats to count the sessions and deliveries", func() bool {
		s = readStats(t, n, testAPIKey)
		return s.Sessions.Total == 3 && s.Totals.Deliveries >= 2*pubs && s.Latency.Count >= pubs
	})
	if s.Sessions.ByTransport[protocols.WebSocket] != 2 || s.Sessions.ByTransport[protocols.WebTransport] != 1 {
		t.Errorf("sessions by transport: %v", s.Sessions.ByTransport)
	}
	if s.Channels < 1 || s.Connects.OK < 3 || s.Totals.MessagesIn < pubs || s.Totals.MessagesOut < 2*pubs {
		t.Errorf("channels %d, connects %d, totals %+v", s.Channels, s.Connects.OK, s.Totals)
	}
	if s.Totals.Published != s.Latency.Count {
		t.Errorf("published %d, latency count %d", s.Totals.Published, s.Latency.Count)
	}
	if s.Latency.P50 == nil || s.Latency.P99 == nil || *s.Latency.P50 <= 0 || *s.Latency.P50 > *s.Latency.P99 {
		t.Errorf("latency p50 %v p99 %v", s.Latency.P50, s.Latency.P99)
	}
	if b := s.Latency.Buckets; len(b) == 0 || b[len(b)-1].Count != s.Latency.Count {
		t.Errorf("latency buckets %+v for %d observations", b, s.Latency.Count)
	}
	if len(s.Nodes) != 1 || !s.Nodes[0].Self || s.Nodes[0].Name != "test-node" || s.Nodes[0].URLs["ws"] == "" {
		t.Errorf("nodes %+v", s.Nodes)
	}
	if s.Mesh != nil {
		t.Errorf("mesh stats without a mesh: %s", *s.Mesh)
	}
	if s.Runtime.Goroutines == 0 || s.Runtime.HeapBytes == 0 || !strings.HasPrefix(s.Runtime.GoVersion, "go") {
		t.Errorf("runtime %+v", s.Runtime)
	}

	// A session that leaves is counted as a disconnect by its code.
	ws1.Close()
	waitFor(t, 5*time.Second, "the disconnect", func() bool {
		s = readStats(t, n, testAPIKey)
		return s.Sessions.Total == 2 && s.Disconnects["normal_closure"] == 1
	})
}

// TestAdminPage: /admin serves the page and its assets, small, under a
// strict CSP; other /admin paths and methods are refused in JSON.
func TestAdminPage(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Extra = map[string]http.Handler{"/": http.NotFoundHandler(), "/admin": http.NotFoundHandler()}
	})
	total := 0
	for path, ctype := range map[string]string{
		"/admin":           "text/html",
		"/admin/":          "text/html",
		"/admin/admin.js":  "text/javascript",
		"/admin/admin.css": "text/css",
	} {
		code, h, body := adminGet(t, n, "", path)
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), ctype) {
			t.Fatalf("GET %s: %d %s", path, code, h.Get("Content-Type"))
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if path != "/admin/" {
			total += len(body)
		}
		// Revalidation by ETag.
		req, _ := http.NewRequest(http.MethodGet, n.http+path, nil)
		req.Header.Set("If-None-Match", h.Get("ETag"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d", path, resp.StatusCode)
		}
	}
	if total > 30<<10 {
		t.Errorf("the page weighs %d bytes, over 30 KiB", total)
	}
	_, _, page := adminGet(t, n, "", "/admin")
	if !strings.Contains(string(page), `src="/admin/admin.js"`) {
		t.Errorf("the page does not load its script")
	}
	for _, path := range []string{"/admin/nope", "/admin/api/other"} {
		if code, h, _ := adminGet(t, n, testAPIKey, path); code != http.StatusNotFound || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %d %s", path, code, h.Get("Content-Type"))
		}
	}
	resp, err := http.Post(n.http+"/admin/api/stats", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /admin/api/stats: %d", resp.StatusCode)
	}
}
