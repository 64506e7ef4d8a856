// Package websocket turns gorilla/websocket connections into Switchyard
// sessions. Each binary message carries one or more whole length-prefixed
// frames; the writer packs a batch of frames into one message.
package websocket

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/protocols"
)

// Config tunes the WebSocket listener. The zero value is usable.
type Config struct {
	// Session tunes every session.
	Session protocols.SessionConfig
	// HandshakeTimeout bounds the HTTP upgrade. Zero: 10 s.
	HandshakeTimeout time.Duration
}

// Server upgrades HTTP requests to WebSocket sessions and hands them to an
// Acceptor. Origin checks belong to the Acceptor, which closes a session
// from a foreign origin with CodeOriginNotAllowed before reading a frame,
// so that browsers learn why.
type Server struct {
	acc      protocols.Acceptor
	session  protocols.SessionConfig
	upgrader websocket.Upgrader
}

// NewServer returns an http.Handler for the /ws endpoint.
func NewServer(acc protocols.Acceptor, cfg Config) *Server {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	return &Server{
		acc:     acc,
		session: cfg.Session.WithDefaults(),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: cfg.HandshakeTimeout,
			// Zero: gorilla reads through the buffer the hijack hands it,
			// the session's own 1 KiB one (hijack.go), not the HTTP
			// server's 4 KiB one, which would be 4 KiB of every idle
			// session. The write buffer comes from a pool for the time of
			// one message, so idle sessions hold none; 16 KiB carries ~200
			// small frames in one syscall.
			ReadBufferSize:  0,
			WriteBufferSize: 16 << 10,
			WriteBufferPool: &sync.Pool{},
			CheckOrigin:     func(*http.Request) bool { return true },
			Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
				protocols.WriteHTTPError(w, status, "bad_handshake", reason.Error())
			},
		},
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hj := &hijacker{ResponseWriter: w}
	c, err := s.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		return // the upgrader has answered with a JSON error
	}
	// The session runs on a goroutine of its own and the handler returns:
	// net/http then lets go of the connection's state (its 4 KiB write
	// buffer, the parsed request), which a handler that kept running
	// would hold for the session's lifetime (≈ 6 KiB of an idle session).
	// Where it can, that goroutine only admits the session: its reads are
	// then woken by readiness (poll_linux.go).
	go s.run(newWire(c, s.session.MaxFrameSize), hj.br, r)
}

type wire struct {
	c  *websocket.Conn
	fr *FrameReader // owned by the read loop

	raw syscall.RawConn // nil: no direct writes (TLS); see direct.go

	// owned by the writer
	deadline protocols.Deadline

	wmu     sync.Mutex // held for every write to the connection
	pending []byte     // under wmu: the tail of a direct write, written before anything else
	dirty   bool       // under wmu: a blocking write may have left a deadline on the socket

	abortOnce sync.Once
}

func newWire(c *websocket.Conn, maxFrame int) *wire {
	w := &wire{c: c, fr: NewFrameReader(c, maxFrame, protocols.MaxMessageSize(maxFrame), 64<<10)}
	w.setDirect()
	return w
}

func (w *wire) ReadFrame() ([]byte, error) { return w.fr.Next() }

// FrameReader reads the frames of a WebSocket connection's binary messages,
// each holding one or more whole frames. The server's sessions and the Go
// client both read through it.
type FrameReader struct {
	c          *websocket.Conn
	maxFrame   int
	maxMessage int
	keep       int // largest buffer kept for the next message

	msg  []byte // the current message
	rest []byte // frames of msg not yet returned
}

// NewFrameReader reads frames of at most maxFrame bytes from messages of
// at most maxMessage bytes, keeping a read buffer of up to keep bytes
// between messages.
func NewFrameReader(c *websocket.Conn, maxFrame, maxMessage, keep int) *FrameReader {
	return &FrameReader{c: c, maxFrame: maxFrame, maxMessage: maxMessage, keep: keep}
}

// Next returns the next frame body, valid until the following call. A
// close frame from the peer is returned as a *protocols.CloseError with
// Remote set; a text message or an empty one wraps protocols.ErrMalformed,
// an oversized one protocols.ErrFrameTooLarge.
func (r *FrameReader) Next() ([]byte, error) {
	if len(r.rest) == 0 {
		if err := r.readMessage(); err != nil {
			return nil, err
		}
	}
	body, rest, err := protocols.NextFrame(r.rest, r.maxFrame)
	if err != nil {
		return nil, err
	}
	r.rest = rest
	return body, nil
}

func (r *FrameReader) readMessage() error {
	typ, mr, err := r.c.NextReader()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return &protocols.CloseError{Code: protocols.CloseCode(ce.Code), Reason: ce.Text, Remote: true}
		}
		return err
	}
	if typ != websocket.BinaryMessage {
		return fmt.Errorf("%w: text messages are not part of switchyard.v1; send binary frames", protocols.ErrMalformed)
	}
	limit := r.maxMessage
	buf := r.msg[:0]
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return fmt.Errorf("%w: message over %d bytes", protocols.ErrFrameTooLarge, limit)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := mr.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return fmt.Errorf("%w: message over %d bytes", protocols.ErrFrameTooLarge, limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if len(buf) == 0 {
		return fmt.Errorf("%w: empty message", protocols.ErrMalformed)
	}
	// Keep small buffers for the next message; let a rare big one go.
	if cap(buf) <= r.keep {
		r.msg = buf
	} else {
		r.msg = nil
	}
	r.rest = buf
	return nil
}

// WriteFrames packs the batch into one binary message.
func (w *wire) WriteFrames(frames [][]byte, deadline time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.flushPending(deadline); err != nil {
		return err
	}
	w.dirty = true
	if err := w.deadline.Set(w.c.SetWriteDeadline, deadline); err != nil {
		return err
	}
	mw, err := w.c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	for _, f := range frames {
		if _, err := mw.Write(f); err != nil {
			return err
		}
	}
	return mw.Close()
}

func (w *wire) CloseWrite(code protocols.CloseCode, reason string, deadline time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.flushPending(deadline); err != nil {
		return err
	}
	w.dirty = true
	return w.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(int(code), reason), deadline)
}

func (w *wire) Abort() {
	w.abortOnce.Do(func() { _ = w.c.Close() })
}
