package signaling

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/signaling/internal/meshpb"
)

// Server serves /signal. Create it with New.
type Server struct {
	// immutable after New
	cfg      Config
	cl       Cluster
	self     string
	log      *slog.Logger
	upgrader websocket.Upgrader
	rl       protocols.LogLimiter

	mu      sync.Mutex
	closed  bool
	conns   map[*conn]struct{}
	rooms   map[string]*room      // rooms with peers on this node
	owned   map[string]*ownedRoom // rooms this node owns
	joins   map[uint64]*pendingJoin
	moved   map[movedKey]movedTo // this node's peers that resumed elsewhere, lately
	nextReq uint64

	wg sync.WaitGroup // every connection's goroutines
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cl := cfg.Cluster
	if cl == nil {
		cl = alone{}
	}
	s := &Server{
		cfg:   cfg,
		cl:    cl,
		self:  cl.Name(),
		log:   cfg.Logger,
		conns: make(map[*conn]struct{}),
		rooms: make(map[string]*room),
		owned: make(map[string]*ownedRoom),
		joins: make(map[uint64]*pendingJoin),
		moved: make(map[movedKey]movedTo),
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      func(*http.Request) bool { return true }, // checked after the upgrade, to tell the page why
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(encode(map[string]string{"error": "bad_handshake", "message": reason.Error()}))
		},
	}
	return s, nil
}

// ServeHTTP upgrades a request to a signaling connection.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // answered by the upgrader
	}
	c := &conn{s: s, ws: ws, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeGoingAway, "node shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	if s.cfg.CheckOrigin != nil && !s.cfg.CheckOrigin(r) {
		c.shutdown(closeOrigin, "origin not allowed")
	} else {
		t := time.AfterFunc(s.cfg.JoinTimeout, func() {
			s.mu.Lock()
			late := c.state == stateNew
			s.mu.Unlock()
			if late {
				c.shutdown(closeJoinTimeout, "no join within "+s.cfg.JoinTimeout.String())
			}
		})
		defer t.Stop()
	}
	c.readLoop()
	c.shutdown(websocket.CloseAbnormalClosure, "connection ended")
	<-writerDone
	ws.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close closes every connection with 3000 and waits for them to end (or
// for ctx). The node's peers stay in their rooms for the grace period, to
// be resumed on another node while this one is still in the mesh.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(closeGoingAway, "node shutting down: reconnect and resume")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	for _, rm := range s.rooms {
		for _, lp := range rm.local {
			if lp.grace != nil {
				lp.grace.Stop()
			}
		}
	}
	for _, pj := range s.joins {
		pj.timer.Stop()
	}
	s.mu.Unlock()
	return nil
}

// Stats counts rooms and peers on this node.
type Stats struct {
	Rooms int // rooms with peers on this node
	Peers int // peers on this node, connected or within their grace period
	Away  int // of those, the ones within their grace period
	Owned int // rooms this node owns
}

// Stats returns the node's counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Rooms: len(s.rooms), Owned: len(s.owned)}
	for _, rm := range s.rooms {
		st.Peers += len(rm.local)
		for _, lp := range rm.local {
			if lp.c == nil {
				st.Away++
			}
		}
	}
	return st
}

// outbox collects what a handler sends, to send after Server.mu.
type outbox struct {
	msgs []outMsg
}

type outMsg struct {
	node   string           // to a node's signaling
	env    *meshpb.Envelope // node message
	failed func(*outbox)    // node message not sent: what to do instead
}

// client queues payload for c at once, under Server.mu where the caller
// holds it: a client's messages must reach its queue in the order the
// lock saw them. (Queued at flush, after the lock, two goroutines' flushes
// could interleave: a resumed peer got a held message before "joined".)
// Queuing never blocks: a full queue closes c as a slow consumer.
func (ob *outbox) client(c *conn, payload []byte) {
	c.send(payload)
}

// closeClient queues payload (if any) for c and closes it with code.
func (ob *outbox) closeClient(c *conn, payload []byte, code int, reason string) {
	if payload != nil {
		c.send(payload)
	}
	c.shutdown(code, reason)
}

func (ob *outbox) node(node string, env *meshpb.Envelope, failed func(*outbox)) {
	ob.msgs = append(ob.msgs, outMsg{node: node, env: env, failed: failed})
}

// flush sends the node messages ob holds, in order; call it without
// Server.mu (a send may wait for the link).
func (s *Server) flush(ob *outbox) {
	for i := 0; i < len(ob.msgs); i++ { // failed may append
		m := ob.msgs[i]
		b, err := proto.Marshal(m.env)
		if err == nil {
			err = s.cl.SendSignal(m.node, b)
		}
		if err != nil {
			if s.rl.Allow("send:"+m.node, 5*time.Second) {
				s.log.Warn("signaling: message to node not sent", "node", m.node, "err", err)
			}
			if m.failed != nil {
				m.failed(ob)
			}
		}
	}
}

// HandleSignal handles a message from another node's signaling (the mesh
// calls it on the reader goroutine of the link from that node).
func (s *Server) HandleSignal(from string, msg []byte) {
	var env meshpb.Envelope
	if err := proto.Unmarshal(msg, &env); err != nil {
		if s.rl.Allow("bad:"+from, time.Minute) {
			s.log.Warn("signaling: malformed message from node", "node", from, "err", err)
		}
		return
	}
	s.handleEnvelope(from, &env)
}

func (s *Server) handleEnvelope(from string, env *meshpb.Envelope) {
	var ob outbox
	s.mu.Lock()
	s.dispatch(&ob, from, env)
	s.mu.Unlock()
	s.flush(&ob)
}

// dispatch runs a node message, with s.mu held.
func (s *Server) dispatch(ob *outbox, from string, env *meshpb.Envelope) {
	switch k := env.Kind.(type) {
	case *meshpb.Envelope_Join:
		s.ownerJoin(ob, from, k.Join)
	case *meshpb.Envelope_JoinReply:
		s.joinReply(ob, from, k.JoinReply)
	case *meshpb.Envelope_Leave:
		s.ownerLeave(ob, from, k.Leave)
	case *meshpb.Envelope_Event:
		s.event(ob, from, k.Event)
	case *meshpb.Envelope_Sync:
		s.ownerSync(ob, from, k.Sync)
	case *meshpb.Envelope_SyncReply:
		s.syncReply(ob, from, k.SyncReply)
	case *meshpb.Envelope_Relay:
		s.relayIn(ob, from, k.Relay)
	case *meshpb.Envelope_RelayError:
		s.relayError(ob, k.RelayError)
	default:
		if s.rl.Allow("kind:"+from, time.Minute) {
			s.log.Warn("signaling: unknown message from node", "node", from)
		}
	}
}

// toNode sends env to node's signaling: queued in ob for another node,
// run at once (s.mu held) for this one, so that this node's view and
// its rooms change in the same critical section.
func (s *Server) toNode(ob *outbox, node string, env *meshpb.Envelope, failed func(*outbox)) {
	if node == s.self {
		s.dispatch(ob, s.self, env)
		return
	}
	ob.node(node, env, failed)
}

// MembersChanged is called by the mesh after the members changed, and
// with the peers whose links were reset (messages to them may be lost):
// peers of nodes gone leave, and rooms whose owner changed or was reset are
// synced with their owner.
func (s *Server) MembersChanged(reset []string) {
	var ob outbox
	s.mu.Lock()
	s.membersChanged(&ob, reset)
	s.mu.Unlock()
	s.flush(&ob)
}

// handle runs one client message, on the connection's read loop.
func (s *Server) handle(c *conn, m *inbound) {
	select {
	case <-c.quit:
		return // closing: read on only for the client's close
	default:
	}
	if m.Type == typePing {
		c.send(pongPayload)
		return
	}
	if m.Type == typeJoin && s.cfg.Authorize != nil {
		// Outside the lock: checking a token may wait for a key set.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		err := s.cfg.Authorize(ctx, m.Token, m.Room)
		cancel()
		if err != nil {
			var ob outbox
			s.mu.Lock()
			c.state = stateClosed
			ob.closeClient(c, errorPayload(errUnauthorized, err.Error(), m.ID, ""), closeUnauthorized, errUnauthorized+": "+err.Error())
			s.mu.Unlock()
			s.flush(&ob)
			return
		}
	}
	var ob outbox
	s.mu.Lock()
	switch {
	case m.Type == typeJoin:
		s.join(&ob, c, m)
	case c.state != stateJoined:
		ob.client(c, errorPayload(errNotJoined, m.Type+" before join", m.ID, m.To))
	case m.Type == typeLeave:
		s.leave(&ob, c)
	default:
		s.relayOut(&ob, c, m)
	}
	s.mu.Unlock()
	s.flush(&ob)
}

// disconnect runs when a connection's read loop ends.
func (s *Server) disconnect(c *conn, normal bool) {
	var ob outbox
	s.mu.Lock()
	s.dropConn(&ob, c, normal)
	s.mu.Unlock()
	s.flush(&ob)
}

func (s *Server) nextRequest() uint64 {
	s.nextReq++
	return s.nextReq
}

// newSecret returns a fresh peer id and resume secret with its hash.
func newSecret() (id, secret string, hash []byte) {
	var b [12 + 24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("signaling: crypto/rand: " + err.Error())
	}
	id = base64.RawURLEncoding.EncodeToString(b[:12])
	secret = base64.RawURLEncoding.EncodeToString(b[12:])
	return id, secret, hashSecret(secret)
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// roomKey is the key whose owner owns the room.
func roomKey(room string) string { return "signal/" + room }
