package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
	"github.com/switchyard/switchyard/protocols"
)

// Presence: who is in a channel, across the mesh. The channel's owner
// keeps the members of every node; each node sends it the members that
// join and leave there (PresenceUpdate), and all of them again after it
// registered with a new owner (sync). The owner passes join and leave
// events on to the nodes with subscribers, and answers queries
// (PresenceQuery) from any node. The node (edge) keeps the state; the
// mesh carries the messages.

const (
	msgPresenceUpdate = 15
	msgPresenceEvent  = 16
	msgPresenceQuery  = 17
	msgPresenceReply  = 18
)

// PresenceKeeper is what a node that keeps presence implements besides
// Local (edge.Node does).
type PresenceKeeper interface {
	// PresenceUpdate applies, as the channel's owner, the members that
	// joined and left on node from (sync: joined is all of from's).
	PresenceUpdate(from, channel string, joined, left []*protocols.ClientInfo, sync bool)
	// PresenceEvent hands the owner's join and leave events to the local
	// subscribers that asked for them.
	PresenceEvent(channel string, joined, left []*protocols.ClientInfo)
	// Presence answers a query as the channel's owner: counts, and up to
	// limit members.
	Presence(channel string, limit int) (*protocols.PresenceReply, error)
}

// SendPresence sends channel's joins and leaves on this node to node to,
// the channel's owner, without blocking; false if there is no link.
func (c *Cluster) SendPresence(to, channel string, joined, left []*protocols.ClientInfo, sync bool) bool {
	return c.sendProto(to, msgPresenceUpdate, &wirepb.PresenceUpdate{Channel: channel,
		Joined: membersToWire(joined), Left: membersToWire(left), Sync: sync})
}

// ForwardPresence sends the owner's join and leave events of channel to
// every other node interested in it, without blocking.
func (c *Cluster) ForwardPresence(channel string, joined, left []*protocols.ClientInfo) {
	var buf [8]string
	targets := c.interest.targets(buf[:0], channel)
	if len(targets) == 0 {
		return
	}
	m := &wirepb.PresenceUpdate{Channel: channel, Joined: membersToWire(joined), Left: membersToWire(left)}
	for _, t := range targets {
		c.sendProto(t, msgPresenceEvent, m)
	}
}

// QueryPresence asks channel's owner who is present: counts, and up to
// limit members. It waits at most Config.RequestTimeout.
func (c *Cluster) QueryPresence(ctx context.Context, channel string, limit int) (*protocols.PresenceReply, error) {
	if c.isStopped() {
		return nil, ErrClosed
	}
	owner := c.Owner(channel)
	if owner == c.name {
		if pk, ok := c.local.(PresenceKeeper); ok {
			return pk.Presence(channel, limit)
		}
		return nil, errors.New("mesh: this node keeps no presence")
	}
	id := c.nextID.Add(1)
	done := make(chan callResult, 1)
	c.pendMu.Lock()
	c.calls[id] = &call{peer: owner, done: done, sent: time.Now()}
	c.pendMu.Unlock()
	fail := func(err error) error { return fmt.Errorf("mesh: presence of %s from %s: %w", channel, owner, err) }
	if !c.sendProto(owner, msgPresenceQuery, &wirepb.PresenceQuery{Id: id, Channel: channel, Limit: uint32(max(limit, 0))}) {
		c.cancelCall(id)
		return nil, fail(ErrNoLink)
	}
	t := time.NewTimer(c.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fail(r.err)
		}
		return r.presence, nil
	case <-ctx.Done():
		c.cancelCall(id)
		return nil, ctx.Err()
	case <-t.C:
		c.cancelCall(id)
		return nil, fail(ErrTimeout)
	}
}

// handlePresence runs a presence message from peer on its reader.
func (c *Cluster) handlePresence(peer string, m message) {
	pk, ok := c.local.(PresenceKeeper)
	if !ok {
		return
	}
	switch m.typ {
	case msgPresenceUpdate, msgPresenceEvent:
		var u wirepb.PresenceUpdate
		if c.unmarshal(peer, m, &u) {
			return
		}
		joined, left := membersFromWire(u.Joined), membersFromWire(u.Left)
		if m.typ == msgPresenceUpdate {
			pk.PresenceUpdate(peer, u.Channel, joined, left, u.Sync)
		} else {
			pk.PresenceEvent(u.Channel, joined, left)
		}
	case msgPresenceQuery:
		var q wirepb.PresenceQuery
		if c.unmarshal(peer, m, &q) {
			return
		}
		reply := &wirepb.PresenceReply{Id: q.Id, Channel: q.Channel}
		if p, err := pk.Presence(q.Channel, int(min(q.Limit, 1<<20))); err != nil {
			reply.Error = err.Error()
		} else {
			reply.Members, reply.Clients, reply.Users, reply.Truncated = membersToWire(p.Members), p.Clients, p.Users, p.Truncated
		}
		c.sendProto(peer, msgPresenceReply, reply)
	case msgPresenceReply:
		var p wirepb.PresenceReply
		if c.unmarshal(peer, m, &p) {
			return
		}
		r := callResult{presence: &protocols.PresenceReply{Channel: p.Channel, Members: membersFromWire(p.Members),
			Clients: p.Clients, Users: p.Users, Truncated: p.Truncated}}
		if p.Error != "" {
			r.err = &RemoteError{Node: peer, Msg: p.Error}
		}
		c.complete(p.Id, peer, r)
	}
}

func membersToWire(ms []*protocols.ClientInfo) []*wirepb.PresenceMember {
	if len(ms) == 0 {
		return nil
	}
	out := make([]*wirepb.PresenceMember, len(ms))
	for i, m := range ms {
		out[i] = &wirepb.PresenceMember{Client: m.Client, User: m.User, Info: m.Info}
	}
	return out
}

func membersFromWire(ms []*wirepb.PresenceMember) []*protocols.ClientInfo {
	if len(ms) == 0 {
		return nil
	}
	out := make([]*protocols.ClientInfo, 0, len(ms))
	for _, m := range ms {
		if m != nil && m.Client != "" {
			out = append(out, &protocols.ClientInfo{Client: m.Client, User: m.User, Info: m.Info})
		}
	}
	return out
}
