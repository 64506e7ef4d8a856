package websocket

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/protocols"
)

// Direct writes (protocols.DirectWire): a fan-out worker writes a batch
// straight to the socket with a non-blocking write(2), framed here as one
// unmasked binary WebSocket message (RFC 6455 §5.2: a server never masks,
// and this server never compresses). Everything else — the handshake,
// reading, control frames and the writes that may block — stays with
// gorilla/websocket.
//
// Every write to the connection, gorilla's included, happens under wmu, so
// that the tail of a direct write the socket did not take (pending) is
// written before anything else: a pong, a close, the next message.

// controlWait bounds the control frames the read loop answers (pong, close
// echo), as gorilla's own handlers do.
const controlWait = time.Second

// sendBufs lends the buffer a direct write frames its batch in.
var sendBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// setDirect prepares w for direct writes when its connection is plain TCP,
// and routes gorilla's automatic control replies through wmu.
func (w *wire) setDirect() {
	// A connection that offers its socket (a *net.TCPConn, or a wrapper
	// that only counts or limits) writes the bytes it is given to the
	// socket unchanged; TLS does not offer one.
	if sc, ok := w.c.NetConn().(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	w.c.SetPingHandler(func(data string) error {
		return w.control(websocket.PongMessage, []byte(data))
	})
	w.c.SetCloseHandler(func(code int, _ string) error {
		_ = w.control(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
		return nil
	})
}

// control writes a control frame the read loop owes the peer, the way
// gorilla's default handlers do: a failure to write it is not the
// reader's error.
func (w *wire) control(typ int, data []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	deadline := time.Now().Add(controlWait)
	if err := w.flushPending(deadline); err != nil {
		return nil
	}
	w.dirty = true
	err := w.c.WriteControl(typ, data, deadline)
	var ne net.Error
	if err == nil || errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// flushPending writes what a direct write left, blocking until deadline.
// Under wmu.
func (w *wire) flushPending(deadline time.Time) error {
	if len(w.pending) == 0 {
		return nil
	}
	nc := w.c.NetConn()
	w.dirty = true
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := nc.Write(w.pending)
	w.pending = nil
	return err
}

func (w *wire) Direct() bool { return directWrites && w.raw != nil }

// TryWriteFrames implements protocols.DirectWire.
func (w *wire) TryWriteFrames(frames [][]byte) (protocols.TryResult, error) {
	if !w.wmu.TryLock() {
		return protocols.TryBusy, nil
	}
	defer w.wmu.Unlock()
	if len(w.pending) > 0 {
		return protocols.TryBusy, nil // the writer has yet to finish the last one
	}
	if w.dirty {
		// A blocking write left a deadline on the socket, which would fail
		// this write once it has passed.
		if err := w.c.NetConn().SetWriteDeadline(time.Time{}); err != nil {
			return protocols.TryBusy, err
		}
		w.dirty = false
	}
	bp := sendBufs.Get().(*[]byte)
	b := appendMessage((*bp)[:0], frames)
	rest, err := w.writeNow(b)
	if len(rest) > 0 && err == nil {
		w.pending = append([]byte(nil), rest...)
	}
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		sendBufs.Put(bp)
	}
	switch {
	case err != nil:
		return protocols.TryPartial, err
	case len(rest) > 0:
		return protocols.TryPartial, nil
	}
	return protocols.TryDone, nil
}

// appendMessage frames the batch as one final, unmasked binary message.
func appendMessage(b []byte, frames [][]byte) []byte {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	b = append(b, 0x80|websocket.BinaryMessage)
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

var _ protocols.DirectWire = (*wire)(nil)
