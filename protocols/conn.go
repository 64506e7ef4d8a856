package protocols

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SessionConfig tunes sessions. The zero value is usable.
type SessionConfig struct {
	// MaxFrameSize is the largest frame accepted from a client, length
	// prefix excluded. Zero: DefaultMaxFrameSize (64 KiB).
	MaxFrameSize int
	// SendQueueFrames and SendQueueBytes bound the deliveries (Send) in
	// the send queue; the first one hit closes the session as a slow
	// consumer. Zero: 1024 frames, 4 MiB.
	SendQueueFrames int
	SendQueueBytes  int
	// MaxQueuedReplies bounds the replies to the client's own requests
	// (Reply) waiting in the send queue. At the bound the session stops
	// reading the client's frames until the writer has caught up, so a
	// client that sends requests faster than it reads the answers is
	// slowed down by TCP or QUIC flow control, never closed. Zero: 256.
	MaxQueuedReplies int
	// PingBurst and PingRate bound the pings a client may send: a bucket of
	// PingBurst pings, refilled at PingRate per second. A client that sends
	// more is closed with CodePolicyViolation. However many pings arrive,
	// at most one pong waits in the queue. Zero: 32 pings and 4 per
	// second; a negative PingRate lifts the limit.
	PingBurst int
	PingRate  float64
	// BatchBytes caps how much one write carries (at least one frame is
	// always written). Zero: 256 KiB.
	BatchBytes int
	// PingInterval is how often the server pings; PongTimeout how long it
	// then waits for any frame from the client before closing with
	// CodeHeartbeatTimeout. A dead peer is closed at most PingInterval +
	// PongTimeout after it went silent. Zero: 25 s and 10 s; a negative
	// PingInterval disables heartbeats.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// WriteTimeout bounds one batched write. Zero: 10 s.
	WriteTimeout time.Duration
	// CloseGrace is how long a closing session waits for the peer to
	// acknowledge the close before dropping the transport. Zero: 1 s.
	CloseGrace time.Duration
	// Logger receives per-session debug logs. Zero: discard.
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default.
func (c SessionConfig) WithDefaults() SessionConfig {
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.SendQueueFrames <= 0 {
		c.SendQueueFrames = 1024
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 4 << 20
	}
	if c.MaxQueuedReplies <= 0 {
		c.MaxQueuedReplies = 256
	}
	if c.PingBurst <= 0 {
		c.PingBurst = 32
	}
	if c.PingRate == 0 {
		c.PingRate = 4
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 256 << 10
	}
	if c.PingInterval == 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Ping and Pong frames are always the same bytes. They are built on first
// use: package variables would run before the generated descriptors exist.
var (
	pingFrame = sync.OnceValue(func() []byte { return MustEncode(&Frame{Kind: &Frame_Ping{Ping: &Ping{}}}) })
	pongFrame = sync.OnceValue(func() []byte { return MustEncode(&Frame{Kind: &Frame_Pong{Pong: &Pong{}}}) })
)

// pongFor answers the ping with the given id.
func pongFor(id uint32) []byte {
	if id == 0 {
		return pongFrame()
	}
	return MustEncode(&Frame{Id: id, Kind: &Frame_Pong{Pong: &Pong{}}})
}

// NewID returns a random session id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// conn is the Session every adapter hands out: a bounded send queue, one
// writer that drains it in batches, heartbeats, and the close sequence.
type conn struct {
	// immutable after newConn
	id       string
	protocol string
	wire     Wire
	cfg      SessionConfig
	ctx      context.Context
	cancel   context.CancelFunc
	room     chan struct{} // cap 1: queued replies fell below the bound, or the session closes
	readDone chan struct{} // closed when the read loop has ended
	done     chan struct{} // closed when the writer has finished for good
	pingT    *time.Timer   // nil without heartbeats
	pongT    *time.Timer
	dw       DatagramWire  // nil: no datagrams (volatile publications conflate in q)
	sw       StreamWire    // nil: no streams (deliveries go in q)
	direct   DirectWire    // nil: the wire cannot write without blocking
	worker   *directWorker // with direct: the fan-out worker that writes for it

	closeOnce sync.Once
	closeErr  atomic.Pointer[CloseError] // set by the first Close
	lastSeen  atomic.Int64               // unix nanos of the last frame read
	readEnded atomic.Bool                // the read loop has ended
	pingDue   atomic.Bool                // the ping timer fired
	pongDue   atomic.Bool                // the pong deadline passed

	mu        sync.Mutex // guards the fields below
	q         ring
	sent      int                   // deliveries (Send) in q: what SendQueueFrames bounds
	sentBytes int                   // their bytes: what SendQueueBytes bounds
	backlog   int                   // of sent, the frames of DeliverBacklog: not counted against SendQueueFrames
	replies   int                   // replies (Reply) in q: what MaxQueuedReplies bounds
	pongOwed  bool                  // a ping awaits its pong; one pong answers them all
	pongID    uint32                // the id of the latest ping
	closed    bool                  // no more Sends
	writing   bool                  // a writer goroutine runs (it exists only while there is work)
	final     bool                  // the writer has finished for good: no more writers
	streams   bool                  // deliveries go on per-subscription streams
	outs      map[uint32]*outStream // those streams, by alias
	slots     map[uint32]*slot      // conflation slots by alias (without datagrams)
	dq        *datagrams            // datagrams to send (with dw); made on first use
	dsending  bool                  // sendDatagrams runs
	dh        DatagramHandler       // the handler's datagram side; nil if none
	receiving bool                  // receiveDatagrams runs
	dropped   uint64                // volatile publications dropped (replaced or queue full)

	bg sync.WaitGroup // stream writers and the datagram sender and reader; started under mu while !closed

	// owned by the running writer
	outstanding int64 // when the unanswered ping was sent; 0: none

	traffic traffic // counters for Stats (conn_metrics.go)

	pr atomic.Pointer[pollReader] // reads woken by readiness (polled.go); nil: readLoop
}

// batches recycles the writers' batch slices: an idle session keeps none.
var batches = sync.Pool{New: func() any { b := make([][]byte, 0, 64); return &b }}

var (
	_ Session          = (*conn)(nil)
	_ BacklogDeliverer = (*conn)(nil)
)

// Serve runs one session over w until it ends; adapters call it from the
// goroutine that completed the handshake. It asks acc to admit the session,
// then reads frames and hands them to the Handler. It returns how the
// session ended.
func Serve(w Wire, protocol string, r *http.Request, acc Acceptor, cfg SessionConfig) *CloseError {
	return serve(w, nil, protocol, r, acc, cfg)
}

// serve is Serve; with pw (w itself) the reads are woken by readiness
// (ServePolled) and it returns nil once they are armed.
func serve(w Wire, pw PolledWire, protocol string, r *http.Request, acc Acceptor, cfg SessionConfig) *CloseError {
	cfg = cfg.WithDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		id:       NewID(),
		protocol: protocol,
		wire:     w,
		cfg:      cfg,
		ctx:      ctx,
		cancel:   cancel,
		room:     make(chan struct{}, 1),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.dw, _ = w.(DatagramWire)
	c.sw, _ = w.(StreamWire)
	if d, ok := w.(DirectWire); ok && d.Direct() {
		c.direct, c.worker = d, pickWorker()
	}
	c.lastSeen.Store(time.Now().UnixNano())
	if cfg.PingInterval > 0 {
		c.pingT = time.AfterFunc(cfg.PingInterval, func() { c.pingDue.Store(true); c.kick() })
		c.pongT = time.AfterFunc(time.Hour, func() { c.pongDue.Store(true); c.kick() })
		c.pongT.Stop()
	}

	h, err := acc.Accept(c, r)
	if err != nil {
		c.CloseWith(asCloseError(err)) // with its reconnect advice (a retry-after)
		h = nil
	}
	c.mu.Lock()
	c.dh, _ = h.(DatagramHandler)
	c.mu.Unlock()
	if pw != nil {
		c.startPolled(pw, h)
		return nil
	}
	end := c.readLoop(h)
	if h != nil {
		h.Closed(end)
	}
	return end
}

func asCloseError(err error) *CloseError {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce
	}
	return &CloseError{Code: CodeInternalError, Reason: "internal error"}
}

func (c *conn) ID() string               { return c.id }
func (c *conn) Protocol() string         { return c.protocol }
func (c *conn) Context() context.Context { return c.ctx }

func (c *conn) Send(frame []byte) error {
	if err := c.admitLocking(frame); err != nil {
		return err
	}
	c.q.push(item{b: frame, kind: delivery})
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
	return nil
}

// admitLocking takes mu and counts a delivery against the send queue's
// limits, returning with mu held; or it returns ErrClosed, or closes the
// session as a slow consumer and returns ErrQueueFull, without mu.
func (c *conn) admitLocking(frame []byte) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.sent-c.backlog >= c.cfg.SendQueueFrames || c.sentBytes+len(frame) > c.cfg.SendQueueBytes {
		n, bytes := c.sent, c.sentBytes
		c.mu.Unlock()
		c.Close(CodeSlowConsumer, fmt.Sprintf("send queue full (%d frames, %d bytes)", n, bytes))
		return ErrQueueFull
	}
	c.sent++
	c.sentBytes += len(frame)
	c.traffic.deliveries++
	return nil
}

func (c *conn) Reply(frame []byte) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.q.push(item{b: frame, kind: reply})
	c.replies++
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
	return nil
}

// queuePing queues the server's own ping, of which at most one is
// outstanding, past the limits.
func (c *conn) queuePing() {
	c.mu.Lock()
	if !c.closed {
		c.q.push(item{b: pingFrame(), kind: control})
	}
	c.mu.Unlock()
	c.kick()
}

// owePong records that the client's ping id wants a pong. Pings coalesce:
// the writer sends one pong, with the latest id, however many came.
func (c *conn) owePong(id uint32) {
	c.mu.Lock()
	if !c.closed {
		c.pongOwed, c.pongID = true, id
	}
	c.mu.Unlock()
	c.kick()
}

// kick makes sure a writer runs to act on what was just queued or
// flagged: it starts one unless one runs (it will see the work before it
// stops) or the writer has finished for good.
func (c *conn) kick() {
	c.mu.Lock()
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
}

// startWriter runs the writer whose place the caller claimed: a fan-out
// worker's turn when the wire can write without blocking, else a
// goroutine of the session's own.
func (c *conn) startWriter() {
	if c.worker != nil {
		c.worker.schedule(c)
		return
	}
	go c.writeLoop()
}

// startWriterLocked claims the writer's place; the caller starts
// writeLoop when it returns true.
func (c *conn) startWriterLocked() bool {
	if c.writing || c.final {
		return false
	}
	c.writing = true
	return true
}

func (c *conn) signalRoom() {
	select {
	case c.room <- struct{}{}:
	default:
	}
	if p := c.pr.Load(); p != nil {
		p.resume() // a polled read step parked for reply room (polled.go)
	}
}

// waitReplyRoom blocks the read loop while MaxQueuedReplies replies wait
// to be written. It reports false when the session is closing.
func (c *conn) waitReplyRoom() bool {
	for {
		c.mu.Lock()
		room, closed := c.replies < c.cfg.MaxQueuedReplies, c.closed
		c.mu.Unlock()
		if closed || c.closeErr.Load() != nil {
			return false
		}
		if room {
			return true
		}
		select {
		case <-c.room:
		case <-c.done:
			return false
		}
	}
}

func (c *conn) Close(code CloseCode, reason string) {
	c.CloseWith(&CloseError{Code: code, Reason: reason})
}

func (c *conn) CloseWith(ce *CloseError) {
	c.closeOnce.Do(func() {
		stored := *ce
		stored.Reason = TrimReason(ce.Reason)
		stored.Remote = false
		c.closeErr.Store(&stored)
		c.kick()
		c.signalRoom()
	})
}

// take moves up to BatchBytes of queued frames into batch, an owed pong
// first.
func (c *conn) take(batch [][]byte) [][]byte {
	c.mu.Lock()
	size := 0
	if c.pongOwed {
		c.pongOwed = false
		pong := pongFor(c.pongID)
		batch = append(batch, pong)
		size += len(pong)
	}
	replied := false
	for c.q.n > 0 {
		it := c.q.peek()
		if len(batch) > 0 && size+len(it.b) > c.cfg.BatchBytes {
			break
		}
		c.q.pop()
		switch it.kind {
		case reply:
			c.replies--
			replied = true
		case delivery:
			c.sent--
			c.sentBytes -= len(it.b)
		case backlog:
			c.sent--
			c.backlog--
			c.sentBytes -= len(it.b)
		case volatile:
			for _, f := range it.slot.frames {
				size += len(f)
				batch = append(batch, f)
			}
			clear(it.slot.frames)
			it.slot.frames = it.slot.frames[:0]
			continue
		}
		size += len(it.b)
		batch = append(batch, it.b)
	}
	room := replied && c.replies < c.cfg.MaxQueuedReplies
	c.mu.Unlock()
	if room {
		c.signalRoom()
	}
	return batch
}

// writeLoop owns every write to the wire while it runs: it drains the
// queue without blocking, writes each batch at once, acts on the heartbeat
// timers and the close, and returns once nothing is left to do; the next
// Send, timer or close starts it again (kick). So an idle session has no
// writer goroutine, and never more than one writes.
func (c *conn) writeLoop() { c.writeLoopFrom(nil) }

// writeLoopFrom is writeLoop that first writes held, frames already taken
// from the queue (a fan-out worker's batch the wire could not take).
func (c *conn) writeLoopFrom(held [][]byte) {
	bp := batches.Get().(*[][]byte)
	defer batches.Put(bp)
	batch := (*bp)[:0]
	if len(held) > 0 {
		err := c.wire.WriteFrames(held, time.Now().Add(c.cfg.WriteTimeout))
		c.traffic.wrote(held, err)
		if err != nil {
			c.cfg.Logger.Debug("session write failed", "session", c.id, "err", err)
			c.wire.Abort()
			c.end()
			return
		}
	}
	for {
		if c.readEnded.Load() {
			if c.closeErr.Load() != nil {
				c.finish(batch)
			}
			c.end()
			return
		}
		if c.closeErr.Load() != nil {
			c.finish(batch)
			c.end()
			return
		}
		// The pong deadline first: it judges the ping already out, not one
		// this pass is about to send (with equal ping interval and pong
		// timeout both timers fire together). A deadline flag left over
		// from an earlier ping (its timer fired just before a Reset) is
		// ignored: only the current ping's full timeout counts.
		if c.pongDue.Swap(false) && c.outstanding != 0 && c.lastSeen.Load() < c.outstanding {
			if time.Now().UnixNano()-c.outstanding >= int64(c.cfg.PongTimeout) {
				c.Close(CodeHeartbeatTimeout, fmt.Sprintf("no pong within %v", c.cfg.PongTimeout))
				continue // back to the top, to finish
			}
		}
		if c.pingDue.Swap(false) {
			if c.outstanding != 0 && c.lastSeen.Load() > c.outstanding {
				c.outstanding = 0
			}
			if c.outstanding == 0 {
				c.outstanding = time.Now().UnixNano()
				c.queuePing()
				c.pongT.Reset(c.cfg.PongTimeout)
			}
			c.pingT.Reset(c.cfg.PingInterval)
		}
		if err := c.flush(batch); err != nil {
			c.cfg.Logger.Debug("session write failed", "session", c.id, "err", err)
			c.wire.Abort()
			c.end()
			return
		}
		if c.release() {
			return
		}
	}
}

// release gives up the writer's place when nothing is left to do,
// deciding under mu: whoever queues or flags after this starts a new
// writer. It reports whether it did.
func (c *conn) release() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	idle := c.q.n == 0 && !c.pongOwed && !c.pingDue.Load() && !c.pongDue.Load() &&
		c.closeErr.Load() == nil && !c.readEnded.Load()
	if idle {
		c.writing = false
	}
	return idle
}

// end marks the writer finished for good.
func (c *conn) end() {
	c.mu.Lock()
	c.final, c.writing = true, false
	c.mu.Unlock()
	if c.pingT != nil {
		c.pingT.Stop()
		c.pongT.Stop()
	}
	close(c.done)
	c.signalRoom() // a read waiting for reply room learns that none will come
}

// flush writes everything queued, in batches.
func (c *conn) flush(batch [][]byte) error {
	for {
		batch = c.take(batch[:0])
		if len(batch) == 0 {
			return nil
		}
		err := c.wire.WriteFrames(batch, time.Now().Add(c.cfg.WriteTimeout))
		c.traffic.wrote(batch, err)
		clear(batch)
		if err != nil {
			return err
		}
	}
}

// finish runs the close sequence: deliver what is queued (unless the queue
// is the problem), say Disconnect, close the transport with the code, and
// give the peer CloseGrace to acknowledge before dropping it.
func (c *conn) finish(batch [][]byte) {
	ce := c.closeErr.Load()
	c.mu.Lock()
	c.closed = true
	if ce.Code == CodeSlowConsumer {
		c.q = ring{}
		c.sent, c.sentBytes, c.replies, c.backlog = 0, 0, 0, 0
		for _, o := range c.outs {
			o.q = nil
		}
		if c.dq != nil {
			for _, ok := c.dq.pop(); ok; _, ok = c.dq.pop() {
			}
		}
	}
	c.q.push(item{kind: control, b: MustEncode(&Frame{Kind: &Frame_Disconnect{Disconnect: &Disconnect{
		Code: uint32(ce.Code), Reason: ce.Reason, Reconnect: ce.Code.Reconnect(),
		ReconnectUrl: ce.ReconnectURL, ReconnectAfterMs: uint32(ce.ReconnectAfter / time.Millisecond),
	}}})})
	c.mu.Unlock()

	deadline := time.Now().Add(c.cfg.WriteTimeout)
	if err := c.flush(batch); err == nil {
		err = c.wire.CloseWrite(ce.Code, ce.Reason, deadline)
		if err != nil {
			c.cfg.Logger.Debug("session close write failed", "session", c.id, "err", err)
		}
	}
	grace := time.NewTimer(c.cfg.CloseGrace)
	defer grace.Stop()
	select {
	case <-c.readDone:
	case <-grace.C:
	}
	c.wire.Abort()
}

// readLoop reads frames until the transport ends. Once the session is
// closing it only drains, waiting for the peer's close.
func (c *conn) readLoop(h Handler) *CloseError {
	var remote *CloseError
	var pings bucket
	for {
		body, err := c.wire.ReadFrame()
		if err != nil {
			remote = c.readFailed(err)
			break
		}
		f, ok := c.inbound(body, &pings)
		if !ok || h == nil || !c.waitReplyRoom() {
			continue
		}
		c.handle(h, f)
	}
	return c.endRead(remote)
}

// readFailed acts on the error that ended reading, returning the peer's
// close if that is what it was.
func (c *conn) readFailed(err error) (remote *CloseError) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		c.Close(CodeFrameTooLarge, err.Error())
	case errors.Is(err, ErrMalformed):
		c.Close(CodeBadFrame, err.Error())
	default:
		if ce := (*CloseError)(nil); errors.As(err, &ce) {
			remote = ce
		}
	}
	return remote
}

// inbound takes in one frame read from the peer: it notes that the peer is
// alive, answers pings (within the flood bucket), and returns the frame
// when it is for the Handler. Once the session is closing it only drains.
func (c *conn) inbound(body []byte, pings *bucket) (*Frame, bool) {
	now := time.Now()
	c.lastSeen.Store(now.UnixNano())
	c.traffic.read(body)
	if c.closeErr.Load() != nil {
		return nil, false // closing: drain until the peer answers or grace ends
	}
	f, err := DecodeFrame(body)
	if err != nil && !errors.Is(err, ErrUnknownKind) {
		c.Close(CodeBadFrame, err.Error())
		return nil, false
	}
	// A frame of an unknown kind (a newer client's) goes to the handler
	// with a nil Kind: it knows whether the session has connected.
	switch f.Kind.(type) {
	case *Frame_Ping:
		if c.cfg.PingRate > 0 && !pings.take(now, c.cfg.PingRate, c.cfg.PingBurst) {
			c.Close(CodePolicyViolation, fmt.Sprintf("ping flood: over %d pings at once or %v per second", c.cfg.PingBurst, c.cfg.PingRate))
			return nil, false
		}
		c.owePong(f.Id)
		return nil, false
	case *Frame_Pong:
		return nil, false
	}
	return f, true
}

// handle hands f to the Handler; an error from it closes the session.
func (c *conn) handle(h Handler, f *Frame) {
	if err := h.HandleFrame(f); err != nil {
		ce := asCloseError(err)
		if ce.Code == CodeInternalError {
			c.cfg.Logger.Warn("session handler failed", "session", c.id, "err", err)
		}
		c.Close(ce.Code, ce.Reason)
	}
}

// endRead is the end of reading: it stops the writer (it may still be
// finishing a close), releases the transport, and returns how the session
// ended. remote is the peer's close, if it sent one.
func (c *conn) endRead(remote *CloseError) *CloseError {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.readEnded.Store(true)
	close(c.readDone)
	c.kick()
	<-c.done
	c.cancel()
	c.wire.Abort()
	c.bg.Wait() // the transport is gone: stream writers and datagram loops return

	if ce := c.closeErr.Load(); ce != nil {
		return ce
	}
	if remote != nil {
		return remote
	}
	return &CloseError{Code: 1006, Reason: "connection lost", Remote: true}
}
