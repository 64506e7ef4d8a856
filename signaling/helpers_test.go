package signaling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/signaling"
)

// TestMain checks for leaked goroutines, giving memberlist's (which end
// on their own timers after a shutdown) a few seconds.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// node is one signaling server on loopback.
type node struct {
	srv *signaling.Server
	ts  *httptest.Server
	url string
}

func startServer(t testing.TB, cfg signaling.Config) *node {
	t.Helper()
	srv, err := signaling.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	n := &node{srv: srv, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/signal"}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	n.ts.Close()
}

// client is a raw WebSocket client of the protocol, as any language would
// write one.
type client struct {
	t    testing.TB
	ws   *websocket.Conn
	msgs chan map[string]any
	done chan struct{}
	err  error // why the reader stopped, after done

	peer, resume string
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &client{t: t, ws: ws, msgs: make(chan map[string]any, 1024), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				c.err = err
				return
			}
			c.msgs <- m
		}
	}()
	t.Cleanup(func() { ws.Close(); <-c.done })
	return c
}

func (c *client) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next message of type typ, skipping those of the types
// in skip; any other message fails the test.
func (c *client) next(typ string, skip ...string) map[string]any {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		var m map[string]any
		select {
		case m = <-c.msgs:
		case <-c.done:
			select {
			case m = <-c.msgs: // what arrived before the end comes first
			default:
				c.t.Fatalf("waiting for %q: connection ended: %v", typ, c.err)
			}
		case <-deadline:
			c.t.Fatalf("no %q within 10 s", typ)
		}
		if m["type"] == typ {
			return m
		}
		if !slices.Contains(skip, m["type"].(string)) {
			c.t.Fatalf("waiting for %q, got %v", typ, m)
		}
	}
}

// quiet checks that no message arrives for d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		c.t.Fatalf("unexpected message %v", m)
	case <-time.After(d):
	}
}

// closed waits for the connection to end and returns its close code and
// reason.
func (c *client) closed() (int, string) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("connection still open after 10 s")
	}
	if ce, ok := c.err.(*websocket.CloseError); ok {
		return ce.Code, ce.Text
	}
	return -1, c.err.Error()
}

// join joins room and returns the joined message.
func (c *client) join(room string, extra ...string) map[string]any {
	c.t.Helper()
	m := map[string]any{"type": "join", "room": room}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	c.sendJSON(m)
	j := c.next("joined")
	c.peer, _ = j["peer"].(string)
	c.resume, _ = j["resume"].(string)
	return j
}

func joinRoom(t testing.TB, url, room string) *client {
	t.Helper()
	c := dial(t, url)
	c.join(room)
	return c
}

func peers(j map[string]any) []string {
	var out []string
	for _, p := range j["peers"].([]any) {
		out = append(out, p.(string))
	}
	return out
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
