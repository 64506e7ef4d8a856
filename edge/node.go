// Package edge is a Switchyard node: channels and their subscribers,
// sessions over WebSocket and WebTransport, the HTTP server API, and the
// listeners that serve them.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/protocols/websocket"
	"github.com/switchyard/switchyard/protocols/webtransport"
)

// SignalServer is the node's WebRTC signaling (signaling.Server): an HTTP
// handler for /signal whose connections Close ends.
type SignalServer interface {
	http.Handler
	Close(ctx context.Context) error
}

// CertSource supplies the TLS certificate; certs.Store satisfies it. The
// node derives /certhash from the current leaf.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Config configures a node. Zero values take the defaults given.
type Config struct {
	// Name identifies the node to clients. Zero: the host name.
	Name string
	// Region is where the node runs. Zero: "local".
	Region string

	// Listen is the TLS address: TCP for WebSocket and the API, UDP for
	// HTTP/3 and WebTransport. Empty: no TLS listeners. Port 0 picks one
	// (the same number for TCP and UDP is not guaranteed then).
	Listen string
	// HTTP is the plain-HTTP address for local browsers and tools. Empty:
	// none.
	HTTP string
	// Certs is required when Listen is set.
	Certs CertSource
	// ALPN are more protocols the TCP TLS listener offers, after h2 and
	// http/1.1: "acme-tls/1" for an ACME TLS-ALPN-01 challenge
	// (golang.org/x/crypto/acme/autocert as Certs answers it).
	ALPN []string

	// Auth checks each session's token (Connect.token, or the WebSocket
	// upgrade's ?token=) and its capabilities on every subscribe,
	// publish, presence request and datagram; *auth.Verifier satisfies
	// it. Nil: every session is anonymous and may do anything (a dev node
	// on loopback).
	Auth Authenticator

	// Limits caps sessions and publishes per client IP, user and session,
	// and paces new sessions (reconnect storms).
	Limits Limits

	// APIKeys are further keys for /api, each with its scopes (publish,
	// history, presence, admin); refusals are logged with the key's name.
	APIKeys *auth.APIKeys
	// APIKey guards /api with every scope. Empty, with no APIKeys: the API
	// answers 403 api_disabled.
	APIKey string
	// AllowedOrigins lists the browser origins ("https://app.example.com")
	// that may open sessions; "*" allows any. Requests without an Origin
	// header (non-browser clients) and pages served by this node itself
	// are always allowed: the origins of its listeners (on a loopback
	// listener also as localhost and [::1]; on an unspecified address such
	// as 0.0.0.0, each address of the host's interfaces) and of PublicURLs.
	// The request's Host header is never trusted for this, so a page on a
	// rebinding DNS name cannot pass as the node's own.
	AllowedOrigins []string
	// PublicURLs are the URLs clients reach this node by when they are not
	// its listen addresses (a DNS name, a proxy), such as
	// "https://rt.example.com" (WebTransport and wss://) or
	// "http://rt.example.com:8080" (ws://). Pages of their origins may
	// connect, and they are what PublicURLs() advertises. Zero: the listen
	// addresses.
	PublicURLs []string

	// Session tunes every session (queue limits, heartbeats, frame size).
	Session protocols.SessionConfig
	// BatchUDPWrites sends the QUIC packets of all WebTransport sessions in
	// batches, several per system call (webtransport.Config.BatchWrites).
	// Zero: one system call per packet, as quic-go does.
	BatchUDPWrites bool
	// MaxSubscriptions per session. Zero: 128.
	MaxSubscriptions int
	// MaxChannelLen is the longest channel name in bytes. Zero: 128.
	MaxChannelLen int
	// VolatileChannels are the channels whose publications travel as
	// datagrams (latest wins, no history, nothing resent): names, or
	// prefixes ending in "*" ("game:*"); "*" makes every channel volatile.
	// Zero: none (the dev node of cmd/switchyard sets "game:*").
	VolatileChannels []string
	// PresenceChannels keep presence (who is in them, over the cluster:
	// the presence request, GET /api/presence, join and leave events):
	// names, or prefixes ending in "*". Volatile channels keep none.
	// Zero: none (the dev node of cmd/switchyard sets "chat" and "chat:*").
	PresenceChannels []string
	// PresenceEventLimit is the most members a channel may have for its
	// join and leave events to go out (above it, only the request and the
	// API tell). Zero: 1,000.
	PresenceEventLimit int
	// History keeps the latest publications of the channels its rules
	// match (the first matching rule wins), for recovery: a client that
	// subscribes again with the position it last saw gets what it missed.
	// Zero: no channel keeps history (the dev node of cmd/switchyard keeps
	// 100 publications for 5 minutes on "chat" and "chat:*").
	History []HistoryRule
	// Replicas is how many nodes hold each channel's state when Cluster is
	// a Replicator (mesh.Cluster is): 2 (zero means 2) keeps a copy at the
	// channel's successor, so that the owner's death, a join or a drain
	// keeps the channel's epoch, history and idempotency keys; 1 keeps
	// none (a publication is out a round trip sooner).
	Replicas int
	// MaxDatagramSize is the largest payload of a volatile publication,
	// told to clients in Connected. Zero:
	// protocols.DefaultMaxDatagramSize (1,100 bytes, which fits any QUIC
	// path), or less when a frame is smaller.
	MaxDatagramSize int
	// DrainWindow is the time over which a draining node spreads its
	// clients' reconnects (each is told a random wait below it, with the
	// URL of another node of its region). Zero: 1 s.
	DrainWindow time.Duration
	// OnDrain is called when an admin asks the node to drain (POST
	// /api/drain): the program then drains it as on SIGTERM. Nil: the API
	// answers 501.
	OnDrain func()
	// ConnectTimeout is how long a new session may take to send Connect.
	// Zero: 10 s.
	ConnectTimeout time.Duration
	// HTTPReadHeaderTimeout is how long a client of the TCP listeners may
	// take to send a request's headers (on the TLS listener, also the TLS
	// handshake). Zero: 10 s.
	HTTPReadHeaderTimeout time.Duration
	// HTTPBodyTimeout is how long an API request may take to send its body
	// (408 body_timeout after), and how long a refused request's unread
	// body is waited for before its connection closes. Zero: 10 s.
	HTTPBodyTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection that has waited this
	// long for its next request. Zero: 60 s.
	HTTPIdleTimeout time.Duration
	// MaxHTTPConnsPerIP caps the TCP connections of one client IP, over
	// both TCP listeners, that are still HTTP connections: one upgraded to
	// a WebSocket session stops counting. Over the cap, a plain-HTTP
	// connection is answered 429 and closed, a TLS one closed. Behind a
	// proxy all clients share its IP: raise it or turn it off. Zero: 256;
	// negative: no cap.
	MaxHTTPConnsPerIP int

	// Cluster joins the node to a mesh; nil: the node is on its own.
	Cluster Cluster
	// Nodes lists the cluster's nodes for /api/nodes; nil: this node only.
	Nodes func() []NodeInfo
	// ChannelIdleTTL is how long a channel without subscribers keeps its
	// epoch and offset after its last use. Zero: 5 minutes.
	ChannelIdleTTL time.Duration

	// Signal serves /signal (WebRTC signaling; signaling.Server satisfies
	// it) on every TCP listener. Shutdown closes it with the sessions. Nil:
	// no /signal (404).
	Signal SignalServer

	// Extra routes added to every listener's mux (the demo page, the
	// browser SDK). Paths the node serves itself win.
	Extra map[string]http.Handler

	// MetricsKey, when set, must come with /metrics requests on listeners
	// not bound to a loopback address (as "Authorization: Bearer <key>",
	// which Prometheus sends, or X-API-Key): a key of its own, so that a
	// scraper cannot publish. Empty: /metrics is open on every listener;
	// it tells counts, never a channel name or a client id.
	MetricsKey string
	// MetricsCollectors are served at /metrics besides the node's own
	// metrics and the Go runtime and process collectors (the mesh's:
	// metrics.Mesh). Nil: none.
	MetricsCollectors []prometheus.Collector

	// Logger. Zero: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name, _ = os.Hostname()
		if c.Name == "" {
			c.Name = "switchyard"
		}
	}
	if c.Region == "" {
		c.Region = "local"
	}
	c.Session = c.Session.WithDefaults()
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 128
	}
	if c.MaxChannelLen <= 0 {
		c.MaxChannelLen = 128
	}
	if c.MaxDatagramSize <= 0 {
		c.MaxDatagramSize = min(protocols.DefaultMaxDatagramSize, c.Session.MaxFrameSize-64)
	}
	if c.DrainWindow <= 0 {
		c.DrainWindow = time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.HTTPReadHeaderTimeout <= 0 {
		c.HTTPReadHeaderTimeout = 10 * time.Second
	}
	if c.HTTPBodyTimeout <= 0 {
		c.HTTPBodyTimeout = 10 * time.Second
	}
	if c.HTTPIdleTimeout <= 0 {
		c.HTTPIdleTimeout = 60 * time.Second
	}
	if c.MaxHTTPConnsPerIP == 0 {
		c.MaxHTTPConnsPerIP = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Limits = c.Limits.withDefaults()
	return c
}

// Addrs are the addresses a started node listens on; nil when not
// configured.
type Addrs struct {
	TLS  net.Addr // TCP
	QUIC net.Addr // UDP
	HTTP net.Addr // TCP, plain
}

// Node is one edge node.
type Node struct {
	// immutable after New
	cfg     Config
	hub     *Hub
	origins map[string]bool // normalized allowed origins
	anyOrig bool
	mux     http.Handler // routes()
	ws      *websocket.Server
	wt      *webtransport.Server // nil without Listen
	conns   *connLimiter         // nil: no per-IP cap
	limits  *limiter
	logRate protocols.LogLimiter // repeated refusals are logged once in a while
	debug   bool                 // the logger takes debug lines: each session's start and end
	metrics *nodeMetrics         // the node's registry and /metrics (metrics.go)

	// guarded by mu
	mu       sync.Mutex
	clients  map[*client]struct{}
	stopping bool
	started  bool
	addrs    Addrs
	own      map[string]bool // origins of the node's own listeners, set by Start
	servers  []*http.Server
	udp      net.PacketConn

	sweep    chan struct{}  // closed by Shutdown: stops the channel sweeper
	sessions sync.WaitGroup // one per tracked client
	serving  sync.WaitGroup // one per Serve goroutine and the sweeper
}

// ErrStopped is returned by Start after Shutdown.
var ErrStopped = errors.New("edge: node stopped")

// New validates cfg and returns a node ready to Start.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if cfg.Listen != "" && cfg.Certs == nil {
		return nil, errors.New("edge: Config.Certs is required with Listen")
	}
	n := &Node{
		cfg: cfg,
		hub: NewHub(HubConfig{Cluster: cfg.Cluster, IdleTTL: cfg.ChannelIdleTTL, Volatile: volatileMatcher(cfg.VolatileChannels),
			History: historyPolicy(cfg.History), Replicas: cfg.Replicas, Log: cfg.Logger,
			Presence: presenceMatcher(cfg.PresenceChannels, cfg.VolatileChannels), PresenceEventLimit: cfg.PresenceEventLimit}),
		origins: make(map[string]bool),
		limits:  newLimiter(cfg.Limits),
		debug:   cfg.Logger.Enabled(context.Background(), slog.LevelDebug),
		clients: make(map[*client]struct{}),
		sweep:   make(chan struct{}),
	}
	for _, r := range cfg.History {
		name := strings.TrimSuffix(r.Channels, "*")
		switch {
		case r.Channels == "*":
		case r.Channels == "" || strings.Contains(name, "*"):
			return nil, fmt.Errorf("edge: history rule %q: '*' may only end a pattern (chat:*) or stand alone (every channel)", r.Channels)
		case name != "":
			if err := n.checkChannel(name); err != nil {
				return nil, fmt.Errorf("edge: history rule %q: %w", r.Channels, err)
			}
		}
		if r.Size < 0 || r.Size > 1<<20 {
			return nil, fmt.Errorf("edge: history rule %q: size %d: want 0 to 1048576", r.Channels, r.Size)
		}
		if r.TTL < 0 {
			return nil, fmt.Errorf("edge: history rule %q: negative TTL %v", r.Channels, r.TTL)
		}
		if probe := strings.TrimSuffix(r.Channels, "*") + "x"; r.Size > 0 && n.hub.IsVolatile(probe) {
			cfg.Logger.Warn("history rule matches volatile channels, which keep no history", "rule", r.Channels)
		}
	}
	for _, set := range []struct {
		what     string
		patterns []string
	}{{"volatile", cfg.VolatileChannels}, {"presence", cfg.PresenceChannels}} {
		for _, p := range set.patterns {
			name := strings.TrimSuffix(p, "*")
			switch {
			case p == "*":
			case strings.Contains(name, "*"):
				return nil, fmt.Errorf("edge: %s channel pattern %q: '*' may only end a pattern (game:*) or stand alone (every channel)", set.what, p)
			default:
				if err := n.checkChannel(name); err != nil {
					return nil, fmt.Errorf("edge: %s channel pattern %q: %w", set.what, p, err)
				}
			}
		}
	}
	if cfg.MaxDatagramSize > cfg.Session.MaxFrameSize-64 {
		return nil, fmt.Errorf("edge: MaxDatagramSize %d does not fit in a frame of %d bytes", cfg.MaxDatagramSize, cfg.Session.MaxFrameSize)
	}
	for _, u := range cfg.PublicURLs {
		if _, err := publicOrigin(u); err != nil {
			return nil, fmt.Errorf("edge: public URL %q: %w", u, err)
		}
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimSpace(o)
		if o == "*" {
			n.anyOrig = true
			continue
		}
		norm, err := normalizeOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("edge: allowed origin %q: %w", o, err)
		}
		n.origins[norm] = true
	}
	metrics, err := newNodeMetrics(n)
	if err != nil {
		return nil, err
	}
	n.metrics = metrics
	n.ws = websocket.NewServer(n, websocket.Config{Session: cfg.Session})
	if cfg.Listen != "" {
		wt, err := webtransport.NewServer(n, webtransport.Config{
			TLSConfig: n.tlsConfig(),
			// n.mux is built below; the closure reads it once serving.
			Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.mux.ServeHTTP(w, r) }),
			BatchWrites: cfg.BatchUDPWrites,
			Session:     cfg.Session,
		})
		if err != nil {
			return nil, err
		}
		n.wt = wt
	}
	n.mux = n.routes()
	if cfg.MaxHTTPConnsPerIP > 0 {
		n.conns = newConnLimiter(cfg.MaxHTTPConnsPerIP, cfg.Logger)
	}
	return n, nil
}

func (n *Node) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: n.cfg.Certs.GetCertificate}
}

// Hub returns the node's channels.
func (n *Node) Hub() *Hub { return n.hub }

// Handler returns the node's HTTP routes (the same on every listener).
func (n *Node) Handler() http.Handler { return n.mux }

// Accept admits a new session; it implements protocols.Acceptor.
func (n *Node) Accept(s protocols.Session, r *http.Request) (protocols.Handler, error) {
	c, err := n.accept(s, r)
	if err != nil {
		n.metrics.refused(s, err)
		return nil, err
	}
	return c, nil
}

func (n *Node) track(c *client) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return false
	}
	n.clients[c] = struct{}{}
	n.sessions.Add(1)
	return true
}

func (n *Node) forget(c *client) {
	n.mu.Lock()
	_, ok := n.clients[c]
	delete(n.clients, c)
	if ok {
		n.metrics.retire(c) // under mu: a scrape counts c live or retired, never both
	}
	n.mu.Unlock()
	if ok {
		n.sessions.Done()
	}
}

// Sessions returns how many sessions are open.
func (n *Node) Sessions() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.clients)
}

// tcpListen opens the node's TCP listeners without TCP keepalive: sessions
// have their own heartbeats, and net/http closes idle HTTP connections
// (IdleTimeout). Go's default would turn keepalive on for every accepted
// connection, four setsockopt calls each, ~5 % of a connect's CPU here.
var tcpListen = net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: false}, KeepAlive: -1}

// Start binds the configured listeners and serves them in the background.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return ErrStopped
	}
	if n.started {
		return errors.New("edge: node already started")
	}
	n.started = true
	var lns []net.Listener
	fail := func(err error) error {
		for _, ln := range lns {
			ln.Close()
		}
		if n.udp != nil {
			n.udp.Close()
		}
		return err
	}
	if n.cfg.Listen != "" {
		ln, err := tcpListen.Listen(context.Background(), "tcp", n.cfg.Listen)
		if err != nil {
			return fail(fmt.Errorf("edge: listen tls %s: %w", n.cfg.Listen, err))
		}
		lns = append(lns, ln)
		n.addrs.TLS = ln.Addr()
		udpAddr := n.cfg.Listen
		if host, port, _ := net.SplitHostPort(n.cfg.Listen); port == "0" {
			// Try the TCP port for UDP too, so one number serves both.
			udpAddr = net.JoinHostPort(host, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
		}
		pc, err := net.ListenPacket("udp", udpAddr)
		if err != nil && udpAddr != n.cfg.Listen {
			pc, err = net.ListenPacket("udp", n.cfg.Listen)
		}
		if err != nil {
			return fail(fmt.Errorf("edge: listen quic %s: %w", n.cfg.Listen, err))
		}
		n.udp = pc
		n.addrs.QUIC = pc.LocalAddr()
	}
	if n.cfg.HTTP != "" {
		ln, err := tcpListen.Listen(context.Background(), "tcp", n.cfg.HTTP)
		if err != nil {
			return fail(fmt.Errorf("edge: listen http %s: %w", n.cfg.HTTP, err))
		}
		lns = append(lns, ln)
		n.addrs.HTTP = ln.Addr()
	}
	n.own = ownOrigins(n.addrs, n.cfg.PublicURLs)
	errLog := slog.NewLogLogger(n.cfg.Logger.Handler(), slog.LevelDebug)
	for _, ln := range lns {
		srv := n.httpServer(errLog)
		isTLS := ln.Addr() == n.addrs.TLS
		if n.conns != nil {
			ln = n.conns.listener(ln, !isTLS)
		}
		if !isTLS {
			// WebSocket upgrades to /ws skip net/http (protocols/websocket/front.go).
			ln = n.ws.Front(ln, websocket.FrontConfig{
				Path: "/ws", Admit: n.admitting, Upgraded: releaseHandedOver, HeaderTimeout: n.cfg.HTTPReadHeaderTimeout,
			})
		}
		if isTLS {
			srv.TLSConfig = n.tlsConfig()
			srv.TLSConfig.NextProtos = append([]string{"h2", "http/1.1"}, n.cfg.ALPN...)
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		n.servers = append(n.servers, srv)
		n.serving.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.cfg.Logger.Error("http server failed", "addr", ln.Addr(), "err", err)
			}
		})
	}
	n.serving.Go(n.sweepLoop)
	if n.udp != nil {
		pc := n.udp
		n.serving.Go(func() {
			if err := n.wt.Serve(pc); err != nil {
				n.cfg.Logger.Error("http/3 server failed", "addr", pc.LocalAddr(), "err", err)
			}
		})
	}
	return nil
}

// Addrs returns the bound addresses after Start.
func (n *Node) Addrs() Addrs {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs
}

// Shutdown stops taking sessions, closes every open session with
// CodeGoingAway so that clients reconnect elsewhere, waits for them to end,
// then closes the listeners. It returns ctx.Err() if ctx ends first (the
// listeners are closed regardless). It is safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.stopping = true
	clients := make([]*client, 0, len(n.clients))
	for c := range n.clients {
		clients = append(clients, c)
	}
	servers := n.servers
	n.mu.Unlock()

	advice := n.reconnectAdvice()
	for i, c := range clients {
		ce := &protocols.CloseError{Code: protocols.CodeGoingAway, Reason: "node shutting down"}
		if url := advice(c, i); url != "" {
			// Spread the reconnects over the drain window so that the
			// next node does not take them all at once.
			ce.ReconnectURL = url
			ce.ReconnectAfter = time.Duration(rand.Int64N(int64(n.cfg.DrainWindow)))
		}
		c.session.CloseWith(ce)
	}
	var sigDone chan error
	if n.cfg.Signal != nil {
		sigDone = make(chan error, 1)
		go func() { sigDone <- n.cfg.Signal.Close(ctx) }()
	}
	done := make(chan struct{})
	go func() {
		n.sessions.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if sigDone != nil {
		if serr := <-sigDone; err == nil {
			err = serr
		}
	}

	// Sessions are gone (or out of time): close the listeners.
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		_ = srv.Close()
	}
	if n.wt != nil {
		_ = n.wt.Close()
	}
	n.mu.Lock()
	if n.udp != nil {
		_ = n.udp.Close()
	}
	select {
	case <-n.sweep:
	default:
		close(n.sweep)
	}
	n.mu.Unlock()
	n.serving.Wait()
	if err == nil {
		<-done
	}
	return err
}

// reconnectAdvice picks, for a closing session, a node to reconnect to:
// another live, non-draining node of the cluster, of this node's region
// when there is one, spread round-robin; "" when there is none.
func (n *Node) reconnectAdvice() func(c *client, i int) string {
	if n.cfg.Nodes == nil {
		return func(*client, int) string { return "" }
	}
	var near, far []NodeInfo
	for _, ni := range n.cfg.Nodes() {
		if ni.Self || ni.Draining || ni.Name == n.cfg.Name {
			continue
		}
		if ni.Region == n.cfg.Region {
			near = append(near, ni)
		} else {
			far = append(far, ni)
		}
	}
	candidates := near
	if len(candidates) == 0 {
		candidates = far
	}
	return func(c *client, i int) string {
		if len(candidates) == 0 {
			return ""
		}
		urls := candidates[i%len(candidates)].URLs
		switch {
		case c.session.Protocol() == protocols.WebTransport:
			return urls["wt"]
		case c.secure:
			return urls["wss"]
		}
		if u := urls["ws"]; u != "" {
			return u
		}
		return urls["wss"]
	}
}

// sweepLoop drops idle channels until Shutdown.
func (n *Node) sweepLoop() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.sweep:
			return
		case <-t.C:
			n.hub.Sweep()
		}
	}
}

// checkChannel enforces the channel-name rules: 1 to MaxChannelLen bytes
// of ASCII letters, digits and "-_.:@/=".
func (n *Node) checkChannel(name string) error {
	if name == "" {
		return errors.New("channel name is empty")
	}
	if len(name) > n.cfg.MaxChannelLen {
		return fmt.Errorf("channel name is %d bytes, limit %d", len(name), n.cfg.MaxChannelLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.:@/=", c) >= 0:
		case c >= 0x80:
			return fmt.Errorf("channel name has a non-ASCII character at byte %d; allowed: letters, digits and -_.:@/=", i)
		default:
			return fmt.Errorf("channel name has %q at byte %d; allowed: letters, digits and -_.:@/=", c, i)
		}
	}
	return nil
}

// maxPayload is the largest publication to channel: on a volatile
// channel MaxDatagramSize, else what lets its Message frame (payload plus
// channel, epoch, offset and tags) fit in MaxFrameSize.
func (n *Node) maxPayload(channel string) int {
	if n.hub.IsVolatile(channel) {
		return n.cfg.MaxDatagramSize
	}
	return n.cfg.Session.MaxFrameSize - len(channel) - 64
}

// volatileMatcher reports whether a channel matches one of the patterns:
// a name, or a prefix ending in "*".
// presenceMatcher matches the presence channels that are not volatile.
func presenceMatcher(patterns, volatile []string) func(string) bool {
	in, vol := volatileMatcher(patterns), volatileMatcher(volatile)
	if in == nil {
		return nil
	}
	return func(name string) bool { return in(name) && (vol == nil || !vol(name)) }
}

func volatileMatcher(patterns []string) func(string) bool {
	if len(patterns) == 0 {
		return nil
	}
	exact := make(map[string]bool)
	var prefixes []string
	for _, p := range patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			prefixes = append(prefixes, pre)
		} else {
			exact[p] = true
		}
	}
	return func(name string) bool {
		if exact[name] {
			return true
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(name, pre) {
				return true
			}
		}
		return false
	}
}

// OriginAllowed reports whether a browser page of r's Origin may open a
// session: the Origin allowlist (CSWSH protection), for /signal too.
func (n *Node) OriginAllowed(r *http.Request) bool { return n.originAllowed(r) }

// originAllowed implements the Origin allowlist (CSWSH protection).
func (n *Node) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || n.anyOrig {
		return true
	}
	norm, err := normalizeOrigin(o)
	if err != nil {
		return false
	}
	if n.origins[norm] {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.own[norm]
}

// ownOrigins are the origins of pages served by the node itself: its
// listeners' addresses and its public URLs, never a request's Host.
func ownOrigins(a Addrs, public []string) map[string]bool {
	own := make(map[string]bool)
	add := func(scheme string, addr net.Addr) {
		if addr == nil {
			return
		}
		host, port, err := net.SplitHostPort(addr.String())
		if err != nil {
			return
		}
		hosts := []string{host}
		if ip := net.ParseIP(host); ip != nil {
			switch {
			case ip.IsLoopback():
				hosts = []string{"127.0.0.1", "localhost", "::1"}
			case ip.IsUnspecified():
				hosts = append(interfaceHosts(), "localhost")
			}
		}
		for _, h := range hosts {
			if norm, err := normalizeOrigin(scheme + "://" + net.JoinHostPort(h, port)); err == nil {
				own[norm] = true
			}
		}
	}
	add("https", a.TLS)
	add("http", a.HTTP)
	for _, u := range public {
		if o, err := publicOrigin(u); err == nil {
			own[o] = true
		}
	}
	return own
}

// interfaceHosts lists the addresses of the host's interfaces, which a
// listener on an unspecified address serves.
func interfaceHosts() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var hosts []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			hosts = append(hosts, ipn.IP.String())
		}
	}
	return hosts
}

// publicOrigin is the origin of pages served at a public URL: https://
// for https and wss URLs, http:// for http and ws.
func publicOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("want scheme://host[:port]")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want scheme://host[:port] without a path: the node serves /ws and /wt at the root")
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		return normalizeOrigin("https://" + u.Host)
	case "http", "ws":
		return normalizeOrigin("http://" + u.Host)
	}
	return "", fmt.Errorf("scheme %q: want https, wss, http or ws", u.Scheme)
}

// normalizeOrigin lowercases scheme and host and drops default ports.
func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil {
		return "", err
	}
	if u.Scheme == "" || u.Host == "" {
		return "", errors.New("want scheme://host[:port]")
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if h, p, err := net.SplitHostPort(host); err == nil && ((scheme == "https" && p == "443") || (scheme == "http" && p == "80")) {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return scheme + "://" + host, nil
}
