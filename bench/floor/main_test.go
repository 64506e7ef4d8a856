package main

import (
	"bytes"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/bench/internal/naive"
)

// The floor speaks the naive server's protocol: a subscriber gets "ready"
// and then every publication of the publisher's WebSocket, in order, and
// a subscriber that has gone is dropped at the next publication.
func TestFloorBroadcasts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer()
	go s.acceptLoop(ln)
	t.Cleanup(func() { ln.Close() })
	base := "ws://" + ln.Addr().String()

	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	subs := make([]*websocket.Conn, 3)
	for i := range subs {
		c, _, err := d.Dial(base+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if typ, msg, err := c.ReadMessage(); err != nil || typ != websocket.TextMessage || string(msg) != naive.Ready {
			t.Fatalf("subscriber %d: %d %q %v, want the text %q", i, typ, msg, err, naive.Ready)
		}
		subs[i] = c
	}
	pub, _, err := d.Dial(base+"/pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// 5,000 bytes: gorilla writes that as two frames (a 4 KiB buffer).
	payloads := [][]byte{[]byte("one"), bytes.Repeat([]byte("m"), 300), bytes.Repeat([]byte("l"), 5000)}
	for _, p := range payloads {
		if err := pub.WriteMessage(websocket.BinaryMessage, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range subs {
		for _, want := range payloads {
			typ, msg, err := c.ReadMessage()
			if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(msg, want) {
				t.Fatalf("subscriber %d: %d, %d bytes, %v; want %d bytes", i, typ, len(msg), err, len(want))
			}
		}
	}

	// A subscriber that has gone is forgotten when a write to it fails.
	subs[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = pub.WriteMessage(websocket.BinaryMessage, []byte("x"))
		s.mu.Lock()
		n := len(s.subs)
		s.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers in the set, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Any other request is refused.
	resp, err := http.Get("http://" + ln.Addr().String() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other: %d, want 404", resp.StatusCode)
	}
}
