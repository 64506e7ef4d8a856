package websocket

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// A Front sits between a plain-TCP listener and its http.Server and
// answers the WebSocket upgrades to one path itself: it reads a new
// connection's first request, and when that is a well-formed upgrade to
// the path, upgrades it and starts the session on the goroutine that read
// it. net/http's per-connection machinery — its goroutine and 8 KiB of
// buffers, the request's parsing into maps, the handler chain, the hijack
// — is most of what a connect costs a node besides the system calls.
//
// Everything else goes to the http.Server unchanged, the bytes already
// read first: other paths and methods, HTTP/2, a request with a body,
// anything malformed or unusual (folded headers, a second Host, a head
// larger than 4 KiB, bytes sent after the head before the answer), and
// upgrades while admit says no (the node is stopping: net/http's handler
// answers 503). The front only takes what the handler would have
// upgraded; where it is unsure it leaves the answer to net/http, so that
// errors are the same JSON either way.
type Front struct {
	srv     *Server
	ln      net.Listener
	cfg     FrontConfig
	handoff chan acceptResult // connections (or an error) for the http.Server
	done    chan struct{}
	once    sync.Once
}

// FrontConfig is what a Front needs besides its listener.
type FrontConfig struct {
	// Path is the WebSocket endpoint's path, as the mux routes it ("/ws").
	Path string
	// Admit reports whether an upgrade may be taken now; when it says no
	// the request goes to the http.Server. Nil admits all.
	Admit func() bool
	// Upgraded is told of each connection the front upgrades itself: for
	// the http.Server's ConnState hook, which never sees them. Optional.
	Upgraded func(net.Conn)
	// HeaderTimeout bounds reading the request head (the http.Server's
	// ReadHeaderTimeout); 10 s when zero.
	HeaderTimeout time.Duration
}

type acceptResult struct {
	c   net.Conn
	err error
}

// maxHead is the longest request head the front reads. It is also the
// size of net/http's read buffer, which takes all the bytes handed on in
// one read (see replayConn).
const maxHead = 4 << 10

var headBufs = sync.Pool{New: func() any { b := make([]byte, maxHead); return &b }}

// Front returns a listener for an http.Server that serves ln: the server
// accepts from it what the front does not upgrade itself. Closing it
// closes ln.
func (s *Server) Front(ln net.Listener, cfg FrontConfig) *Front {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	f := &Front{srv: s, ln: ln, cfg: cfg, handoff: make(chan acceptResult), done: make(chan struct{})}
	go f.acceptLoop()
	return f
}

// Accept implements net.Listener for the http.Server.
func (f *Front) Accept() (net.Conn, error) {
	select {
	case a := <-f.handoff:
		return a.c, a.err
	case <-f.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it closes the listener under the front.
// Connections being read stay with whoever reads them.
func (f *Front) Close() error {
	var err error
	f.once.Do(func() {
		close(f.done)
		err = f.ln.Close()
	})
	return err
}

// Addr implements net.Listener.
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// acceptLoop accepts until the listener fails for good; every connection
// is read on a goroutine of its own. An error goes to the http.Server,
// which backs off before it calls Accept again, and so does this loop: it
// waits for the error to be taken.
func (f *Front) acceptLoop() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			select {
			case f.handoff <- acceptResult{err: err}:
			case <-f.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go f.serve(c)
	}
}

// pass hands c to the http.Server with the bytes read from it so far.
func (f *Front) pass(c net.Conn, read []byte) {
	_ = c.SetReadDeadline(time.Time{}) // the server sets its own
	if len(read) > 0 {
		c = &replayConn{Conn: c, pre: bytes.Clone(read)}
	}
	select {
	case f.handoff <- acceptResult{c: c}:
	case <-f.done:
		c.Close()
	}
}

// serve reads c's request head and upgrades it, or passes c on.
func (f *Front) serve(c net.Conn) {
	if _, ok := c.(syscall.Conn); !ok {
		f.pass(c, nil) // not a socket of its own (TLS): net/http's
		return
	}
	bp := headBufs.Get().(*[]byte)
	defer headBufs.Put(bp)
	buf := *bp
	prefix := "GET " + f.cfg.Path
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.HeaderTimeout))
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		b := buf[:n]
		if !bytes.HasPrefix(b, []byte(prefix[:min(n, len(prefix))])) {
			f.pass(c, b) // not an upgrade to the path
			return
		}
		if end := bytes.Index(b, []byte("\r\n\r\n")); end >= 0 {
			r := parseUpgrade(b[:end+4], f.cfg.Path)
			if r == nil || end+4 != n || (f.cfg.Admit != nil && !f.cfg.Admit()) {
				f.pass(c, b)
				return
			}
			_ = c.SetReadDeadline(time.Time{})
			f.upgrade(c, r)
			return
		}
		if err != nil {
			// Closed, or too slow (a timeout): net/http closes such a
			// connection without an answer too.
			c.Close()
			return
		}
		if n == len(buf) {
			f.pass(c, b) // net/http answers a head too large
			return
		}
	}
}

// upgrade answers r's upgrade on c, as Server.ServeHTTP would, and runs
// the session on this goroutine.
func (f *Front) upgrade(c net.Conn, r *http.Request) {
	r.RemoteAddr = c.RemoteAddr().String()
	rw := &frontWriter{c: c}
	ws, err := f.srv.upgrader.Upgrade(rw, r, nil)
	rw.release()
	if err != nil {
		rw.finish() // the upgrader's JSON error, if it did not hijack
		return
	}
	if f.cfg.Upgraded != nil {
		f.cfg.Upgraded(c)
	}
	f.srv.run(newWire(ws, f.srv.session.MaxFrameSize), rw.br, r)
}

// frontWriter is the http.ResponseWriter the upgrader answers through:
// Hijack hands it the connection with the session's read buffer, and an
// error answer is written by finish.
type frontWriter struct {
	c        net.Conn
	br       *bufio.Reader // the session's read buffer; nil until Hijack
	bw       *bufio.Writer // lent for the 101 answer; nil until Hijack
	hijacked bool

	header http.Header
	status int
	body   bytes.Buffer
}

func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *frontWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *frontWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// answerBufs lend the upgrader room for its 101 answer (it writes that
// through the hijacked writer's buffer); the connection keeps none.
var answerBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 512) }}

func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	w.br = bufio.NewReaderSize(w.c, readBufferSize)
	w.bw = answerBufs.Get().(*bufio.Writer)
	w.bw.Reset(w.c)
	return w.c, bufio.NewReadWriter(w.br, w.bw), nil
}

// release gives back the answer's buffer once Upgrade has returned (it
// writes the answer from the buffer's room with a plain Write).
func (w *frontWriter) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		answerBufs.Put(w.bw)
		w.bw = nil
	}
}

// finish writes the error answer of an upgrade that failed before the
// hijack, and closes the connection.
func (w *frontWriter) finish() {
	if w.hijacked {
		return // the upgrader closed the connection
	}
	status := w.status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for k, vs := range w.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("Content-Length: " + strconv.Itoa(w.body.Len()) + "\r\nConnection: close\r\n\r\n")
	b.Write(w.body.Bytes())
	_ = w.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = w.c.Write(b.Bytes())
	_ = w.c.Close()
}

// parseUpgrade parses head (a whole request head, through its empty line)
// when it is a plain HTTP/1.1 GET of path (with or without a query) whose
// every line is well formed and that announces no body; otherwise it
// returns nil and the request is net/http's. The upgrade's own headers
// are the upgrader's to check.
func parseUpgrade(head []byte, path string) *http.Request {
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		return nil
	}
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	target, ok := bytes.CutPrefix(line, []byte("GET "))
	if !ok {
		return nil
	}
	if target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1")); !ok {
		return nil
	}
	p, query, _ := bytes.Cut(target, []byte("?"))
	if string(p) != path || !visible(target) {
		return nil
	}
	h := make(http.Header, 8)
	host := ""
	for {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !token(name) {
			return nil
		}
		value = bytes.Trim(value, " \t")
		if !fieldValue(value) {
			return nil
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		switch key {
		case "Host":
			if host != "" || len(value) == 0 || !httpguts.ValidHostHeader(string(value)) {
				return nil // net/http answers 400
			}
			host = string(value)
			continue // net/http moves it to Request.Host
		case "Content-Length", "Transfer-Encoding", "Expect":
			return nil // a body, or a wish net/http handles
		}
		h[key] = append(h[key], string(value))
	}
	if host == "" {
		return nil
	}
	return &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: path, RawQuery: string(query)},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       host,
		RequestURI: string(target),
	}
}

// visible reports whether b is printable ASCII without spaces or '#'.
func visible(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// token reports whether b is an RFC 9110 token (a header field's name).
func token(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// fieldValue reports whether b is a header field's value without control
// characters (other than tabs).
func fieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// replayConn is a connection handed to the http.Server after the front
// read from it: its reads return those bytes first.
type replayConn struct {
	net.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the connection under c (for the ConnState hook that
// counts connections, as for tls.Conn).
func (c *replayConn) NetConn() net.Conn { return c.Conn }

// CloseWrite keeps net/http's half-close.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn hands out the socket once the replayed bytes are read: a
// session upgraded by net/http then reads and writes it directly, as on
// any plain-TCP connection. (net/http's first read takes all of them:
// they are at most its buffer's size.)
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	if len(c.pre) > 0 {
		return nil, errors.ErrUnsupported
	}
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
