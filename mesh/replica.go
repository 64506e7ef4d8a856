package mesh

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
	"github.com/switchyard/switchyard/protocols"
	"google.golang.org/protobuf/proto"
)

// Replication. Each channel's owner sends every publication to the
// channel's successor (the next-ranked node of the rendezvous order: the
// node that owns the channel if the owner vanishes) and delivers it, and
// acknowledges its publisher, only once the successor holds it. The
// successor answers each Replicate with a ReplicaAck on its own link to
// the owner; both links are ordered, so acks arrive in sequence order.
//
// A node that becomes a channel's owner takes the channel's state from
// whoever held it: its own replica when the owner it came from is gone,
// else the node that held it (HandOff): the previous owner, which stops
// sequencing the channel and passes publishes on, or, after a join, the
// new owner's successor, which is the previous owner (rendezvous order
// does not change between the others). All of it is driven by the node
// (edge.Hub) through the methods below; the mesh only carries the
// messages.

// Keeper is what a node that keeps channel replicas implements besides
// Local (edge.Node does). When the Local given to New implements it, the
// mesh routes publish requests, registrations and the replication messages
// through it.
type Keeper interface {
	// SequenceAsync is Local.Sequence for a node whose publications wait
	// for their replica: done gets the position once the successor holds
	// it, from any goroutine, in sequence order.
	SequenceAsync(channel, key string, data []byte, done func(epoch string, offset uint64, dup bool, err error))
	// HoldFor is Local.Hold for a registration from a node that last saw
	// the channel at (epoch, offset): a node ahead of this owner in the
	// same epoch means the two copies disagree.
	HoldFor(channel, epoch string, offset uint64, fn func(epoch string, offset uint64, history []protocols.Publication))
	// Position is the channel's position here, for a registration; ok
	// false when the node has none.
	Position(channel string) (epoch string, offset uint64, ok bool)
	// Replicate keeps a publication the owner from sequenced; it returns
	// what the replica holds now, ok false if it could not apply it.
	Replicate(from, channel, epoch string, offset uint64, key string, frame []byte) (string, uint64, bool)
	// Seed replaces the replica of channel with the owner's whole state;
	// handed: from was the owner and handed the channel to this node.
	Seed(from, channel string, st protocols.ChannelState, handed bool)
	// Forget drops the replica of channel: its owner from dropped it.
	Forget(from, channel string)
	// ReplicaAcked tells the owner that node from holds channel up to
	// (epoch, offset), or (ok false) that it needs the whole state.
	ReplicaAcked(from, channel, epoch string, offset uint64, ok bool)
	// HandOff gives node to, the channel's new owner, the channel's state
	// (found false: none here); a node that was sequencing the channel
	// stops and passes publishes on to to.
	HandOff(channel, to string) (protocols.ChannelState, bool)
	// MembersChanged is called after the members (and so owners and
	// successors) changed, with the nodes whose links were reset.
	MembersChanged(reset []string)
}

const (
	msgReplicate    = 11
	msgReplicaAck   = 12
	msgHandOff      = 13
	msgHandOffReply = 14
)

// Successor returns the node that would own channel if its owner vanished
// (the second in the rendezvous order), or "" when there is no other node.
func (c *Cluster) Successor(channel string) string {
	_, second := c.view.Load().ranked(channel)
	return second
}

// Successors lists the live nodes after channel's owner in its rendezvous
// order (the successor first).
func (c *Cluster) Successors(channel string) []string {
	v := c.view.Load()
	hc := fnv1a(channel)
	type ranked struct {
		name  string
		score uint64
	}
	rs := make([]ranked, len(v.names))
	for i, name := range v.names {
		rs[i] = ranked{name, mix64(hc ^ v.hashes[i])}
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].score != rs[j].score {
			return rs[i].score > rs[j].score
		}
		return rs[i].name > rs[j].name
	})
	out := make([]string, 0, len(rs))
	for _, r := range rs[min(1, len(rs)):] {
		out = append(out, r.name)
	}
	return out
}

// Isolated reports whether this node, told to join others (Config.Join),
// sees no other live member: just started, or cut off. Such a node must
// not take channels over on its own.
func (c *Cluster) Isolated() bool {
	if len(c.cfg.Join) == 0 {
		return false
	}
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	for name := range c.members {
		if name != c.name {
			return false
		}
	}
	return true
}

// Peers lists the other live members, draining ones included.
func (c *Cluster) Peers() []string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	out := make([]string, 0, len(c.members))
	for name := range c.members {
		if name != c.name {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Replicate sends a publication this node sequenced as channel's owner to
// node to, its successor, without blocking; false if there is no link.
func (c *Cluster) Replicate(to, channel, epoch string, offset uint64, key string, frame []byte) bool {
	return c.sendProto(to, msgReplicate, &wirepb.Replicate{Channel: channel, Epoch: epoch, Offset: offset, Key: key, Frame: frame})
}

// Seed sends channel's whole state to node to, its successor, replacing
// what it holds; false if there is no link.
func (c *Cluster) Seed(to, channel string, st protocols.ChannelState) bool {
	return c.sendProto(to, msgReplicate, &wirepb.Replicate{Channel: channel, Seed: stateToWire(st)})
}

// HandTo sends channel's whole state to node to, its new owner, as the
// previous owner; false if there is no link.
func (c *Cluster) HandTo(to, channel string, st protocols.ChannelState) bool {
	return c.sendProto(to, msgReplicate, &wirepb.Replicate{Channel: channel, Seed: stateToWire(st), Handed: true})
}

// Forget tells node to, channel's successor, that this node dropped the
// channel; false if there is no link.
func (c *Cluster) Forget(to, channel string) bool {
	return c.sendProto(to, msgReplicate, &wirepb.Replicate{Channel: channel, Forget: true})
}

// HandOff asks node from for channel's state, as its new owner (see
// Keeper.HandOff), and waits for the answer (at most
// Config.RequestTimeout).
func (c *Cluster) HandOff(ctx context.Context, from, channel string) (st protocols.ChannelState, found bool, err error) {
	if c.isStopped() {
		return st, false, ErrClosed
	}
	id := c.nextID.Add(1)
	done := make(chan callResult, 1)
	c.pendMu.Lock()
	c.calls[id] = &call{peer: from, done: done, sent: time.Now()}
	c.pendMu.Unlock()
	if !c.sendProto(from, msgHandOff, &wirepb.HandOff{Id: id, Channel: channel}) {
		c.cancelCall(id)
		return st, false, fmt.Errorf("mesh: hand-off of %s from %s: %w", channel, from, ErrNoLink)
	}
	t := time.NewTimer(c.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return st, false, fmt.Errorf("mesh: hand-off of %s from %s: %w", channel, from, r.err)
		}
		if r.state == nil {
			return st, false, nil
		}
		return *r.state, true, nil
	case <-ctx.Done():
		c.cancelCall(id)
		return st, false, ctx.Err()
	case <-t.C:
		c.cancelCall(id)
		return st, false, fmt.Errorf("mesh: hand-off of %s from %s: %w", channel, from, ErrTimeout)
	}
}

// PublishVia is PublishAsync through node via instead of the owner this
// node computes: an owner that handed a channel on passes its publishes to
// the node it handed it to, whatever its own view says meanwhile.
func (c *Cluster) PublishVia(via, channel, key string, data []byte, done func(epoch string, offset uint64, dup bool, err error)) {
	c.publishTo(via, channel, key, data, done)
}

func (c *Cluster) sendProto(to string, typ byte, m proto.Message) bool {
	b, err := proto.Marshal(m)
	if err != nil || len(b) > maxLinkMessage {
		c.log.Error("link message not sent", "to", to, "type", typ, "size", len(b), "err", err)
		return false
	}
	return c.send(to, item{hdr: startMsg(make([]byte, 0, 11), typ, len(b)), body: b})
}

// handleReplica runs a replication message from peer on its reader.
func (c *Cluster) handleReplica(peer string, m message) {
	k := c.keeper
	if k == nil {
		return
	}
	switch m.typ {
	case msgReplicate:
		var r wirepb.Replicate
		if c.unmarshal(peer, m, &r) {
			return
		}
		ack := &wirepb.ReplicaAck{Channel: r.Channel}
		switch {
		case r.Forget:
			k.Forget(peer, r.Channel)
			return
		case r.Seed != nil:
			st := stateFromWire(r.Seed)
			k.Seed(peer, r.Channel, st, r.Handed)
			if r.Handed {
				return // no ack: the sender is not waiting
			}
			ack.Epoch, ack.Offset, ack.Ok = st.Epoch, st.Offset, true
		default:
			ack.Epoch, ack.Offset, ack.Ok = k.Replicate(peer, r.Channel, r.Epoch, r.Offset, r.Key, r.Frame)
		}
		c.sendProto(peer, msgReplicaAck, ack)
	case msgReplicaAck:
		var a wirepb.ReplicaAck
		if c.unmarshal(peer, m, &a) {
			return
		}
		k.ReplicaAcked(peer, a.Channel, a.Epoch, a.Offset, a.Ok)
	case msgHandOff:
		var h wirepb.HandOff
		if c.unmarshal(peer, m, &h) {
			return
		}
		reply := &wirepb.HandOffReply{Id: h.Id, Channel: h.Channel}
		if st, ok := k.HandOff(h.Channel, peer); ok {
			reply.State = stateToWire(st)
		}
		c.sendProto(peer, msgHandOffReply, reply)
	case msgHandOffReply:
		var h wirepb.HandOffReply
		if c.unmarshal(peer, m, &h) {
			return
		}
		r := callResult{}
		if h.State != nil {
			st := stateFromWire(h.State)
			r.state = &st
		}
		c.complete(h.Id, peer, r)
	}
}

// unmarshal decodes m's payload into v; it reports true (and logs) when
// the payload is malformed.
func (c *Cluster) unmarshal(peer string, m message, v proto.Message) bool {
	if err := proto.Unmarshal(m.rest, v); err != nil {
		if c.rate.Allow("msg:"+peer, time.Minute) {
			c.log.Warn("malformed link message", "peer", peer, "type", m.typ, "err", err)
		}
		return true
	}
	return false
}

func stateToWire(st protocols.ChannelState) *wirepb.ChannelState {
	w := &wirepb.ChannelState{Epoch: st.Epoch, Offset: st.Offset, Owner: st.Owner}
	// The newest publications that fit a link message.
	size, first := 0, len(st.History)
	for first > 0 && size+len(st.History[first-1].Frame)+16 <= maxHistoryReply {
		size += len(st.History[first-1].Frame) + 16
		first--
	}
	w.History = make([]*wirepb.Publication, 0, len(st.History)-first)
	for _, p := range st.History[first:] {
		w.History = append(w.History, &wirepb.Publication{Offset: p.Offset, Frame: p.Frame})
	}
	w.Keys = make([]*wirepb.AppliedKey, len(st.Keys))
	for i, k := range st.Keys {
		w.Keys[i] = &wirepb.AppliedKey{Key: k.Key, Offset: k.Offset, AgeMs: uint64(max(k.Age, 0) / time.Millisecond)}
	}
	return w
}

func stateFromWire(w *wirepb.ChannelState) protocols.ChannelState {
	st := protocols.ChannelState{Epoch: w.Epoch, Offset: w.Offset, Owner: w.Owner}
	for _, p := range w.History {
		if p != nil {
			st.History = append(st.History, protocols.Publication{Offset: p.Offset, Frame: p.Frame})
		}
	}
	for _, k := range w.Keys {
		if k != nil {
			age := time.Duration(min(k.AgeMs, uint64(1<<62)/uint64(time.Millisecond))) * time.Millisecond
			st.Keys = append(st.Keys, protocols.AppliedKey{Key: k.Key, Offset: k.Offset, Age: age})
		}
	}
	return st
}

// ranked returns the first and second members of channel's rendezvous
// order ("" where there are fewer).
func (v *ownerView) ranked(channel string) (first, second string) {
	hc := fnv1a(channel)
	var s1, s2 uint64
	for i, name := range v.names {
		s := mix64(hc ^ v.hashes[i])
		switch {
		case first == "" || s > s1 || (s == s1 && name > first):
			second, s2 = first, s1
			first, s1 = name, s
		case second == "" || s > s2 || (s == s2 && name > second):
			second, s2 = name, s
		}
	}
	return first, second
}
