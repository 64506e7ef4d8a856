package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// A hostile client, on either transport, gets the exact answer the protocol
// documents, costs the node no more memory than the session limits allow,
// and does not delay a well-behaved subscriber on the same node. (The HTTP
// side is TestHostileHTTP.)
func TestHostileSessions(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.ConnectTimeout = 2 * time.Second
		// A client that stops reading is dropped within this.
		c.Session.WriteTimeout = 2 * time.Second
	})
	canaries := []*canary{newCanary(t, n, protocols.WebSocket), newCanary(t, n, protocols.WebTransport)}

	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, n)
			for _, cn := range canaries {
				cn.check(t)
			}
		})
	}
	if got := len(hostileCases()); got < 30 {
		t.Fatalf("%d hostile session cases, want at least 30 with TestHostileHTTP's", got)
	}
}

type hostileCase struct {
	name string
	run  func(t *testing.T, n *testNode)
}

// Frame builders for the cases.
func subscribeFrame(id uint32, ch string) *protocols.Frame {
	return &protocols.Frame{Id: id, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: ch}}}
}

func unsubscribeFrame(id uint32, ch string) *protocols.Frame {
	return &protocols.Frame{Id: id, Kind: &protocols.Frame_Unsubscribe{Unsubscribe: &protocols.Unsubscribe{Channel: ch}}}
}

func publishFrame(id uint32, ch, data string) *protocols.Frame {
	return &protocols.Frame{Id: id, Kind: &protocols.Frame_Publish{Publish: &protocols.Publish{Channel: ch, Data: []byte(data)}}}
}

func connectFrame() *protocols.Frame {
	return &protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion}}}
}

func pingFrame() *protocols.Frame {
	return &protocols.Frame{Kind: &protocols.Frame_Ping{Ping: &protocols.Ping{}}}
}

func encodeFrames(frames ...*protocols.Frame) []byte {
	var b []byte
	for _, f := range frames {
		b, _ = protocols.AppendFrame(b, f)
	}
	return b
}

// rawFrame length-prefixes a hand-built body.
func rawFrame(body []byte) []byte {
	return append(protowire.AppendVarint(nil, uint64(len(body))), body...)
}

// unknownKindFrame is a well-formed frame with id and a kind (field 99)
// that this version does not know.
func unknownKindFrame(id uint32) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(id))
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendBytes(b, nil)
	return rawFrame(b)
}

// channelRequestRaw builds a subscribe (field 4) or unsubscribe (6) whose
// channel holds any bytes, invalid UTF-8 included: the protobuf library
// refuses to encode those.
func channelRequestRaw(id uint32, kind protowire.Number, channel []byte) []byte {
	inner := protowire.AppendTag(nil, 1, protowire.BytesType)
	inner = protowire.AppendBytes(inner, channel)
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(id))
	b = protowire.AppendTag(b, kind, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	return rawFrame(b)
}

// answer is what a raw client saw: frames, then how the session ended.
type answer struct {
	frames []*protocols.Frame
	code   int // close code; 0 while open
	reason string
}

func (a *answer) errorFor(id uint32) *protocols.Error {
	for _, f := range a.frames {
		if f.Id == id && f.GetError() != nil {
			return f.GetError()
		}
	}
	return nil
}

func (a *answer) has(id uint32, kind string) bool {
	for _, f := range a.frames {
		if f.Id == id && frameKind(f) == kind {
			return true
		}
	}
	return false
}

func frameKind(f *protocols.Frame) string {
	if f.Kind == nil {
		return ""
	}
	return string(f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("kind")).Name())
}

// wsReadUntil reads frames until done(frames) holds or the server closes.
func (r *rawWS) readUntil(within time.Duration, done func(*answer) bool) *answer {
	r.t.Helper()
	a := &answer{}
	r.c.SetReadDeadline(time.Now().Add(within))
	defer r.c.SetReadDeadline(time.Time{})
	for !done(a) {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				a.code, a.reason = ce.Code, ce.Text
				return a
			}
			r.t.Fatalf("read: %v (after %d frames)", err, len(a.frames))
		}
		err = protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if err == nil {
				a.frames = append(a.frames, f)
			}
			return err
		})
		if err != nil {
			r.t.Fatalf("server sent a bad message: %v", err)
		}
	}
	return a
}

// rawWT is a hand-driven WebTransport client: a session and its control
// stream, nothing else.
type rawWT struct {
	t     *testing.T
	qconn *quic.Conn
	sess  *webtransport.Session
	str   *webtransport.Stream
	fr    *protocols.FrameReader
}

func (n *testNode) rawWT(t *testing.T, origin string) *rawWT {
	t.Helper()
	ctx := ctxT(t)
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}
	quicConf := &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}
	host := strings.TrimPrefix(n.wtURL, "https://")
	qconn, err := quic.DialAddrEarly(ctx, host, tlsConf, quicConf)
	if err != nil {
		t.Fatal(err)
	}
	tr := &webtransport.Transport{TLSClientConfig: tlsConf, QUICConfig: quicConf}
	cc, err := tr.NewClientConn(qconn)
	if err != nil {
		t.Fatal(err)
	}
	hdr := http.Header{}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	_, sess, err := cc.Dial(ctx, n.wtURL+"/wt", hdr)
	if err != nil {
		t.Fatal(err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawWT{t: t, qconn: qconn, sess: sess, str: str, fr: protocols.NewFrameReader(str, 1<<20)}
	t.Cleanup(func() {
		_ = sess.CloseWithError(0, "")
		_ = qconn.CloseWithError(0, "")
	})
	return r
}

func (r *rawWT) write(b []byte) {
	r.t.Helper()
	r.str.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.str.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// tryWrite writes b, giving up after a second blocked, and returns the
// error instead of failing the test.
func (r *rawWT) tryWrite(b []byte) error {
	r.str.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := r.str.Write(b)
	return err
}

func (r *rawWT) send(frames ...*protocols.Frame) { r.write(encodeFrames(frames...)) }

// readUntil reads frames until done holds or the session ends; the close
// code comes from the Disconnect frame, checked against the session error.
func (r *rawWT) readUntil(within time.Duration, done func(*answer) bool) *answer {
	r.t.Helper()
	a := &answer{}
	r.str.SetReadDeadline(time.Now().Add(within))
	defer r.str.SetReadDeadline(time.Time{})
	for !done(a) {
		body, err := r.fr.Next()
		if err != nil {
			var se *webtransport.SessionError
			switch {
			case errors.As(err, &se):
				if a.code != 0 && int(se.ErrorCode) != a.code {
					r.t.Fatalf("disconnect said %d, session closed with %d", a.code, se.ErrorCode)
				}
				a.code, a.reason = int(se.ErrorCode), se.Message
			case errors.Is(err, io.EOF) && a.code != 0:
				// the server ended the control stream after Disconnect
			default:
				r.t.Fatalf("read: %v (after %d frames)", err, len(a.frames))
			}
			return a
		}
		f, err := protocols.DecodeFrame(body)
		if err != nil {
			r.t.Fatalf("server sent a bad frame: %v", err)
		}
		if d := f.GetDisconnect(); d != nil {
			a.code, a.reason = int(d.Code), d.Reason
		}
		a.frames = append(a.frames, f)
	}
	return a
}

// closed: read until the session ends.
func closed(a *answer) bool { return a.code != 0 }

// wire abstracts the two raw clients for cases that run on both.
type rawClient interface {
	write(b []byte)
	tryWrite(b []byte) error
	send(frames ...*protocols.Frame)
	readUntil(within time.Duration, done func(*answer) bool) *answer
}

func (r *rawWS) write(b []byte) {
	r.t.Helper()
	if err := r.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawWS) tryWrite(b []byte) error {
	r.c.SetWriteDeadline(time.Now().Add(time.Second))
	return r.c.WriteMessage(websocket.BinaryMessage, b)
}

func dialRaw(t *testing.T, n *testNode, transport, origin string) rawClient {
	if transport == protocols.WebSocket {
		return n.rawWS(t, origin)
	}
	return n.rawWT(t, origin)
}

// expectClose asserts the close code and that the reason says why.
func expectClose(t *testing.T, a *answer, code protocols.CloseCode, reasonHas string) {
	t.Helper()
	if a.code != int(code) {
		t.Fatalf("closed with %d %q, want %d (%s)", a.code, a.reason, code, code)
	}
	if !strings.Contains(a.reason, reasonHas) {
		t.Fatalf("close reason %q does not say %q", a.reason, reasonHas)
	}
}

// expectError asserts that request id failed with code, the message is
// short and says why, and the session is still open.
func expectError(t *testing.T, a *answer, id uint32, code protocols.ErrorCode, msgHas string) {
	t.Helper()
	if a.code != 0 {
		t.Fatalf("session closed with %d %q; want error %d for request %d", a.code, a.reason, code, id)
	}
	e := a.errorFor(id)
	if e == nil {
		t.Fatalf("no error for request %d in %v", id, a.frames)
	}
	if e.Code != uint32(code) || !strings.Contains(e.Message, msgHas) {
		t.Fatalf("error %d %q, want %d with %q", e.Code, e.Message, code, msgHas)
	}
	if len(e.Message) > protocols.MaxErrorMessageLen {
		t.Fatalf("error message is %d bytes, over %d", len(e.Message), protocols.MaxErrorMessageLen)
	}
}

func hostileCases() []hostileCase {
	var cases []hostileCase
	both := func(name string, run func(t *testing.T, n *testNode, transport string)) {
		for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
			cases = append(cases, hostileCase{name: tr + "/" + name, run: func(t *testing.T, n *testNode) { run(t, n, tr) }})
		}
	}
	one := func(name string, run func(t *testing.T, n *testNode)) {
		cases = append(cases, hostileCase{name: name, run: run})
	}
	closesWith := func(code protocols.CloseCode, reasonHas string, connect bool, input func() []byte) func(*testing.T, *testNode, string) {
		return func(t *testing.T, n *testNode, tr string) {
			r := dialRaw(t, n, tr, "")
			if connect {
				r.send(connectFrame())
			}
			r.write(input())
			expectClose(t, r.readUntil(10*time.Second, closed), code, reasonHas)
		}
	}
	errorsWith := func(id uint32, code protocols.ErrorCode, msgHas string, input func() []byte) func(*testing.T, *testNode, string) {
		return func(t *testing.T, n *testNode, tr string) {
			r := dialRaw(t, n, tr, "")
			r.send(connectFrame())
			r.write(input())
			a := r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(id) != nil })
			expectError(t, a, id, code, msgHas)
			// The session lives on and serves the next request.
			r.send(subscribeFrame(id+1, "after-error"))
			if a := r.readUntil(10*time.Second, func(a *answer) bool { return a.has(id+1, "subscribed") }); a.code != 0 {
				t.Fatalf("closed after the error: %d %q", a.code, a.reason)
			}
		}
	}

	// Malformed input: the session closes with the documented code.
	both("garbage length prefix", closesWith(protocols.CodeBadFrame, "bad length prefix", true, func() []byte {
		return []byte{0xff, 0xff, 0xff, 0xff, 0xff}
	}))
	both("undecodable body", closesWith(protocols.CodeBadFrame, "malformed", true, func() []byte {
		return rawFrame([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff})
	}))
	both("oversized frame prefix", closesWith(protocols.CodeFrameTooLarge, "limit 65536", true, func() []byte {
		return []byte{0x80, 0x80, 0x80, 0x01} // 2 MiB announced
	}))
	both("empty frame", closesWith(protocols.CodeBadFrame, "no kind", true, func() []byte { return []byte{0} }))
	both("subscribe before connect", closesWith(protocols.CodeBadFrame, "first frame must be connect", false, func() []byte {
		return encodeFrames(subscribeFrame(1, "x"))
	}))
	both("unknown kind before connect", closesWith(protocols.CodeBadFrame, "first frame must be connect", false, func() []byte {
		return unknownKindFrame(1)
	}))
	both("wrong protocol version", closesWith(protocols.CodeBadProtocol, "switchyard.v9", false, func() []byte {
		return encodeFrames(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: "switchyard.v9"}}})
	}))
	both("connect twice", closesWith(protocols.CodeBadFrame, "connect sent twice", true, func() []byte {
		return encodeFrames(connectFrame())
	}))
	one("websocket/text message", func(t *testing.T, n *testNode) {
		r := n.rawWS(t, "")
		r.connect()
		r.c.WriteMessage(websocket.TextMessage, []byte(`{"subscribe":{"channel":"x"}}`))
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeBadFrame, "text messages")
	})
	one("websocket/empty message", func(t *testing.T, n *testNode) {
		r := n.rawWS(t, "")
		r.connect()
		r.c.WriteMessage(websocket.BinaryMessage, nil)
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeBadFrame, "empty message")
	})
	one("websocket/oversized message", func(t *testing.T, n *testNode) {
		r := n.rawWS(t, "")
		r.connect()
		r.c.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20))
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeFrameTooLarge, "message over")
	})
	one("websocket/no connect in time", func(t *testing.T, n *testNode) {
		r := n.rawWS(t, "")
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeHandshakeTimeout, "no connect frame")
	})

	// Bad requests: an error frame, and the session lives on.
	both("unknown kind after connect", errorsWith(7, protocols.ErrCodeUnknownFrame, "unknown frame kind", func() []byte {
		return unknownKindFrame(7)
	}))
	both("invalid UTF-8 channel name", errorsWith(7, protocols.ErrCodeInvalidChannel, "non-ASCII", func() []byte {
		return channelRequestRaw(7, 4, []byte("room-\xff\xfe"))
	}))
	both("forbidden characters in channel name", errorsWith(7, protocols.ErrCodeInvalidChannel, "allowed: letters", func() []byte {
		return encodeFrames(subscribeFrame(7, "room with spaces"))
	}))
	both("60 KB channel name", errorsWith(7, protocols.ErrCodeInvalidChannel, "limit 128", func() []byte {
		return encodeFrames(subscribeFrame(7, strings.Repeat("a", 60<<10)))
	}))
	both("unsubscribe a 60 KB name", errorsWith(7, protocols.ErrCodeNotSubscribed, "not subscribed to", func() []byte {
		return encodeFrames(unsubscribeFrame(7, strings.Repeat("b", 60<<10)))
	}))
	both("server-only frame kind", errorsWith(7, protocols.ErrCodeUnknownFrame, "does not send message", func() []byte {
		return encodeFrames(&protocols.Frame{Id: 7, Kind: &protocols.Frame_Message{Message: &protocols.Message{Channel: "x"}}})
	}))
	both("200 subscriptions", func(t *testing.T, n *testNode, tr string) {
		r := dialRaw(t, n, tr, "")
		var frames []*protocols.Frame
		for i := range 200 {
			frames = append(frames, subscribeFrame(uint32(10+i), fmt.Sprintf("many-%d", i)))
		}
		r.send(append([]*protocols.Frame{connectFrame()}, frames...)...)
		a := r.readUntil(10*time.Second, func(a *answer) bool { return len(a.frames) >= 201 })
		if a.code != 0 {
			t.Fatalf("closed with %d %q", a.code, a.reason)
		}
		ok, refused := 0, 0
		for _, f := range a.frames {
			switch {
			case f.GetSubscribed() != nil:
				ok++
			case f.GetError().GetCode() == uint32(protocols.ErrCodeTooManySubscriptions):
				refused++
			}
		}
		if ok != 128 || refused != 72 {
			t.Fatalf("%d subscribed and %d refused, want 128 and 72", ok, refused)
		}
	})

	// Origins: foreign pages and DNS rebinding are refused.
	both("foreign origin", func(t *testing.T, n *testNode, tr string) {
		r := dialRaw(t, n, tr, "http://evil.example")
		r.send(connectFrame()) // WebTransport: the node sees the control stream once it carries data
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeOriginNotAllowed, "evil.example")
	})
	one("websocket/rebinding origin", func(t *testing.T, n *testNode) {
		// A page on a DNS name that resolves to the node: Origin and Host
		// agree, yet neither is one of the node's own URLs.
		h := http.Header{"Origin": {"http://rebind.example:28080"}, "Host": {"rebind.example:28080"}}
		c, _, err := websocket.DefaultDialer.Dial(n.wsURL, h)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &rawWS{t: t, c: c}
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeOriginNotAllowed, "rebind.example")
	})
	one("webtransport/rebinding origin", func(t *testing.T, n *testNode) {
		// The :authority cannot be forged here, but an Origin naming the
		// node's own port on another host is still refused.
		port := n.wtURL[strings.LastIndexByte(n.wtURL, ':')+1:]
		r := n.rawWT(t, "https://rebind.example:"+port)
		r.send(connectFrame())
		expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeOriginNotAllowed, "rebind.example")
	})

	// Floods: bounded memory, the right answer.
	both("ping flood", func(t *testing.T, n *testNode, tr string) {
		r := dialRaw(t, n, tr, "")
		r.send(connectFrame())
		before := liveHeap()
		burst := bytes.Repeat(encodeFrames(pingFrame()), 60<<10/3) // 60 KiB of pings
		for range 16 {
			if r.tryWrite(burst) != nil {
				break // closed for the flood
			}
		}
		a := r.readUntil(10*time.Second, closed)
		expectClose(t, a, protocols.CodePolicyViolation, "ping flood")
		pongs := 0
		for _, f := range a.frames {
			if f.GetPong() != nil {
				pongs++
			}
		}
		if pongs > 32 {
			t.Fatalf("%d pongs for a burst the limit cut at 32", pongs)
		}
		if grew := int64(liveHeap()) - int64(before); grew > 4<<20 {
			t.Fatalf("node heap grew by %d bytes", grew)
		}
	})
	both("burst of 3000 publishes, acks read promptly", func(t *testing.T, n *testNode, tr string) {
		r := dialRaw(t, n, tr, "")
		ch := "burst-" + tr
		r.send(connectFrame(), subscribeFrame(2, ch))
		const count = 3000
		go func() {
			// Back to back, 100 frames per write, while the test reads.
			for i := 0; i < count; i += 100 {
				var fs []*protocols.Frame
				for j := i; j < i+100; j++ {
					fs = append(fs, publishFrame(uint32(10+j), ch, fmt.Sprintf("m%d", j)))
				}
				r.send(fs...)
			}
		}()
		acks, msgs := 0, 0
		a := r.readUntil(30*time.Second, func(a *answer) bool {
			for _, f := range a.frames {
				switch {
				case f.GetPublishAck() != nil:
					if f.Id != uint32(10+acks) {
						t.Errorf("ack for %d, want %d", f.Id, 10+acks)
					}
					acks++
				case f.GetMessage() != nil:
					msgs++
				}
			}
			a.frames = a.frames[:0] // counted
			return acks == count && msgs == count
		})
		if a.code != 0 {
			t.Fatalf("closed after %d acks and %d messages: %d %q", acks, msgs, a.code, a.reason)
		}
	})
	both("requests sent without reading", func(t *testing.T, n *testNode, tr string) {
		r := dialRaw(t, n, tr, "")
		r.send(connectFrame())
		before := liveHeap()
		// Up to a million failing requests (each answered by an error
		// frame) and no read: once the answers fill the socket and 256 wait
		// in the node, the node stops reading this client, and drops it
		// when its writes time out.
		var batch []byte
		for i := range 500 {
			batch = append(batch, encodeFrames(unsubscribeFrame(uint32(10+i), "never-subscribed"))...)
		}
		const batches = 2000
		sent := 0
		for sent < batches && r.tryWrite(batch) == nil {
			sent++
		}
		grew := int64(liveHeap()) - int64(before)
		t.Logf("%s: wrote %d of %d batches of 500 requests before the node stopped reading; node heap grew %d KiB", tr, sent, batches, grew>>10)
		if sent >= batches {
			t.Fatalf("the node read %d requests from a client that reads nothing", batches*500)
		}
		if grew > 4<<20 {
			t.Fatalf("node heap grew by %d bytes", grew)
		}
		waitFor(t, 15*time.Second, "the non-reading session to be dropped", func() bool { return n.Sessions() == 2 })
	})

	// WebTransport only: extra streams and datagrams cost bounded memory.
	one("webtransport/extra streams and datagrams", func(t *testing.T, n *testNode) {
		r := n.rawWT(t, "")
		r.send(connectFrame())
		r.readUntil(10*time.Second, func(a *answer) bool { return a.has(1, "connected") })
		before := liveHeap()
		// The node's stream limits leave the client its request and control
		// streams and HTTP/3's own: no other stream can be opened, however
		// long the client waits.
		if _, err := r.sess.OpenStream(); err == nil {
			t.Fatal("opened a third bidirectional stream")
		}
		// Unidirectional: HTTP/3 may use three; a client that does not can
		// open the rest itself, but they are never read, and what it writes
		// on them only holds its own flow-control credit.
		junk := make([]byte, 1000)
		uni := 0
		for ; uni < 10; uni++ {
			str, err := r.sess.OpenUniStream()
			if err != nil {
				break
			}
			str.SetWriteDeadline(time.Now().Add(time.Second))
			for range 64 {
				str.Write(junk)
			}
		}
		if uni > 3 {
			t.Fatalf("opened %d unidirectional streams", uni)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := r.sess.OpenStreamSync(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiting for a stream: %v, want no stream ever", err)
		}
		// 10,000 datagrams of junk (no subscription has their alias):
		// dropped, with at most one error a second.
		for range 10000 {
			_ = r.sess.SendDatagram(junk)
		}
		grew := int64(liveHeap()) - int64(before)
		t.Logf("no extra bidirectional stream, %d unidirectional ones with 64 KB each, 10,000 datagrams; node heap grew %d KiB", uni, grew>>10)
		if grew > 4<<20 {
			t.Fatalf("node heap grew by %d bytes", grew)
		}
		// The control stream still works.
		r.send(subscribeFrame(2, "still-here"))
		a := r.readUntil(10*time.Second, func(a *answer) bool { return a.has(2, "subscribed") })
		if a.code != 0 {
			t.Fatalf("closed: %d %q", a.code, a.reason)
		}
		errs := 0
		for _, f := range a.frames {
			if f.Id == 0 && f.GetError() != nil {
				errs++
			}
		}
		if errs > 3 {
			t.Fatalf("%d error frames for junk datagrams, want at most one a second", errs)
		}
	})
	return cases
}

// Pings coalesce: however many a client sends while not reading, at most
// one pong waits for it (here with the flood limit lifted).
func TestPingsCoalesce(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Session.PingRate = -1 })
	for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
		t.Run(tr, func(t *testing.T) {
			r := dialRaw(t, n, tr, "")
			r.send(connectFrame())
			r.readUntil(10*time.Second, func(a *answer) bool { return a.has(1, "connected") })
			before := liveHeap()
			ping := encodeFrames(&protocols.Frame{Id: 9, Kind: &protocols.Frame_Ping{Ping: &protocols.Ping{}}})
			burst := bytes.Repeat(ping, 60<<10/len(ping))
			for range 20 { // 1.2 MB, 240,000 pings
				r.write(burst)
			}
			// The node is still working through the pings for a while
			// (~150 ms here), and what it allocates meanwhile counts in a
			// heap read then: take the least of a few reads over 250 ms,
			// the client still not reading. Pongs that did not coalesce
			// would stay queued and count in every read.
			grew := int64(liveHeap()) - int64(before)
			for range 5 {
				time.Sleep(50 * time.Millisecond)
				grew = min(grew, int64(liveHeap())-int64(before))
			}
			t.Logf("%s: node heap grew %d KiB over 240,000 pings", tr, grew>>10)
			if grew > 2<<20 {
				t.Fatalf("node heap grew by %d bytes", grew)
			}
			// A request after the pings is answered, after few pongs.
			r.send(subscribeFrame(2, "after-pings"))
			pongs := 0
			a := r.readUntil(10*time.Second, func(a *answer) bool {
				for _, f := range a.frames {
					if f.GetPong() != nil && f.Id != 9 {
						t.Fatalf("pong with id %d, want 9", f.Id)
					}
				}
				return a.has(2, "subscribed")
			})
			for _, f := range a.frames {
				if f.GetPong() != nil {
					pongs++
				}
			}
			if a.code != 0 {
				t.Fatalf("closed: %d %q", a.code, a.reason)
			}
			if pongs == 0 || pongs > 240000/8 {
				t.Fatalf("%d pongs for 240,000 pings", pongs)
			}
		})
	}
}
