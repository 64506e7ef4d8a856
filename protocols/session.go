package protocols

import (
	"context"
	"net/http"
)

// Protocol names, as reported by Session.Protocol.
// BacklogDeliverer is a Session that takes many deliveries for one
// subscription at once, past its frame limit (a recovery's missed
// publications), after a reply that announces them: all of it, or, when
// the backlog does not fit, none of it (the session stays as it was, and
// the caller answers otherwise). The hub uses it when a session has it.
type BacklogDeliverer interface {
	DeliverBacklog(alias uint32, reply []byte, frames [][]byte) bool
}

const (
	WebSocket    = "websocket"
	WebTransport = "webtransport"
)

// Session is one client connection, whatever its transport. The adapter owns
// the read loop and calls the Handler; the rest of the node only writes.
type Session interface {
	// ID is unique on this node.
	ID() string
	// Protocol is WebSocket or WebTransport.
	Protocol() string
	// Context is cancelled when the session has ended.
	Context() context.Context
	// Send queues one or more length-prefixed frames (from EncodeFrame or
	// EncodeMessage) and returns at once. The bytes are shared, never
	// modified or retained past delivery. When the queue overflows the
	// session is closed with CodeSlowConsumer and Send returns ErrQueueFull;
	// after close it returns ErrClosed.
	Send(frame []byte) error
	// Reply queues the answer to one of the client's own requests (a
	// reply or an error naming the request's id), in order with Send.
	// Replies never count against the send queue's limits, so a client is
	// never closed as a slow consumer because of its own requests; instead
	// the session stops reading the client's frames while
	// SessionConfig.MaxQueuedReplies replies wait to be written. After
	// close it returns ErrClosed.
	Reply(frame []byte) error
	// UseStreams turns per-subscription streams on, as the client asked in
	// Connect, and reports whether the session has them (WebTransport).
	// Call it before the first Deliver.
	UseStreams() bool
	// Deliver queues a reliable delivery (a Message frame) for the
	// subscription with alias: on its own stream when streams are on, else
	// in order with Send. It counts against the send queue's limits like
	// Send.
	Deliver(alias uint32, frame []byte) error
	// EndDeliveries says the subscription with alias is over: its stream,
	// if it has one, ends after what is queued on it.
	EndDeliveries(alias uint32)
	// DeliverVolatile hands a publication of a volatile channel to the
	// subscription v.Alias: a datagram where the transport has them, else
	// v.Frame in the send queue, where a newer publication for the same
	// subscription replaces one not yet written (latest wins). It never
	// blocks and never closes the session; what it drops is counted.
	DeliverVolatile(v Volatile)
	// ReceiveDatagrams starts handing the client's datagrams, where the
	// transport has them, to the Handler (a DatagramHandler); until then
	// they are dropped, so that a session that never uses a volatile
	// channel keeps no goroutine waiting for them. Later calls do nothing.
	ReceiveDatagrams()
	// Close sends a Disconnect frame with code and reason, closes the
	// transport with the same code and reason, and returns at once. Only the
	// first Close or CloseWith has an effect.
	Close(code CloseCode, reason string)
	// CloseWith is Close with reconnect advice (ReconnectURL,
	// ReconnectAfter) for the Disconnect frame.
	CloseWith(ce *CloseError)
}

// Volatile is one publication of a volatile channel as a subscription gets
// it. Data and Frame are shared by every subscriber.
type Volatile struct {
	Alias uint32 // the subscription's alias
	Seq   uint64 // the channel's datagram sequence number
	Data  []byte // the payload
	Frame []byte // the same publication as a Message frame (epoch "", offset Seq)
}

// Handler receives the frames of one session, on the session's read loop
// (with ServePolled, its read steps, which may run on different goroutines
// one after another): calls for one session never overlap, and each
// happens after the one before. Ping and Pong frames are answered by
// the session itself and never reach the Handler.
type Handler interface {
	// HandleFrame processes one frame. A well-formed frame of a kind this
	// version does not know has a nil Kind (and its Id). Returning a
	// *CloseError closes the session with that code; any other error
	// closes it with CodeInternalError.
	HandleFrame(f *Frame) error
	// Closed is called once, after the session has ended and its writer has
	// stopped.
	Closed(err *CloseError)
}

// DatagramHandler is a Handler that also takes the session's datagrams
// (WebTransport). HandleDatagram runs on a goroutine of its own, at the
// same time as HandleFrame: it must be safe for that. A datagram that does
// not parse comes with alias 0, which no subscription has.
type DatagramHandler interface {
	HandleDatagram(alias uint32, payload []byte)
}

// Acceptor admits new sessions. The edge implements it.
type Acceptor interface {
	// Accept is called after the transport handshake, before any frame is
	// read. Returning a *CloseError closes the session with that code and no
	// frame is read.
	Accept(s Session, r *http.Request) (Handler, error)
}
