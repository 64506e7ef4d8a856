package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// Options configure Join. The zero value works: the server's ICE servers,
// pion's default API, no token.
type Options struct {
	// Token is sent in "join" (checked by the server once tokens exist).
	Token string

	// ICEServers, when non-nil, replace the ones the server gives in
	// "joined" (an empty non-nil slice means none: host candidates only).
	// When nil, Config.ICEServers is used if it has any, else the server's.
	ICEServers []webrtc.ICEServer
	// API creates the PeerConnections: pass one built with a
	// webrtc.SettingEngine, a MediaEngine or interceptors. Nil:
	// webrtc.NewAPI() (default codecs and interceptors).
	API *webrtc.API
	// Config is the base of every PeerConnection's configuration (its
	// ICEServers are replaced as told above).
	Config webrtc.Configuration

	// Logger gets debug messages of the negotiation and the socket, and
	// warnings for what is dropped. Nil: nothing is logged.
	Logger *slog.Logger
	// Dialer dials the WebSocket (TLS configuration, proxy, NetDialContext).
	// Nil: a copy of websocket.DefaultDialer.
	Dialer *websocket.Dialer
	// Header is sent with the WebSocket handshake (e.g. Origin, Cookie).
	Header http.Header

	// DisableReconnect ends the Room when the socket is lost, instead of
	// redialling and resuming. Err then tells why.
	DisableReconnect bool

	// The callbacks, as set by the Room methods of the same names. Setting
	// them here (rather than with the methods after Join returns) is the
	// way to be sure to see the events that arrive right after the join,
	// such as a peer that offers at once. See Room.OnJoin and the others.
	OnJoin       func(id string)
	OnLeave      func(id string)
	OnConnection func(id string, pc *webrtc.PeerConnection)
	OnMessage    func(id string, data json.RawMessage)
	OnError      func(err error)
}

// Timings and bounds.
const (
	joinTimeout  = 15 * time.Second // dial + join + joined, when ctx has no sooner deadline
	writeTimeout = 10 * time.Second // one WebSocket write
	pingInterval = 20 * time.Second // our WebSocket pings
	readTimeout  = 50 * time.Second // silence (pings and pongs count) before the socket counts as dead
	leaveTimeout = 3 * time.Second  // wait for the server's close after "leave"
	backoffMin   = 250 * time.Millisecond
	backoffMax   = 5 * time.Second
	// outQueueLen is how many messages may wait for the socket: within the
	// server's burst (200), since they all go out at once after a resume.
	outQueueLen        = 128
	maxCandidates      = 512 // remote candidates held until the remote description
	maxEarlyCandidates = 64  // remote candidates held until the offer
)

// handlers are the application's callbacks.
type handlers struct {
	onJoin       func(id string)
	onLeave      func(id string)
	onConnection func(id string, pc *webrtc.PeerConnection)
	onMessage    func(id string, data json.RawMessage)
	onError      func(err error)
}

// outgoing is one message waiting for the socket.
type outgoing struct {
	typ string
	b   []byte
}

// Room is this program's membership of one signaling room: one WebSocket
// (redialled and resumed when it drops) and one PeerConnection per remote
// peer it talks to. All methods are safe for concurrent use.
type Room struct {
	// immutable after Join
	url    string
	name   string
	opts   Options
	api    *webrtc.API
	log    *slog.Logger
	dialer *websocket.Dialer
	ctx    context.Context // cancelled (with the cause) when the room ends
	cancel context.CancelCauseFunc

	out     chan outgoing // bounded queue, drained by the socket's writer
	events  *dispatcher
	stopped chan struct{} // closed when the socket is gone and every pc closed
	done    chan struct{} // closed when every goroutine has ended
	workers sync.WaitGroup

	hmu sync.Mutex
	h   handlers

	mu      sync.Mutex
	conn    *websocket.Conn // the live socket; nil while redialling
	self    string
	resume  string
	former  map[string]bool // own ids from before a resume that failed
	members []string        // the other peers, in join order
	peers   map[string]*peer
	early   map[string][]json.RawMessage // candidates from peers without a pc yet
	ice     []webrtc.ICEServer
	limits  Limits
	grace   time.Duration
	retry   *outgoing // what a failed writer could not send; first for the next socket
	closed  bool
	failure error         // what ended the room, if not Leave or ctx
	rejoins int           // successful redials, resumed or not
	gate    chan struct{} // tests: while non-nil, writers wait for it to be closed
}

// Join dials signalURL, joins room and returns once the server has
// answered with "joined". signalURL is the node's /signal endpoint,
// ws://host:port/signal or wss://…; an http:// or https:// URL means ws://
// or wss://, and a URL without a path gets /signal, as in the browser
// helper. The join itself gives up after 15 s when ctx has no sooner
// deadline. A server "error"
// is returned as an *Error (CodeBadRoom, CodeRoomFull, CodeUnauthorized;
// CodeUnavailable is worth another try), a close without one as a
// *CloseError.
//
// ctx bounds the whole life of the Room, not only the join: when it is
// done the Room leaves as by Leave and Err returns ctx's error. Use
// context.Background() (or a long-lived context) and Leave to end it.
//
// When the socket drops without a close code that ends the session, the
// Room redials and resumes (see "Connection loss" in the package
// documentation): if the server resumes it, nothing changes for the
// application; if not, every PeerConnection is closed, OnLeave fires for
// every former peer, the Room takes its new id (PeerID) and OnJoin fires
// for every peer of the new list.
func Join(ctx context.Context, signalURL, room string, opts Options) (*Room, error) {
	u, err := signalEndpoint(signalURL)
	if err != nil {
		return nil, err
	}
	r := &Room{
		url:     u,
		name:    room,
		opts:    opts,
		api:     opts.API,
		log:     opts.Logger,
		out:     make(chan outgoing, outQueueLen),
		events:  newDispatcher(),
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
		former:  make(map[string]bool),
		peers:   make(map[string]*peer),
		early:   make(map[string][]json.RawMessage),
		h: handlers{
			onJoin:       opts.OnJoin,
			onLeave:      opts.OnLeave,
			onConnection: opts.OnConnection,
			onMessage:    opts.OnMessage,
			onError:      opts.OnError,
		},
	}
	if r.api == nil {
		r.api = webrtc.NewAPI()
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("room", room)
	if opts.Dialer != nil {
		r.dialer = opts.Dialer
	} else {
		d := *websocket.DefaultDialer
		r.dialer = &d
	}

	conn, j, err := r.dial(ctx, false)
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	r.mu.Lock()
	r.adopt(j)
	r.members = r.filterPeers(j.Peers)
	r.conn = conn
	r.mu.Unlock()
	r.log.Debug("p2p: joined", "peer", j.Peer, "peers", len(j.Peers))

	go r.events.run()
	go r.run(conn)
	return r, nil
}

// PeerID is this program's peer id in the room. It changes only after a
// resume the server refused (see Join).
func (r *Room) PeerID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.self
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Peers are the ids of the other peers in the room, in join order.
func (r *Room) Peers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.members)
}

// ICEServers are the ICE servers the PeerConnections use: Options'
// override, or the ones of the last "joined" (TURN credentials are per
// peer id, so they change with it).
func (r *Room) ICEServers() []webrtc.ICEServer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ice)
}

// Limits are the server's limits from the last "joined".
func (r *Room) Limits() Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limits
}

// Grace is how long the server keeps this peer in the room after its
// socket is lost (from "joined"): the time a resume has.
func (r *Room) Grace() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grace
}

// OnJoin sets the callback for a peer that joins the room (after Join: the
// peers already there are in Peers). Callbacks of a Room run one at a time
// on one goroutine of the Room, in the order of the events, never with a
// lock held; they may call any Room method, Leave included, but must not
// wait for Done. A callback set with a method replaces the one of Options
// for the events that follow.
func (r *Room) OnJoin(f func(id string)) { r.hmu.Lock(); r.h.onJoin = f; r.hmu.Unlock() }

// OnLeave sets the callback for a peer that left the room; its
// PeerConnection, if any, is being closed.
func (r *Room) OnLeave(f func(id string)) { r.hmu.Lock(); r.h.onLeave = f; r.hmu.Unlock() }

// OnConnection sets the callback for a PeerConnection the Room created
// itself, before anything is applied to it: set pc.OnDataChannel and
// pc.OnTrack here. The Room creates one
//   - for the first offer of a peer it had none with, or only a closed one
//     (the remote side started the connection): the offer is applied once
//     the callback has returned;
//   - to replace the one it had with a peer, which it closes (with the data
//     channels and tracks on it): after a glare on the polite side, because
//     pion cannot roll back an offer (see the package documentation), or
//     when the remote side turns out to have a new PeerConnection (a new
//     DTLS certificate in its offer or answer). Put back here what the
//     application had added to the old one.
//
// It is not called for the PeerConnections that Peer creates.
func (r *Room) OnConnection(f func(id string, pc *webrtc.PeerConnection)) {
	r.hmu.Lock()
	r.h.onConnection = f
	r.hmu.Unlock()
}

// OnMessage sets the callback for a custom message (Send) from peer id.
func (r *Room) OnMessage(f func(id string, data json.RawMessage)) {
	r.hmu.Lock()
	r.h.onMessage = f
	r.hmu.Unlock()
}

// OnError sets the callback for errors that belong to no call: a message
// the server refused (*Error, e.g. CodeUnknownPeer for Send to a peer
// that is not in the room), a failed negotiation step, a full queue.
func (r *Room) OnError(f func(err error)) { r.hmu.Lock(); r.h.onError = f; r.hmu.Unlock() }

func (r *Room) handlers() handlers {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	return r.h
}

func (r *Room) emitJoin(id string) {
	r.events.post(func() {
		if f := r.handlers().onJoin; f != nil {
			f(id)
		}
	})
}

func (r *Room) emitLeave(id string) {
	r.events.post(func() {
		if f := r.handlers().onLeave; f != nil {
			f(id)
		}
	})
}

func (r *Room) emitMessage(id string, data json.RawMessage) {
	r.events.post(func() {
		if f := r.handlers().onMessage; f != nil {
			f(id, data)
		}
	})
}

func (r *Room) emitError(err error) {
	r.log.Debug("p2p: error", "err", err)
	r.events.post(func() {
		if f := r.handlers().onError; f != nil {
			f(err)
		}
	})
}

// Peer returns the PeerConnection with peer id, creating it on first use.
// Negotiation is automatic (perfect negotiation, see the package
// documentation): creating a data channel or adding a track on it fires
// negotiationneeded, and the Room offers. Set its handlers (OnDataChannel,
// OnTrack) right away. After the application closes it, the next Peer call
// creates a new one (and the remote side, seeing a new certificate, replaces
// its own). The Room may replace it too (see OnConnection): call Peer again
// rather than keeping the pointer for long.
func (r *Room) Peer(id string) (*webrtc.PeerConnection, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return nil, ErrClosed
	case id == r.self:
		return nil, fmt.Errorf("p2p: %q is this peer's own id", id)
	case !slices.Contains(r.members, id):
		return nil, fmt.Errorf("%w %q", ErrUnknownPeer, id)
	}
	if p := r.peers[id]; p != nil && !p.isClosed() {
		return p.pc, nil
	}
	p, err := r.newPeerLocked(id)
	if err != nil {
		return nil, err
	}
	delete(r.early, id) // of an older remote PeerConnection
	close(p.ready)
	return p.pc, nil
}

// RestartICE makes the PeerConnection with peer id offer with new ICE
// credentials (an ICE restart, e.g. after a network change), now or as
// soon as its negotiation is stable.
func (r *Room) RestartICE(id string) error {
	r.mu.Lock()
	p, closed := r.peers[id], r.closed
	r.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case p == nil:
		return fmt.Errorf("%w: no PeerConnection with %q", ErrUnknownPeer, id)
	}
	p.push(peerEvent{kind: evRestartICE})
	return nil
}

// Send relays data, marshalled with encoding/json (pass a json.RawMessage
// for JSON of your own), to peer id as a "message"; it arrives at the
// other side's OnMessage. Send only queues: a refusal by the server (such
// as CodeUnknownPeer) comes to OnError as an *Error with To set. While the
// socket is being redialled, messages wait in the queue (ErrQueueFull
// when it is full).
func (r *Room) Send(id string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("p2p: send: %w", err)
	}
	if max := r.Limits().MaxDataSize; max > 0 && len(raw) > max {
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf(`"data" is %d bytes of JSON, over %d`, len(raw), max), To: id}
	}
	return r.enqueue(outMsg{Type: typeMessage, To: id, Data: raw})
}

// enqueue puts a message in the bounded outgoing queue, without blocking.
func (r *Room) enqueue(m outMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("p2p: encode %s: %w", m.Type, err)
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed || r.ctx.Err() != nil {
		return ErrClosed
	}
	select {
	case r.out <- outgoing{typ: m.Type, b: b}:
		return nil
	default:
		return ErrQueueFull
	}
}

// Leave leaves the room: it sends what is queued and "leave" (the others
// get peer-left at once; while the socket is down and being redialled,
// nothing is sent and the server lets the peer go after its grace period),
// closes the socket and every PeerConnection, and returns. It is
// idempotent. It returns nil, or the failure that had ended the Room
// before (as Err: a *CloseError, say; not the end of ctx). Callbacks
// already queued may still run after it returns; Done is closed once they
// have, and every goroutine of the Room (and pion's, for its
// PeerConnections) has ended.
func (r *Room) Leave() error {
	r.cancel(ErrLeft)
	<-r.stopped
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failure
}

// fail ends the room with err, unless it is ending already.
func (r *Room) fail(err error) {
	r.mu.Lock()
	if r.ctx.Err() == nil && r.failure == nil {
		r.failure = err
	}
	r.mu.Unlock()
	r.cancel(err)
}

// Done is closed when the Room has ended: by Leave, by ctx, or by a close
// it does not recover from (see Err).
func (r *Room) Done() <-chan struct{} { return r.done }

// Err is nil until Done is closed, then why the Room ended: ErrLeft after
// Leave, ctx's error, a *CloseError (e.g. code 4500, replaced, or 3505
// with the *Error flood), or the *Error of a refused re-join.
func (r *Room) Err() error {
	select {
	case <-r.done:
		return context.Cause(r.ctx)
	default:
		return nil
	}
}

// adopt takes the session of a "joined"; r.mu is held.
func (r *Room) adopt(j *inMsg) {
	r.self = j.Peer
	r.resume = j.Resume
	r.limits = j.Limits
	r.grace = time.Duration(j.Grace * float64(time.Second))
	switch {
	case r.opts.ICEServers != nil:
		r.ice = slices.Clone(r.opts.ICEServers)
	case len(r.opts.Config.ICEServers) > 0:
		r.ice = slices.Clone(r.opts.Config.ICEServers)
	default:
		var skipped int
		r.ice, skipped = decodeICEServers(j.ICEServers)
		if skipped > 0 {
			r.log.Warn("p2p: iceServers entries skipped", "count", skipped)
		}
	}
}

// filterPeers drops this peer's own ids (current and former) from a list.
// r.mu is held.
func (r *Room) filterPeers(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != r.self && !r.former[id] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// signalEndpoint maps http(s) to ws(s) and gives a URL without a path the
// path /signal.
func signalEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("p2p: signal URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("p2p: signal URL %q: want ws://, wss://, http:// or https://", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/signal"
	}
	return u.String(), nil
}
