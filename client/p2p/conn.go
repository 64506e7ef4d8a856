package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// Concurrency. A Room runs:
//   - run, the supervisor: it serves one socket at a time (its read loop
//     runs on run's goroutine), redials and resumes, and at the end closes
//     the PeerConnections, waits for the others and closes done;
//   - one writer per socket, the only goroutine that writes data messages
//     on it (gorilla allows one concurrent writer; control frames go
//     through WriteControl, which may be concurrent);
//   - one worker per PeerConnection (peer.go), which serializes its
//     negotiation;
//   - the dispatcher, which runs the application's callbacks.
//
// Room.mu guards the session state; it is never held while calling a
// callback, writing to the socket or closing a PeerConnection.

// readLimit is the largest server message read (the server's own hard
// limit on messages is 1 MiB).
const readLimit = 1 << 20

// dial opens a socket, sends "join" (with the peer id and resume secret
// when resume) and waits for "joined". The server's "error" is returned
// as an *Error, a close as a *CloseError.
func (r *Room) dial(ctx context.Context, resume bool) (*websocket.Conn, *inMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	conn, resp, err := r.dialer.DialContext(ctx, r.url, r.opts.Header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, nil, fmt.Errorf("p2p: dial %s: %w (HTTP %s)", r.url, err, resp.Status)
		}
		return nil, nil, fmt.Errorf("p2p: dial %s: %w", r.url, err)
	}
	// Reads and writes below block on the socket: end them with ctx.
	unwatch := context.AfterFunc(ctx, func() { conn.NetConn().Close() })
	fail := func(err error) (*websocket.Conn, *inMsg, error) {
		unwatch()
		conn.Close()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("p2p: join %s: %w", r.name, context.Cause(ctx))
		}
		return nil, nil, err
	}
	conn.SetReadLimit(readLimit)

	join := outMsg{Type: typeJoin, Room: r.name, Token: r.opts.Token}
	if resume {
		r.mu.Lock()
		join.Peer, join.Resume = r.self, r.resume
		r.mu.Unlock()
	}
	b, _ := json.Marshal(join)
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fail(fmt.Errorf("p2p: send join: %w", err))
	}
	conn.SetWriteDeadline(time.Time{})
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			if ce := closeError(err, nil); ce != nil {
				return fail(ce)
			}
			return fail(fmt.Errorf("p2p: join %s: %w", r.name, err))
		}
		var m inMsg
		if err := json.Unmarshal(b, &m); err != nil {
			r.log.Warn("p2p: unreadable server message", "err", err)
			continue
		}
		switch m.Type {
		case typeJoined:
			if !unwatch() {
				return fail(context.Cause(ctx))
			}
			return conn, &m, nil
		case typeError:
			// A refused join; the close follows.
			return fail(&Error{Code: m.Code, Message: m.Message, To: m.To})
		}
	}
}

// closeError is the *CloseError for a close frame from the server, or nil
// for other read errors.
func closeError(err error, before *Error) *CloseError {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code == websocket.CloseAbnormalClosure || ce.Code == websocket.CloseNoStatusReceived {
		return nil
	}
	return &CloseError{Code: ce.Code, Reason: ce.Text, Err: before}
}

// run serves sockets until the room ends, then tears everything down.
func (r *Room) run(conn *websocket.Conn) {
	for conn != nil {
		terminal, err := r.serve(conn)
		if r.ctx.Err() != nil {
			break
		}
		if terminal {
			r.fail(err)
			break
		}
		if r.opts.DisableReconnect {
			r.fail(fmt.Errorf("p2p: signaling connection lost (reconnect disabled): %w", err))
			break
		}
		conn = r.reconnect()
	}
	r.finish()
}

// serve runs one socket: its writer, and its read loop on this goroutine.
// It returns whether the way the socket ended (err) ends the room (a close
// code that ends the session) rather than calling for a redial.
func (r *Room) serve(conn *websocket.Conn) (terminal bool, err error) {
	readerDone := make(chan struct{})
	writerDone := make(chan struct{})
	go r.writer(conn, readerDone, writerDone)
	err = r.readLoop(conn)
	close(readerDone)
	<-writerDone
	conn.Close()
	r.mu.Lock()
	if r.conn == conn {
		r.conn = nil
	}
	r.mu.Unlock()

	var ce *CloseError
	if errors.As(err, &ce) && terminalClose(ce.Code) {
		return true, ce
	}
	if r.ctx.Err() == nil {
		r.log.Debug("p2p: signaling connection lost", "err", err)
	}
	return false, err
}

// readLoop reads server messages until the socket fails; the error says
// how (a *CloseError for a close frame).
func (r *Room) readLoop(conn *websocket.Conn) error {
	extend := func() { conn.SetReadDeadline(time.Now().Add(readTimeout)) }
	conn.SetPingHandler(func(data string) error {
		extend()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		var ne net.Error
		if err == websocket.ErrCloseSent || errors.As(err, &ne) && ne.Timeout() {
			return nil // as gorilla's default handler
		}
		return err
	})
	conn.SetPongHandler(func(string) error { extend(); return nil })
	var fatal *Error // the error message before a close
	for {
		extend()
		_, b, err := conn.ReadMessage()
		if err != nil {
			if ce := closeError(err, fatal); ce != nil {
				return ce
			}
			return err
		}
		var m inMsg
		if err := json.Unmarshal(b, &m); err != nil {
			r.log.Warn("p2p: unreadable server message", "err", err)
			continue
		}
		if e := r.handle(&m); e != nil {
			fatal = e
		}
	}
}

// handle acts on one server message; it returns the *Error of a fatal
// "error", for the close that follows.
func (r *Room) handle(m *inMsg) *Error {
	switch m.Type {
	case typePeerJoined:
		r.memberJoined(m.Peer)
	case typePeerLeft:
		r.memberLeft(m.Peer)
	case typeOffer, typeAnswer, typeCandidate:
		r.relayed(m)
	case typeMessage:
		if r.ensureMember(m.From) {
			r.emitMessage(m.From, m.Data)
		}
	case typeError:
		e := &Error{Code: m.Code, Message: m.Message, To: m.To}
		r.emitError(e)
		if fatalCode(m.Code) {
			return e
		}
	case typeLeft, typePong, typeJoined:
	default:
		r.log.Debug("p2p: unknown server message", "type", m.Type)
	}
	return nil
}

// memberJoined adds a peer and fires OnJoin, once per peer.
func (r *Room) memberJoined(id string) {
	if id == "" {
		return
	}
	r.mu.Lock()
	added := !r.closed && id != r.self && !r.former[id] && !slices.Contains(r.members, id)
	if added {
		r.members = append(r.members, id)
	}
	r.mu.Unlock()
	if added {
		r.emitJoin(id)
	}
}

// ensureMember makes sure a peer a message came from is a member (the
// server sends peer-joined before a peer's first message; this covers a
// server that would not). It reports false for this peer's own ids.
func (r *Room) ensureMember(id string) bool {
	r.mu.Lock()
	own := id == "" || id == r.self || r.former[id]
	r.mu.Unlock()
	if own {
		return false
	}
	r.memberJoined(id)
	return true
}

// memberLeft removes a peer, closes its PeerConnection and fires OnLeave.
func (r *Room) memberLeft(id string) {
	r.mu.Lock()
	i := slices.Index(r.members, id)
	if i >= 0 {
		r.members = slices.Delete(r.members, i, i+1)
	}
	p := r.peers[id]
	delete(r.peers, id)
	delete(r.early, id)
	r.mu.Unlock()
	if p != nil {
		p.stop()
	}
	if i >= 0 {
		r.emitLeave(id)
	}
}

// relayed hands an offer, answer or candidate to its peer's worker. An
// offer from a peer without a (live) PeerConnection creates one, and
// OnConnection runs before the worker applies the offer.
func (r *Room) relayed(m *inMsg) {
	if !r.ensureMember(m.From) {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	p := r.peers[m.From]
	var created *peer
	var early []json.RawMessage
	if p == nil || p.isClosed() {
		switch m.Type {
		case typeCandidate:
			// A candidate ahead of its offer (or a late one of a closed
			// PeerConnection): kept for the offer, if one comes.
			if len(r.early[m.From]) < maxEarlyCandidates {
				r.early[m.From] = append(r.early[m.From], m.Candidate)
			}
			r.mu.Unlock()
			return
		case typeAnswer:
			r.mu.Unlock()
			r.log.Debug("p2p: answer dropped for want of a PeerConnection", "from", m.From)
			return
		}
		if p != nil && staleOffer(p.pc, m.SDP) {
			r.mu.Unlock()
			r.log.Debug("p2p: offer for a closed connection dropped", "from", m.From)
			return
		}
		var err error
		if p, err = r.newPeerLocked(m.From); err != nil {
			r.mu.Unlock()
			r.emitError(err)
			return
		}
		created = p
		early = r.early[m.From]
		delete(r.early, m.From)
	}
	r.mu.Unlock()

	// The offer goes in the worker's queue before OnConnection runs (the
	// worker waits for it): what the application adds to the pc there fires
	// negotiationneeded, whose offer must come after the answer to this one.
	ev := peerEvent{kind: evRemoteCandidate, sdp: m.SDP, candidate: m.Candidate}
	switch m.Type {
	case typeOffer:
		ev.kind = evOffer
	case typeAnswer:
		ev.kind = evAnswer
	}
	p.push(ev)
	for _, c := range early {
		p.push(peerEvent{kind: evRemoteCandidate, candidate: c})
	}
	if created != nil {
		id, pc := created.id, created.pc
		if !r.events.post(func() {
			defer close(created.ready)
			if f := r.handlers().onConnection; f != nil {
				f(id, pc)
			}
		}) {
			close(created.ready) // ending: the worker sees quit anyway
		}
	}
}

// writer sends the queued messages on conn, pings, and on stop sends the
// rest of the queue and "leave". It ends when the read loop does (or
// after "leave"), and closes conn when a write fails.
func (r *Room) writer(conn *websocket.Conn, readerDone <-chan struct{}, writerDone chan<- struct{}) {
	defer close(writerDone)
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	pace := newBucket(r.Limits(), time.Now())
	write := func(o outgoing) bool {
		if !r.waitGate(readerDone) || !pace.wait(readerDone, r.ctx.Done()) {
			r.setRetry(o)
			return false
		}
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := conn.WriteMessage(websocket.TextMessage, o.b); err != nil {
			r.log.Debug("p2p: write failed", "err", err)
			r.setRetry(o)
			conn.NetConn().Close() // the read loop ends, and a redial follows
			return false
		}
		return true
	}

	r.mu.Lock()
	retry := r.retry
	r.retry = nil
	r.mu.Unlock()
	if retry != nil && !write(*retry) {
		return
	}
	for {
		select {
		case <-readerDone:
			return
		case <-r.ctx.Done():
			r.sendLeave(conn, readerDone, write)
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				conn.NetConn().Close()
				return
			}
		case o := <-r.out:
			if !write(o) {
				return
			}
		}
	}
}

// sendLeave flushes the queue, sends "leave" and waits (a while) for the
// server to close; then it closes the socket.
func (r *Room) sendLeave(conn *websocket.Conn, readerDone <-chan struct{}, write func(outgoing) bool) {
	defer conn.NetConn().Close()
	for ok := true; ok; {
		select {
		case o := <-r.out:
			if !write(o) {
				return
			}
		default:
			ok = false
		}
	}
	b, _ := json.Marshal(outMsg{Type: typeLeave})
	if !write(outgoing{typ: typeLeave, b: b}) {
		return
	}
	t := time.NewTimer(leaveTimeout)
	defer t.Stop()
	select {
	case <-readerDone: // "left" and close 1000
	case <-t.C:
		r.log.Debug("p2p: no close after leave")
	}
}

// bucket paces a writer within the server's rate limit (a token bucket
// of its rate and burst, with a margin), so that a burst of candidates to
// many peers waits a little instead of being refused as rate_limited.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(l Limits, now time.Time) *bucket {
	b := &bucket{rate: 0.9 * l.Rate, burst: max(1, 0.9*l.Burst), last: now}
	b.tokens = b.burst
	return b
}

// take takes a token, or tells how long to wait for one.
func (b *bucket) take(now time.Time) time.Duration {
	if b.rate <= 0 {
		return 0 // no limit told
	}
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// wait takes a token, waiting for it; false if the socket ended first.
// After stop (the room is ending), it does not wait: "leave" goes out.
func (b *bucket) wait(readerDone, stop <-chan struct{}) bool {
	for {
		d := b.take(time.Now())
		if d == 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-readerDone:
			t.Stop()
			return false
		case <-stop:
			t.Stop()
			return true
		}
	}
}

// setRetry keeps a message a writer could not send, for the next socket.
func (r *Room) setRetry(o outgoing) {
	r.mu.Lock()
	if r.retry == nil {
		r.retry = &o
	}
	r.mu.Unlock()
}

// waitGate blocks while a test holds the writers; false if the socket or
// the room ended meanwhile.
func (r *Room) waitGate(readerDone <-chan struct{}) bool {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate == nil {
		return true
	}
	select {
	case <-gate:
		return true
	case <-readerDone:
		return false
	case <-r.ctx.Done():
		return true // let "leave" out
	}
}

// reconnect redials with backoff until a join succeeds (it returns the
// socket, the session adopted) or the room ends (nil; a refusal by the
// server ends it with that error).
func (r *Room) reconnect() *websocket.Conn {
	delay := backoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Full jitter over [delay/2, delay).
			d := delay/2 + rand.N(delay/2+1)
			t := time.NewTimer(d)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			delay = min(2*delay, backoffMax)
		}
		if r.ctx.Err() != nil {
			return nil
		}
		conn, j, err := r.dial(r.ctx, true)
		if err != nil {
			var pe *Error
			var ce *CloseError
			if errors.As(err, &ce) && terminalClose(ce.Code) || errors.As(err, &pe) && fatalCode(pe.Code) {
				r.fail(err)
				return nil
			}
			r.log.Debug("p2p: redial failed", "attempt", attempt+1, "err", err)
			continue
		}
		r.rejoined(conn, j)
		return conn
	}
}

// rejoined takes the session of a "joined" after a redial: the same peer
// when resumed, else a new one.
func (r *Room) rejoined(conn *websocket.Conn, j *inMsg) {
	r.mu.Lock()
	oldSelf := r.self
	resumed := j.Resumed && j.Peer == oldSelf
	var left, joined []string
	var stopping []*peer
	if resumed {
		r.adopt(j)
		now := r.filterPeers(j.Peers)
		for _, id := range r.members {
			if !slices.Contains(now, id) {
				left = append(left, id)
				if p := r.peers[id]; p != nil {
					stopping = append(stopping, p)
					delete(r.peers, id)
				}
				delete(r.early, id)
			}
		}
		for _, id := range now {
			if !slices.Contains(r.members, id) {
				joined = append(joined, id)
			}
		}
		r.members = now
	} else {
		left = r.members
		for _, p := range r.peers {
			stopping = append(stopping, p)
		}
		r.peers = make(map[string]*peer)
		clear(r.early)
		r.former[oldSelf] = true
		r.adopt(j)
		r.members = r.filterPeers(j.Peers)
		joined = slices.Clone(r.members)
		// What waited was sent under the old id, which the others knew, and
		// the connections it was about are closed: dropped (as the browser
		// helper does).
		r.retry = nil
		r.dropQueueLocked()
	}
	r.conn = conn
	r.rejoins++
	r.mu.Unlock()

	r.log.Debug("p2p: rejoined", "resumed", resumed, "peer", j.Peer, "was", oldSelf)
	for _, p := range stopping {
		p.stop()
	}
	for _, id := range left {
		r.emitLeave(id)
	}
	for _, id := range joined {
		r.emitJoin(id)
	}
}

// dropQueueLocked empties the outgoing queue. r.mu is held (so no
// socket's writer runs).
func (r *Room) dropQueueLocked() {
	for {
		select {
		case <-r.out:
		default:
			return
		}
	}
}

// finish ends the room: it closes every PeerConnection, lets Leave return,
// waits for the workers (whose graceful closes wait for pion's goroutines)
// and the callbacks, and closes done.
func (r *Room) finish() {
	r.mu.Lock()
	r.closed = true
	r.conn = nil
	peers := make([]*peer, 0, len(r.peers))
	pcs := make([]*webrtc.PeerConnection, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
		pcs = append(pcs, p.pc)
	}
	clear(r.peers)
	r.mu.Unlock()
	for i, p := range peers {
		pcs[i].Close()
		p.stop()
	}
	close(r.stopped)
	r.workers.Wait()
	r.events.close()
	<-r.events.done
	close(r.done)
}
