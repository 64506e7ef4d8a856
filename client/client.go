// Package client is the Go SDK of Switchyard: it connects to a node over
// WebTransport or WebSocket (or both, happy-eyeballs style, keeping the
// first that answers), subscribes to channels and publishes to them.
//
//	c, err := client.Dial(ctx, "https://127.0.0.1:4433", client.Options{CertHash: hash})
//	if err != nil { ... }
//	defer c.Close()
//	sub, err := c.Subscribe(ctx, "chat")
//	pos, err := c.Publish(ctx, "chat", []byte("hello"))
//	for m := range sub.Messages() { ... }
//
// A Client is one connection: when it ends (Done is closed) the caller
// reads why from Err and dials again. Every method is safe for concurrent
// use.
//
// Concurrency: each Client runs one read loop and one writer goroutine,
// tied by a context. The read loop answers pings, hands replies to the
// waiting requests and messages to the subscriptions; the writer drains the
// send queue in batches and watches the server's heartbeat. When the read
// loop ends it cancels the writer, waits for it, and releases everything.
//
// Lock order: Client.mu and Subscription.mu are never held together.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// ErrClosed is returned by requests on a Client that Close has closed.
var ErrClosed = errors.New("client: closed")

// Client is one connection to a Switchyard node.
type Client struct {
	// immutable after Dial
	tr         transport
	connected  *protocols.Connected
	heartbeat  time.Duration // silence after which the server counts as dead; 0: never
	batchLimit int           // bytes of frames in one write
	msgBuffer  int
	httpBase   string // the node's HTTP API, "http(s)://host:port"; "" if unknown
	log        *slog.Logger
	ctx        context.Context // cancelled when the client ends or Close begins
	cancel     context.CancelFunc
	wake       chan struct{} // cap 1: the writer has work
	writerDone chan struct{} // closed when the writer returns
	done       chan struct{} // closed when the connection has ended
	wg         sync.WaitGroup

	lastSeen    atomic.Int64  // unix nanos of the last frame from the server
	datagramSeq atomic.Uint64 // the last datagram sequence number sent
	stalled     atomic.Int32  // readers (the read loop, stream readers) waiting for room in a Messages channel
	closeOnce   sync.Once

	mu         sync.Mutex // guards the fields below
	err        error      // why the connection ended; first cause wins
	userClosed bool       // Close came before any other cause
	ended      bool       // the read loop has ended; no more requests
	nextID     uint32
	calls      map[uint32]*call
	subs       map[string]*Subscription // subscribing or active, by channel
	aliases    map[uint32]*Subscription // the same, by alias
	nextAlias  uint32                   // the last alias given out
	queue      []outFrame
}

// call is a request waiting for its reply.
type call struct {
	reply chan *protocols.Frame // cap 1, written once by the read loop
	// hook, if set, runs on the read loop with the reply before any later
	// frame is read; abandoned tells whether the caller gave up waiting.
	hook      func(f *protocols.Frame, abandoned bool)
	abandoned bool // guarded by Client.mu
}

// outFrame is a queued write. A raw one (res set) is written alone and its
// result reported.
type outFrame struct {
	b   []byte
	res chan error
}

// Dial connects to a node and completes the Connect/Connected handshake.
//
// An https:// URL means WebTransport at that URL (path /wt when the URL has
// none) with a WebSocket fallback at Options.WebSocketURL (default
// wss://host:port/ws); a ws:// or wss:// URL means WebSocket only.
// Options.Transport narrows the choice. When ctx has no deadline, Dial
// gives up after 30 s.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	ep, err := opts.endpoints(url)
	if err != nil {
		return nil, err
	}
	tlsConf, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultDialTimeout)
		defer cancel()
	}
	var c *Client
	switch {
	case ep.webTransport != "" && ep.webSocket != "":
		return dialAuto(ctx, url, ep, tlsConf, opts)
	case ep.webTransport != "":
		c, err = dialOne(ctx, protocols.WebTransport, ep.webTransport, tlsConf, opts)
	default:
		c, err = dialOne(ctx, protocols.WebSocket, ep.webSocket, tlsConf, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial %w", err)
	}
	return c, nil
}

// dialAuto races WebTransport against WebSocket: WebSocket starts after
// FallbackDelay or as soon as WebTransport fails; the first client to be
// Connected wins and the other is closed.
func dialAuto(ctx context.Context, url string, ep endpoints, tlsConf *tls.Config, opts Options) (*Client, error) {
	type result struct {
		c     *Client
		err   error
		proto string
	}
	results := make(chan result, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the loser
	start := func(proto, url string) {
		go func() {
			c, err := dialOne(ctx, proto, url, tlsConf, opts)
			results <- result{c, err, proto}
		}()
	}

	start(protocols.WebTransport, ep.webTransport)
	running, wsStarted := 1, false
	fallback := time.NewTimer(opts.FallbackDelay)
	defer fallback.Stop()
	var wtErr, wsErr error
	for running > 0 {
		select {
		case <-fallback.C:
			if !wsStarted {
				opts.Logger.Debug("client: WebTransport is slow, trying WebSocket too", "url", ep.webSocket)
				wsStarted = true
				running++
				start(protocols.WebSocket, ep.webSocket)
			}
			continue
		case r := <-results:
			running--
			if r.err == nil {
				cancel()
				for ; running > 0; running-- {
					if loser := <-results; loser.c != nil {
						_ = loser.c.Close()
					}
				}
				return r.c, nil
			}
			if r.proto == protocols.WebSocket {
				wsErr = r.err
				continue
			}
			wtErr = r.err
			if !wsStarted {
				opts.Logger.Debug("client: WebTransport failed, trying WebSocket", "err", r.err, "url", ep.webSocket)
				wsStarted = true
				running++
				start(protocols.WebSocket, ep.webSocket)
			}
		}
	}
	return nil, fmt.Errorf("client: dial %s: %w; %w", url, wtErr, wsErr)
}

// dialOne dials one transport and runs the handshake on it.
func dialOne(ctx context.Context, proto, url string, tlsConf *tls.Config, opts Options) (*Client, error) {
	var tr transport
	var err error
	if proto == protocols.WebTransport {
		tr, err = dialWebTransport(ctx, url, tlsConf, opts.Origin)
	} else {
		tr, err = dialWebSocket(ctx, url, tlsConf, opts.Origin)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", proto, url, err)
	}
	token := opts.Token
	if opts.TokenFunc != nil {
		if token, err = opts.TokenFunc(ctx); err != nil {
			tr.abort()
			return nil, fmt.Errorf("%s %s: token: %w", proto, url, err)
		}
	}
	connected, err := handshake(ctx, tr, &protocols.Connect{Token: token, Streams: !opts.SingleStream, User: opts.User, Info: opts.Info})
	if err != nil {
		tr.abort()
		return nil, fmt.Errorf("%s %s: %w", proto, url, err)
	}
	c := newClient(tr, connected, opts)
	c.httpBase = httpBase(url)
	return c, nil
}

// httpBase is the scheme and host of the node a session URL names, for its
// HTTP API: ws → http, wss and https → https.
func httpBase(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "ws", "http":
		return "http://" + u.Host
	case "wss", "https":
		return "https://" + u.Host
	}
	return ""
}

// handshake sends Connect and waits for Connected. A Disconnect instead
// becomes a *protocols.CloseError, an Error a *protocols.RequestError.
func handshake(ctx context.Context, tr transport, cn *protocols.Connect) (*protocols.Connected, error) {
	stop := context.AfterFunc(ctx, tr.abort)
	connected, err := exchangeConnect(tr, cn)
	if !stop() {
		// ctx ended and the transport is gone, whatever the exchange said.
		return nil, fmt.Errorf("handshake: %w", context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return connected, nil
}

func exchangeConnect(tr transport, cn *protocols.Connect) (*protocols.Connected, error) {
	cn.Client, cn.Protocol = clientName, protocols.ProtocolVersion
	connect, err := protocols.EncodeFrame(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: cn}})
	if err != nil {
		return nil, err
	}
	if err := tr.writeFrames([][]byte{connect}, time.Now().Add(writeTimeout)); err != nil {
		return nil, fmt.Errorf("write Connect: %w", err)
	}
	for {
		body, err := tr.readFrame()
		if err != nil {
			return nil, err
		}
		f, err := protocols.DecodeFrame(body)
		if errors.Is(err, protocols.ErrUnknownKind) {
			continue
		}
		if err != nil {
			tr.close(protocols.CodeBadFrame, err.Error())
			return nil, err
		}
		switch k := f.Kind.(type) {
		case *protocols.Frame_Connected:
			if p := k.Connected.GetProtocol(); p != "" && p != protocols.ProtocolVersion {
				tr.close(protocols.CodeBadProtocol, "unsupported protocol "+p)
				return nil, fmt.Errorf("server speaks %q, client speaks %q", p, protocols.ProtocolVersion)
			}
			return k.Connected, nil
		case *protocols.Frame_Disconnect:
			ce := protocols.CloseErrorOf(k.Disconnect)
			tr.finish(ce.Code, ce.Reason)
			return nil, ce
		case *protocols.Frame_Error:
			return nil, &protocols.RequestError{
				Code: protocols.ErrorCode(k.Error.GetCode()), Message: k.Error.GetMessage(),
			}
		}
		// Anything else before Connected (a Ping, say) is ignored.
	}
}

func newClient(tr transport, connected *protocols.Connected, opts Options) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		tr:         tr,
		connected:  connected,
		msgBuffer:  opts.MessageBuffer,
		log:        opts.Logger.With("transport", tr.name(), "session", connected.GetSessionId()),
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
		nextID:     1, // Connect was 1
		calls:      make(map[uint32]*call),
		subs:       make(map[string]*Subscription),
		aliases:    make(map[uint32]*Subscription),
	}
	c.batchLimit = batchBytes
	if tr.name() == protocols.WebSocket {
		// The server closes a session whose message exceeds its frame
		// limit, however small the frames inside.
		maxFrame := int(connected.GetMaxFrameSize())
		if maxFrame <= 0 {
			maxFrame = protocols.DefaultMaxFrameSize
		}
		c.batchLimit = protocols.MaxMessageSize(maxFrame)
	}
	if ping := connected.GetPingIntervalMs(); ping > 0 {
		c.heartbeat = time.Duration(uint64(ping)+uint64(connected.GetPongTimeoutMs())) * time.Millisecond
	}
	c.lastSeen.Store(time.Now().UnixNano())
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	if wt, ok := tr.(*wtTransport); ok {
		c.wg.Go(func() { c.readDatagrams(wt) })
		if connected.GetStreams() {
			c.wg.Go(func() { c.acceptStreams(wt) })
		}
	}
	if s := connected.GetExpiresInS(); s > 0 && opts.TokenFunc != nil {
		c.wg.Go(func() { c.keepToken(opts.TokenFunc, time.Duration(s)*time.Second) })
	}
	return c
}

// keepToken refreshes the session's token before it expires, left from
// now: at four fifths of its life (at most 30 s before the end), again
// every few seconds if that fails, until the session ends.
func (c *Client) keepToken(fn func(context.Context) (string, error), left time.Duration) {
	expires := time.Now().Add(left)
	next := left - min(left/5, 30*time.Second)
	for {
		t := time.NewTimer(next)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		tok, err := fn(ctx)
		var until time.Time
		if err == nil {
			until, err = c.Refresh(ctx, tok)
		}
		cancel()
		switch {
		case err == nil && until.IsZero():
			return // the new token does not expire
		case err == nil:
			expires = until
			left = time.Until(until)
			next = left - min(left/5, 30*time.Second)
		default:
			c.log.Debug("client: token refresh failed", "err", err)
			next = min(2*time.Second, max(time.Until(expires)/2, 100*time.Millisecond))
		}
	}
}

// Transport is protocols.WebTransport or protocols.WebSocket.
func (c *Client) Transport() string { return c.tr.name() }

// SessionID is the id the server gave this session.
func (c *Client) SessionID() string { return c.connected.GetSessionId() }

// Connected is the server's answer to Connect. Do not modify it.
func (c *Client) Connected() *protocols.Connected { return c.connected }

// Done is closed when the connection has ended, for any reason.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err tells why the connection ended, once Done is closed (before, it
// is nil): nil if Close came first; a *protocols.CloseError when the server closed it (from its
// Disconnect frame or the transport's close code, Remote set) or when the
// client gave up on it (heartbeat timeout, bad frame; Remote unset);
// otherwise the transport's error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		return nil
	}
	return c.err
}

// Close closes the connection normally (WebSocket close 1000,
// WebTransport session error 0), fails pending requests with ErrClosed,
// closes every Subscription's Messages channel and waits for the client's
// goroutines. It may be called more than once and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.userClosed = true
		}
		ended := c.ended
		c.mu.Unlock()
		c.cancel() // stops the writer and any blocked delivery
		if ended {
			return
		}
		c.tr.close(0, "")
		grace := time.NewTimer(closeGrace)
		defer grace.Stop()
		select {
		case <-c.done:
		case <-grace.C:
			c.tr.abort()
		}
	})
	<-c.done
	c.wg.Wait()
	return nil
}

// SendRaw writes b as is, as one WebSocket binary message or one write on
// the WebTransport control stream, and returns the write's result. It
// exists to test how servers treat bad input; applications never need it.
func (c *Client) SendRaw(b []byte) error {
	res := make(chan error, 1)
	if err := c.enqueue(outFrame{b: b, res: res}); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-c.done:
		return c.endErr()
	}
}

// setErr records why the connection ends, unless a cause is known already.
func (c *Client) setErr(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.userClosed {
		return false
	}
	c.err = err
	return true
}

// endErr is what requests fail with once the connection is over.
func (c *Client) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErrLocked()
}

func (c *Client) endErrLocked() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// closing reports, with c.mu held, whether new requests must fail.
func (c *Client) closingLocked() bool { return c.ended || c.userClosed || c.err != nil }

func (c *Client) enqueue(f outFrame) error {
	c.mu.Lock()
	if c.closingLocked() {
		err := c.endErrLocked()
		c.mu.Unlock()
		return err
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// newIDLocked returns the next request id, skipping 0 and ids in flight.
func (c *Client) newIDLocked() uint32 {
	for {
		c.nextID++
		if _, busy := c.calls[c.nextID]; c.nextID != 0 && !busy {
			return c.nextID
		}
	}
}

// roundTrip sends a request and waits for its reply.
func (c *Client) roundTrip(ctx context.Context, f *protocols.Frame) (*protocols.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, cl, err := c.send(f, nil, nil)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, id, cl)
}

// send queues request f under a new id and registers the call for its
// reply. register, if set, runs first under the same lock; an error from
// it fails the request. The id is taken and the frame queued under one
// lock, so that ids go out in increasing order.
func (c *Client) send(f *protocols.Frame, hook func(*protocols.Frame, bool), register func() error) (uint32, *call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closingLocked() {
		return 0, nil, c.endErrLocked()
	}
	if register != nil {
		if err := register(); err != nil {
			return 0, nil, err
		}
	}
	id := c.newIDLocked()
	f.Id = id
	b, err := protocols.EncodeFrame(f)
	if err == nil && c.connected.GetMaxFrameSize() > 0 {
		// NextFrame checks the body against the server's limit.
		_, _, err = protocols.NextFrame(b, int(c.connected.GetMaxFrameSize()))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("client: %w", err)
	}
	cl := &call{reply: make(chan *protocols.Frame, 1), hook: hook}
	c.calls[id] = cl
	c.queue = append(c.queue, outFrame{b: b})
	c.signal()
	return id, cl, nil
}

// wait waits for the reply to call id. An Error reply becomes a
// *protocols.RequestError. When ctx ends first the request is abandoned
// (its hook learns it), unless its reply has already arrived.
func (c *Client) wait(ctx context.Context, id uint32, cl *call) (*protocols.Frame, error) {
	var reply *protocols.Frame
	select {
	case reply = <-cl.reply:
	case <-c.done:
		return nil, c.endErr()
	case <-ctx.Done():
		c.mu.Lock()
		if c.calls[id] == cl {
			if cl.hook == nil {
				delete(c.calls, id)
			} else {
				cl.abandoned = true // the hook cleans up when the reply comes
			}
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		c.mu.Unlock()
		// The reply won the race (or the connection ended).
		select {
		case reply = <-cl.reply:
		case <-c.done:
			return nil, c.endErr()
		}
	}
	if e, ok := reply.Kind.(*protocols.Frame_Error); ok {
		return nil, &protocols.RequestError{Code: protocols.ErrorCode(e.Error.GetCode()), Message: e.Error.GetMessage()}
	}
	return reply, nil
}

// Publish sends data to channel and waits for the server's ack, which
// gives the publication's position in the channel. The server's refusal
// (a bad channel name, a payload too large) is a *protocols.RequestError;
// a frame over the server's max_frame_size fails without a round trip with
// an error wrapping protocols.ErrFrameTooLarge.
func (c *Client) Publish(ctx context.Context, channel string, data []byte) (Position, error) {
	p, _, err := c.publish(ctx, &protocols.Publish{Channel: channel, Data: data})
	return p, err
}

// PublishIdempotent is Publish with an idempotency key (at most 64 bytes):
// a publish of channel with the same key, within the window of the node
// that sequences the channel (2 minutes by default), sent to any node, is
// applied once; a retry gets the first position and duplicate true. Use
// it to retry a publish whose ack was lost with its connection.
func (c *Client) PublishIdempotent(ctx context.Context, channel, key string, data []byte) (pos Position, duplicate bool, err error) {
	if len(key) > protocols.MaxIdempotencyKey {
		return Position{}, false, fmt.Errorf("client: idempotency key is %d bytes, limit %d", len(key), protocols.MaxIdempotencyKey)
	}
	return c.publish(ctx, &protocols.Publish{Channel: channel, Data: data, IdempotencyKey: key})
}

func (c *Client) publish(ctx context.Context, p *protocols.Publish) (Position, bool, error) {
	f, err := c.roundTrip(ctx, &protocols.Frame{Kind: &protocols.Frame_Publish{Publish: p}})
	if err != nil {
		return Position{}, false, err
	}
	ack, ok := f.Kind.(*protocols.Frame_PublishAck)
	if !ok {
		return Position{}, false, unexpectedReply("Publish", f)
	}
	return Position{Epoch: ack.PublishAck.GetEpoch(), Offset: ack.PublishAck.GetOffset()}, ack.PublishAck.GetDuplicate(), nil
}

func unexpectedReply(req string, f *protocols.Frame) error {
	return fmt.Errorf("client: unexpected reply %T to %s", f.Kind, req)
}

// readLoop reads and dispatches frames until the transport ends, then
// tears the client down.
func (c *Client) readLoop() {
	defer c.wg.Done()
	err := c.read()
	c.teardown(err)
}

func (c *Client) read() error {
	for {
		body, err := c.tr.readFrame()
		if err != nil {
			if errors.Is(err, protocols.ErrMalformed) || errors.Is(err, protocols.ErrFrameTooLarge) {
				return c.protocolError(err)
			}
			return err
		}
		c.lastSeen.Store(time.Now().UnixNano())
		f, err := protocols.DecodeFrame(body)
		if errors.Is(err, protocols.ErrUnknownKind) {
			c.log.Debug("client: ignoring a frame of an unknown kind", "bytes", len(body))
			continue
		}
		if err != nil {
			return c.protocolError(err)
		}
		c.dispatch(f)
	}
}

// protocolError closes the connection over a bad frame from the server.
func (c *Client) protocolError(err error) error {
	code := protocols.CodeBadFrame
	if errors.Is(err, protocols.ErrFrameTooLarge) {
		code = protocols.CodeFrameTooLarge
	}
	ce := protocols.Closef(code, "%v", err)
	c.log.Debug("client: bad frame from the server", "err", err)
	if c.setErr(ce) {
		c.tr.close(ce.Code, ce.Reason)
	}
	return ce
}

func (c *Client) dispatch(f *protocols.Frame) {
	switch k := f.Kind.(type) {
	case *protocols.Frame_Ping:
		pong := pongFrame
		if f.Id != 0 {
			pong = protocols.MustEncode(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Pong{Pong: &protocols.Pong{}}})
		}
		_ = c.enqueue(outFrame{b: pong})
	case *protocols.Frame_Pong:
	case *protocols.Frame_Message:
		c.deliver(k.Message)
	case *protocols.Frame_Unsubscribed:
		if f.Id == 0 { // the server ended the subscription on its own
			c.resubscribe(k.Unsubscribed.GetChannel(), k.Unsubscribed.GetCode(), k.Unsubscribed.GetReason())
			return
		}
		c.reply(f)
	case *protocols.Frame_Join:
		c.presenceEvent(k.Join.GetChannel(), PresenceEvent{Join: true, Member: memberOf(k.Join.GetMember())})
	case *protocols.Frame_Leave:
		c.presenceEvent(k.Leave.GetChannel(), PresenceEvent{Member: memberOf(k.Leave.GetMember())})
	case *protocols.Frame_Disconnect:
		d := k.Disconnect
		ce := protocols.CloseErrorOf(d)
		c.log.Debug("client: server disconnects", "code", uint32(ce.Code), "reason", ce.Reason,
			"reconnect", d.GetReconnect(), "reconnect_url", d.GetReconnectUrl())
		c.setErr(ce)
		c.mu.Lock()
		c.queue = nil // after Disconnect the client sends nothing
		c.mu.Unlock()
		c.tr.finish(ce.Code, ce.Reason)
	default:
		if f.Id == 0 {
			c.log.Debug("client: unexpected push", "kind", fmt.Sprintf("%T", f.Kind))
			return
		}
		c.reply(f)
	}
}

func (c *Client) reply(f *protocols.Frame) {
	c.mu.Lock()
	cl := c.calls[f.Id]
	delete(c.calls, f.Id)
	abandoned := cl != nil && cl.abandoned
	c.mu.Unlock()
	if cl == nil {
		c.log.Debug("client: reply to no request", "id", f.Id, "kind", fmt.Sprintf("%T", f.Kind))
		return
	}
	if cl.hook != nil {
		cl.hook(f, abandoned)
	}
	cl.reply <- f
}

// deliver hands a message from the control stream to its subscription,
// waiting while the subscription's channel is full.
func (c *Client) deliver(m *protocols.Message) {
	c.mu.Lock()
	s := c.subs[m.GetChannel()]
	active := s != nil && s.active
	c.mu.Unlock()
	if !active {
		return // not subscribed (any more)
	}
	if s.volatile {
		// Over WebSocket a volatile channel's datagrams come as messages.
		s.deliverDatagram(m.GetOffset(), m.GetData())
		return
	}
	s.deliver(m)
}

// deliver hands a reliable message to the subscription, waiting while its
// channel is full.
func (s *Subscription) deliver(m *protocols.Message) {
	c := s.c
	// The decoder copied Data out of the read buffer: the caller may keep it.
	msg := Message{Channel: m.GetChannel(), Data: m.GetData(), Position: Position{Epoch: m.GetEpoch(), Offset: m.GetOffset()}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if msg.Epoch == s.last.Epoch && msg.Offset <= s.last.Offset {
		return // seen already (a recovery overlapping what was delivered)
	}
	s.last = msg.Position
	select {
	case s.ch <- msg:
		return
	default:
	}
	// Full: stop reading until there is room. The silence that follows is
	// ours, not the server's: the heartbeat does not count it.
	c.stalled.Add(1)
	select {
	case s.ch <- msg:
	case <-s.quit:
	case <-c.ctx.Done():
	}
	c.lastSeen.Store(time.Now().UnixNano())
	c.stalled.Add(-1)
}

// teardown runs once, on the read loop, after the transport has ended.
func (c *Client) teardown(readErr error) {
	c.mu.Lock()
	if c.err == nil && !c.userClosed {
		var ce *protocols.CloseError
		if errors.As(readErr, &ce) {
			c.err = ce
		} else {
			c.err = fmt.Errorf("client: %s: %w", c.tr.name(), readErr)
		}
	}
	c.ended = true
	subs := c.subs
	c.subs, c.calls, c.queue, c.aliases = nil, nil, nil, nil
	err := c.err
	c.mu.Unlock()

	c.cancel()
	c.tr.abort()
	<-c.writerDone
	for _, s := range subs {
		s.end()
	}
	c.log.Debug("client: connection ended", "err", err)
	close(c.done)
}

var pongFrame = protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Pong{Pong: &protocols.Pong{}}})

// writeLoop owns every write: it drains the queue without blocking, writes
// each batch at once, then waits for more. It also watches the heartbeat.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	defer close(c.writerDone)
	// beat fires when the server may have gone silent; after the client
	// gives up on it, it fires once more, when the close grace is over.
	beat := time.NewTimer(c.heartbeat)
	defer beat.Stop()
	beatC := beat.C
	if c.heartbeat <= 0 {
		beat.Stop()
		beatC = nil
	}
	gaveUp := false
	var batch [][]byte
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-beatC:
			if gaveUp {
				c.tr.abort()
				beatC = nil
				continue
			}
			next := c.checkHeartbeat()
			if next <= 0 {
				gaveUp, next = true, closeGrace
			}
			beat.Reset(next)
			continue
		case <-c.wake:
		}
		var err error
		if batch, err = c.flush(batch); err != nil {
			c.setErr(fmt.Errorf("client: %s: write: %w", c.tr.name(), err))
			c.tr.abort()
			return
		}
	}
}

// checkHeartbeat returns how long to wait before the next check, or 0
// after closing a connection that has been silent for too long.
func (c *Client) checkHeartbeat() time.Duration {
	if c.stalled.Load() > 0 {
		return c.heartbeat
	}
	idle := time.Since(time.Unix(0, c.lastSeen.Load()))
	if idle < c.heartbeat {
		return c.heartbeat - idle
	}
	ce := protocols.Closef(protocols.CodeHeartbeatTimeout, "nothing from the server for %v", idle.Round(time.Millisecond))
	c.log.Debug("client: heartbeat timeout", "idle", idle)
	if c.setErr(ce) {
		c.tr.close(ce.Code, ce.Reason)
	}
	return 0
}

// flush writes everything queued, a batch per write; a raw frame goes
// alone.
func (c *Client) flush(batch [][]byte) ([][]byte, error) {
	for {
		batch = batch[:0]
		var res chan error
		c.mu.Lock()
		n, size := 0, 0
		for _, f := range c.queue {
			if f.res != nil {
				if n == 0 {
					batch, res, n = append(batch, f.b), f.res, 1
				}
				break
			}
			if n > 0 && size+len(f.b) > c.batchLimit {
				break
			}
			batch = append(batch, f.b)
			size += len(f.b)
			n++
		}
		rest := copy(c.queue, c.queue[n:])
		clear(c.queue[rest:])
		c.queue = c.queue[:rest]
		c.mu.Unlock()
		if n == 0 {
			return batch, nil
		}
		err := c.tr.writeFrames(batch, time.Now().Add(writeTimeout))
		clear(batch)
		if res != nil {
			res <- err
		}
		if err != nil {
			return batch, err
		}
	}
}

// Refresh hands the node a new token for this session, before the one it
// connected with expires (Connected().ExpiresInS; TokenExpiry says when).
// The token must be for the same user; its capabilities replace the old
// ones. It returns when the new token expires (zero: never). A refused
// token is a *protocols.RequestError with code 110, and the old one stays
// in force until it expires.
func (c *Client) Refresh(ctx context.Context, token string) (time.Time, error) {
	f, err := c.roundTrip(ctx, &protocols.Frame{Kind: &protocols.Frame_Refresh{Refresh: &protocols.Refresh{Token: token}}})
	if err != nil {
		return time.Time{}, err
	}
	r, ok := f.Kind.(*protocols.Frame_Refreshed)
	if !ok {
		return time.Time{}, unexpectedReply("Refresh", f)
	}
	return c.expiryAt(r.Refreshed.GetExpiresInS()), nil
}

// expiryAt turns a token's seconds left into a time (zero: no expiry).
func (c *Client) expiryAt(s uint32) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(s) * time.Second)
}
