// Package webtransport turns webtransport-go sessions into Switchyard
// sessions. The client opens one bidirectional stream, the control stream,
// and both sides write length-prefixed frames on it.
package webtransport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/switchyard/switchyard/protocols"
)

// Config tunes the WebTransport listener.
type Config struct {
	// TLSConfig serves the QUIC handshakes; required. It is cloned and
	// given the h3 ALPN.
	TLSConfig *tls.Config
	// Handler answers every HTTP/3 request; required. It should route the
	// WebTransport path to the Server.
	Handler http.Handler
	// Session tunes every session.
	Session protocols.SessionConfig
	// HandshakeTimeout bounds the wait for the control stream after the
	// CONNECT request. Zero: 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a QUIC connection that hears nothing. Zero: 60 s.
	IdleTimeout time.Duration
	// BatchWrites sends the packets of all connections in batches, several
	// per system call (see batchConn), when Serve gets a *net.UDPConn.
	BatchWrites bool
}

// What one QUIC connection of a client may hold open on the node: streams
// of each direction, and unread bytes in all of them.
const (
	maxClientStreams    = 2
	maxClientUniStreams = 3
	maxClientWindow     = 1 << 20
)

// Server serves HTTP/3 on a UDP socket and upgrades CONNECT requests on the
// path it is mounted at to sessions. Origin checks belong to the Acceptor
// (see package websocket).
type Server struct {
	// immutable after NewServer
	acc     protocols.Acceptor
	session protocols.SessionConfig
	timeout time.Duration
	wt      *webtransport.Server

	batch bool

	mu     sync.Mutex // guards the fields below
	ln     *quic.EarlyListener
	bc     *batchConn // nil unless BatchWrites
	closed bool
	conns  sync.WaitGroup // one per ServeQUICConn goroutine

	// Sessions read their control streams from goroutines of their own
	// (see reader.go), outside ServeQUICConn: Close waits for them too.
	gate    sync.RWMutex   // read-held to start a reader, held by Close to stop them
	stopped bool           // guarded by gate: no more readers
	readers sync.WaitGroup // one per reader goroutine
}

// NewServer prepares a server; call Serve to start it.
func NewServer(acc protocols.Acceptor, cfg Config) (*Server, error) {
	if cfg.TLSConfig == nil || cfg.Handler == nil {
		return nil, errors.New("webtransport: Config.TLSConfig and Config.Handler are required")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	h3 := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(cfg.TLSConfig.Clone()),
		Handler:   cfg.Handler,
		QUICConfig: &quic.Config{
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
			MaxIdleTimeout:                   cfg.IdleTimeout,
			KeepAlivePeriod:                  cfg.IdleTimeout / 3,
			// A client needs one request stream and one control stream
			// (bidirectional) and HTTP/3's three unidirectional streams
			// (control, QPACK encoder and decoder): it can open no other,
			// so none sits unread in the node's memory, and no goroutine
			// per session has to refuse them.
			MaxIncomingStreams:             maxClientStreams,
			MaxIncomingUniStreams:          maxClientUniStreams,
			InitialStreamReceiveWindow:     256 << 10,
			MaxStreamReceiveWindow:         1 << 20,
			InitialConnectionReceiveWindow: 384 << 10,
			MaxConnectionReceiveWindow:     maxClientWindow,
		},
	}
	return &Server{
		batch:   cfg.BatchWrites,
		acc:     acc,
		session: cfg.Session.WithDefaults(),
		timeout: cfg.HandshakeTimeout,
		wt: &webtransport.Server{
			H3:          h3,
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}, nil
}

// Serve answers HTTP/3 requests on pc. It returns when pc fails or Close
// is called. The server owns its QUIC listener (rather than leaving it to
// webtransport.Server.Serve) so that Close may run at any time, even
// before Serve: webtransport-go's own Serve and Close race on a WaitGroup.
func (s *Server) Serve(pc net.PacketConn) error {
	if u, ok := pc.(*net.UDPConn); ok && s.batch {
		bc := newBatchConn(u)
		s.mu.Lock()
		s.bc = bc
		s.mu.Unlock()
		pc = bc
	}
	ln, err := quic.ListenEarly(pc, s.wt.H3.TLSConfig, s.wt.H3.QUICConfig)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		bc := s.bc
		s.mu.Unlock()
		err := ln.Close()
		if bc != nil {
			_ = bc.Close()
		}
		return err
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			if errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = conn.CloseWithError(0, "server closed")
			continue
		}
		s.conns.Go(func() { _ = s.wt.ServeQUICConn(conn) })
		s.mu.Unlock()
	}
}

// Close stops the listener and every QUIC connection; close the sessions
// first so that their close codes get out.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	s.mu.Unlock()
	s.gate.Lock()
	s.stopped = true // sessions read on the goroutines they have
	s.gate.Unlock()
	err := s.wt.Close() // closes every QUIC connection it serves
	if ln != nil {
		_ = ln.Close()
	}
	s.conns.Wait()
	s.readers.Wait() // the connections are closed: every read fails, every session ends
	s.mu.Lock()
	bc := s.bc
	s.mu.Unlock()
	if bc != nil {
		_ = bc.Close() // stops its flusher; closes the socket
	}
	return err
}

// ServeHTTP upgrades a CONNECT request, admits the session and returns:
// the session goes on, its reads woken by the arrival of bytes on the
// control stream (see reader.go). The handler's goroutine, whose stack
// holds HTTP/3's request handling and the node's routing, is not kept for
// as long as the session lasts.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sess, err := s.wt.Upgrade(w, r)
	if err != nil {
		protocols.WriteHTTPError(w, http.StatusBadRequest, "bad_handshake", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(sess.Context(), s.timeout)
	str, err := sess.AcceptStream(ctx)
	cancel()
	if err != nil {
		_ = sess.CloseWithError(webtransport.SessionErrorCode(protocols.CodeHandshakeTimeout), "no control stream")
		return
	}
	protocols.ServePolled(newWire(s, sess, str, s.session.MaxFrameSize), protocols.WebTransport, r, s.acc, s.session)
}

type wire struct {
	srv  *Server
	sess *webtransport.Session
	str  *webtransport.Stream

	// The read side (reader.go): owned by the session's current read step,
	// or by the waiter between steps.
	src      io.Reader // str (in this package's tests, a stand-in)
	max      int       // the largest frame body accepted
	rd       *[]byte   // the read buffer, from readBuffers; nil between steps
	r, n     int       // (*rd)[r:n] is read from src and not yet returned
	rerr     error     // what src returned after the buffered bytes
	body     []byte    // the body of a frame larger than the read buffer
	peek     [16]byte  // what the waiter read, before it has a read buffer
	aborting atomic.Bool

	wmu     sync.Mutex // guards the fields below: a step's Arm and its waiter
	waking  bool       // a waiter runs a step
	rearmed bool       // that step armed: the waiter reads again after it
	next    func()     // the wake the step armed with

	// owned by the writer
	deadline protocols.Deadline

	mu     sync.Mutex // guards code and reason
	code   protocols.CloseCode
	reason string
	closed bool

	abortOnce sync.Once
}

func newWire(srv *Server, sess *webtransport.Session, str *webtransport.Stream, maxFrame int) *wire {
	return &wire{srv: srv, sess: sess, str: str, src: str, max: maxFrame}
}

// ReadFrame reads the next frame of a control stream; the peer's session
// close comes back as a *protocols.CloseError with Remote set. The Go
// client reads through it; the server's sessions read with the wire's own
// reader (reader.go), which keeps no buffer while the client is silent.
func ReadFrame(fr *protocols.FrameReader) ([]byte, error) {
	b, err := fr.Next()
	if err != nil {
		return nil, peerClose(err)
	}
	return b, nil
}

// peerClose turns the peer's session close into a *protocols.CloseError
// with Remote set; other errors pass as they are.
func peerClose(err error) error {
	var se *webtransport.SessionError
	if errors.As(err, &se) && se.Remote {
		return &protocols.CloseError{Code: protocols.CloseCode(se.ErrorCode), Reason: se.Message, Remote: true}
	}
	return err
}

// WriteFrames writes the batch at once (see writeBatch).
func (w *wire) WriteFrames(frames [][]byte, deadline time.Time) error {
	if err := w.deadline.Set(w.str.SetWriteDeadline, deadline); err != nil {
		return err
	}
	return writeBatch(w.str, nil, frames)
}

// writeBuffers recycles the buffers that join a batch's frames for one
// write: an idle session or subscription keeps none.
var writeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledWrite is the largest buffer writeBuffers keeps: a batch's
// bound by default (SessionConfig.BatchBytes).
const maxPooledWrite = 256 << 10

// writeBatch writes head and the frames with one Write. A lone frame is
// written as it is: quic-go copies what it does not send before Write
// returns, and frames are never changed once queued.
func writeBatch(w io.Writer, head []byte, frames [][]byte) error {
	if len(head) == 0 && len(frames) == 1 {
		_, err := w.Write(frames[0])
		return err
	}
	bp := writeBuffers.Get().(*[]byte)
	buf := append((*bp)[:0], head...)
	for _, f := range frames {
		buf = append(buf, f...)
	}
	_, err := w.Write(buf)
	if cap(buf) <= maxPooledWrite {
		*bp = buf[:0]
		writeBuffers.Put(bp)
	}
	return err
}

// CloseWrite ends the control stream after the frames already written
// (the last of them is Disconnect) and remembers the code for Abort. A
// client that reads Disconnect closes the session with the same code; one
// that does not is closed by Abort after the grace period.
func (w *wire) CloseWrite(code protocols.CloseCode, reason string, _ time.Time) error {
	w.mu.Lock()
	w.code, w.reason, w.closed = code, reason, true
	w.mu.Unlock()
	return w.str.Close()
}

var (
	_ protocols.DatagramWire = (*wire)(nil)
	_ protocols.StreamWire   = (*wire)(nil)
	_ protocols.PolledWire   = (*wire)(nil)
)

// SendDatagram sends one QUIC datagram; it blocks while quic-go's queue
// (32 datagrams) is full.
func (w *wire) SendDatagram(b []byte) error { return w.sess.SendDatagram(b) }

// ReceiveDatagram returns the client's next datagram.
func (w *wire) ReceiveDatagram() ([]byte, error) { return w.sess.ReceiveDatagram(w.sess.Context()) }

// OpenStream opens a unidirectional stream whose first bytes are header.
func (w *wire) OpenStream(header []byte, deadline time.Time) (protocols.StreamWriter, error) {
	ctx, cancel := context.WithDeadline(w.sess.Context(), deadline)
	defer cancel()
	str, err := w.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return &uniStream{str: str, head: header}, nil
}

// uniStream writes batches of frames on one unidirectional stream.
type uniStream struct {
	str      *webtransport.SendStream
	head     []byte // written before the first batch
	deadline protocols.Deadline
}

func (u *uniStream) WriteFrames(frames [][]byte, deadline time.Time) error {
	if err := u.deadline.Set(u.str.SetWriteDeadline, deadline); err != nil {
		return err
	}
	head := u.head
	u.head = nil
	return writeBatch(u.str, head, frames)
}

func (u *uniStream) Close() error { return u.str.Close() }

// Abort closes the session, with the code given to CloseWrite if any.
func (w *wire) Abort() {
	w.aborting.Store(true) // no more waiters: see Arm
	w.abortOnce.Do(func() {
		w.mu.Lock()
		code, reason, closed := w.code, w.reason, w.closed
		w.mu.Unlock()
		if !closed {
			code, reason = 0, "" // the transport failed or the peer left: no code to tell
		}
		if w.sess != nil { // nil only in this package's tests of the read side
			_ = w.sess.CloseWithError(webtransport.SessionErrorCode(code), reason)
		}
	})
}
