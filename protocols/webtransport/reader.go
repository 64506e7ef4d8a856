package webtransport

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// The read side of a session's wire: a protocols.PolledWire, so that a
// client that says nothing for minutes (a browser tab left open) costs the
// node neither a deep stack nor a read buffer while it is silent.
//
// quic-go tells nobody when a stream has bytes: a goroutine blocked in Read
// is the least a silent session can cost. So between read steps one
// goroutine of the wire's own, the waiter, reads a few bytes of the control
// stream, and only that: its stack holds the read and nothing else, about
// 1 KiB in use, where a session served by Serve keeps the HTTP/3 request
// handler's goroutine, with the request handling, the node's routing and
// the admission of the session below the read (some 4 KiB in use, a 16 KiB
// stack once grown). When bytes come, or the stream fails, the waiter runs
// the session's next read step, which reads and handles the frames that
// have arrived with a pooled buffer and ends by arming the wire again: the
// buffer goes back to the pool, and the waiter waits again, or hands the
// wait to a new waiter on a fresh stack when the client had been quiet
// (see wait).

// readBufferSize is the size of the pooled read buffers: frames up to it
// are returned from the buffer; larger ones get a buffer of their own for
// as long as the step runs.
const readBufferSize = 4 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// maxPrefixLen is protocols.FrameReader's bound on a frame's varint length
// prefix: 4 bytes carry up to 2^28-1, far above any sane frame limit.
const maxPrefixLen = 4

// maxEmptyReads bounds the reads in a row that return nothing and no
// error (which the io.Reader contract discourages) before giving up.
const maxEmptyReads = 100

// ReadFrame returns the next frame body of the control stream, valid until
// the next call. It blocks until the whole frame has arrived.
func (w *wire) ReadFrame() ([]byte, error) {
	size, err := w.readPrefix()
	if err != nil {
		return nil, peerClose(err)
	}
	if size > uint64(w.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", protocols.ErrFrameTooLarge, size, w.max)
	}
	body, err := w.readBody(int(size))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, peerClose(err)
	}
	return body, nil
}

// readPrefix reads a frame's length. A stream that ends cleanly before it
// returns io.EOF.
func (w *wire) readPrefix() (uint64, error) {
	var size uint64
	for i := 0; ; i++ {
		if w.r == w.n {
			if err := w.fill(); err != nil {
				if i > 0 && err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
		}
		c := (*w.rd)[w.r]
		w.r++
		if i == maxPrefixLen {
			return 0, fmt.Errorf("%w: bad length prefix", protocols.ErrMalformed)
		}
		size |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return size, nil
		}
	}
}

// readBody reads a frame body of size bytes: in the read buffer when it
// fits, else in a buffer of its own.
func (w *wire) readBody(size int) ([]byte, error) {
	if size <= readBufferSize {
		for w.n-w.r < size {
			if err := w.fill(); err != nil {
				return nil, err
			}
		}
		b := (*w.rd)[w.r : w.r+size : w.r+size]
		w.r += size
		return b, nil
	}
	if cap(w.body) < size {
		w.body = make([]byte, size)
	}
	b := w.body[:size]
	got := 0
	if w.rd != nil {
		got = copy(b, (*w.rd)[w.r:w.n])
		w.r += got
	}
	if got == size {
		return b, nil
	}
	if w.rerr != nil {
		return nil, w.rerr
	}
	if _, err := io.ReadFull(w.src, b[got:]); err != nil {
		return nil, err
	}
	return b, nil
}

// fill reads what the stream has after the unread bytes, blocking until
// at least one byte comes. Once the stream has failed or ended and nothing
// is left unread, it returns what the stream said.
func (w *wire) fill() error {
	if w.rerr != nil {
		return w.rerr
	}
	if w.rd == nil {
		w.rd = readBuffers.Get().(*[]byte)
		w.r, w.n = 0, 0
	}
	buf := *w.rd
	if w.r > 0 {
		w.n = copy(buf, buf[w.r:w.n])
		w.r = 0
	}
	m, err := read(w.src, buf[w.n:])
	w.n += m
	if err != nil {
		w.rerr = err
		if m == 0 {
			return err
		}
	}
	return nil
}

// read is src.Read that returns bytes or an error, not neither.
func read(src io.Reader, p []byte) (int, error) {
	for range maxEmptyReads {
		if m, err := src.Read(p); m > 0 || err != nil {
			return m, err
		}
	}
	return 0, io.ErrNoProgress
}

// Buffered reports whether a frame, or the stream's end, can be read
// without waiting for the client: bytes are buffered, or the stream has
// failed. It does not ask quic-go, which cannot tell without blocking:
// when the buffer is empty the session arms, and a waiter whose read
// finds bytes at once wakes it at once.
func (w *wire) Buffered() bool { return w.r < w.n || w.rerr != nil }

// Arm lets the read buffers go and has a waiter run wake when the control
// stream has bytes or fails (as it does when the wire is aborted): the
// waiter that ran this step, once the step has returned, or a new one. It
// reports false once the wire is aborted or the server is closing: the
// session then reads on the goroutine it has.
func (w *wire) Arm(wake func()) bool {
	if w.aborting.Load() {
		return false
	}
	if w.rd != nil && w.r == w.n {
		readBuffers.Put(w.rd)
		w.rd, w.r, w.n = nil, 0, 0
	}
	w.body = nil
	w.wmu.Lock()
	if w.waking {
		w.rearmed, w.next = true, wake
		w.wmu.Unlock()
		return true
	}
	w.wmu.Unlock()
	return w.srv.startReader(func() { w.wait(wake, 0) })
}

// quietGap is the silence after which a client counts as quiet: the step
// that its next frame wakes hands the wait that follows to a new waiter.
const quietGap = time.Second

// wait is the waiter: it blocks in a read of a few bytes, hands them to
// the next read step and runs it; and again while the steps it runs end
// by arming, as long as the client keeps sending. A step grows the stack
// it runs on to the depth of the frame handling (8 to 16 KiB); the
// runtime shrinks the stack of a goroutine blocked since, but only at its
// next collections, one halving at a time, and no further than 4 KiB for
// this read. So once a step woken after a quiet spell (quietGap since the
// one before, last; 0: none) has armed, the wait goes on in a new waiter,
// whose stack holds the read and nothing more (2 KiB as a rule): a quiet
// client, answering the heartbeat now and then, costs that little. A busy
// one stays on its waiter, whose grown stack is ready for the next step:
// a new goroutine would grow a stack anew for every step, some microseconds
// each.
func (w *wire) wait(wake func(), last time.Duration) {
	for {
		m, err := read(w.src, w.peek[:])
		woke := monotonic()
		quiet := last == 0 || woke-last >= quietGap
		last = woke
		w.wmu.Lock()
		if m > 0 {
			w.rd = readBuffers.Get().(*[]byte)
			w.r, w.n = 0, copy(*w.rd, w.peek[:m])
		}
		w.rerr = err
		w.waking, w.rearmed = true, false
		w.wmu.Unlock()

		wake()

		w.wmu.Lock()
		again := w.rearmed
		wake = w.next
		w.waking, w.rearmed, w.next = false, false, nil
		w.wmu.Unlock()
		if !again {
			return // the step parked, or the session ended
		}
		if quiet && w.srv.startReader(func() { w.wait(wake, last) }) {
			return
		}
	}
}

// epoch anchors monotonic.
var epoch = time.Now()

// monotonic returns the time since epoch, never 0.
func monotonic() time.Duration { return time.Since(epoch) + 1 }

// startReader runs f on a goroutine of its own that Close waits for. It
// reports false, and does not run f, once Close has begun.
func (s *Server) startReader(f func()) bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.stopped {
		return false
	}
	s.readers.Go(f)
	return true
}
