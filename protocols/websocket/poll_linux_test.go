//go:build linux

package websocket

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/protocols"
)

// echoAcceptor admits every session; its handler answers each Publish
// with a Message of the same id carrying the publish's data (or big bytes
// of its own when big is set), as a Reply.
type echoAcceptor struct {
	big     int
	handled atomic.Int64
	closed  chan closeRec
}

type closeRec struct {
	id  string
	err *protocols.CloseError
}

func newEchoAcceptor() *echoAcceptor { return &echoAcceptor{closed: make(chan closeRec, 4096)} }

func (a *echoAcceptor) Accept(s protocols.Session, _ *http.Request) (protocols.Handler, error) {
	return &echoHandler{a: a, s: s}, nil
}

type echoHandler struct {
	a *echoAcceptor
	s protocols.Session
}

func (h *echoHandler) HandleFrame(f *protocols.Frame) error {
	p := f.GetPublish()
	if p == nil {
		return nil
	}
	h.a.handled.Add(1)
	data := p.Data
	if h.a.big > 0 {
		data = make([]byte, h.a.big)
	}
	_ = h.s.Reply(protocols.MustEncode(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Message{Message: &protocols.Message{Data: data}}}))
	return nil
}

func (h *echoHandler) Closed(err *protocols.CloseError) { h.a.closed <- closeRec{h.s.ID(), err} }

// quietSession has no heartbeats: nothing but the test's frames wakes a
// session.
func quietSession() protocols.SessionConfig {
	return protocols.SessionConfig{PingInterval: -1, CloseGrace: 200 * time.Millisecond}
}

func startEcho(t testing.TB, acc protocols.Acceptor, cfg protocols.SessionConfig) string {
	t.Helper()
	srv := httptest.NewServer(NewServer(acc, Config{Session: cfg}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dialWS(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func publishFrame(id uint32, data []byte) []byte {
	return protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Publish{Publish: &protocols.Publish{Channel: "c", Data: data}}})
}

// readFrames reads one message's frames.
func readFrames(c *websocket.Conn) ([]*protocols.Frame, error) {
	_, msg, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	var out []*protocols.Frame
	err = protocols.SplitFrames(msg, 1<<20, func(b []byte) error {
		f, err := protocols.DecodeFrame(b)
		if err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// pendingFrames holds the frames a client has read but not yet looked at
// (the server packs several replies into one message).
var pendingFrames sync.Map // *websocket.Conn → []*protocols.Frame

// nextFrame returns the client's next frame from the server.
func nextFrame(c *websocket.Conn) (*protocols.Frame, error) {
	for {
		if v, ok := pendingFrames.Load(c); ok {
			if fs := v.([]*protocols.Frame); len(fs) > 0 {
				pendingFrames.Store(c, fs[1:])
				return fs[0], nil
			}
		}
		fs, err := readFrames(c)
		if err != nil {
			return nil, err
		}
		pendingFrames.Store(c, fs)
	}
}

// expectEcho reads until the next Message, which must have id and data.
func expectEcho(t testing.TB, c *websocket.Conn, id uint32, data []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := nextFrame(c)
		if err != nil {
			t.Fatalf("waiting for the echo of %d: %v", id, err)
		}
		if m := f.GetMessage(); m != nil {
			if f.Id != id || !bytes.Equal(m.Data, data) {
				t.Fatalf("echo: got id %d data %q, want %d %q", f.Id, m.Data, id, data)
			}
			return
		}
	}
}

// settledGoroutines waits until the goroutine count stops falling.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

func waitClosed(t *testing.T, acc *echoAcceptor, within time.Duration) closeRec {
	t.Helper()
	select {
	case r := <-acc.closed:
		return r
	case <-time.After(within):
		t.Fatalf("no Closed within %v", within)
	}
	return closeRec{}
}

// An idle session has no goroutine; woken by frames, it answers them.
func TestPolledIdleSessionsHaveNoGoroutine(t *testing.T) {
	acc := newEchoAcceptor()
	url := startEcho(t, acc, quietSession())
	// The first session starts the poller: count from after it.
	first := dialWS(t, url)
	defer first.Close()
	if err := first.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, first, 1, []byte("x"))
	before := settledGoroutines()

	const n = 500
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dialWS(t, url)
		defer conns[i].Close()
		data := fmt.Appendf(nil, "hello %d", i)
		if err := conns[i].WriteMessage(websocket.BinaryMessage, publishFrame(1, data)); err != nil {
			t.Fatal(err)
		}
		expectEcho(t, conns[i], 1, data)
	}
	after := settledGoroutines()
	if after-before > n/10 {
		t.Fatalf("%d idle sessions hold %d goroutines (%d before, %d after): want none each", n, after-before, before, after)
	}
	t.Logf("%d idle sessions: %d → %d goroutines", n, before, after)

	// Idle, then woken: every session answers again, several frames in
	// one message and in several.
	for i, c := range conns {
		data := fmt.Appendf(nil, "again %d", i)
		msg := append(publishFrame(2, data), publishFrame(3, data)...)
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(4, data)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		data := fmt.Appendf(nil, "again %d", i)
		for id := uint32(2); id <= 4; id++ {
			expectEcho(t, c, id, data)
		}
	}
	if got := settledGoroutines(); got-before > n/10 {
		t.Fatalf("after a burst, %d goroutines (%d before)", got, before)
	}
}

// maskedFrame is one client WebSocket frame (RFC 6455 §5.2), masked.
func maskedFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// A message that arrives in two halves with a pause between them: the
// step that read the first half waits for the rest, and the frames after
// it still come through.
func TestPolledMessageInTwoHalves(t *testing.T) {
	acc := newEchoAcceptor()
	url := startEcho(t, acc, quietSession())
	c := dialWS(t, url)
	defer c.Close()
	nc := c.NetConn()

	data := bytes.Repeat([]byte("0123456789"), 300) // over the 1 KiB read buffer
	raw := maskedFrame(true, websocket.BinaryMessage, publishFrame(7, data))
	for _, cut := range []int{1, 3, 10, len(raw) / 2, len(raw) - 1} {
		if _, err := nc.Write(raw[:cut]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := nc.Write(raw[cut:]); err != nil {
			t.Fatal(err)
		}
		expectEcho(t, c, 7, data)
	}

	// A message in two WebSocket frames (a fragment, a pause, the final
	// continuation), the second with a frame after it in the same write.
	body := publishFrame(8, []byte("fragmented"))
	if _, err := nc.Write(maskedFrame(false, websocket.BinaryMessage, body[:4])); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	rest := append(maskedFrame(true, 0, body[4:]), maskedFrame(true, websocket.BinaryMessage, publishFrame(9, []byte("next")))...)
	if _, err := nc.Write(rest); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 8, []byte("fragmented"))
	expectEcho(t, c, 9, []byte("next"))

	// A ping of the WebSocket layer between messages is answered.
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(10, []byte("after ping"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 10, []byte("after ping"))
	select {
	case s := <-pong:
		if s != "p" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// A client that sends requests faster than it reads the replies: the
// session stops reading at MaxQueuedReplies and resumes as the writer
// drains them, without losing or reordering a request.
func TestPolledReplyBackPressure(t *testing.T) {
	acc := newEchoAcceptor()
	acc.big = 32 << 10 // replies that fill the socket buffers
	cfg := quietSession()
	cfg.MaxQueuedReplies = 4
	cfg.WriteTimeout = time.Minute
	url := startEcho(t, acc, cfg)
	c := dialWS(t, url)
	defer c.Close()

	const n = 2000
	go func() {
		var msg []byte
		for id := uint32(1); id <= n; id++ {
			msg = append(msg, publishFrame(id, nil)...)
			if id%50 == 0 {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					return
				}
				msg = msg[:0]
			}
		}
	}()
	// Without a reader the session stops: far fewer than n requests are
	// handled.
	time.Sleep(500 * time.Millisecond)
	stalled := acc.handled.Load()
	if stalled >= n {
		t.Fatalf("all %d requests were handled though no reply was read", stalled)
	}
	t.Logf("stalled at %d of %d requests", stalled, n)

	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	next := uint32(1)
	for next <= n {
		fs, err := readFrames(c)
		if err != nil {
			t.Fatalf("after %d replies: %v", next-1, err)
		}
		for _, f := range fs {
			if f.GetMessage() == nil {
				continue
			}
			if f.Id != next {
				t.Fatalf("reply %d, want %d", f.Id, next)
			}
			next++
		}
	}
	if got := acc.handled.Load(); got != n {
		t.Fatalf("handled %d, want %d", got, n)
	}
}

// A silent session (it reads nothing and answers no ping) is closed by the
// heartbeat although no goroutine reads it, once, with the heartbeat's
// code.
func TestPolledHeartbeatTimeout(t *testing.T) {
	acc := newEchoAcceptor()
	cfg := protocols.SessionConfig{PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond, CloseGrace: 200 * time.Millisecond}
	url := startEcho(t, acc, cfg)
	c := dialWS(t, url)
	defer c.Close()
	if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 1, []byte("x"))
	start := time.Now()
	r := waitClosed(t, acc, 5*time.Second)
	if r.err.Code != protocols.CodeHeartbeatTimeout {
		t.Fatalf("closed with %v, want heartbeat timeout", r.err)
	}
	t.Logf("closed after %v: %v", time.Since(start), r.err)
	select {
	case r := <-acc.closed:
		t.Fatalf("Closed again: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	// The server has dropped the connection: the client reads its
	// Disconnect and close, then the end.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var disconnect *protocols.Disconnect
	for {
		fs, err := readFrames(c)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server did not drop the connection")
			}
			break
		}
		for _, f := range fs {
			if d := f.GetDisconnect(); d != nil {
				disconnect = d
			}
		}
	}
	if disconnect == nil || protocols.CloseCode(disconnect.Code) != protocols.CodeHeartbeatTimeout {
		t.Fatalf("Disconnect %v", disconnect)
	}
}

// The peer closes, with a close frame or by dropping the connection.
func TestPolledPeerClose(t *testing.T) {
	acc := newEchoAcceptor()
	url := startEcho(t, acc, quietSession())

	c := dialWS(t, url)
	if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 1, []byte("x"))
	time.Sleep(50 * time.Millisecond) // idle: armed
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	r := waitClosed(t, acc, 5*time.Second)
	if r.err.Code != 4321 || r.err.Reason != "bye" || !r.err.Remote {
		t.Fatalf("closed with %+v, want the peer's 4321 bye", r.err)
	}
	// The server echoes the close.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 4321) {
		t.Fatalf("read after close: %v", err)
	}
	c.Close()

	c = dialWS(t, url)
	if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("y"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 1, []byte("y"))
	time.Sleep(50 * time.Millisecond)
	c.NetConn().Close()
	r = waitClosed(t, acc, 5*time.Second)
	if r.err.Code != 1006 || !r.err.Remote {
		t.Fatalf("closed with %+v, want 1006", r.err)
	}
}

// Many sessions close at once, by the peer and by the server, and as many
// new ones take their fds at once: every session ends once, and each new
// one hears only its own frames.
func TestPolledManySessionsClosing(t *testing.T) {
	acc := newEchoAcceptor()
	url := startEcho(t, acc, quietSession())
	const n = 300
	for round := range 3 {
		conns := make([]*websocket.Conn, n)
		for i := range conns {
			conns[i] = dialWS(t, url)
			data := fmt.Appendf(nil, "round %d session %d", round, i)
			if err := conns[i].WriteMessage(websocket.BinaryMessage, publishFrame(1, data)); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns {
			expectEcho(t, c, 1, fmt.Appendf(nil, "round %d session %d", round, i))
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch i % 3 {
				case 0:
					_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, ""), time.Now().Add(time.Second))
					time.Sleep(10 * time.Millisecond)
					c.Close()
				case 1:
					c.Close()
				case 2:
					// A bad frame (text): the server closes this one.
					_ = c.WriteMessage(websocket.TextMessage, []byte("no"))
					_, _, _ = c.ReadMessage()
					c.Close()
				}
			}()
		}
		wg.Wait()
		seen := make(map[string]bool)
		for range n {
			r := waitClosed(t, acc, 10*time.Second)
			if seen[r.id] {
				t.Fatalf("session %s closed twice", r.id)
			}
			seen[r.id] = true
		}
	}
	select {
	case r := <-acc.closed:
		t.Fatalf("an extra Closed: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
}

// A client's lone WebSocket ping (or pong), with no message after it, is
// answered without a goroutine left waiting in gorilla for the next
// message.
func TestPolledLoneControlFrames(t *testing.T) {
	acc := newEchoAcceptor()
	url := startEcho(t, acc, quietSession())
	first := dialWS(t, url) // keeps the poller running
	defer first.Close()
	if err := first.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, first, 1, []byte("x"))
	before := settledGoroutines()

	const n = 200
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c := dialWS(t, url)
		conns[i] = c
		defer c.Close()
		if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(1, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		expectEcho(t, c, 1, []byte("x"))
		if err := c.WriteControl(websocket.PongMessage, []byte("unasked"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteControl(websocket.PingMessage, []byte{byte(i)}, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		// The pong, read off the socket so that gorilla's reader stays
		// between frames: unmasked, FIN, opcode 10, one byte.
		var pong [3]byte
		_ = c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c.NetConn(), pong[:]); err != nil {
			t.Fatalf("session %d: no pong: %v", i, err)
		}
		if pong != [3]byte{0x8a, 1, byte(i)} {
			t.Fatalf("session %d: pong % x", i, pong)
		}
	}
	after := settledGoroutines()
	if after-before > n/10 {
		t.Fatalf("%d sessions after a lone ping hold %d goroutines (%d → %d)", n, after-before, before, after)
	}
	for i, c := range conns {
		data := fmt.Appendf(nil, "after ping %d", i)
		if err := c.WriteMessage(websocket.BinaryMessage, publishFrame(2, data)); err != nil {
			t.Fatal(err)
		}
		expectEcho(t, c, 2, data)
	}
}
