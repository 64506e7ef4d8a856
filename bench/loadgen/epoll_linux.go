//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// epollReaders is the -readers epoll path: GOMAXPROCS goroutines, each
// owning an epoll instance (edge-triggered) and reading the sockets of many
// subscribers with non-blocking recvmsg(2), instead of a goroutine per
// subscriber blocked in gorilla's read. Each parses the frames itself
// (wsReader) and hands every message to the protocol's handle or
// handleText, as readSubscriber does. The sockets have receive
// timestamps on, so that every delivery also has the time its bytes
// arrived, before the load generator got a CPU to read them
// (subscriber.arrival, Result.Arrival*). Writes stay with gorilla
// (s.c.WriteMessage in handle, WriteControl for pongs and closes): they
// only write to the socket, and nothing but the reader reads from it.
type epollReaders struct {
	rs []*epollReader
}

type epollReader struct {
	l    *load
	epfd int
	f    *os.File // epfd, in Go's poller: the loop waits there
	buf  []byte   // one recvmsg(2) at a time; parsed in place
	oob  []byte   // the control messages of that recvmsg: its receive timestamp

	mu    sync.Mutex           // guards conns
	conns map[int32]*epollConn // by subscriber index
}

// epollConn is one subscriber's socket in a reader.
type epollConn struct {
	s  *subscriber
	rc syscall.RawConn
	fr wsReader
}

// epollBuf is the size of a reader's read buffer: a read takes whatever
// the socket holds, up to this.
const epollBuf = 256 << 10

// epollOOB is the size of a reader's control-message buffer: a TCP
// recvmsg brings one SCM_TIMESTAMPNS (32 bytes on 64-bit Linux); the
// rest is headroom, so that it is never cut short.
const epollOOB = 128

func startEpollReaders(l *load) (*epollReaders, error) {
	e := &epollReaders{}
	for range runtime.GOMAXPROCS(0) {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err == nil {
			err = syscall.SetNonblock(fd, true)
		}
		if err != nil {
			e.stop()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		// An epoll descriptor is itself pollable: readable while it has
		// events. In Go's poller the loop parks like any goroutine
		// waiting for a socket instead of blocking a thread in
		// epoll_wait (which would cost a thread hand-off each time).
		f := os.NewFile(uintptr(fd), "epoll")
		e.rs = append(e.rs, &epollReader{l: l, epfd: fd, f: f, buf: make([]byte, epollBuf), oob: make([]byte, epollOOB), conns: map[int32]*epollConn{}})
	}
	for _, r := range e.rs {
		l.readers.Go(r.loop)
	}
	return e, nil
}

// stop closes the epoll instances: their loops end, and the subscribers
// left in them with no error (called once the run is closing and its
// connections are closed).
func (e *epollReaders) stop() {
	for _, r := range e.rs {
		_ = r.f.Close()
	}
}

// add hands subscriber s to a reader once its connection is dialed and its
// subscribe request written. It turns receive timestamps on first, so
// that every read in the set has one. rest is what the connection read
// past the HTTP handshake (gorilla's buffer); it is handled first, here,
// before the socket joins the epoll set, so that order holds (it has no
// arrival time, and holds no publication: it came before the subscribe
// request was answered). On an error the subscriber has ended.
func (e *epollReaders) add(s *subscriber, tc *teeConn, rest []byte) {
	r := e.rs[s.i%len(e.rs)]
	ec := &epollConn{s: s, fr: wsReader{max: 16 << 20}}
	sc, ok := tc.Conn.(syscall.Conn)
	var err error
	if !ok {
		err = fmt.Errorf("-readers epoll: %T has no file descriptor", tc.Conn)
	} else {
		ec.rc, err = sc.SyscallConn()
	}
	if err == nil {
		err = enableRxTimestamps(ec.rc)
	}
	if err == nil && len(rest) > 0 {
		err = ec.fr.feed(rest, ec.frame)
	}
	if err == nil {
		r.mu.Lock()
		r.conns[int32(s.i)] = ec
		r.mu.Unlock()
		cerr := ec.rc.Control(func(fd uintptr) {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(s.i)}
			err = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		})
		if err == nil {
			err = cerr
		}
		if err == nil {
			return
		}
		r.mu.Lock()
		delete(r.conns, int32(s.i))
		r.mu.Unlock()
	}
	r.l.endSubscriber(s, err)
}

// loop waits for readable sockets and reads them until the run closes.
func (r *epollReader) loop() {
	events := make([]syscall.EpollEvent, 256)
	batch := make([]*epollConn, 0, len(events))
	rc, err := r.f.SyscallConn()
	for err == nil {
		var n int
		var werr error
		err = rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			return n > 0 || werr != nil // else wait until it is readable
		})
		if err == nil && werr != nil && werr != syscall.EINTR {
			err = werr
		}
		if err != nil || n <= 0 {
			continue
		}
		batch = batch[:0]
		r.mu.Lock()
		for _, ev := range events[:n] {
			batch = append(batch, r.conns[ev.Fd])
		}
		r.mu.Unlock()
		for i, ec := range batch {
			if ec != nil {
				r.read(ec, events[i].Events)
			}
		}
	}
	// stop closed the instance as the run closes: what is left ends
	// without an error.
	if r.l.closing.Load() {
		err = nil
	} else {
		r.l.fail("epoll reader: %v", err)
	}
	r.mu.Lock()
	left := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, ec := range left {
		r.l.endSubscriber(ec.s, err)
	}
}

// read takes what one readable socket holds and handles its messages.
// The set is edge-triggered, yet one read is enough unless it fills the
// buffer: a TCP read that returns less than asked has emptied the socket's
// receive queue, and whatever arrives after it raises a new edge. (That
// saves the read that would only say EAGAIN, and the re-check of every
// socket a level-triggered set makes at the next epoll_wait.) When the
// peer has shut down or the socket has an error, it reads to the end
// instead: the edge that said so may have come with the last data, and
// no other edge follows.
func (r *epollReader) read(ec *epollConn, events uint32) {
	toEnd := events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	for {
		n, err := r.readOnce(ec, events)
		if err != nil || n == 0 || (n < len(r.buf) && !toEnd) {
			return
		}
	}
}

// readOnce makes one recvmsg(2) of ec's socket and handles what it got;
// it returns how much it read, and an error once the subscriber has ended.
func (r *epollReader) readOnce(ec *epollConn, events uint32) (int, error) {
	var n int
	var arrival int64
	var rerr error
	err := ec.rc.Read(func(fd uintptr) bool {
		for {
			n, arrival, rerr = recvStamped(int(fd), r.buf, r.oob)
			if rerr != syscall.EINTR {
				return true // never wait in Go's poller
			}
		}
	})
	switch {
	case err != nil: // closed
	case rerr == syscall.EAGAIN:
		if events&(syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return 0, nil // nothing after all
		}
		err = fmt.Errorf("socket error or hang-up (events %#x)", events)
	case rerr != nil:
		err = rerr
	case n == 0:
		err = io.ErrUnexpectedEOF
	default:
		// Every message this read completes had its last bytes in it,
		// so the read's arrival time (that of its last segment) is when
		// each was complete, or later.
		ec.s.arrival = arrival
		err = ec.fr.feed(r.buf[:n], ec.frame)
	}
	if err == nil {
		return n, nil
	}
	r.mu.Lock()
	delete(r.conns, int32(ec.s.i))
	r.mu.Unlock()
	// Out of the set before the socket closes (a closed socket is out of
	// it already, and Control fails then).
	_ = ec.rc.Control(func(fd uintptr) { _ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil) })
	r.l.endSubscriber(ec.s, err)
	return 0, err
}

// enableRxTimestamps turns on software receive timestamps on the socket
// of rc: from then on the kernel stamps each packet as it comes in
// (CLOCK_REALTIME, the clock of time.Now and of the send times in the
// payloads) and recvmsg passes the stamp as an SCM_TIMESTAMPNS control
// message. Stamping is machine-wide once any socket asks for it, so the
// server's sockets pay the few nanoseconds of a clock read per packet too.
func enableRxTimestamps(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); cerr != nil {
		return fmt.Errorf("receive timestamps: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("setsockopt SO_TIMESTAMPNS: %w", err)
	}
	return nil
}

// recvStamped makes one recvmsg(2) of fd into buf, with oob for the control
// messages, and returns how much it read and the kernel's receive time of
// it (unix ns; 0 when there is none). For TCP that is the time of the last
// segment the call took, so bytes that arrived earlier and were read with
// it get the later time. Errors of the call itself (EAGAIN, EINTR) come
// back as they are, for the caller to tell apart.
func recvStamped(fd int, buf, oob []byte) (int, int64, error) {
	n, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, 0)
	if err != nil {
		return 0, 0, err
	}
	arrival, err := rxTimestamp(oob[:oobn])
	if err != nil {
		return 0, 0, fmt.Errorf("recvmsg: %w", err)
	}
	return n, arrival, nil
}

// rxTimestamp returns the time in the SCM_TIMESTAMPNS control message
// among oob's, in unix nanoseconds, or 0 when there is none: the kernel
// stamps packets only once some socket has asked for it (and the first
// time it turns stamping on from a work queue, a moment later), and
// sends no stamp with an end of file.
func rxTimestamp(oob []byte) (int64, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, fmt.Errorf("control messages: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_TIMESTAMPNS {
			continue
		}
		var ts syscall.Timespec
		size := int(unsafe.Sizeof(ts))
		if len(m.Data) < size {
			return 0, fmt.Errorf("SCM_TIMESTAMPNS of %d bytes, want %d", len(m.Data), size)
		}
		// Copied, not cast: the data need not be aligned for a Timespec.
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), size), m.Data)
		return ts.Nano(), nil
	}
	return 0, nil
}

// frame handles one message or control frame, as gorilla's NextReader and
// its default ping and close handlers do for readSubscriber.
func (ec *epollConn) frame(op byte, p []byte) error {
	s := ec.s
	switch op {
	case opBinary:
		return s.l.proto.handle(s, p)
	case opText:
		return s.l.proto.handleText(s, p)
	case opPing:
		// Gorilla masks what a client writes.
		err := s.c.WriteControl(websocket.PongMessage, p, time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	case opClose:
		code, text, err := closeFrame(p)
		if err != nil {
			return err
		}
		if !s.l.closing.Load() {
			msg := []byte{}
			if code != websocket.CloseNoStatusReceived {
				msg = websocket.FormatCloseMessage(code, "")
			}
			_ = s.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}
		return &websocket.CloseError{Code: code, Text: text}
	}
	return nil // pong
}

// epollET is EPOLLET as the uint32 of an EpollEvent (syscall's constant
// is negative).
const epollET = 1 << 31
