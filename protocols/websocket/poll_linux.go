//go:build linux

package websocket

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/protocols"
)

// Reads woken by readiness (protocols.PolledWire): a session whose peer is
// silent has no goroutine blocked in a read. One epoll instance, watched
// by one goroutine, holds the sessions' sockets, each registered
// level-triggered and one-shot: when a socket becomes readable (or the
// peer hangs up) the poller starts one read step for its session, which
// reads through gorilla/websocket while bytes are buffered and then arms
// the socket again. Because the registration is level-triggered, arming a
// socket that already has bytes waiting reports it at once, so nothing is
// lost between the step's last read and the arming.
//
// The epoll data of a socket is its session's id, never the fd number, so
// a stale event for a closed socket whose fd was reused is dropped. A
// socket leaves the epoll set (EPOLL_CTL_DEL) before it is closed.
//
// The socket stays in the Go runtime's own poller too: gorilla's reads go
// through net.Conn as before, and a step that finds only part of a frame
// waits there for the rest. Before it lets gorilla read, a step looks at
// what the socket has without blocking (Buffered): a ping or pong of the
// WebSocket layer that has arrived whole between two messages is answered
// there, as gorilla would, so that a client's lone ping does not leave a
// step waiting in gorilla for the next message. While a session is armed
// it holds no read buffer either (letGo): an idle session keeps its
// gorilla.Conn, its wire and its entry here, and no buffer or stack.

// pollReads turns readiness-woken reads on; tests turn them off to compare.
var pollReads = true

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// poller is an epoll instance and the sessions registered in it. One runs
// while there are polled sessions: the first starts it, and it stops when
// the last one leaves, so that a process (or a test) without sessions
// keeps no goroutine.
type poller struct {
	ep   int
	file *os.File        // ep, in the Go runtime's poller: loop parks there
	raw  syscall.RawConn // file's
	stop [2]int          // a pipe in the epoll set (id 0): a byte tells loop to end

	watches map[uint64]*polledWire // under pollers.mu
}

var pollers struct {
	mu   sync.Mutex
	cur  *poller // the running poller; nil: none
	next uint64  // the last id given; ids start at 1
}

// register adds w to the running poller, starting one if none runs.
func register(w *polledWire) (*poller, uint64, error) {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	if pollers.cur == nil {
		p, err := startPoller()
		if err != nil {
			return nil, 0, err
		}
		pollers.cur = p
	}
	pollers.next++
	pollers.cur.watches[pollers.next] = w
	return pollers.cur, pollers.next, nil
}

func startPoller() (*poller, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// The epoll fd is itself watched by the Go runtime's poller (an
	// epoll fd is readable while it has events): loop parks its goroutine
	// there instead of blocking a thread in epoll_wait, which the runtime
	// would see as a blocking system call and hand the thread's P to
	// another thread for, waking one on every wait.
	if err := syscall.SetNonblock(ep, true); err != nil {
		syscall.Close(ep)
		return nil, err
	}
	p := &poller{ep: ep, file: os.NewFile(uintptr(ep), "epoll"), watches: make(map[uint64]*polledWire)}
	raw, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return nil, err
	}
	p.raw = raw
	if err := syscall.Pipe2(p.stop[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		p.file.Close()
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, p.stop[0], &ev); err != nil {
		p.close()
		return nil, err
	}
	go p.loop()
	return p, nil
}

func (p *poller) close() {
	p.file.Close()
	syscall.Close(p.stop[0])
	syscall.Close(p.stop[1])
}

// wait returns the next events, parking in the Go runtime's poller while
// there are none.
func (p *poller) wait(events []syscall.EpollEvent) (int, error) {
	var n int
	var werr error
	err := p.raw.Read(func(uintptr) bool {
		for {
			n, werr = syscall.EpollWait(p.ep, events, 0)
			if werr != syscall.EINTR {
				return n > 0 || werr != nil
			}
		}
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}

// remove takes a session that will never arm again out of p; after the
// last one p stops (the next session starts a new poller).
func (p *poller) remove(id uint64) {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	delete(p.watches, id)
	if len(p.watches) == 0 && pollers.cur == p {
		pollers.cur = nil
		_, _ = syscall.Write(p.stop[1], []byte{1})
	}
}

// loop waits for readiness and starts the read steps. It never reads a
// session's socket or blocks on a session: a step runs on a goroutine of
// its own.
func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*polledWire, 0, len(events))
	for {
		n, err := p.wait(events)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // not expected of a valid epoll fd; do not spin
			continue
		}
		stop := false
		pollers.mu.Lock()
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				stop = true
			} else if w := p.watches[id]; w != nil {
				ready = append(ready, w)
			}
		}
		pollers.mu.Unlock()
		for i, w := range ready {
			w.ready()
			ready[i] = nil
		}
		ready = ready[:0]
		if stop {
			p.close() // no session is left in it
			return
		}
	}
}

// polledWire is a session's wire whose reads the poller wakes.
type polledWire struct {
	*wire
	br  *bufio.Reader // gorilla's read buffer (hijack.go), filled from src
	src sockReader
	sc  syscall.RawConn // the socket, for epoll_ctl
	p   *poller
	id  uint64 // the key of the socket's epoll data

	// owned by the read step
	ctlErr error // a control frame's handler failed
	let    bool  // the read buffer is let go while armed (Arm); fetch takes a new one

	mu     sync.Mutex
	wake   func() // the read step Arm was given
	added  bool   // the socket is in the epoll set
	armed  bool   // a readiness, or Abort, starts wake
	closed bool   // aborted: never armed again
}

// newPolledWire returns w with readiness-woken reads, or nil when its
// connection is not a socket of its own (TLS) or there is no poller. br
// must be the buffer gorilla reads w's connection through.
func newPolledWire(w *wire, br *bufio.Reader) *polledWire {
	if !pollReads || br == nil {
		return nil
	}
	// The connection must read straight from the socket: a TLS connection
	// (not a syscall.Conn) holds decrypted bytes the socket no longer has.
	sc, ok := w.c.NetConn().(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	pw := &polledWire{wire: w, br: br, sc: raw}
	pw.src = sockReader{nc: w.c.NetConn(), raw: raw}
	if pw.p, pw.id, err = register(pw); err != nil {
		return nil
	}
	// gorilla has read nothing yet (the hijack found nothing buffered), so
	// the buffer can change its source.
	br.Reset(&pw.src)
	return pw
}

// run runs the session on the calling goroutine: with readiness-woken
// reads it returns once the session is admitted and its reads are armed.
func (s *Server) run(w *wire, br *bufio.Reader, r *http.Request) {
	if pw := newPolledWire(w, br); pw != nil {
		protocols.ServePolled(pw, protocols.WebSocket, r, s.acc, s.session)
		return
	}
	protocols.Serve(w, protocols.WebSocket, r, s.acc, s.session)
}

// Buffered implements protocols.PolledWire: frames left of the last
// message, or bytes in gorilla's read buffer. When the buffer is empty it
// takes what the socket has without blocking, and between messages it
// answers the pings (and takes the pongs) that are whole in the buffer.
func (w *polledWire) Buffered() bool {
	w.fetch()
	if len(w.fr.rest) > 0 || w.ctlErr != nil {
		return true
	}
	for {
		if w.br.Buffered() == 0 {
			if w.src.drained {
				// The last read emptied the socket: arm without asking it
				// again. Bytes that came since make the level-triggered
				// arming fire at once.
				return false
			}
			w.src.nonblock = true
			_, err := w.br.Peek(1)
			w.src.nonblock = false
			if errors.Is(err, errWouldBlock) {
				return false
			}
			if err != nil {
				return true // end of stream or a failure: ReadFrame meets it again
			}
		}
		if !w.control() {
			return true
		}
	}
}

// ReadFrame is the wire's, after the failure of a control frame's handler.
func (w *polledWire) ReadFrame() ([]byte, error) {
	w.fetch()
	if w.ctlErr != nil {
		return nil, w.ctlErr
	}
	return w.wire.ReadFrame()
}

// control handles a ping or pong frame that is whole at the head of the
// read buffer, as gorilla's advanceFrame would, and reports whether there
// was one. Anything else (a data or close frame, a frame not yet whole, a
// malformed one) is left to gorilla. Called between messages only.
func (w *polledWire) control() bool {
	b, _ := w.br.Peek(w.br.Buffered()) // what is buffered: no read
	// FIN set, RSV clear, ping or pong; masked (a client's); at most 125
	// bytes, so a 7-bit length.
	if len(b) < 6 || b[0]&0xf0 != 0x80 || b[1]&0x80 == 0 || b[1]&0x7f > 125 {
		return false
	}
	op := int(b[0] & 0x0f)
	if op != websocket.PingMessage && op != websocket.PongMessage {
		return false
	}
	n := int(b[1] & 0x7f)
	if len(b) < 6+n {
		return false
	}
	var payload [125]byte
	key := b[2:6]
	for i, c := range b[6 : 6+n] {
		payload[i] = c ^ key[i&3]
	}
	_, _ = w.br.Discard(6 + n)
	handler := w.c.PongHandler()
	if op == websocket.PingMessage {
		handler = w.c.PingHandler()
	}
	if err := handler(string(payload[:n])); err != nil {
		w.ctlErr = err
	}
	return true
}

// letGo drops the read buffer, empty when the step arms, so that a session
// waiting for readiness holds none. gorilla reads nothing until the next
// step, which fetches a new read buffer first. (The message buffer stays:
// a busy sender would grow it again on every wake.)
func (w *polledWire) letGo() {
	if w.let || w.br.Buffered() > 0 {
		return // never bytes of the peer's (Arm follows a false Buffered)
	}
	*w.br = bufio.Reader{}
	w.let = true
}

// fetch gives gorilla a read buffer again after letGo.
func (w *polledWire) fetch() {
	if w.let {
		*w.br = *bufio.NewReaderSize(&w.src, readBufferSize)
		w.let = false
	}
}

// errWouldBlock is sockReader's in non-blocking mode: the socket has
// nothing now.
var errWouldBlock = errors.New("websocket: read would block")

// sockReader is what gorilla's read buffer reads from: the connection,
// or, in non-blocking mode, the socket with one read(2) that does not wait.
type sockReader struct {
	nc       net.Conn
	raw      syscall.RawConn
	nonblock bool // owned by the read step
	// drained: the last read returned less than it asked for, so the
	// socket had no more then (a TCP read returns short only when its
	// receive queue is empty). Owned by the read step; Arm clears it, so
	// that the next step asks the socket first.
	drained bool
}

func (s *sockReader) Read(p []byte) (int, error) {
	n, err := s.read(p)
	s.drained = err == nil && n < len(p)
	return n, err
}

func (s *sockReader) read(p []byte) (int, error) {
	if !s.nonblock {
		return s.nc.Read(p)
	}
	var n int
	var rerr error
	err := s.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // never wait
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Arm implements protocols.PolledWire.
func (w *polledWire) Arm(wake func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	op := syscall.EPOLL_CTL_MOD
	if !w.added {
		op = syscall.EPOLL_CTL_ADD
	}
	w.src.drained = false
	w.letGo()
	if err := w.ctl(op); err != nil {
		w.fetch()
		return false
	}
	// The poller reads armed under mu, which is held until both are set.
	w.wake, w.added, w.armed = wake, true, true
	return true
}

// ctl runs epoll_ctl on the socket while it is sure to be open (the
// RawConn holds a reference to the fd).
func (w *polledWire) ctl(op int) error {
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(w.id)), Pad: int32(uint32(w.id >> 32))}
	var err error
	if cerr := w.sc.Control(func(fd uintptr) { err = syscall.EpollCtl(w.p.ep, op, int(fd), &ev) }); cerr != nil {
		return cerr
	}
	return err
}

// ready is the poller's: the socket is readable or has failed.
func (w *polledWire) ready() {
	w.mu.Lock()
	fire, wake := w.armed, w.wake
	w.armed = false
	w.mu.Unlock()
	if fire {
		go wake()
	}
}

// Abort takes the socket out of the epoll set, closes it, and starts the
// read step if it was armed: it reads the error and ends the session.
func (w *polledWire) Abort() {
	w.mu.Lock()
	first, fire, wake := !w.closed, w.armed, w.wake
	w.closed, w.armed = true, false
	if first && w.added {
		_ = w.ctl(syscall.EPOLL_CTL_DEL)
	}
	w.mu.Unlock()
	if first {
		w.p.remove(w.id)
	}
	w.wire.Abort()
	if fire {
		go wake()
	}
}

var (
	_ protocols.PolledWire = (*polledWire)(nil)
	_ protocols.DirectWire = (*polledWire)(nil)
)
