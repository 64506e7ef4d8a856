package p2p

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Perfect negotiation (the pattern of MDN's "Establishing a connection:
// the perfect negotiation pattern", as in the browser helper): both sides
// offer whenever negotiationneeded fires; when two offers cross ("glare"),
// the polite peer (the one whose id is lexically smaller) gives up its own
// offer and answers the other, and the impolite peer ignores the offer it
// got and waits for the answer to its own.
//
// Giving up an offer is a rollback, SetLocalDescription({type: rollback}).
// pion (v4.2.26, the latest at the time of writing) does not implement it:
// it refuses have-local-offer → rollback → stable (pion/webrtc issue
// #2416), and has no other way out of have-local-offer but an answer. So
// the polite side tries the rollback and, when pion refuses it, replaces
// the PeerConnection: the old one is closed (with the data channels and
// tracks the application had put on it), a new one takes the remote offer
// and answers, and OnConnection gives it to the application as it does for
// a connection the remote side starts. When pion learns rollbacks, the
// first branch is taken and nothing is replaced.
//
// Each PeerConnection has a worker goroutine that takes its events in
// order: remote offers, answers and candidates, negotiationneeded, and its
// own ICE candidates. One step at a time, so MDN's makingOffer flag is not
// needed (an offer is made and sent within one step), and a local
// candidate is always sent after the description it belongs to.

type eventKind int

const (
	evOffer           eventKind = iota // remote offer
	evAnswer                           // remote answer
	evRemoteCandidate                  // remote candidate (or end of candidates)
	evNegotiate                        // negotiationneeded of pc
	evLocalCandidate                   // pc's candidate to send (nil: end of candidates)
	evRestartICE                       // Room.RestartICE
)

type peerEvent struct {
	kind      eventKind
	sdp       string
	candidate json.RawMessage
	pc        *webrtc.PeerConnection // of a local event: the pc it came from
	local     *webrtc.ICECandidate
}

// peer is the PeerConnection with one remote peer, and its worker.
type peer struct {
	r      *Room
	id     string
	polite bool

	// pc is written by the worker with r.mu held (a replacement after
	// glare); others read it with r.mu held, the worker without.
	pc *webrtc.PeerConnection

	ready    chan struct{} // closed when the application has had pc (OnConnection returned)
	quit     chan struct{} // closed by stop
	stopOnce sync.Once

	mu   sync.Mutex
	q    []peerEvent
	wake chan struct{} // cap 1

	// worker only
	retired      []*webrtc.PeerConnection  // replaced pcs, closed; gracefully at the end
	pending      []webrtc.ICECandidateInit // remote candidates before a remote description
	ignoreOffer  bool
	restartICE   bool     // an ICE restart waits for the stable state
	localUfrag   string   // of our last description, for the candidates we send
	remoteUfrags []string // of the remote description, to drop stale candidates

	// counters, for tests and debugging
	rollbacks     atomic.Int32 // own offers rolled back (polite, glare)
	replaced      atomic.Int32 // pcs replaced for want of a rollback (polite, glare)
	ignoredOffers atomic.Int32 // remote offers ignored (impolite, glare)
}

// newPeerLocked creates the PeerConnection with id and starts its worker,
// which waits for p.ready. r.mu is held; pion calls none of our code
// synchronously here.
func (r *Room) newPeerLocked(id string) (*peer, error) {
	p := &peer{
		r:      r,
		id:     id,
		polite: r.self < id,
		ready:  make(chan struct{}),
		quit:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
	pc, err := p.newPC()
	if err != nil {
		return nil, err
	}
	p.pc = pc
	if old := r.peers[id]; old != nil {
		old.stop()
	}
	r.peers[id] = p
	r.workers.Add(1)
	go p.run()
	return p, nil
}

// newPC creates a PeerConnection wired to p's worker. r.mu is held.
func (p *peer) newPC() (*webrtc.PeerConnection, error) {
	r := p.r
	cfg := r.opts.Config
	cfg.ICEServers = append([]webrtc.ICEServer(nil), r.ice...)
	pc, err := r.api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("p2p: new PeerConnection for %s: %w", p.id, err)
	}
	pc.OnNegotiationNeeded(func() { p.push(peerEvent{kind: evNegotiate, pc: pc}) })
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.push(peerEvent{kind: evLocalCandidate, pc: pc, local: c}) })
	if !p.polite {
		// A failed ICE connection restarts ICE, as the browser helper does, but
		// from the impolite side only: both sides see the failure at about the
		// same time, and a glare would cost the polite pion side its
		// PeerConnection. (A browser on the polite side restarts too, and
		// rolls its offer back if the two cross.)
		pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
			if s == webrtc.ICEConnectionStateFailed {
				p.push(peerEvent{kind: evRestartICE, pc: pc})
			}
		})
	}
	return pc, nil
}

// isClosed reports whether the application (or the Room) closed the pc.
// r.mu is held, or the caller is the worker.
func (p *peer) isClosed() bool {
	return pcClosed(p.pc)
}

// pcClosed reports whether pc.Close was called. The signaling state is
// the sure sign: Close sets it first, while pion may still compute the
// connection state of an ongoing state change after Close set "closed".
func pcClosed(pc *webrtc.PeerConnection) bool {
	return pc.SignalingState() == webrtc.SignalingStateClosed ||
		pc.ConnectionState() == webrtc.PeerConnectionStateClosed
}

// push queues an event for the worker, without blocking.
func (p *peer) push(ev peerEvent) {
	p.mu.Lock()
	p.q = append(p.q, ev)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) pop() (peerEvent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) == 0 {
		return peerEvent{}, false
	}
	ev := p.q[0]
	p.q[0] = peerEvent{}
	p.q = p.q[1:]
	return ev, true
}

// stop ends the worker, which closes the PeerConnection.
func (p *peer) stop() {
	p.stopOnce.Do(func() { close(p.quit) })
}

func (p *peer) stopping() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

var errStopping = errors.New("p2p: peer stopping")

func (p *peer) run() {
	defer p.r.workers.Done()
	// GracefulClose waits for pion's goroutines of the pc (its data
	// channels' read loops, which run the application's handlers). The
	// worker is never waited for by a pion callback: Leave only waits for
	// r.stopped, which comes before the workers.
	defer func() {
		p.pc.GracefulClose()
		for _, pc := range p.retired {
			pc.GracefulClose()
		}
	}()
	select {
	case <-p.ready:
	case <-p.quit:
		return
	}
	for {
		select {
		case <-p.wake:
		case <-p.quit:
			return
		}
		for {
			if p.stopping() {
				return
			}
			ev, ok := p.pop()
			if !ok {
				break
			}
			err := p.handle(ev)
			if err != nil && err != errStopping && !p.stopping() && !p.isClosed() {
				p.r.emitError(err)
			}
		}
	}
}

func (p *peer) handle(ev peerEvent) error {
	if ev.pc != nil && ev.pc != p.pc {
		return nil // from a pc replaced since
	}
	if p.isClosed() {
		if ev.kind != evOffer || staleOffer(p.pc, ev.sdp) {
			return nil
		}
		// Closed under us (by the application, or by pion when the remote
		// end closed) since the Room routed the offer here, which is from a
		// new remote PeerConnection: it starts afresh, as it would have in
		// Room.relayed a moment later.
		if _, err := p.replace(); err != nil {
			return err
		}
	}
	pc := p.pc
	switch ev.kind {
	case evNegotiate:
		if pc.SignalingState() != webrtc.SignalingStateStable {
			return nil // pion fires again once stable, if still needed
		}
		return p.offer(false)

	case evRestartICE:
		if pc.SignalingState() != webrtc.SignalingStateStable || pc.RemoteDescription() == nil {
			p.restartICE = true // once stable (after the first negotiation)
			return nil
		}
		return p.offer(true)

	case evOffer:
		if cur := pc.RemoteDescription(); cur != nil && !sameFingerprints(cur.SDP, ev.sdp) {
			// A new certificate: the remote side has a new PeerConnection (its
			// application closed the old one, or it was replaced after a
			// glare). This one is of no use any more: start afresh.
			p.r.log.Debug("p2p: offer from a new remote PeerConnection", "from", p.id)
			var err error
			if pc, err = p.replace(); err != nil {
				return err
			}
		}
		collision := pc.SignalingState() != webrtc.SignalingStateStable
		p.ignoreOffer = !p.polite && collision
		if p.ignoreOffer {
			p.ignoredOffers.Add(1)
			p.r.log.Debug("p2p: glare, offer ignored (impolite)", "from", p.id)
			return nil
		}
		if collision {
			renegotiation := pc.RemoteDescription() != nil
			var replaced bool
			var err error
			if pc, replaced, err = p.yield(); err != nil {
				return err
			}
			if replaced && renegotiation {
				// The remote offer was for the connection just closed (and pion
				// closes the remote end of it too, on the DTLS close_notify): of
				// no use. The new pc offers what the application puts back on it
				// in OnConnection, and the remote side takes that offer on a new
				// PeerConnection of its own.
				return nil
			}
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: ev.sdp}); err != nil {
			return p.errorf("set remote offer", err)
		}
		p.remoteUfrags = ufrags(ev.sdp)
		p.flushCandidates()
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			return p.errorf("create answer", err)
		}
		if err := pc.SetLocalDescription(answer); err != nil {
			return p.errorf("set local answer", err)
		}
		p.localUfrag = ufrag(answer.SDP)
		p.r.log.Debug("p2p: answer", "to", p.id)
		if err := p.send(outMsg{Type: typeAnswer, To: p.id, SDP: answer.SDP}); err != nil {
			return err
		}
		return p.stable()

	case evAnswer:
		if st := pc.SignalingState(); st != webrtc.SignalingStateHaveLocalOffer {
			p.r.log.Debug("p2p: answer ignored", "from", p.id, "state", st)
			return nil
		}
		if cur := pc.RemoteDescription(); cur != nil && !sameFingerprints(cur.SDP, ev.sdp) {
			// The remote side answered a renegotiation from a new
			// PeerConnection (it replaced its own in a glare): ours cannot
			// follow. Start afresh; what the application adds to the new one
			// (in OnConnection) is offered as usual.
			p.r.log.Debug("p2p: answer from a new remote PeerConnection", "from", p.id)
			_, err := p.replace()
			return err
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ev.sdp}); err != nil {
			return p.errorf("set remote answer", err)
		}
		p.remoteUfrags = ufrags(ev.sdp)
		p.flushCandidates()
		return p.stable()

	case evRemoteCandidate:
		init, end, err := decodeCandidate(ev.candidate)
		if err != nil {
			return p.errorf("read candidate", err)
		}
		if end {
			// pion has nothing to do with end-of-candidates
			// (AddICECandidate with an empty candidate is a no-op).
			return nil
		}
		if pc.RemoteDescription() == nil {
			if len(p.pending) >= maxCandidates {
				p.r.log.Warn("p2p: too many candidates before the remote description, dropped", "from", p.id)
				return nil
			}
			p.pending = append(p.pending, init)
			return nil
		}
		return p.addCandidate(init)

	case evLocalCandidate:
		raw := nullJSON
		if ev.local != nil {
			raw = encodeCandidate(ev.local, p.localUfrag)
		}
		return p.send(outMsg{Type: typeCandidate, To: p.id, Candidate: raw})
	}
	return nil
}

// offer makes an offer (with new ICE credentials when iceRestart) and
// sends it.
func (p *peer) offer(iceRestart bool) error {
	var opts *webrtc.OfferOptions
	if iceRestart {
		opts = &webrtc.OfferOptions{ICERestart: true}
		p.restartICE = false
	}
	offer, err := p.pc.CreateOffer(opts)
	if err != nil {
		return p.errorf("create offer", err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return p.errorf("set local offer", err)
	}
	p.localUfrag = ufrag(offer.SDP)
	p.r.log.Debug("p2p: offer", "to", p.id, "iceRestart", iceRestart)
	return p.send(outMsg{Type: typeOffer, To: p.id, SDP: offer.SDP})
}

// stable runs what waited for the stable state: an ICE restart.
func (p *peer) stable() error {
	if p.restartICE && p.pc.SignalingState() == webrtc.SignalingStateStable {
		return p.offer(true)
	}
	return nil
}

// yield gives up our offer for the remote one (polite side of a glare): a
// rollback, or, as pion cannot do one, a new PeerConnection (replaced). It
// returns the pc to apply the remote offer to.
func (p *peer) yield() (pc *webrtc.PeerConnection, replaced bool, err error) {
	pc = p.pc
	if local := pc.LocalDescription(); local != nil {
		// pion needs an SDP that parses, even for a rollback.
		err := pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback, SDP: local.SDP})
		if err == nil {
			p.rollbacks.Add(1)
			p.r.log.Debug("p2p: glare, own offer rolled back (polite)", "from", p.id)
			return pc, false, nil
		}
		p.r.log.Debug("p2p: glare, rollback refused: replacing the PeerConnection (polite)", "from", p.id, "err", err)
	}
	if pc, err = p.replace(); err != nil {
		return nil, false, err
	}
	p.replaced.Add(1)
	return pc, true, nil
}

// replace swaps p.pc for a new PeerConnection, closes the old one and
// hands the new one to OnConnection, waiting for it to return.
func (p *peer) replace() (*webrtc.PeerConnection, error) {
	r := p.r
	r.mu.Lock()
	if r.closed || r.peers[p.id] != p {
		r.mu.Unlock()
		return nil, errStopping
	}
	pc, err := p.newPC()
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	old := p.pc
	p.pc = pc
	r.mu.Unlock()

	old.Close()
	p.retired = append(p.retired, old)
	p.localUfrag, p.remoteUfrags, p.pending = "", nil, nil
	ready := make(chan struct{})
	if !r.events.post(func() {
		defer close(ready)
		if f := r.handlers().onConnection; f != nil {
			f(p.id, pc)
		}
	}) {
		return nil, errStopping
	}
	select {
	case <-ready:
		return pc, nil
	case <-p.quit:
		return nil, errStopping
	}
}

// addCandidate adds a remote candidate, unless it names an ICE username
// fragment the remote description does not have (one of an abandoned
// offer or an earlier generation).
func (p *peer) addCandidate(c webrtc.ICECandidateInit) error {
	if c.UsernameFragment != nil && *c.UsernameFragment != "" && len(p.remoteUfrags) > 0 {
		stale := true
		for _, u := range p.remoteUfrags {
			stale = stale && u != *c.UsernameFragment
		}
		if stale {
			p.r.log.Debug("p2p: stale candidate dropped", "from", p.id, "ufrag", *c.UsernameFragment)
			return nil
		}
	}
	if err := p.pc.AddICECandidate(c); err != nil && !p.ignoreOffer {
		return p.errorf("add candidate", err)
	}
	return nil
}

// flushCandidates adds the remote candidates that came before the remote
// description.
func (p *peer) flushCandidates() {
	pending := p.pending
	p.pending = nil
	for _, c := range pending {
		if err := p.addCandidate(c); err != nil {
			p.r.log.Debug("p2p: queued candidate refused", "from", p.id, "err", err)
		}
	}
}

func (p *peer) send(m outMsg) error {
	if err := p.r.enqueue(m); err != nil {
		if err == ErrClosed {
			return nil
		}
		return fmt.Errorf("p2p: peer %s: send %s: %w", p.id, m.Type, err)
	}
	return nil
}

func (p *peer) errorf(step string, err error) error {
	return fmt.Errorf("p2p: peer %s: %s: %w", p.id, step, err)
}

// ufrags lists the a=ice-ufrag values of an SDP (session or media level).
func ufrags(sdp string) []string {
	var out []string
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "a=ice-ufrag:"); ok && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ufrag is the first a=ice-ufrag of an SDP, or "".
func ufrag(sdp string) string {
	if u := ufrags(sdp); len(u) > 0 {
		return u[0]
	}
	return ""
}

// staleOffer reports whether an offer for a closed pc comes from the remote
// PeerConnection it was connected with (same certificate): one made before
// that connection ended, to be dropped, rather than the first offer of a
// new remote PeerConnection.
func staleOffer(pc *webrtc.PeerConnection, offer string) bool {
	remote := pc.RemoteDescription()
	return remote != nil && sameFingerprints(remote.SDP, offer)
}

// sameFingerprints reports whether two SDPs share a DTLS certificate
// fingerprint (or either has none): whether they come from one
// PeerConnection, as far as can be told.
func sameFingerprints(a, b string) bool {
	fa, fb := fingerprints(a), fingerprints(b)
	if len(fa) == 0 || len(fb) == 0 {
		return true
	}
	for _, x := range fa {
		for _, y := range fb {
			if strings.EqualFold(x, y) {
				return true
			}
		}
	}
	return false
}

func fingerprints(sdp string) []string {
	var out []string
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "a=fingerprint:"); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}
