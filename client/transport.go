package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/switchyard/switchyard/protocols"
	wsadapter "github.com/switchyard/switchyard/protocols/websocket"
	wtadapter "github.com/switchyard/switchyard/protocols/webtransport"
)

// transport is one connection to a server. The client's read loop alone
// calls readFrame and finish, its writer alone calls writeFrames; close and
// abort may come from anywhere and more than once.
type transport interface {
	// name is protocols.WebSocket or protocols.WebTransport.
	name() string
	// readFrame returns the next frame body (no length prefix), valid until
	// the next call. A close by the server is reported as a
	// *protocols.CloseError with Remote set.
	readFrame() ([]byte, error)
	// writeFrames writes length-prefixed frames in one transport write:
	// one WebSocket message, one control-stream write.
	writeFrames(frames [][]byte, deadline time.Time) error
	// close ends the session with code and reason (code 0: a normal
	// close) and returns without waiting for the server's answer.
	close(code protocols.CloseCode, reason string)
	// finish completes the close the server began with a Disconnect frame.
	finish(code protocols.CloseCode, reason string)
	// abort releases the transport at once; a blocked readFrame returns.
	abort()
}

var (
	_ transport = (*wsTransport)(nil)
	_ transport = (*wtTransport)(nil)
)

// wsTransport is a WebSocket connection: each binary message carries one
// or more whole frames.
type wsTransport struct {
	c  *websocket.Conn
	fr *wsadapter.FrameReader // owned by the read loop

	abortOnce sync.Once
}

func dialWebSocket(ctx context.Context, rawURL string, tlsConf *tls.Config, origin string) (*wsTransport, error) {
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = nil // HTTP/1.1 upgrade
	d := websocket.Dialer{
		TLSClientConfig:  tlsConf,
		HandshakeTimeout: defaultDialTimeout,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  32 << 10,
	}
	var hdr http.Header
	if origin != "" {
		hdr = http.Header{"Origin": {origin}}
	}
	c, rsp, err := d.DialContext(ctx, rawURL, hdr)
	if err != nil {
		if rsp != nil {
			return nil, handshakeError(rsp, err)
		}
		return nil, err
	}
	c.SetReadLimit(maxMessageSize)
	return &wsTransport{c: c, fr: wsadapter.NewFrameReader(c, maxFrameSize, maxMessageSize, 1<<20)}, nil
}

// handshakeError describes a refused WebSocket upgrade, with the server's
// JSON error body when there is one.
func handshakeError(rsp *http.Response, err error) error {
	var he protocols.HTTPError
	if rsp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(rsp.Body, 4<<10))
		if json.Unmarshal(body, &he) == nil && he.Code != "" {
			return fmt.Errorf("%w: %s: %s: %s", err, rsp.Status, he.Code, he.Message)
		}
	}
	return fmt.Errorf("%w: %s", err, rsp.Status)
}

func (t *wsTransport) name() string { return protocols.WebSocket }

func (t *wsTransport) readFrame() ([]byte, error) { return t.fr.Next() }

func (t *wsTransport) writeFrames(frames [][]byte, deadline time.Time) error {
	if err := t.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if len(frames) == 1 {
		return t.c.WriteMessage(websocket.BinaryMessage, frames[0])
	}
	w, err := t.c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	for _, f := range frames {
		if _, err := w.Write(f); err != nil {
			return err
		}
	}
	return w.Close()
}

func (t *wsTransport) close(code protocols.CloseCode, reason string) {
	if code == 0 {
		code = websocket.CloseNormalClosure
	}
	msg := websocket.FormatCloseMessage(int(code), protocols.TrimReason(reason))
	_ = t.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
}

// finish keeps reading, so that gorilla answers the server's close frame,
// but not for longer than the grace period.
func (t *wsTransport) finish(protocols.CloseCode, string) {
	_ = t.c.SetReadDeadline(time.Now().Add(closeGrace))
}

func (t *wsTransport) abort() {
	t.abortOnce.Do(func() { _ = t.c.Close() })
}

// wtTransport is a WebTransport session and its control stream, on which
// both sides write length-prefixed frames.
type wtTransport struct {
	tr    *webtransport.Transport
	qconn *quic.Conn // owned: closed after the session, see abort
	sess  *webtransport.Session
	str   *webtransport.Stream
	fr    *protocols.FrameReader // owned by the read loop

	buf []byte // owned by the writer: one batch

	closeOnce sync.Once
	abortOnce sync.Once
}

func dialWebTransport(ctx context.Context, rawURL string, tlsConf *tls.Config, origin string) (*wtTransport, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	quicConf := &quic.Config{
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
		KeepAlivePeriod:                  10 * time.Second,
	}
	tr := &webtransport.Transport{TLSClientConfig: tlsConf, QUICConfig: quicConf}
	// The client dials the QUIC connection itself rather than through
	// tr.Dial, which closes the connection the moment the session ends, so
	// fast that the session's close capsule (and its code) is lost.
	qconn, err := quic.DialAddrEarly(ctx, u.Host, tlsConf, quicConf)
	if err != nil {
		// Not tr.Close: before its first use it panics (webtransport-go
		// v0.13.0 initializes a Transport lazily), and there is nothing to
		// release yet.
		return nil, err
	}
	t := &wtTransport{tr: tr, qconn: qconn}
	cc, err := tr.NewClientConn(qconn)
	if err != nil {
		t.abort()
		return nil, err
	}
	var hdr http.Header
	if origin != "" {
		hdr = http.Header{"Origin": {origin}}
	}
	_, t.sess, err = cc.Dial(ctx, rawURL, hdr)
	if err != nil {
		t.abort()
		return nil, err
	}
	t.str, err = t.sess.OpenStreamSync(ctx)
	if err != nil {
		t.abort()
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	t.fr = protocols.NewFrameReader(t.str, maxFrameSize)
	return t, nil
}

func (t *wtTransport) name() string { return protocols.WebTransport }

func (t *wtTransport) readFrame() ([]byte, error) { return wtadapter.ReadFrame(t.fr) }

// writeFrames copies a batch into one buffer and writes it at once.
func (t *wtTransport) writeFrames(frames [][]byte, deadline time.Time) error {
	if err := t.str.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if len(frames) == 1 {
		_, err := t.str.Write(frames[0])
		return err
	}
	buf := t.buf[:0]
	for _, f := range frames {
		buf = append(buf, f...)
	}
	if cap(buf) <= batchBytes {
		t.buf = buf
	}
	_, err := t.str.Write(buf)
	return err
}

// close closes the session with code, then gives the close capsule a
// moment to reach the server before it closes the QUIC connection: quic-go
// does not flush stream data ahead of CONNECTION_CLOSE. Only the first call
// has an effect; later ones wait for it.
func (t *wtTransport) close(code protocols.CloseCode, reason string) {
	t.closeOnce.Do(func() {
		// A session that has ended already has no close capsule to send.
		if t.sess != nil && t.sess.Context().Err() == nil {
			_ = t.sess.CloseWithError(webtransport.SessionErrorCode(code), protocols.TrimReason(reason))
			stats := t.qconn.ConnectionStats()
			linger := min(max(2*stats.SmoothedRTT+4*stats.MeanDeviation, minCloseLinger), maxCloseLinger)
			timer := time.NewTimer(linger)
			select {
			case <-timer.C:
			case <-t.qconn.Context().Done():
			}
			timer.Stop()
		}
		_ = t.qconn.CloseWithError(0, "")
	})
}

// finish echoes the server's close: after Disconnect the server ends the
// control stream and waits for the client to close the session.
func (t *wtTransport) finish(code protocols.CloseCode, reason string) {
	t.close(code, reason)
}

// abort closes the session (keeping the code of an earlier close), the
// QUIC connection and the Transport. A blocked readFrame returns at once;
// abort itself may take the close linger.
func (t *wtTransport) abort() {
	t.abortOnce.Do(func() {
		t.close(0, "")
		_ = t.tr.Close()
	})
}
