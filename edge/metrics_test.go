package edge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// scrape fetches url's /metrics over HTTP and parses the text format.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

type families map[string]*dto.MetricFamily

// get returns the value of the series of name whose labels include
// labels ("k=v" pairs): a counter's or gauge's value, a histogram's
// count. ok is false when there is none.
func (f families) get(name string, labels ...string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (f families) must(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := f.get(name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func hasLabels(m *dto.Metric, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestMetrics drives a node with real clients over both transports, then
// reads /metrics over HTTP as Prometheus would.
func TestMetrics(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.History = []edge.HistoryRule{{Channels: "news", Size: 100}}
		c.VolatileChannels = []string{"game:*"}
	})
	ctx := ctxT(t)
	ws := n.dial(t, protocols.WebSocket)
	wt := n.dial(t, protocols.WebTransport)
	subWS, err := ws.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	subWT, err := wt.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	const pubs = 20
	for i := range pubs {
		if _, err := ws.Publish(ctx, "news", []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, subWS, pubs)
	last := receive(t, subWT, pubs)[pubs-1]

	// A resubscription with a position, as after a reconnect: recovered.
	if err := subWT.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Publish(ctx, "news", []byte("missed")); err != nil {
		t.Fatal(err)
	}
	again, err := wt.Subscribe(ctx, "news", client.Since(client.Position{Epoch: last.Epoch, Offset: last.Offset}))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Recovered() {
		t.Fatal("the resubscription did not recover")
	}

	// An error frame: a channel name the node refuses.
	var re *protocols.RequestError
	if _, err := ws.Subscribe(ctx, "bad channel"); !errors.As(err, &re) || re.Code != protocols.ErrCodeInvalidChannel {
		t.Fatalf("subscribe to a bad name: %v", err)
	}
	// A refused connect: an Origin not on the allowlist.
	bad := n.rawWS(t, "http://evil.example")
	if code, _, _ := bad.closeCode(); code != int(protocols.CodeOriginNotAllowed) {
		t.Fatalf("close code %d", code)
	}
	// An API error: a wrong key.
	if code, _ := n.apiPublish(t, "wrong", `{"channel":"news","data":"x"}`); code != http.StatusUnauthorized {
		t.Fatalf("api publish with a wrong key: %d", code)
	}
	// Datagrams both ways on WebTransport, sent until some got through.
	game, err := wt.Subscribe(ctx, "game:1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a datagram back", func() bool {
		if err := wt.SendDatagram("game:1", []byte("pos")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-game.Messages():
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})

	var m families
	waitFor(t, 5*time.Second, "the datagrams' count", func() bool {
		// A datagram is counted once sent: maybe after the client has it.
		m = scrape(t, n.http)
		v, _ := m.get("switchyard_datagrams_sent_total", "transport=webtransport")
		return v >= 1
	})
	eq := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := m.must(t, name, labels...); got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	atLeast := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := m.must(t, name, labels...); got < want {
			t.Errorf("%s%v = %v, want at least %v", name, labels, got, want)
		}
	}
	eq(1, "switchyard_node_info", "node=test-node", "region=test")
	eq(1, "switchyard_sessions", "transport=websocket", "region=test")
	eq(1, "switchyard_sessions", "transport=webtransport", "region=test")
	eq(1, "switchyard_connects_total", "transport=websocket", "result=ok")
	eq(1, "switchyard_connects_total", "transport=webtransport", "result=ok")
	eq(1, "switchyard_connects_total", "transport=websocket", "result=refused", "reason=origin_not_allowed")
	eq(1, "switchyard_error_frames_total", "code=invalid_channel")
	eq(1, "switchyard_recoveries_total", "recovered=true")
	eq(0, "switchyard_recoveries_total", "recovered=false")
	eq(1, "switchyard_http_api_errors_total", "endpoint=publish", "status=401")
	atLeast(pubs+1, "switchyard_deliveries_total", "transport=websocket")
	atLeast(pubs+2, "switchyard_deliveries_total", "transport=webtransport") // the missed one came again
	atLeast(pubs+2, "switchyard_received_frames_total", "transport=websocket")
	atLeast(1, "switchyard_received_bytes_total", "transport=websocket")
	atLeast(pubs+1, "switchyard_sent_frames_total", "transport=websocket")
	atLeast(1, "switchyard_sent_bytes_total", "transport=webtransport")
	atLeast(1, "switchyard_datagrams_received_total", "transport=webtransport")
	atLeast(1, "switchyard_datagrams_sent_total", "transport=webtransport")
	atLeast(pubs+1, "switchyard_publish_delivery_seconds")
	atLeast(2, "switchyard_channels")
	eq(0, "switchyard_send_queue_max_frames")
	atLeast(1, "go_goroutines")
	atLeast(1, "process_resident_memory_bytes")

	// A session that ends moves to the totals: no counter goes down.
	before := m
	ws.Close()
	waitFor(t, 5*time.Second, "the closed session to go", func() bool {
		// One scrape reads the collectors at slightly different moments:
		// wait for both.
		m = scrape(t, n.http)
		open, _ := m.get("switchyard_sessions", "transport=websocket")
		gone, _ := m.get("switchyard_disconnects_total", "transport=websocket")
		return open == 0 && gone == 1
	})
	for _, name := range []string{"switchyard_deliveries_total", "switchyard_received_frames_total", "switchyard_sent_bytes_total"} {
		if b, a := before.must(t, name, "transport=websocket"), m.must(t, name, "transport=websocket"); a < b {
			t.Errorf("%s went down from %v to %v when the session ended", name, b, a)
		}
	}
}

// TestMetricsSlowConsumer checks that a frozen reader shows as a slow
// consumer's disconnect.
func TestMetricsSlowConsumer(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.SendQueueFrames = 4
		c.Session.WriteTimeout = 500 * time.Millisecond // the close's write to the frozen reader gives up soon
	})
	r := n.rawWS(t, "")
	r.connect()
	r.send(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "flood"}}})
	waitFor(t, 5*time.Second, "the subscription", func() bool { return n.Hub().Subscribers("flood") == 1 })
	// r never reads: the queue fills once the socket buffers have. Bursts
	// fill it before a blocked write can time out.
	payload := []byte(strings.Repeat("x", 32<<10))
	waitFor(t, 10*time.Second, "a slow-consumer close", func() bool {
		for range 16 {
			n.Hub().Sequence("flood", payload)
		}
		v, _ := scrape(t, n.http).get("switchyard_disconnects_total", "code=slow_consumer")
		return v == 1
	})
}

// TestMetricsKey checks Config.MetricsKey: asked for on a listener that
// is not on loopback, not on one that is.
func TestMetricsKey(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.MetricsKey = "scrape-key" })
	get := func(local net.Addr, header ...string) int {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, req)
		return w.Code
	}
	public := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}
	for _, c := range []struct {
		name   string
		local  net.Addr
		header []string
		want   int
	}{
		{"public, no key", public, nil, http.StatusUnauthorized},
		{"public, wrong key", public, []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized},
		{"public, bearer", public, []string{"Authorization", "Bearer scrape-key"}, http.StatusOK},
		{"public, X-API-Key", public, []string{"X-API-Key", "scrape-key"}, http.StatusOK},
		{"public, the API key", public, []string{"X-API-Key", testAPIKey}, http.StatusUnauthorized},
		{"HTTP/3, no key", &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}, nil, http.StatusUnauthorized},
		{"loopback, no key", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, nil, http.StatusOK},
	} {
		if got := get(c.local, c.header...); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// Over the real loopback listener, no key is needed.
	scrape(t, n.http)
}
