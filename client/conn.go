package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Conn is a connection to a Switchyard cluster that outlives its sessions:
// when a session ends it dials again, with full-jitter backoff, the node a
// drain named (Disconnect.reconnect_url) or the next of its URLs, and on
// the new session
//
//   - subscribes again to every channel from the last message delivered,
//     so that what was published meanwhile arrives from the channel's
//     history, in order and none twice (Sub.Recovered and Sub.Resyncs tell
//     when the history no longer held it);
//   - sends again every publish that was not acknowledged, with the same
//     idempotency key, so that it is applied once.
//
// After each session starts it asks that node for the cluster's other
// nodes (GET /api/nodes) and adds their URLs, its own region's first, to
// those it dials, so that one URL is enough to start.
//
// A Client is one session; a Conn is what an application keeps. It stops
// on a terminal close code (3500–3999, 4500–4999), on Close, or when the
// context given to Connect ends.
type Conn struct {
	// immutable after Connect
	opts    Options
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	backoff [2]time.Duration // min, max

	reconnects atomic.Uint64
	pumps      sync.WaitGroup // every Sub's forwarding goroutines

	mu      sync.Mutex
	urls    []string        // to dial, in order; the first that works is used
	given   map[string]bool // the URLs of Connect and AddURLs (the others were discovered)
	next    int             // the URL to try next
	cur     *Client         // the live session, nil while reconnecting
	ready   chan struct{}   // closed when cur is set; replaced when it ends
	subs    map[string]*Sub
	err     error // why the Conn ended
	closing bool
}

// Sub is a subscription of a Conn: its messages keep coming, on the same
// channel, across sessions.
type Sub struct {
	conn    *Conn
	channel string
	ch      chan Message

	events    chan PresenceEvent // WithPresence; else nil
	recovered atomic.Bool
	resyncs   atomic.Uint64

	mu     sync.Mutex
	last   Position // the last message delivered (or the first subscription's position)
	closed bool
}

// Connect dials the first of urls that answers (as Dial does, with opts)
// and returns a Conn that keeps a session to one of them from then on.
// More URLs may be given later with AddURLs.
func Connect(ctx context.Context, urls []string, opts Options) (*Conn, error) {
	if len(urls) == 0 {
		return nil, errors.New("client: Connect needs at least one URL")
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		opts: opts, ctx: cctx, cancel: cancel, done: make(chan struct{}),
		backoff: [2]time.Duration{250 * time.Millisecond, 10 * time.Second},
		urls:    slices.Clone(urls), ready: make(chan struct{}), subs: make(map[string]*Sub),
		given: make(map[string]bool),
	}
	for _, u := range urls {
		c.given[u] = true
	}
	var err error
	for i := 0; i < len(urls); i++ {
		var cl *Client
		if cl, err = c.dialNext(ctx); err == nil {
			c.adopt(cl)
			go c.run()
			return c, nil
		}
		var later *protocols.CloseError
		if errors.As(err, &later) && later.Code == protocols.CodeTryLater && later.ReconnectAfter > 0 {
			// The node paces new sessions: wait as told (ctx bounds it).
			select {
			case <-time.After(later.ReconnectAfter):
				i--
				continue
			case <-ctx.Done():
			}
			break
		}
	}
	cancel()
	return nil, err
}

// AddURLs adds node URLs to dial after a session ends.
func (c *Conn) AddURLs(urls ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range urls {
		c.given[u] = true
		if !slices.Contains(c.urls, u) {
			c.urls = append(c.urls, u)
		}
	}
}

// learned replaces the discovered URLs with those a node listed now: the
// given ones stay, nodes gone (or moved to other ports) are forgotten.
func (c *Conn) learned(urls []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := slices.DeleteFunc(c.urls, func(u string) bool { return !c.given[u] && !slices.Contains(urls, u) })
	for _, u := range urls {
		if !slices.Contains(kept, u) {
			kept = append(kept, u)
		}
	}
	c.urls = kept
}

// URLs lists the node URLs the Conn dials, in order.
func (c *Conn) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.urls)
}

func (c *Conn) log() *slog.Logger {
	if c.opts.Logger != nil {
		return c.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Reconnects counts the sessions after the first.
func (c *Conn) Reconnects() uint64 { return c.reconnects.Load() }

// Client is the current session, or nil while reconnecting.
func (c *Conn) Client() *Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Done is closed when the Conn has ended; Err then tells why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the Conn ended (nil after Close).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the Conn and its session.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closing = true
	cur := c.cur
	c.mu.Unlock()
	c.cancel()
	if cur != nil {
		cur.Close()
	}
	<-c.done
	return nil
}

func (c *Conn) dialNext(ctx context.Context) (*Client, error) {
	c.mu.Lock()
	url := c.urls[c.next%len(c.urls)]
	c.next++
	c.mu.Unlock()
	// A dead node's WebTransport address never answers (UDP): do not let
	// one attempt hold up the others for long.
	dctx, cancel := context.WithTimeout(ctx, dialAttemptTimeout)
	defer cancel()
	cl, err := Dial(dctx, url, c.opts)
	if err != nil {
		c.log().Debug("client: dial failed", "url", url, "err", err)
	}
	return cl, err
}

// dialAttemptTimeout bounds one dial of a Conn.
const dialAttemptTimeout = 3 * time.Second

// adopt makes cl the current session and subscribes it to every channel.
func (c *Conn) adopt(cl *Client) {
	c.log().Debug("client: session up", "transport", cl.Transport(), "node", cl.Connected().GetNode())
	c.mu.Lock()
	c.cur = cl
	close(c.ready)
	subs := make([]*Sub, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		c.pumps.Add(1)
		go func() {
			defer c.pumps.Done()
			s.attach(cl)
		}()
	}
	c.pumps.Add(1)
	go func() {
		defer c.pumps.Done()
		c.discover(cl)
	}()
}

// discover adds the URLs of the cluster's other live nodes, as the node
// of session cl lists them, its region first.
func (c *Conn) discover(cl *Client) {
	base := cl.httpBase
	if base == "" {
		return
	}
	tlsConf, err := c.opts.tlsConfig()
	if err != nil {
		return
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, base+"/api/nodes", nil)
	if err != nil {
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var body struct {
		Self    string `json:"self"`
		Region  string `json:"region"`
		Regions map[string][]struct {
			Name     string            `json:"name"`
			URLs     map[string]string `json:"urls"`
			Draining bool              `json:"draining"`
		} `json:"regions"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) != nil {
		return
	}
	var near, far []string
	for region, nodes := range body.Regions {
		for _, n := range nodes {
			u := nodeURL(n.URLs, cl.Transport())
			if n.Name == body.Self || n.Draining || u == "" {
				continue
			}
			if region == body.Region {
				near = append(near, u)
			} else {
				far = append(far, u)
			}
		}
	}
	slices.Sort(near)
	slices.Sort(far)
	c.learned(append(near, far...))
}

// nodeURL picks the URL to dial a node by: WebTransport (with its
// WebSocket fallback) when it has one, else wss://, else ws://.
func nodeURL(urls map[string]string, _ string) string {
	if u := urls["wt"]; u != "" {
		return strings.TrimSuffix(u, "/wt")
	}
	if u := urls["wss"]; u != "" {
		return u
	}
	return urls["ws"]
}

// run waits for each session's end and dials the next.
func (c *Conn) run() {
	defer close(c.done)
	healed := false // a 3502 asked TokenFunc for a new token since the last session
	for {
		c.mu.Lock()
		cur := c.cur
		c.mu.Unlock()
		select {
		case <-cur.Done():
		case <-c.ctx.Done():
		}
		err := cur.Err()
		c.mu.Lock()
		c.cur, c.ready = nil, make(chan struct{})
		closing := c.closing
		c.mu.Unlock()
		var ce *protocols.CloseError
		if closing || c.ctx.Err() != nil {
			c.finish(nil)
			return
		}
		heal := errors.As(err, &ce) && ce.Code == protocols.CodeUnauthorized && c.opts.TokenFunc != nil && !healed
		if errors.As(err, &ce) && !ce.Code.Reconnect() && !heal {
			c.finish(err)
			return
		}
		healed = heal // a second 3502 in a row is final
		if errors.As(err, &ce) && ce.ReconnectURL != "" {
			c.prefer(ce.ReconnectURL)
		}
		cl, ok := c.redial(ce)
		if !ok {
			c.finish(nil)
			return
		}
		c.reconnects.Add(1)
		c.adopt(cl)
	}
}

// prefer puts url first among those to dial.
func (c *Conn) prefer(url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.urls = slices.DeleteFunc(c.urls, func(u string) bool { return u == url })
	c.urls = slices.Insert(c.urls, 0, url)
	c.next = 0
}

// redial dials every URL in turn, then waits (full-jitter backoff) and
// tries them all again, until a session is up or the Conn is closed.
func (c *Conn) redial(ce *protocols.CloseError) (*Client, bool) {
	wait := c.backoff[0]
	first := time.Duration(mrand.Int64N(int64(wait) + 1))
	if ce != nil && ce.ReconnectAfter > 0 {
		first = ce.ReconnectAfter // the node asked for at least this
	}
	select {
	case <-time.After(first):
	case <-c.ctx.Done():
		return nil, false
	}
	for {
		c.mu.Lock()
		n := len(c.urls)
		c.mu.Unlock()
		for i := 0; i < n; i++ {
			if c.ctx.Err() != nil {
				return nil, false
			}
			cl, err := c.dialNext(c.ctx)
			if err == nil {
				return cl, true
			}
			var later *protocols.CloseError
			if errors.As(err, &later) && later.Code == protocols.CodeTryLater && later.ReconnectAfter > 0 {
				// The node is up and pacing new sessions: come back to it
				// when it said, give or take a tenth. That is no failure:
				// the backoff does not grow, the attempt does not count.
				pause := later.ReconnectAfter + time.Duration(mrand.Int64N(int64(later.ReconnectAfter)/10+1))
				select {
				case <-time.After(pause):
				case <-c.ctx.Done():
					return nil, false
				}
				c.mu.Lock()
				if c.next > 0 {
					c.next-- // the same node again
				}
				c.mu.Unlock()
				i--
				wait = c.backoff[0]
			}
		}
		select {
		case <-time.After(time.Duration(mrand.Int64N(int64(wait)+1)) + c.backoff[0]):
		case <-c.ctx.Done():
			return nil, false
		}
		wait = min(2*wait, c.backoff[1])
	}
}

func (c *Conn) finish(err error) {
	c.mu.Lock()
	c.err = err
	c.closing = true
	subs := c.subs
	c.subs = map[string]*Sub{}
	cur := c.cur
	c.mu.Unlock()
	c.cancel()
	if cur != nil {
		cur.Close()
	}
	c.pumps.Wait() // then nobody sends on the Messages channels
	for _, s := range subs {
		s.close()
	}
}

// session waits for a live session (or the end of ctx or of the Conn).
func (c *Conn) session(ctx context.Context) (*Client, error) {
	for {
		c.mu.Lock()
		cur, ready, ended := c.cur, c.ready, c.closing
		c.mu.Unlock()
		if ended {
			return nil, errors.New("client: connection closed")
		}
		if cur != nil {
			return cur, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, fmt.Errorf("client: connection ended: %v", c.Err())
		}
	}
}

// Publish publishes data on channel and waits for its position. It gives
// the publish an idempotency key and, when the session ends before the
// ack, sends it again on the next session with the same key, so that it is
// applied once; it returns when acknowledged, or when ctx ends.
func (c *Conn) Publish(ctx context.Context, channel string, data []byte) (Position, error) {
	key := newKey()
	for {
		cl, err := c.session(ctx)
		if err != nil {
			return Position{}, err
		}
		pos, _, err := cl.PublishIdempotent(ctx, channel, key, data)
		var re *protocols.RequestError
		switch {
		case err == nil:
			return pos, nil
		case errors.As(err, &re), ctx.Err() != nil:
			return Position{}, err // refused, or given up: not the session's end
		}
		select { // the session ended: wait for the next
		case <-cl.Done():
		case <-ctx.Done():
			return Position{}, ctx.Err()
		}
	}
}

// Subscribe subscribes to channel on the current session (waiting for one)
// and on every later one, from the last message delivered. Options apply
// to the first subscription: Since(Position{}) starts with all the
// channel's history holds.
func (c *Conn) Subscribe(ctx context.Context, channel string, opts ...SubscribeOption) (*Sub, error) {
	c.mu.Lock()
	if _, dup := c.subs[channel]; dup {
		c.mu.Unlock()
		return nil, &protocols.RequestError{Code: protocols.ErrCodeAlreadySubscribed, Message: fmt.Sprintf("already subscribed to %q", channel)}
	}
	c.mu.Unlock()
	cl, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	inner, err := cl.Subscribe(ctx, channel, opts...)
	if err != nil {
		return nil, err
	}
	s := &Sub{conn: c, channel: channel, ch: make(chan Message, cl.msgBuffer), last: inner.Position()}
	if inner.events != nil {
		s.events = make(chan PresenceEvent, presenceBuffer)
		go s.forwardPresence(inner)
	}
	s.recovered.Store(len(opts) == 0 || inner.Recovered()) // without Since there is nothing to miss
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		inner.Unsubscribe(ctx)
		return nil, errors.New("client: connection closed")
	}
	c.subs[channel] = s
	c.pumps.Add(1)
	if cur := c.cur; cur != nil && cur != cl {
		// A new session came up while this one subscribed, and did not
		// know of s yet.
		c.pumps.Add(1)
		go func() {
			defer c.pumps.Done()
			s.attach(cur)
		}()
	}
	c.mu.Unlock()
	go func() {
		defer c.pumps.Done()
		s.pump(inner)
		s.again(cl)
	}()
	return s, nil
}

// Messages delivers the channel's messages, in order and none twice,
// across sessions. It is closed when the Conn ends.
func (s *Sub) Messages() <-chan Message { return s.ch }

// Channel is the subscribed channel.
func (s *Sub) Channel() string { return s.channel }

// Recovered reports whether the last (re)subscription got every message
// after the last one delivered: true for a first subscription without
// Since, and for one with Since that the history covered.
func (s *Sub) Recovered() bool { return s.recovered.Load() }

// Resyncs counts the resubscriptions after which messages were missing:
// the application should fetch its state anew.
func (s *Sub) Resyncs() uint64 { return s.resyncs.Load() }

// attach subscribes again on a new session, from the last message.
func (s *Sub) attach(cl *Client) {
	var inner *Subscription
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		s.mu.Lock()
		since := s.last
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(s.conn.ctx, 15*time.Second)
		var err error
		opts := []SubscribeOption{Since(since)}
		if s.events != nil {
			opts = append(opts, WithPresence())
		}
		inner, err = cl.Subscribe(ctx, s.channel, opts...)
		cancel()
		if err == nil {
			if !inner.Recovered() {
				s.conn.log().Debug("client: resubscribed without recovery", "channel", s.channel,
					"since_epoch", since.Epoch, "since_offset", since.Offset,
					"now_epoch", inner.Position().Epoch, "now_offset", inner.Position().Offset)
			}
			break
		}
		var re *protocols.RequestError
		if errors.As(err, &re) && re.Code != protocols.ErrCodeInternal {
			s.conn.log().Warn("client: resubscribe refused", "channel", s.channel, "err", err)
			return // refused for good (a bad name, too many subscriptions)
		}
		select { // the owner did not answer in time, say: try again on this session
		case <-cl.Done():
			return // the next session tries again
		case <-s.conn.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	go s.forwardPresence(inner)
	s.recovered.Store(inner.Recovered())
	if !inner.Recovered() {
		s.resyncs.Add(1)
		s.mu.Lock()
		s.last = inner.Position()
		s.mu.Unlock()
	}
	s.pump(inner)
	s.again(cl)
}

// again subscribes anew on session cl when its subscription ended while
// the session lives (the server ended it and the client's own
// resubscription failed, say).
func (s *Sub) again(cl *Client) {
	select {
	case <-cl.Done():
		return // the next session subscribes
	case <-s.conn.ctx.Done():
		return
	default:
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.attach(cl)
	}
}

// pump forwards one session's messages, dropping any already delivered.
func (s *Sub) pump(inner *Subscription) {
	for m := range inner.Messages() {
		s.mu.Lock()
		if s.closed || m.Epoch == s.last.Epoch && m.Offset <= s.last.Offset && !m.Datagram {
			s.mu.Unlock()
			continue
		}
		if !m.Datagram {
			s.last = m.Position
		}
		s.mu.Unlock()
		select {
		case s.ch <- m:
		case <-s.conn.ctx.Done():
			return
		}
	}
}

func (s *Sub) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// newKey is a random idempotency key: 16 base64url characters.
func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
