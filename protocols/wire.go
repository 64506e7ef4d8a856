package protocols

import "time"

// Wire is the transport under a session; each adapter implements it. The
// session calls ReadFrame from its read loop only, WriteFrames and CloseWrite
// from its writer only, and Abort from either.
type Wire interface {
	// ReadFrame returns the next frame body (no length prefix), valid until
	// the next call. Errors wrapping ErrFrameTooLarge or ErrMalformed close
	// the session with CodeFrameTooLarge or CodeBadFrame; a *CloseError
	// with Remote set reports that the peer closed the session.
	ReadFrame() ([]byte, error)
	// WriteFrames writes length-prefixed frames as one batch, giving up at
	// deadline.
	WriteFrames(frames [][]byte, deadline time.Time) error
	// CloseWrite tells the peer that the session ends with code and reason.
	CloseWrite(code CloseCode, reason string, deadline time.Time) error
	// Abort releases the transport at once; a blocked ReadFrame returns.
	// It may be called more than once.
	Abort()
}

// DatagramWire is a Wire with real datagrams (WebTransport).
type DatagramWire interface {
	Wire
	// SendDatagram sends one datagram; it may block while the transport's
	// own queue is full. The session calls it from one goroutine.
	SendDatagram(b []byte) error
	// ReceiveDatagram returns the next datagram from the peer; it fails
	// once the transport is aborted.
	ReceiveDatagram() ([]byte, error)
}

// StreamWire is a Wire that opens unidirectional streams (WebTransport).
type StreamWire interface {
	Wire
	// OpenStream opens a stream whose first bytes are header, waiting at
	// most until deadline for the peer's stream limit.
	OpenStream(header []byte, deadline time.Time) (StreamWriter, error)
}

// StreamWriter is one unidirectional stream, written by one goroutine at a
// time.
type StreamWriter interface {
	// WriteFrames writes the frames as one batch, giving up at deadline.
	WriteFrames(frames [][]byte, deadline time.Time) error
	// Close ends the stream after what was written.
	Close() error
}

// Deadline spares a wire the cost of setting a write deadline on every
// flush: it moves the deadline only when the wanted one is more than a
// second later than the one in force, so a write may time out up to a
// second early. The zero value is ready; one writer uses it.
type Deadline struct{ t time.Time }

// Set calls set(want) unless the deadline in force is within a second of
// want.
func (d *Deadline) Set(set func(time.Time) error, want time.Time) error {
	if want.Sub(d.t) < time.Second {
		return nil
	}
	d.t = want
	return set(want)
}
