package signaling

import (
	"crypto/subtle"
	"encoding/json"
	"sort"
	"time"

	"github.com/switchyard/switchyard/signaling/internal/meshpb"
)

// A node's side of its rooms. Every function here runs with Server.mu held
// and sends through the outbox.

// room is this node's view of a room it has peers in.
type room struct {
	name  string
	owner string               // the owner this node joined through or last synced with
	view  map[string]*member   // every peer of the room this node knows, its own included
	seq   uint64               // join order, for the peer list
	local map[string]*local    // this node's peers
	gone  map[string]time.Time // peers that left lately: a late message does not bring them back
}

type member struct {
	node string
	seq  uint64
}

// local is one of this node's peers.
type local struct {
	id    string
	hash  []byte
	c     *conn       // nil while away (lost, within its grace period)
	held  [][]byte    // messages for it while away
	grace *time.Timer // running while away
}

// maxHeld is how many messages wait for a peer that is away.
const maxHeld = 64

// goneTTL is how long a departed peer is remembered.
const goneTTL = time.Minute

// pendingJoin is a join waiting for the owner's answer.
type pendingJoin struct {
	c      *conn
	room   string
	id     []byte // the client's id member
	newID  string
	secret string   // the new peer's resume secret
	resume string   // the secret given to resume, "" if none
	peer   string   // the peer id given to resume, "" if none
	held   [][]byte // messages for that peer that came before the owner's answer
	timer  *time.Timer
}

func (s *Server) join(ob *outbox, c *conn, m *inbound) {
	if c.state != stateNew {
		ob.client(c, errorPayload(errAlreadyJoined, "this connection has joined (or is joining) a room already", m.ID, ""))
		return
	}
	if problem := checkRoom(m.Room); problem != "" {
		ob.closeClient(c, errorPayload(errBadRoom, problem, m.ID, ""), closeBadMessage, errBadRoom+": "+problem)
		return
	}
	c.state = stateJoining
	id, secret, hash := newSecret()
	pj := &pendingJoin{c: c, room: m.Room, id: m.ID, newID: id, secret: secret}
	j := &meshpb.Join{Room: m.Room, NewId: id, NewHash: hash, MaxRoomSize: uint32(s.cfg.MaxRoomSize)}
	if len(m.Peer) == peerIDLen && m.Resume != "" && len(m.Resume) <= 64 {
		j.ResumeId, j.ResumeHash = m.Peer, hashSecret(m.Resume)
		pj.resume, pj.peer = m.Resume, m.Peer
	}
	req := s.nextRequest()
	j.Request = req
	s.joins[req] = pj
	pj.timer = time.AfterFunc(s.cfg.RequestTimeout, func() { s.joinTimedOut(req) })
	owner := s.cl.Owner(roomKey(m.Room))
	s.toNode(ob, owner, &meshpb.Envelope{Kind: &meshpb.Envelope_Join{Join: j}}, func(ob *outbox) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.failJoin(ob, req, "the room's node cannot be reached: try again")
	})
}

func (s *Server) joinTimedOut(req uint64) {
	var ob outbox
	s.mu.Lock()
	s.failJoin(&ob, req, "the room's node did not answer in time: try again")
	s.mu.Unlock()
	s.flush(&ob)
}

func (s *Server) failJoin(ob *outbox, req uint64, why string) {
	pj := s.joins[req]
	if pj == nil {
		return
	}
	delete(s.joins, req)
	pj.timer.Stop()
	// The join may have reached the owner (or a Sync named it): undo it.
	s.toNode(ob, s.cl.Owner(roomKey(pj.room)), leaveEnv(pj.room, pj.newID), nil)
	if pj.c.state == stateJoining {
		pj.c.state = stateClosed
	}
	ob.closeClient(pj.c, errorPayload(errUnavailable, why, pj.id, ""), closeInternal, errUnavailable+": "+why)
}

// joinReply takes the owner's answer to a join from this node.
func (s *Server) joinReply(ob *outbox, owner string, r *meshpb.JoinReply) {
	pj := s.joins[r.Request]
	if pj == nil || pj.room != r.Room {
		if r.Error == "" && pj == nil {
			// Too late: the client was told to try again. Undo the join.
			s.toNode(ob, owner, leaveEnv(r.Room, r.Peer), nil)
		}
		return
	}
	delete(s.joins, r.Request)
	pj.timer.Stop()
	c := pj.c
	if r.Error != "" {
		c.state = stateClosed
		code, msg := closePolicy, "the room is full"
		if r.Error != errRoomFull {
			code, msg = closeInternal, "the room's node refused the join"
		}
		ob.closeClient(c, errorPayload(r.Error, msg, pj.id, ""), code, r.Error+": "+msg)
		return
	}
	if c.state != stateJoining { // the connection ended meanwhile
		if !r.Resumed || s.rooms[r.Room] == nil || s.rooms[r.Room].local[r.Peer] == nil {
			s.toNode(ob, owner, leaveEnv(r.Room, r.Peer), nil)
		}
		return
	}
	rm := s.rooms[r.Room]
	if rm == nil {
		rm = &room{name: r.Room, view: make(map[string]*member), local: make(map[string]*local), gone: make(map[string]time.Time)}
		s.rooms[r.Room] = rm
	}
	rm.owner = owner
	for _, p := range r.Peers {
		if p.Id != r.Peer {
			s.learn(ob, rm, p.Id, p.Node)
		}
	}
	secret := pj.secret
	if r.Resumed {
		secret = pj.resume
	}
	lp := rm.local[r.Peer]
	switch {
	case lp != nil && r.Resumed: // back on the node it was on
		if lp.c != nil && lp.c != c {
			old := lp.c
			old.state = stateClosed
			ob.closeClient(old, nil, closeReplaced, "replaced: the peer resumed on another connection")
		}
		if lp.grace != nil {
			lp.grace.Stop()
			lp.grace = nil
		}
	default:
		lp = &local{id: r.Peer, hash: hashSecret(secret)}
		rm.local[r.Peer] = lp
	}
	lp.c = c
	if r.Resumed {
		// Messages forwarded from its old node may have come first.
		lp.held = append(lp.held, pj.held...)
	}
	if _, known := rm.view[r.Peer]; !known {
		rm.seq++
		rm.view[r.Peer] = &member{node: s.self, seq: rm.seq}
		if !r.Resumed {
			s.tell(ob, rm, r.Peer, peerPayload("peer-joined", r.Peer))
		}
	} else {
		rm.view[r.Peer].node = s.self
	}
	c.state, c.room, c.peer = stateJoined, r.Room, r.Peer
	ob.client(c, encode(joinedOut{
		Type: "joined", Room: r.Room, Peer: r.Peer, Resume: secret, Resumed: r.Resumed,
		Peers: rm.others(r.Peer), ICEServers: s.iceServersFor(r.Peer, time.Now()),
		Grace: s.cfg.Grace.Seconds(), Limits: s.limitsOut(),
	}))
	for _, b := range lp.held {
		ob.client(c, b)
	}
	lp.held = nil
	if cur := s.cl.Owner(roomKey(r.Room)); cur != owner {
		s.syncRoom(ob, rm, cur) // ownership moved while the join was on its way
	}
}

func (s *Server) limitsOut() limitsOut {
	return limitsOut{
		MaxMessageSize: s.cfg.MaxMessageSize, MaxSDPSize: s.cfg.MaxSDPSize, MaxCandidateSize: s.cfg.MaxCandidateSize,
		MaxDataSize: s.cfg.MaxDataSize, MaxRoomSize: s.cfg.MaxRoomSize, Rate: s.cfg.Rate, Burst: s.cfg.Burst,
	}
}

// others lists the room's peers but one, in join order.
func (rm *room) others(self string) []string {
	ids := make([]string, 0, len(rm.view))
	for id := range rm.view {
		if id != self {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return rm.view[ids[i]].seq < rm.view[ids[j]].seq })
	return ids
}

// learn adds a peer on node to the view, telling this node's peers, unless
// it is known or left lately.
func (s *Server) learn(ob *outbox, rm *room, id, node string) {
	if m, ok := rm.view[id]; ok {
		if rm.local[id] == nil {
			m.node = node
		}
		return
	}
	if _, left := rm.gone[id]; left {
		return
	}
	rm.seq++
	rm.view[id] = &member{node: node, seq: rm.seq}
	s.tell(ob, rm, id, peerPayload("peer-joined", id))
}

// forget removes a peer from the view, telling this node's other peers.
func (s *Server) forget(ob *outbox, rm *room, id string) {
	if _, ok := rm.view[id]; !ok {
		return
	}
	delete(rm.view, id)
	now := time.Now()
	if len(rm.gone) >= 64 { // keep a busy room's memory of departures short
		for g, t := range rm.gone {
			if now.Sub(t) > goneTTL {
				delete(rm.gone, g)
			}
		}
	}
	rm.gone[id] = now
	s.tell(ob, rm, id, peerPayload("peer-left", id))
}

// tell sends payload to this node's connected peers of rm, but not to about.
func (s *Server) tell(ob *outbox, rm *room, about string, payload []byte) {
	for id, lp := range rm.local {
		if id != about && lp.c != nil {
			ob.client(lp.c, payload)
		}
	}
}

func leaveEnv(room, peer string) *meshpb.Envelope {
	return &meshpb.Envelope{Kind: &meshpb.Envelope_Leave{Leave: &meshpb.Leave{Room: room, Peer: peer}}}
}

// leave handles a client's leave.
func (s *Server) leave(ob *outbox, c *conn) {
	rm := s.rooms[c.room]
	if rm != nil && rm.local[c.peer] != nil && rm.local[c.peer].c == c {
		s.removeLocal(ob, rm, c.peer)
	}
	c.state = stateClosed
	ob.closeClient(c, leftPayload, closeNormal, "left")
}

// removeLocal takes one of this node's peers out of its room for good.
func (s *Server) removeLocal(ob *outbox, rm *room, id string) {
	lp := rm.local[id]
	if lp == nil {
		return
	}
	if lp.grace != nil {
		lp.grace.Stop()
	}
	delete(rm.local, id)
	s.forget(ob, rm, id)
	s.toNode(ob, rm.owner, leaveEnv(rm.name, id), nil)
	s.pruneRoom(rm)
}

// pruneRoom drops a room without peers on this node.
func (s *Server) pruneRoom(rm *room) {
	if len(rm.local) == 0 {
		delete(s.rooms, rm.name)
	}
}

// dropConn handles the end of a connection: a normal close or a refused
// join leaves; a lost connection keeps its peer for the grace period.
func (s *Server) dropConn(ob *outbox, c *conn, normal bool) {
	state := c.state
	c.state = stateClosed
	if state != stateJoined {
		return // a pending join is undone when its answer comes
	}
	rm := s.rooms[c.room]
	if rm == nil {
		return
	}
	lp := rm.local[c.peer]
	if lp == nil || lp.c != c {
		return // replaced, or moved to another node
	}
	if normal || s.cfg.Grace <= 0 {
		s.removeLocal(ob, rm, c.peer)
		return
	}
	lp.c = nil
	room, id := rm.name, c.peer
	lp.grace = time.AfterFunc(s.cfg.Grace, func() {
		var ob outbox
		s.mu.Lock()
		if rm := s.rooms[room]; rm != nil && rm.local[id] == lp && lp.c == nil {
			s.removeLocal(&ob, rm, id)
		}
		s.mu.Unlock()
		s.flush(&ob)
	})
}

// relayOut sends a client's offer, answer, candidate or message on.
func (s *Server) relayOut(ob *outbox, c *conn, m *inbound) {
	rm := s.rooms[c.room]
	var target *member
	if rm != nil && m.To != c.peer {
		target = rm.view[m.To]
	}
	if target == nil {
		ob.client(c, errorPayload(errUnknownPeer, "no such peer in the room", m.ID, m.To))
		return
	}
	payload := relayPayload(m, c.peer)
	if target.node == s.self {
		s.deliver(ob, rm, c.peer, s.self, m.To, payload, m.ID)
		return
	}
	env := &meshpb.Envelope{Kind: &meshpb.Envelope_Relay{Relay: &meshpb.Relay{
		Room: rm.name, From: c.peer, To: m.To, Payload: payload, ClientId: m.ID,
	}}}
	id, to := m.ID, m.To
	s.toNode(ob, target.node, env, func(ob *outbox) {
		ob.client(c, errorPayload(errPeerUnavailable, "the peer's node cannot be reached right now: try again", id, to))
	})
}

// deliver hands payload to this node's peer to, or keeps it while the
// peer is away. It reports an error to the sender (on fromNode) otherwise.
func (s *Server) deliver(ob *outbox, rm *room, from, fromNode, to string, payload, clientID []byte) {
	lp := rm.local[to]
	if lp == nil {
		if pj := s.resuming(rm.name, to); pj != nil && len(pj.held) < maxHeld {
			// It is resuming here: its old node passed this on before the
			// owner's answer to the resume came.
			pj.held = append(pj.held, payload)
			return
		}
	}
	code := ""
	switch {
	case lp == nil:
		code = errUnknownPeer
	case lp.c == nil && len(lp.held) >= maxHeld:
		code = errPeerUnavailable
	}
	if code != "" {
		s.relayFailed(ob, rm.name, from, fromNode, to, code, clientID)
		return
	}
	s.learn(ob, rm, from, fromNode) // a message may overtake the owner's news of its sender
	if _, left := rm.gone[from]; left {
		return // from a peer that has left since
	}
	if lp.c == nil {
		lp.held = append(lp.held, payload)
		return
	}
	ob.client(lp.c, payload)
}

// resuming returns the pending join that resumes peer in room here.
func (s *Server) resuming(room, peer string) *pendingJoin {
	for _, pj := range s.joins {
		if pj.room == room && pj.peer == peer {
			return pj
		}
	}
	return nil
}

func (s *Server) relayFailed(ob *outbox, room, from, fromNode, to, code string, clientID []byte) {
	e := &meshpb.RelayError{Room: room, From: from, To: to, Code: code, ClientId: clientID}
	if fromNode == s.self {
		s.relayError(ob, e)
		return
	}
	s.toNode(ob, fromNode, &meshpb.Envelope{Kind: &meshpb.Envelope_RelayError{RelayError: e}}, nil)
}

// relayIn takes a relay from another node.
func (s *Server) relayIn(ob *outbox, from string, r *meshpb.Relay) {
	rm := s.rooms[r.Room]
	if rm == nil || rm.local[r.To] == nil {
		if mv, ok := s.moved[movedKey{r.Room, r.To}]; ok && mv.node != s.self {
			// Sent before the sender's node heard of the move: pass it on.
			s.toNode(ob, mv.node, &meshpb.Envelope{Kind: &meshpb.Envelope_Relay{Relay: r}}, nil)
			return
		}
	}
	if rm == nil {
		if pj := s.resuming(r.Room, r.To); pj != nil && len(pj.held) < maxHeld {
			pj.held = append(pj.held, r.Payload) // see deliver
			return
		}
		s.relayFailed(ob, r.Room, r.From, from, r.To, errUnknownPeer, r.ClientId)
		return
	}
	s.deliver(ob, rm, r.From, from, r.To, r.Payload, r.ClientId)
}

// relayError tells a local sender its message did not arrive.
func (s *Server) relayError(ob *outbox, e *meshpb.RelayError) {
	rm := s.rooms[e.Room]
	if rm == nil || rm.local[e.From] == nil || rm.local[e.From].c == nil {
		return
	}
	msg := "no such peer in the room"
	if e.Code == errPeerUnavailable {
		msg = "the peer is away and too many messages wait for it"
	}
	var id json.RawMessage
	if validID(e.ClientId) {
		id = e.ClientId
	}
	ob.client(rm.local[e.From].c, errorPayload(e.Code, msg, id, e.To))
}

// event takes news of a room from its owner.
func (s *Server) event(ob *outbox, owner string, e *meshpb.Event) {
	rm := s.rooms[e.Room]
	if rm == nil {
		return
	}
	switch e.Kind {
	case meshpb.Event_JOINED:
		s.learn(ob, rm, e.Peer, e.Node)
	case meshpb.Event_LEFT:
		if rm.local[e.Peer] == nil {
			s.forget(ob, rm, e.Peer)
		}
	case meshpb.Event_MOVED:
		if e.Node == s.self {
			return
		}
		if lp := rm.local[e.Peer]; lp != nil { // it left this node for another
			if lp.grace != nil {
				lp.grace.Stop()
			}
			if lp.c != nil {
				lp.c.state = stateClosed
				ob.closeClient(lp.c, nil, closeReplaced, "replaced: the peer resumed on another connection")
			}
			for _, b := range lp.held {
				s.toNode(ob, e.Node, &meshpb.Envelope{Kind: &meshpb.Envelope_Relay{Relay: &meshpb.Relay{
					Room: rm.name, From: relaySender(b), To: e.Peer, Payload: b,
				}}}, nil)
			}
			delete(rm.local, e.Peer)
			s.noteMoved(rm.name, e.Peer, e.Node)
		}
		if m := rm.view[e.Peer]; m != nil {
			m.node = e.Node
		} else {
			s.learn(ob, rm, e.Peer, e.Node)
		}
		s.pruneRoom(rm)
	}
}

// movedKey names a peer that resumed on another node.
type movedKey struct{ room, peer string }

type movedTo struct {
	node string
	at   time.Time
}

// noteMoved remembers for goneTTL where a peer of this node went, for the
// messages still on their way here.
func (s *Server) noteMoved(room, peer, node string) {
	now := time.Now()
	if len(s.moved) >= 1024 {
		s.pruneMoved(now)
	}
	s.moved[movedKey{room, peer}] = movedTo{node: node, at: now}
}

func (s *Server) pruneMoved(now time.Time) {
	for k, mv := range s.moved {
		if now.Sub(mv.at) > goneTTL {
			delete(s.moved, k)
		}
	}
}

// relaySender reads "from" back from a relayed payload.
func relaySender(payload []byte) string {
	var v struct {
		From string `json:"from"`
	}
	_ = json.Unmarshal(payload, &v)
	return v.From
}

// syncReply takes the owner's list of a room's peers after a Sync.
func (s *Server) syncReply(ob *outbox, owner string, r *meshpb.SyncReply) {
	rm := s.rooms[r.Room]
	if rm == nil {
		return
	}
	for _, p := range r.Peers {
		if rm.local[p.Id] == nil && p.Node != s.self {
			s.learn(ob, rm, p.Id, p.Node)
		}
	}
}

// membersChanged drops the peers of nodes that are gone and syncs rooms
// whose owner changed (or whose owner's link was reset) with the owner.
func (s *Server) membersChanged(ob *outbox, reset []string) {
	wasReset := make(map[string]bool, len(reset))
	for _, n := range reset {
		wasReset[n] = true
	}
	now := time.Now()
	s.pruneMoved(now)
	for _, rm := range s.rooms {
		for id, m := range rm.view {
			if m.node != s.self && !s.cl.Live(m.node) {
				s.forget(ob, rm, id)
			}
		}
		for id, t := range rm.gone {
			if now.Sub(t) > goneTTL {
				delete(rm.gone, id)
			}
		}
		if owner := s.cl.Owner(roomKey(rm.name)); owner != rm.owner || wasReset[owner] {
			s.syncRoom(ob, rm, owner)
		}
	}
	s.ownersChanged(ob)
}

// syncRoom sends this node's peers of rm to owner, the room's owner now:
// its connected and away peers, and those whose join is on its way (a
// Sync overtaking nothing on the link, it must not drop them).
func (s *Server) syncRoom(ob *outbox, rm *room, owner string) {
	rm.owner = owner
	sy := &meshpb.Sync{Room: rm.name}
	for id, lp := range rm.local {
		sy.Peers = append(sy.Peers, &meshpb.Peer{Id: id, Node: s.self, SecretHash: lp.hash})
	}
	for _, pj := range s.joins {
		if pj.room == rm.name {
			sy.Peers = append(sy.Peers, &meshpb.Peer{Id: pj.newID, Node: s.self, SecretHash: hashSecret(pj.secret)})
		}
	}
	s.toNode(ob, owner, &meshpb.Envelope{Kind: &meshpb.Envelope_Sync{Sync: sy}}, nil)
}

func equalHash(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && subtle.ConstantTimeCompare(a, b) == 1
}
