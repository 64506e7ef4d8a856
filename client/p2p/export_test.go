package p2p

import "sync"

// Test hooks. Nothing here is part of the API.

// DropConn closes the socket under the WebSocket, as a network failure
// would (no close frame): the server keeps the peer for its grace period
// and the Room redials and resumes. It reports false while no socket is up.
func (r *Room) DropConn() bool {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	if c == nil {
		return false
	}
	c.NetConn().Close()
	return true
}

// ResumeSecret is the secret of the last "joined".
func (r *Room) ResumeSecret() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resume
}

// SetResumeSecret replaces the secret the next redial sends.
func (r *Room) SetResumeSecret(s string) {
	r.mu.Lock()
	r.resume = s
	r.mu.Unlock()
}

// Rejoins counts the successful redials.
func (r *Room) Rejoins() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejoins
}

// HoldWrites makes the socket's writer wait before each message until
// release is called: what the Room sends meanwhile stays queued.
func (r *Room) HoldWrites() (release func()) {
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	return sync.OnceFunc(func() {
		r.mu.Lock()
		r.gate = nil
		r.mu.Unlock()
		close(gate)
	})
}

// Glare counts, for the PeerConnection with id, the own offers rolled
// back and the PeerConnections replaced (polite side), and the remote
// offers ignored (impolite side). All -1: no PeerConnection.
func (r *Room) Glare(id string) (rollbacks, replaced, ignored int) {
	r.mu.Lock()
	p := r.peers[id]
	r.mu.Unlock()
	if p == nil {
		return -1, -1, -1
	}
	return int(p.rollbacks.Load()), int(p.replaced.Load()), int(p.ignoredOffers.Load())
}

// Connected reports whether a socket is up (joined).
func (r *Room) Connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn != nil
}
