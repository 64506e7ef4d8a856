package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testAPIKey        = "test-api-key"
	testAllowedOrigin = "http://allowed.example"
)

type testNode struct {
	*edge.Node
	hash  string
	wtURL string // https://127.0.0.1:port
	wsURL string // ws://127.0.0.1:port/ws (plain HTTP)
	http  string // http://127.0.0.1:port
}

// startNode starts a node on loopback with a dev certificate; mutate may
// adjust the config first. The node is shut down when the test ends.
func startNode(t *testing.T, mutate func(*edge.Config)) *testNode {
	t.Helper()
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := edge.Config{
		Name:           "test-node",
		Region:         "test",
		Listen:         "127.0.0.1:0",
		HTTP:           "127.0.0.1:0",
		Certs:          store,
		APIKey:         testAPIKey,
		AllowedOrigins: []string{testAllowedOrigin},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	a := n.Addrs()
	return &testNode{
		Node:  n,
		hash:  store.Hash().Value,
		wtURL: "https://" + a.QUIC.String(),
		wsURL: "ws://" + a.HTTP.String() + "/ws",
		http:  "http://" + a.HTTP.String(),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (n *testNode) dial(t *testing.T, transport string, mutate ...func(*client.Options)) *client.Client {
	t.Helper()
	opts := client.Options{Transport: transport, CertHash: n.hash}
	for _, m := range mutate {
		m(&opts)
	}
	url := n.wtURL
	if transport == protocols.WebSocket {
		url = n.wsURL
	}
	c, err := client.Dial(ctxT(t), url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { c.Close() })
	if c.Transport() != transport {
		t.Fatalf("dialled %s, got %s", transport, c.Transport())
	}
	return c
}

func (n *testNode) apiPublish(t *testing.T, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.http+"/api/publish", strings.NewReader(body))
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("status %d, body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive reads n messages from sub or fails.
func receive(t *testing.T, sub *client.Subscription, n int) []client.Message {
	t.Helper()
	out := make([]client.Message, 0, n)
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				t.Fatalf("subscription ended after %d of %d messages", len(out), n)
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("got %d of %d messages", len(out), n)
		}
	}
	return out
}

func expectNoMessage(t *testing.T, sub *client.Subscription, within time.Duration) {
	t.Helper()
	select {
	case m := <-sub.Messages():
		t.Fatalf("unexpected message %q", m.Data)
	case <-time.After(within):
	}
}

func TestBothTransportsShareChannels(t *testing.T) {
	n := startNode(t, nil)
	wt := n.dial(t, protocols.WebTransport)
	ws := n.dial(t, protocols.WebSocket)
	ctx := ctxT(t)
	subWT, err := wt.Subscribe(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	subWS, err := ws.Subscribe(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}

	// Publishers on both transports and the HTTP API, all at once.
	const each = 40
	var wg sync.WaitGroup
	for _, p := range []struct {
		name string
		pub  func(i int) error
	}{
		{"wt", func(i int) error { _, err := wt.Publish(ctx, "room", []byte(fmt.Sprintf("wt-%d", i))); return err }},
		{"ws", func(i int) error { _, err := ws.Publish(ctx, "room", []byte(fmt.Sprintf("ws-%d", i))); return err }},
		{"api", func(i int) error {
			if code, body := n.apiPublish(t, testAPIKey, fmt.Sprintf(`{"channel":"room","data":"api-%d"}`, i)); code != 200 {
				return fmt.Errorf("api: %d %v", code, body)
			}
			return nil
		}},
	} {
		wg.Go(func() {
			for i := range each {
				if err := p.pub(i); err != nil {
					t.Errorf("%s publish %d: %v", p.name, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	a := receive(t, subWT, 3*each)
	b := receive(t, subWS, 3*each)
	next := map[string]int{}
	for i := range a {
		if a[i].Offset != b[i].Offset || !bytes.Equal(a[i].Data, b[i].Data) || a[i].Epoch != b[i].Epoch {
			t.Fatalf("message %d differs: wt %q@%d, ws %q@%d", i, a[i].Data, a[i].Offset, b[i].Data, b[i].Offset)
		}
		if i > 0 && a[i].Offset != a[i-1].Offset+1 {
			t.Fatalf("offsets jump from %d to %d", a[i-1].Offset, a[i].Offset)
		}
		// Each publisher's own messages arrive in the order it sent them.
		src, num, _ := strings.Cut(string(a[i].Data), "-")
		if want := fmt.Sprint(next[src]); num != want {
			t.Fatalf("%s: got %s-%s, want %s-%s", src, src, num, src, want)
		}
		next[src]++
	}
	expectNoMessage(t, subWT, 50*time.Millisecond)
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	n := startNode(t, nil)
	for _, tr := range []string{protocols.WebTransport, protocols.WebSocket} {
		t.Run(tr, func(t *testing.T) {
			c := n.dial(t, tr)
			ctx := ctxT(t)
			sub, err := c.Subscribe(ctx, "u-"+tr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "u-"+tr, []byte("one")); err != nil {
				t.Fatal(err)
			}
			receive(t, sub, 1)
			if err := sub.Unsubscribe(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "u-"+tr, []byte("two")); err != nil {
				t.Fatal(err)
			}
			for m := range sub.Messages() {
				t.Fatalf("message %q after unsubscribe", m.Data)
			}
			if got := n.Hub().Subscribers("u-" + tr); got != 0 {
				t.Fatalf("%d subscribers left", got)
			}
		})
	}
}

// rawWS is a hand-driven WebSocket client for bad input and frozen readers.
type rawWS struct {
	t *testing.T
	c *websocket.Conn
}

func (n *testNode) rawWS(t *testing.T, origin string) *rawWS {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, _, err := websocket.DefaultDialer.Dial(n.wsURL, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawWS{t: t, c: c}
}

func (r *rawWS) send(frames ...*protocols.Frame) {
	r.t.Helper()
	var b []byte
	for _, f := range frames {
		b, _ = protocols.AppendFrame(b, f)
	}
	if err := r.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawWS) connect() {
	r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion}}})
}

// closeCode reads until the server closes and returns the close code and
// the frames seen before it.
func (r *rawWS) closeCode() (int, string, []*protocols.Frame) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var seen []*protocols.Frame
	for {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				r.t.Fatalf("read ended without a close frame: %v", err)
			}
			return ce.Code, ce.Text, seen
		}
		_ = protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if err == nil {
				seen = append(seen, f)
			}
			return err
		})
	}
}

// checkAlive proves the node still serves other sessions.
func checkAlive(t *testing.T, n *testNode, c *client.Client) {
	t.Helper()
	ctx := ctxT(t)
	ch := fmt.Sprintf("alive-%d", time.Now().UnixNano())
	sub, err := c.Subscribe(ctx, ch)
	if err != nil {
		t.Fatalf("healthy session broken: %v", err)
	}
	defer sub.Unsubscribe(ctx)
	if code, body := n.apiPublish(t, testAPIKey, `{"channel":"`+ch+`","data":"ok"}`); code != 200 {
		t.Fatalf("api publish: %d %v", code, body)
	}
	if m := receive(t, sub, 1); string(m[0].Data) != "ok" {
		t.Fatalf("got %q", m[0].Data)
	}
}

func TestBadInputClosesOnlyTheCulprit(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Session.MaxFrameSize = 1024 })
	bystanderWT := n.dial(t, protocols.WebTransport)
	bystanderWS := n.dial(t, protocols.WebSocket)

	cases := []struct {
		name string
		code protocols.CloseCode
		send func(r *rawWS)
	}{
		{"garbage", protocols.CodeBadFrame, func(r *rawWS) {
			r.c.WriteMessage(websocket.BinaryMessage, []byte{5, 0xff, 0xff, 0xff, 0xff, 0xff})
		}},
		{"cut short", protocols.CodeBadFrame, func(r *rawWS) { r.c.WriteMessage(websocket.BinaryMessage, []byte{50, 1, 2}) }},
		{"text message", protocols.CodeBadFrame, func(r *rawWS) { r.c.WriteMessage(websocket.TextMessage, []byte(`{"connect":{}}`)) }},
		{"oversized message", protocols.CodeFrameTooLarge, func(r *rawWS) {
			r.c.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20))
		}},
		{"oversized frame prefix", protocols.CodeFrameTooLarge, func(r *rawWS) {
			r.c.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0xff, 0x03, 1})
		}},
		{"subscribe before connect", protocols.CodeBadFrame, func(r *rawWS) {
			r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "x"}}})
		}},
		{"wrong protocol", protocols.CodeBadProtocol, func(r *rawWS) {
			r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: "switchyard.v9"}}})
		}},
		{"bad origin", protocols.CodeOriginNotAllowed, nil},
	}
	for _, c := range cases {
		t.Run("websocket/"+c.name, func(t *testing.T) {
			origin := testAllowedOrigin
			if c.send == nil {
				origin = "http://evil.example"
			}
			r := n.rawWS(t, origin)
			if c.send != nil {
				if c.name != "subscribe before connect" && c.name != "wrong protocol" {
					r.connect()
				}
				c.send(r)
			}
			code, reason, _ := r.closeCode()
			if code != int(c.code) {
				t.Fatalf("close code %d (%q), want %d", code, reason, c.code)
			}
			if reason == "" {
				t.Fatal("close without a reason")
			}
			checkAlive(t, n, bystanderWT)
			checkAlive(t, n, bystanderWS)
		})
	}

	// The same faults over WebTransport.
	for _, c := range []struct {
		name string
		code protocols.CloseCode
		raw  []byte
	}{
		{"garbage", protocols.CodeBadFrame, []byte{5, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"oversized frame", protocols.CodeFrameTooLarge, append([]byte{0x80, 0x10}, make([]byte, 2048)...)},
	} {
		t.Run("webtransport/"+c.name, func(t *testing.T) {
			bad := n.dial(t, protocols.WebTransport)
			if err := bad.SendRaw(c.raw); err != nil {
				t.Fatal(err)
			}
			assertClosedWith(t, bad, c.code)
			checkAlive(t, n, bystanderWT)
			checkAlive(t, n, bystanderWS)
		})
	}
	t.Run("webtransport/bad origin", func(t *testing.T) {
		_, err := client.Dial(ctxT(t), n.wtURL, client.Options{Transport: protocols.WebTransport, CertHash: n.hash, Origin: "http://evil.example"})
		var ce *protocols.CloseError
		if !errors.As(err, &ce) || ce.Code != protocols.CodeOriginNotAllowed {
			t.Fatalf("dial with a bad origin: %v, want close %d", err, protocols.CodeOriginNotAllowed)
		}
		checkAlive(t, n, bystanderWT)
	})
	t.Run("allowed origin", func(t *testing.T) {
		// The allowlist, and the node's own pages (its plain-HTTP origin, also
		// as localhost since the listener is on loopback).
		own := strings.Replace(n.http, "127.0.0.1", "localhost", 1)
		for _, origin := range []string{testAllowedOrigin, n.http, own} {
			for _, tr := range []string{protocols.WebTransport, protocols.WebSocket} {
				c := n.dial(t, tr, func(o *client.Options) { o.Origin = origin })
				checkAlive(t, n, c)
			}
		}
	})
}

func assertClosedWith(t *testing.T, c *client.Client, code protocols.CloseCode) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session not closed")
	}
	var ce *protocols.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != code {
		t.Fatalf("closed with %v, want code %d", c.Err(), code)
	}
}

func TestRequestErrorsKeepTheSession(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.MaxSubscriptions = 2 })
	for _, tr := range []string{protocols.WebTransport, protocols.WebSocket} {
		t.Run(tr, func(t *testing.T) {
			c := n.dial(t, tr)
			ctx := ctxT(t)
			expect := func(err error, code protocols.ErrorCode) {
				t.Helper()
				var re *protocols.RequestError
				if !errors.As(err, &re) || re.Code != code {
					t.Fatalf("got %v, want error %d", err, code)
				}
			}
			_, err := c.Subscribe(ctx, "bad name!")
			expect(err, protocols.ErrCodeInvalidChannel)
			_, err = c.Subscribe(ctx, strings.Repeat("x", 200))
			expect(err, protocols.ErrCodeInvalidChannel)
			_, err = c.Publish(ctx, "", []byte("x"))
			expect(err, protocols.ErrCodeInvalidChannel)
			if _, err := c.Subscribe(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			_, err = c.Subscribe(ctx, "a")
			expect(err, protocols.ErrCodeAlreadySubscribed)
			if _, err := c.Subscribe(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			_, err = c.Subscribe(ctx, "c")
			expect(err, protocols.ErrCodeTooManySubscriptions)
			checkAlive2 := func() {
				if _, err := c.Publish(ctx, "a", []byte("still here")); err != nil {
					t.Fatal(err)
				}
			}
			checkAlive2()
		})
	}
}

func TestAPIErrors(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Session.MaxFrameSize = 1024 })
	cases := []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"no key", "", `{"channel":"a","data":"x"}`, 401, "missing_api_key"},
		{"wrong key", "nope", `{"channel":"a","data":"x"}`, 401, "bad_api_key"},
		{"not json", testAPIKey, `channel=a`, 400, "bad_json"},
		{"unknown field", testAPIKey, `{"channel":"a","data":"x","extra":1}`, 400, "bad_json"},
		{"trailing data", testAPIKey, `{"channel":"a","data":"x"} {}`, 400, "bad_json"},
		{"bad channel", testAPIKey, `{"channel":"a b","data":"x"}`, 400, "invalid_channel"},
		{"no data", testAPIKey, `{"channel":"a"}`, 400, "bad_request"},
		{"both data", testAPIKey, `{"channel":"a","data":"x","data_base64":"eA=="}`, 400, "bad_request"},
		{"bad base64", testAPIKey, `{"channel":"a","data_base64":"!!"}`, 400, "bad_base64"},
		{"payload too large", testAPIKey, `{"channel":"a","data":"` + strings.Repeat("x", 1000) + `"}`, 413, "payload_too_large"},
		{"body too large", testAPIKey, `{"channel":"a","data":"` + strings.Repeat("x", 100000) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		status, body := n.apiPublish(t, c.key, c.body)
		if status != c.status || body["error"] != c.code || body["message"] == "" {
			t.Errorf("%s: got %d %v, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	status, body := n.apiPublish(t, testAPIKey, `{"channel":"a","data_base64":"AAEC/w=="}`)
	if status != 200 || body["epoch"] == "" || body["offset"] != float64(1) {
		t.Fatalf("good publish: %d %v", status, body)
	}
	resp, err := http.Get(n.http + "/api/publish")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET /api/publish: %d", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/readyz", "/certhash"} {
		resp, err := http.Get(n.http + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !json.Valid(b) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		if path == "/certhash" && !strings.Contains(string(b), n.hash) {
			t.Fatalf("/certhash %s does not carry %s", b, n.hash)
		}
	}
}

func TestAPIDisabledWithoutKey(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.APIKey = "" })
	if status, body := n.apiPublish(t, "anything", `{"channel":"a","data":"x"}`); status != 403 || body["error"] != "api_disabled" {
		t.Fatalf("got %d %v", status, body)
	}
}

// A subscriber that stops reading must not delay anyone else; it is closed
// as a slow consumer once its queue overflows.
func TestFrozenReaderDoesNotStallOthers(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.SendQueueFrames = 64
		c.Session.SendQueueBytes = 1 << 20
		// The frozen reader reads its close only after the last round; on
		// a busy machine the rounds outlast the default write timeout for
		// the close (its socket is full until then), and it would see the
		// connection dropped instead of the 3001.
		c.Session.WriteTimeout = time.Minute
	})
	frozen := n.rawWS(t, "")
	frozen.connect()
	frozen.send(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "firehose"}}})
	waitFor(t, 5*time.Second, "frozen subscriber", func() bool { return n.Hub().Subscribers("firehose") == 1 })

	others := []*client.Client{n.dial(t, protocols.WebTransport), n.dial(t, protocols.WebSocket)}
	var subs []*client.Subscription
	for _, c := range others {
		sub, err := c.Subscribe(ctxT(t), "firehose")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	// 2,000 × 16 KiB = 32 MiB: far more than the socket buffers and the
	// frozen session's queue hold. Publish in rounds that the healthy
	// subscribers must receive in full before the next round: if the frozen
	// reader held anything up, a round would never complete.
	const rounds, perRound = 40, 50
	payload := bytes.Repeat([]byte("z"), 16<<10)
	for range rounds {
		for range perRound {
			n.Hub().Sequence("firehose", payload)
		}
		for _, sub := range subs {
			receive(t, sub, perRound)
		}
	}
	code, _, _ := frozen.closeCode()
	if code != int(protocols.CodeSlowConsumer) {
		t.Fatalf("frozen reader closed with %d, want %d", code, protocols.CodeSlowConsumer)
	}
}

func TestDeadPeerIsClosed(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.PingInterval = 50 * time.Millisecond
		c.Session.PongTimeout = 100 * time.Millisecond
	})
	// A client that reads but never answers pings.
	r := n.rawWS(t, "")
	r.connect()
	start := time.Now()
	code, _, frames := r.closeCode()
	if code != int(protocols.CodeHeartbeatTimeout) {
		t.Fatalf("close code %d, want %d", code, protocols.CodeHeartbeatTimeout)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("dead peer closed after %v", el)
	}
	pings := 0
	for _, f := range frames {
		if f.GetPing() != nil {
			pings++
		}
	}
	if pings == 0 {
		t.Fatal("no ping was sent before the close")
	}
	// SDK clients answer pings and stay up across many intervals.
	live := []*client.Client{n.dial(t, protocols.WebTransport), n.dial(t, protocols.WebSocket)}
	time.Sleep(600 * time.Millisecond) // a dozen ping intervals: the behaviour under test is staying up
	for _, c := range live {
		select {
		case <-c.Done():
			t.Fatalf("%s client closed: %v", c.Transport(), c.Err())
		default:
		}
		checkAlive(t, n, c)
	}
}

func TestConnectTimeout(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.ConnectTimeout = 100 * time.Millisecond })
	r := n.rawWS(t, "")
	if code, _, _ := r.closeCode(); code != int(protocols.CodeHandshakeTimeout) {
		t.Fatalf("close code %d, want %d", code, protocols.CodeHandshakeTimeout)
	}
}

func TestShutdownSaysGoingAway(t *testing.T) {
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := edge.New(edge.Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Certs: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	a := node.Addrs()
	n := &testNode{Node: node, hash: store.Hash().Value, wtURL: "https://" + a.QUIC.String(), wsURL: "ws://" + a.HTTP.String() + "/ws"}
	var clients []*client.Client
	for range 3 {
		clients = append(clients, n.dial(t, protocols.WebTransport), n.dial(t, protocols.WebSocket))
	}
	for _, c := range clients {
		if _, err := c.Subscribe(ctxT(t), "x"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		assertClosedWith(t, c, protocols.CodeGoingAway)
	}
	if node.Sessions() != 0 {
		t.Fatalf("%d sessions after shutdown", node.Sessions())
	}
	if _, err := client.Dial(ctxT(t), n.wsURL, client.Options{Transport: protocols.WebSocket}); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

// The same over WebTransport: a client that stops reading (its Messages
// buffer full, its read loop blocked, then QUIC flow control) must not hold
// up anyone; its session is closed as a slow consumer.
func TestFrozenWebTransportReader(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.SendQueueFrames = 64
		c.Session.SendQueueBytes = 1 << 20
		// The frozen session's writer is stuck in a write until this
		// deadline; only then does its close go out.
		c.Session.WriteTimeout = time.Second
	})
	frozen := n.dial(t, protocols.WebTransport, func(o *client.Options) { o.MessageBuffer = 1 })
	if _, err := frozen.Subscribe(ctxT(t), "firehose"); err != nil {
		t.Fatal(err)
	}
	healthy := n.dial(t, protocols.WebSocket)
	sub, err := healthy.Subscribe(ctxT(t), "firehose")
	if err != nil {
		t.Fatal(err)
	}
	before := n.Sessions()
	payload := bytes.Repeat([]byte("z"), 16<<10)
	for range 40 {
		for range 50 {
			n.Hub().Sequence("firehose", payload)
		}
		receive(t, sub, 50)
	}
	waitFor(t, 10*time.Second, "the frozen session to be closed", func() bool { return n.Sessions() == before-1 })
	if got := n.Hub().Subscribers("firehose"); got != 1 {
		t.Fatalf("%d subscribers left, want the healthy one", got)
	}
}
