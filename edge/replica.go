package edge

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Replication of channels (docs/guarantees.md). With a Replicator, every
// publication a node sequences as a channel's owner is also held by the
// channel's successor before it is delivered anywhere or acknowledged: the
// owner sends it (Replicate), keeps it in the channel's unacked queue, and
// releases the queue in order as the successor's acks come back. A node
// that becomes a channel's owner takes over the channel's state (takeOver)
// from its replica or from the node that held the channel, so the epoch
// and offsets go on; the epoch changes only when no copy is left or the
// copies disagree, and then subscribers are told (endAll), never left
// with a silent gap.

// Replicator is what the hub needs from a mesh that replicates channels;
// mesh.Cluster satisfies it. A Cluster without it replicates nothing.
type Replicator interface {
	// Name is this node's name.
	Name() string
	// Successor is the node that would own channel if its owner vanished
	// ("" if none).
	Successor(channel string) string
	// Successors lists the nodes after the owner in channel's order.
	Successors(channel string) []string
	// Peers lists the other live members (draining ones included).
	Peers() []string
	// Isolated reports whether this node, told to join others, sees none.
	Isolated() bool
	// Live reports whether node is a live member.
	Live(node string) bool
	// Replicate sends a publication this node sequenced to to; false if
	// it could not be sent. The answer comes through Node.ReplicaAcked.
	Replicate(to, channel, epoch string, offset uint64, key string, frame []byte) bool
	// Seed sends channel's whole state to to, replacing its replica.
	Seed(to, channel string, st protocols.ChannelState) bool
	// HandTo sends channel's whole state to to, its new owner.
	HandTo(to, channel string, st protocols.ChannelState) bool
	// Forget tells to that this node dropped channel.
	Forget(to, channel string) bool
	// Owner is the node that owns channel.
	Owner(channel string) string
	// HandOff asks from for channel's state, as its new owner.
	HandOff(ctx context.Context, from, channel string) (protocols.ChannelState, bool, error)
	// PublishVia publishes through node via rather than the owner.
	PublishVia(via, channel, key string, data []byte, done func(string, uint64, bool, error))
}

// replica is the copy of a channel's state this node holds for the
// channel's owner (from), as its successor.
type replica struct {
	from   string
	handed bool // from handed the channel to this node: it is the owner's state
	epoch  string
	offset uint64
	hist   *history
	keys   map[string]keyed
	at     time.Time // last updated
}

// stale reports whether the replica may go: its owner lives and has not
// updated it for the idle TTL (it copies the channel elsewhere now, or
// dropped it). A dead owner's copy stays: it is what a takeover needs.
func (h *Hub) staleReplica(r *replica, now time.Time) bool {
	return r != nil && now.Sub(r.at) > h.idleTTL && h.rep != nil && h.rep.Live(r.from) && r.from != h.rep.Name()
}

// unacked is a publication sequenced here, waiting for the successor.
type unacked struct {
	offset uint64
	frame  []byte
	at     time.Time
	done   []func(Position, bool, error) // the publisher, then any duplicate
	dups   []bool
}

// ReplicationStats counts what replication did on this node.
type ReplicationStats struct {
	Replicated   atomic.Uint64 // publications held by a successor before release
	Seeds        atomic.Uint64 // whole states sent to a successor
	Unreplicated atomic.Uint64 // publications taken back: no other node held their copy in time
	TakeOvers    atomic.Uint64 // channels this node took over with their epoch
	NewEpochs    atomic.Uint64 // channels this node took over without a copy (new epoch)
	Resyncs      atomic.Uint64 // channels whose copies disagreed (new epoch, subscribers told)
}

// replicating reports whether publications of ch wait for a successor.
func (h *Hub) replicating(ch *channel) bool { return h.rep != nil && !ch.volatile }

// successorOf returns the node to replicate name to, "" for none (alone, or
// the successor stopped answering a moment ago).
func (h *Hub) successorOf(ch *channel, now time.Time) string {
	s := h.rep.Successor(ch.name)
	if s != "" && s == ch.succDown && now.Sub(ch.succDownAt) < h.replicaRetry {
		// It stopped answering a moment ago: the next node holds the copy.
		if ch.succ != "" && ch.succ != s {
			return ch.succ
		}
		return h.nextSuccessor(ch, s)
	}
	return s
}

// state is ch's state as its owner holds it (locked).
func (ch *channel) state(now time.Time) protocols.ChannelState {
	st := protocols.ChannelState{Epoch: ch.epoch, Offset: ch.offset}
	if ch.hist != nil {
		for _, e := range ch.hist.latest(0, now) {
			st.History = append(st.History, protocols.Publication{Offset: e.offset, Frame: e.frame})
		}
	}
	for k, v := range ch.keys {
		if v.pos.Epoch == ch.epoch {
			st.Keys = append(st.Keys, protocols.AppliedKey{Key: k, Offset: v.pos.Offset, Age: now.Sub(v.at)})
		}
	}
	return st
}

// replicate sends the publication at ch.offset (frame, key) to the
// successor, or the whole state when the successor changed; it reports
// whether the publication now waits for an ack. Locked.
func (h *Hub) replicate(ch *channel, key string, frame []byte, now time.Time) bool {
	succ := h.successorOf(ch, now)
	if succ == "" {
		return false
	}
	var sent bool
	if succ != ch.succ {
		sent = h.rep.Seed(succ, ch.name, ch.state(now))
		h.repStats.Seeds.Add(1)
	} else {
		sent = h.rep.Replicate(succ, ch.name, ch.epoch, ch.offset, key, frame)
	}
	if !sent {
		ch.succ = ""
		return false
	}
	ch.succ = succ
	h.repStats.Replicated.Add(1)
	return true
}

// reseed sends the whole state to the current successor (after a nack, a
// link reset or a membership change); unacked publications are acked by
// it. Locked.
func (h *Hub) reseed(ch *channel, now time.Time) []func() {
	ch.succ = ""
	succ := h.successorOf(ch, now)
	if succ != "" && h.rep.Seed(succ, ch.name, ch.state(now)) {
		h.repStats.Seeds.Add(1)
		ch.succ = succ
		return nil
	}
	return h.releaseUpTo(ch, ch.offset) // nobody to wait for
}

// releaseUpTo delivers, forwards and answers the unacked publications up to
// offset, in order; it returns the publishers' callbacks, to call once ch
// is unlocked. Locked.
func (h *Hub) releaseUpTo(ch *channel, offset uint64) []func() {
	n := 0
	for n < len(ch.unacked) && ch.unacked[n].offset <= offset {
		n++
	}
	if n == 0 {
		return nil
	}
	var after []func()
	for i := range ch.unacked[:n] {
		u := &ch.unacked[i]
		for _, m := range ch.subs {
			_ = m.s.Deliver(m.alias, u.frame)
		}
		h.stats.delivered(u.at, len(ch.subs))
		if h.cluster != nil {
			h.cluster.Forward(ch.name, ch.epoch, u.offset, u.frame)
		}
		pos := Position{Epoch: ch.epoch, Offset: u.offset}
		for j, done := range u.done {
			dup := u.dups[j]
			after = append(after, func() { done(pos, dup, nil) })
		}
	}
	clear(ch.unacked[:n])
	ch.unacked = ch.unacked[n:]
	if len(ch.unacked) == 0 {
		ch.unacked = nil
	}
	return after
}

// armReplicaTimer makes sure an overdue successor does not hold
// publications forever. Locked.
func (h *Hub) armReplicaTimer(ch *channel) {
	if ch.repTimer == nil {
		name := ch.name
		ch.repTimer = time.AfterFunc(h.replicaTimeout, func() { h.replicaOverdue(name) })
		return
	}
	ch.repTimer.Reset(h.replicaTimeout)
}

// replicaOverdue releases publications whose successor did not answer in
// time, without a copy, and stops waiting for that successor for a while.
func (h *Hub) replicaOverdue(name string) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	now := time.Now()
	if len(ch.unacked) == 0 {
		ch.mu.Unlock()
		return
	}
	if wait := h.replicaTimeout - now.Sub(ch.unacked[0].at); wait > 0 {
		ch.repTimer.Reset(wait)
		ch.mu.Unlock()
		return
	}
	// The successor does not answer: the copy goes to the next node in the
	// channel's order instead (a takeover asks it). When no other node
	// holds it in time either, this node is likely cut off: the
	// publications are taken back and their publishers told to try again,
	// rather than acknowledged with no copy anywhere.
	down := ch.succ
	ch.succDown, ch.succDownAt, ch.succ = down, now, ""
	if down != "" && !slices.Contains(ch.tried, down) {
		ch.tried = append(ch.tried, down)
	}
	var after []func()
	if next := h.nextSuccessor(ch, ch.tried...); next != "" && h.rep.Seed(next, name, ch.state(now)) {
		h.repStats.Seeds.Add(1)
		ch.succ = next
		for i := range ch.unacked {
			ch.unacked[i].at = now
		}
		ch.repTimer.Reset(h.replicaTimeout)
		if h.log != nil && h.logRate.Allow("overdue:"+down, 10*time.Second) {
			h.log.Warn("successor did not hold publications in time; copying the channel to the next node",
				"channel", name, "successor", down, "next", next)
		}
	} else {
		if h.log != nil && h.logRate.Allow("overdue:"+down, 10*time.Second) {
			h.log.Warn("no other node held publications in time; taking them back (their publishers try again)",
				"channel", name, "tried", ch.tried, "publications", len(ch.unacked))
		}
		h.repStats.Unreplicated.Add(uint64(len(ch.unacked)))
		ch.tried = nil
		after = h.takeBack(ch)
	}
	h.release(ch)
	runAll(after)
}

// takeBack undoes the publications waiting for a copy (none went out):
// the channel's position, history and keys go back to the last one out,
// the publishers get errNoCopy, and the next publication sends the whole
// state to the successor (whatever it held of these). Locked.
func (h *Hub) takeBack(ch *channel) []func() {
	out := ch.out()
	var after []func()
	for _, u := range ch.unacked {
		for _, done := range u.done {
			after = append(after, func() { done(Position{}, false, errNoCopy) })
		}
	}
	clear(ch.unacked)
	ch.unacked = nil
	ch.offset = out
	if ch.hist != nil {
		ch.hist.truncate(out)
	}
	for k, v := range ch.keys {
		if v.pos.Offset > out {
			delete(ch.keys, k)
		}
	}
	ch.succ = ""
	return after
}

// errNoCopy fails a publish that no other node could hold in time.
var errNoCopy = errors.New("no other node could hold a copy of the publication in time; try again")

// nextSuccessor is the first node after the owner in ch's order that is
// not one of skip ("" if none).
func (h *Hub) nextSuccessor(ch *channel, skip ...string) string {
	for _, n := range h.rep.Successors(ch.name) {
		if !slices.Contains(skip, n) {
			return n
		}
	}
	return ""
}

func runAll(fs []func()) {
	for _, f := range fs {
		f()
	}
}

// ReplicaAcked releases the publications the successor from now holds,
// or sends it the whole state when it could not apply one (ok false).
func (h *Hub) ReplicaAcked(from, name, epoch string, offset uint64, ok bool) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	var after []func()
	switch {
	case !ch.sequencer || from != ch.succ:
	case !ok:
		after = h.reseed(ch, time.Now())
	case epoch == ch.epoch:
		ch.tried = nil
		after = h.releaseUpTo(ch, offset)
	}
	h.release(ch)
	runAll(after)
}

// Replicate keeps, as the channel's successor, a publication its owner from
// sequenced. It reports what the replica holds, ok false if the replica
// cannot take it (none yet, another owner or epoch, a missed publication).
func (h *Hub) Replicate(from, name, epoch string, offset uint64, key string, frame []byte) (string, uint64, bool) {
	ch := h.acquire(name)
	defer h.release(ch)
	r := ch.rep
	if r == nil || r.from != from || r.epoch != epoch || offset > r.offset+1 {
		return "", 0, false
	}
	if offset <= r.offset { // already in a seed that overtook it
		return r.epoch, r.offset, true
	}
	now := time.Now()
	r.offset, r.at = offset, now
	if r.hist != nil {
		r.hist.add(offset, frame, now)
	}
	if key != "" {
		if r.keys == nil {
			r.keys = make(map[string]keyed)
		}
		r.keys[key] = keyed{pos: Position{Epoch: epoch, Offset: offset}, at: now}
		if len(r.keys) > maxKeys {
			pruneKeys(r.keys, now, h.window)
		}
	}
	return r.epoch, r.offset, true
}

// Seed replaces the channel's replica with its owner's whole state (handed:
// from handed the channel to this node, its new owner).
func (h *Hub) Seed(from, name string, st protocols.ChannelState, handed bool) {
	ch := h.acquire(name)
	if ch.volatile {
		h.release(ch)
		return
	}
	now := time.Now()
	r := &replica{from: from, handed: handed, epoch: st.Epoch, offset: st.Offset, at: now}
	if size, ttl := h.history(name); size > 0 {
		r.hist = newHistory(size, ttl)
		for _, p := range st.History {
			if p.Offset <= st.Offset {
				r.hist.add(p.Offset, p.Frame, now)
			}
		}
	}
	if len(st.Keys) > 0 {
		r.keys = make(map[string]keyed, len(st.Keys))
		for _, k := range st.Keys {
			if k.Age <= h.window {
				r.keys[k.Key] = keyed{pos: Position{Epoch: st.Epoch, Offset: k.Offset}, at: now.Add(-k.Age)}
			}
		}
	}
	ch.rep = r
	var after []func()
	if handed {
		ch.movedTo = "" // it is ours now
		if ch.sequencer && ch.offset == 0 && len(ch.unacked) == 0 {
			// We started the channel afresh (no copy reached us) and
			// nothing went out yet: the previous owner's state wins.
			ch.sequencer = false
			after = h.install(ch, &st)
		}
	}
	h.release(ch)
	runAll(after)
}

// movedFor is how long a node that handed a channel on passes its
// publishes to the new owner, at most: views agree again well before.
const movedFor = 10 * time.Second

// handedOn reports whether this node handed ch to a live node a moment
// ago: publishes go there. Locked.
func (h *Hub) handedOn(ch *channel) bool {
	return ch.movedTo != "" && h.rep != nil && time.Since(ch.movedAt) < movedFor && h.rep.Live(ch.movedTo)
}

// Forget drops the channel's replica: its owner dropped the channel.
func (h *Hub) Forget(from, name string) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	if ch.rep != nil && ch.rep.from == from {
		ch.rep = nil
	}
	h.release(ch)
}

// HandOff gives node to, the channel's new owner, the channel's state. A
// node that sequenced the channel stops, releases what waited for its
// successor (the new owner has it now) and passes publishes on to to.
func (h *Hub) HandOff(name, to string) (protocols.ChannelState, bool) {
	ch := h.lookup(name)
	if ch == nil {
		return protocols.ChannelState{}, false
	}
	now := time.Now()
	var st protocols.ChannelState
	var after []func()
	found := true
	switch {
	case ch.sequencer || ch.former:
		st = ch.state(now)
		st.Owner = true
		after = h.releaseUpTo(ch, ch.offset)
		ch.sequencer, ch.movedTo, ch.movedAt, ch.former = false, to, now, true
		ch.succ = ""
	case ch.rep != nil:
		// Our copy goes to the new owner; from now on it is the one that
		// sequences, not us, whatever our view says later. A copy handed
		// to us is no longer the latest once passed on: should this node
		// own the channel later, it asks the others again.
		st = ch.rep.state(now)
		ch.rep.handed = false
		ch.movedTo, ch.movedAt = to, now
	default:
		found = false
	}
	h.release(ch)
	runAll(after)
	if found && h.log != nil {
		h.log.Info("channel handed off", "channel", name, "to", to, "epoch", st.Epoch, "offset", st.Offset, "owner", st.Owner)
	}
	return st, found
}

func (r *replica) state(now time.Time) protocols.ChannelState {
	st := protocols.ChannelState{Epoch: r.epoch, Offset: r.offset}
	if r.hist != nil {
		for _, e := range r.hist.latest(0, now) {
			st.History = append(st.History, protocols.Publication{Offset: e.offset, Frame: e.frame})
		}
	}
	for k, v := range r.keys {
		st.Keys = append(st.Keys, protocols.AppliedKey{Key: k, Offset: v.pos.Offset, Age: now.Sub(v.at)})
	}
	return st
}

// takeOver makes this node the sequencer of ch, which it owns, with the
// channel's state from wherever a copy is (see the file comment). When
// copies have to be asked for, the op waits in ch.queued and runs, in
// order, once the answers are in; takeOver then reports false. Locked; ch
// stays locked.
func (h *Hub) takeOver(ch *channel, op ownerOp) (ready bool, after []func()) {
	if h.rep == nil {
		after = h.install(ch, nil)
		return true, after
	}
	if ch.taking {
		ch.queued = append(ch.queued, op)
		return false, nil
	}
	if r := ch.rep; r != nil && (r.handed || r.from == h.rep.Name()) {
		st := r.state(time.Now())
		return true, h.install(ch, &st)
	}
	peers := h.rep.Peers()
	if len(peers) == 0 && h.rep.Isolated() {
		// Told to join others and seeing none (just started, or cut
		// off): their copies may well exist. Not alone to decide.
		return false, op.fail(ch)
	}
	if len(peers) == 0 {
		var st *protocols.ChannelState
		if r := ch.rep; r != nil {
			s := r.state(time.Now())
			st = &s
		}
		return true, h.install(ch, st)
	}
	ch.taking = true
	ch.queued = append(ch.queued, op)
	go h.fetch(ch.name, peers)
	return false, nil
}

// handOffPatience is how long a node that takes a channel over keeps
// asking the live nodes that did not answer before it gives up: a request
// that failed is no proof that a copy is gone.
const handOffPatience = 3 * time.Second

// fetch asks every other live node for its copy of the channel (the
// previous owner's state, or a replica; each that has one stops
// sequencing it and passes publishes on), installs the best and runs the
// operations that waited. The epoch starts anew only when every live node
// answered that it holds nothing; when some did not answer and none had a
// copy, the waiting operations fail instead (publishers try again).
func (h *Hub) fetch(name string, peers []string) {
	type answer struct {
		from  string
		st    protocols.ChannelState
		found bool
		err   error
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			a := answer{from: p}
			for start, wait := time.Now(), 50*time.Millisecond; ; wait = min(2*wait, time.Second) {
				ctx, cancel := context.WithTimeout(context.Background(), h.replicaTimeout)
				a.st, a.found, a.err = h.rep.HandOff(ctx, p, name)
				cancel()
				if a.err == nil || time.Since(start) > handOffPatience || !h.rep.Live(p) {
					break
				}
				time.Sleep(wait)
			}
			answers[i] = a
		})
	}
	wg.Wait()

	ch := h.acquire(name)
	var after []func()
	queued := ch.queued
	ch.taking, ch.queued = false, nil
	var best *protocols.ChannelState
	better := func(st protocols.ChannelState) bool {
		switch {
		case best == nil:
			return true
		case st.Epoch == best.Epoch:
			return st.Offset > best.Offset
		default:
			return st.Owner && !best.Owner // a previous owner's own state beats a copy
		}
	}
	var failed []string
	for _, a := range answers {
		switch {
		case a.err != nil && h.rep.Live(a.from):
			// No answer from a live node is no proof that it holds
			// nothing. One the mesh declared dead meanwhile took its copy
			// with it. (A node that just started may see members come and
			// go before its view settles: a known risk, see the notes of
			// issue 10.)
			failed = append(failed, a.from)
		case a.found && better(a.st):
			st := a.st
			best = &st
		}
	}
	if r := ch.rep; r != nil {
		if rs := r.state(time.Now()); better(rs) {
			best = &rs
		}
	}
	if ch.former { // this node sequenced it before handing it on
		if own := ch.state(time.Now()); better(own) {
			own.Owner = true
			best = &own
		}
	}
	if len(failed) > 0 && (best == nil || !best.Owner) && !ch.sequencer {
		// A live node that did not answer may hold a newer copy than any
		// we got (only the previous owner's own state is sure to be the
		// latest): wait for it rather than number publications twice.
		if h.log != nil && h.logRate.Allow("handoff:"+name, 10*time.Second) {
			h.log.Warn("channel hand-off: some nodes did not answer; not sequencing it yet",
				"channel", name, "unanswered", failed, "copy", best != nil)
		}
		for _, op := range queued {
			after = append(after, op.fail(ch)...)
		}
		h.release(ch)
		runAll(after)
		return
	}
	if !ch.sequencer {
		if best == nil && h.log != nil {
			h.log.Info("channel starts a new epoch: no live node holds a copy", "channel", name, "asked", peers)
		}
		after = h.install(ch, best)
	}
	for _, op := range queued {
		after = append(after, op.run(ch)...)
	}
	h.release(ch)
	runAll(after)
}

// install makes this node ch's sequencer from st (nil: a new epoch). The
// local subscribers get what they missed from st's history, or, when the
// copy does not continue what they saw, their subscriptions end (endAll)
// so that they resubscribe and learn. It returns work for after unlock.
// Locked.
func (h *Hub) install(ch *channel, st *protocols.ChannelState) []func() {
	now := time.Now()
	seen, seenAt, copyFrom := ch.epoch, ch.offset, ch.repFrom()
	ch.sequencer, ch.rep, ch.movedTo, ch.succ, ch.former = true, nil, "", "", false
	ch.keys = nil
	if ch.hist != nil {
		ch.hist.reset()
	}
	if st == nil {
		ch.epoch, ch.offset = newEpoch(), 0
		if h.rep != nil {
			h.repStats.NewEpochs.Add(1)
			if (ch.registered || copyFrom != "") && h.log != nil && h.logRate.Allow("epoch:"+ch.name, time.Second) {
				// Subscribers here saw another epoch: they resync.
				h.log.Warn("channel taken over without a copy: new epoch", "channel", ch.name, "was", seen, "offset", seenAt,
					"epoch", ch.epoch, "copy_from", copyFrom)
			}
		}
	} else {
		h.repStats.TakeOvers.Add(1)
		if h.log != nil {
			h.log.Info("channel taken over", "channel", ch.name, "epoch", st.Epoch, "offset", st.Offset, "owner_state", st.Owner, "copy_from", copyFrom)
		}
		ch.epoch, ch.offset = st.Epoch, st.Offset
		if ch.hist != nil {
			for _, p := range st.History {
				if p.Offset <= st.Offset {
					ch.hist.add(p.Offset, p.Frame, now)
				}
			}
		}
		for _, k := range st.Keys {
			if k.Age <= h.window {
				ch.remember(k.Key, Position{Epoch: st.Epoch, Offset: k.Offset}, now.Add(-k.Age), h.window)
			}
		}
	}
	if len(ch.subs) == 0 || !ch.registered {
		return nil
	}
	if seen == ch.epoch && seenAt <= ch.offset {
		if seenAt == ch.offset {
			return nil
		}
		if ch.hist != nil {
			if missed, ok := ch.hist.after(seenAt, ch.offset, now); ok {
				for _, e := range missed {
					for _, m := range ch.subs {
						_ = m.s.Deliver(m.alias, e.frame)
					}
				}
				return nil
			}
		}
	}
	h.repStats.Resyncs.Add(1)
	ended := ch.endAll()
	h.stats.resync(len(ended))
	return []func(){func() { endDeliveries(ended) }}
}

// awaitingOp is an operation waiting for this node to see itself as the
// channel's owner (asOwner).
type ownerOp struct {
	run    func(*channel) []func() // as the sequencer
	expire func(*channel) []func() // this node did not become the owner in time
	fail   func(*channel) []func() // the takeover could not get the channel's copy
	until  time.Time               // awaiting: when it expires
}

func noOp(*channel) []func() { return nil }

// errMoving fails a publish to a channel whose copy this node, its new
// owner, could not get yet: the publisher tries again.
var errMoving = errors.New("the channel is moving between nodes; try again")

// runAwaiting runs the operations that waited for ownership, now that
// this node's view changed: as the owner if it is one now, expired if
// their time is up. Locked.
func (h *Hub) runAwaiting(ch *channel, now time.Time) []func() {
	if len(ch.awaiting) == 0 {
		return nil
	}
	owner := h.owns(ch.name)
	var after []func()
	keep := ch.awaiting[:0]
	for _, a := range ch.awaiting {
		switch {
		case owner || ch.sequencer:
			after = append(after, h.asOwner(ch, a)...)
		case !now.Before(a.until):
			after = append(after, a.expire(ch)...)
		default:
			keep = append(keep, a)
		}
	}
	clear(ch.awaiting[len(keep):])
	ch.awaiting = keep
	if len(keep) > 0 {
		ch.awaitTimer.Reset(keep[0].until.Sub(now))
	}
	return after
}

func (h *Hub) awaitExpired(name string) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	after := h.runAwaiting(ch, time.Now())
	h.release(ch)
	runAll(after)
}

// membersChanged re-seeds successors that changed (or whose link was
// reset), hands channels this node no longer owns to their new owners,
// and drops replicas this node no longer needs.
func (h *Hub) membersChanged(reset []string) {
	if h.rep == nil {
		h.eachChannel(func(ch *channel) {
			h.presenceMembersChanged(ch, h.owns(ch.name))
		})
		return
	}
	wasReset := func(n string) bool {
		for _, r := range reset {
			if r == n {
				return true
			}
		}
		return false
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		chans := make([]*channel, 0, len(sh.channels))
		for _, ch := range sh.channels {
			chans = append(chans, ch)
		}
		sh.mu.Unlock()
		for _, ch := range chans {
			ch.mu.Lock()
			if ch.gone || ch.volatile {
				ch.mu.Unlock()
				continue
			}
			now := time.Now()
			var after []func()
			owner := h.owns(ch.name)
			switch {
			case ch.sequencer && !owner:
				// Ownership moved (a join, or this node drains): hand the
				// channel over now, so it does not depend on this node.
				after = h.pushHandOff(ch, now)
			case ch.sequencer:
				ch.succDown = "" // give the successor another chance
				if s := h.successorOf(ch, now); s != ch.succ || wasReset(s) {
					after = h.reseed(ch, now)
				}
			}
			if ch.movedTo != "" && !h.rep.Live(ch.movedTo) {
				ch.movedTo = ""
			}
			after = append(after, h.runAwaiting(ch, now)...)
			h.presenceMembersChanged(ch, owner)
			h.release(ch)
			runAll(after)
		}
	}
}

// pushHandOff gives the channel's state to its new owner and stops
// sequencing it here. Locked.
func (h *Hub) pushHandOff(ch *channel, now time.Time) []func() {
	to := h.rep.Owner(ch.name)
	if to == "" || to == h.rep.Name() {
		return nil
	}
	st := ch.state(now)
	if !h.rep.HandTo(to, ch.name, st) {
		return nil // the new owner will ask (HandOff)
	}
	if h.log != nil {
		h.log.Info("channel pushed to its new owner", "channel", ch.name, "to", to, "epoch", st.Epoch, "offset", st.Offset)
	}
	after := h.releaseUpTo(ch, ch.offset)
	ch.sequencer, ch.movedTo, ch.movedAt, ch.succ, ch.former = false, to, now, "", true
	return after
}

func (ch *channel) repFrom() string {
	if ch.rep == nil {
		return ""
	}
	return ch.rep.from
}
