package edge

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Presence: who is in a channel, over the whole cluster (channels matched
// by Config.Presence). A session subscribed to such a channel is one of
// its members: its session id, and the user and info it gave in Connect.
// Every node keeps its own members of the channel (local); the channel's
// owner keeps everyone's (all), from the joins and leaves each node sends
// it, and all of a node's members again after that node registered with
// it (a new owner, a link reset). The owner answers presence queries and
// passes join and leave events to the subscriptions that asked for them,
// while the channel has at most PresenceEventLimit members: above that
// only the counts and the list are served, not one event per member to
// every subscriber. A node the mesh declares dead loses its members at the
// owner (leave events).

// PresenceCarrier is what the hub needs from a mesh to keep presence
// across nodes; mesh.Cluster satisfies it. Without it, presence is this
// node's alone.
type PresenceCarrier interface {
	Name() string
	Owner(channel string) string
	Live(node string) bool
	// SendPresence sends this node's joins and leaves of channel to to,
	// its owner (sync: joined is all of this node's members).
	SendPresence(to, channel string, joined, left []*protocols.ClientInfo, sync bool) bool
	// ForwardPresence sends the owner's join and leave events to the
	// other nodes with subscribers.
	ForwardPresence(channel string, joined, left []*protocols.ClientInfo)
	// QueryPresence asks the channel's owner who is present.
	QueryPresence(ctx context.Context, channel string, limit int) (*protocols.PresenceReply, error)
}

// MaxPresenceUser and MaxPresenceInfo bound what a client says about
// itself in Connect.
const (
	MaxPresenceUser = 256
	MaxPresenceInfo = 1024
	// DefaultPresenceLimit is how many members a presence query lists
	// unless told otherwise.
	DefaultPresenceLimit = 1000
)

// presence is a presence channel's membership on this node. Guarded by the
// channel's mu.
type presence struct {
	local map[protocols.Session]*protocols.ClientInfo // members on this node
	all   map[string]presenceEntry                    // as the owner: every node's, by client id
	users map[string]int                              // as the owner: members per user
}

type presenceEntry struct {
	info *protocols.ClientInfo
	node string
}

func newPresence() *presence {
	return &presence{local: make(map[protocols.Session]*protocols.ClientInfo)}
}

// busy reports whether the presence holds anybody.
func (p *presence) busy() bool { return p != nil && (len(p.local) > 0 || len(p.all) > 0) }

func (h *Hub) self() string {
	if h.pc == nil {
		return ""
	}
	return h.pc.Name()
}

// presenceOwner is the node that keeps ch's presence ("" or self: here).
func (h *Hub) presenceOwner(name string) string {
	if h.pc == nil {
		return ""
	}
	return h.pc.Owner(name)
}

// presenceJoin records m as a member of ch and tells the owner. Locked.
func (h *Hub) presenceJoin(ch *channel, m member) {
	if ch.pres == nil || m.info == nil {
		return
	}
	if _, ok := ch.pres.local[m.s]; ok {
		return
	}
	ch.pres.local[m.s] = m.info
	h.presenceSend(ch, []*protocols.ClientInfo{m.info}, nil, false)
}

// presenceLeave removes s from ch's members and tells the owner. Locked.
func (h *Hub) presenceLeave(ch *channel, s protocols.Session) {
	if ch.pres == nil {
		return
	}
	info, ok := ch.pres.local[s]
	if !ok {
		return
	}
	delete(ch.pres.local, s)
	h.presenceSend(ch, nil, []*protocols.ClientInfo{info}, false)
}

// presenceSync sends all of this node's members of ch to its owner (after
// a registration: the owner may be new, or may have missed updates).
// Locked.
func (h *Hub) presenceSync(ch *channel) {
	if ch.pres == nil || h.pc == nil {
		return
	}
	members := make([]*protocols.ClientInfo, 0, len(ch.pres.local))
	for _, info := range ch.pres.local {
		members = append(members, info)
	}
	h.presenceSend(ch, members, nil, true)
}

func (h *Hub) presenceSend(ch *channel, joined, left []*protocols.ClientInfo, sync bool) {
	owner := h.presenceOwner(ch.name)
	if owner == "" || owner == h.self() {
		h.presenceApply(ch, h.self(), joined, left, sync)
		return
	}
	h.pc.SendPresence(owner, ch.name, joined, left, sync) // lost with a link: the next registration syncs
}

// presenceApply applies, as the owner, node's joins and leaves (sync:
// joined is all of node's members) and sends out the events. A node's
// first sync adds its members without join events: they were there
// before (this owner is new to the channel). Locked.
func (h *Hub) presenceApply(ch *channel, node string, joined, left []*protocols.ClientInfo, sync bool) {
	p := ch.pres
	if p == nil {
		return
	}
	if p.all == nil {
		p.all = make(map[string]presenceEntry)
		p.users = make(map[string]int)
	}
	var evJoined, evLeft []*protocols.ClientInfo
	quiet := false
	if sync {
		keep := make(map[string]bool, len(joined))
		for _, m := range joined {
			keep[m.Client] = true
		}
		known := false
		for id, e := range p.all {
			if e.node != node {
				continue
			}
			known = true
			if !keep[id] {
				left = append(left, e.info)
			}
		}
		quiet = !known
	}
	for _, m := range left {
		if e, ok := p.all[m.Client]; ok && e.node == node {
			p.drop(m.Client, e)
			evLeft = append(evLeft, e.info)
		}
	}
	for _, m := range joined {
		e, ok := p.all[m.Client]
		if ok && e.node == node {
			continue
		}
		if ok {
			p.drop(m.Client, e) // moved between nodes: one entry
		}
		p.all[m.Client] = presenceEntry{info: m, node: node}
		p.users[m.User]++
		if !ok && !quiet {
			evJoined = append(evJoined, m)
		}
	}
	ch.used = time.Now()
	h.presenceEvents(ch, evJoined, evLeft)
}

func (p *presence) drop(id string, e presenceEntry) {
	delete(p.all, id)
	if p.users[e.info.User]--; p.users[e.info.User] <= 0 {
		delete(p.users, e.info.User)
	}
}

// presenceEvents sends the owner's events to the subscriptions that asked
// for them, here and on the other nodes, unless the channel is over the
// event limit. Locked.
func (h *Hub) presenceEvents(ch *channel, joined, left []*protocols.ClientInfo) {
	if len(joined)+len(left) == 0 || len(ch.pres.all) > h.presenceEventLimit {
		return
	}
	h.deliverPresence(ch, joined, left)
	if h.pc != nil {
		h.pc.ForwardPresence(ch.name, joined, left)
	}
}

// deliverPresence queues Join and Leave frames to the local subscriptions
// that asked for them (not a member's own). Locked.
func (h *Hub) deliverPresence(ch *channel, joined, left []*protocols.ClientInfo) {
	type event struct {
		client string
		frame  []byte
	}
	var events []event
	for _, m := range ch.subs {
		if !m.events {
			continue
		}
		if events == nil {
			for _, j := range joined {
				events = append(events, event{j.Client, protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Join{Join: &protocols.Join{Channel: ch.name, Member: j}}})})
			}
			for _, l := range left {
				events = append(events, event{l.Client, protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Leave{Leave: &protocols.Leave{Channel: ch.name, Member: l}}})})
			}
		}
		for _, e := range events {
			if e.client != m.s.ID() {
				_ = m.s.Reply(e.frame)
			}
		}
	}
}

// PresenceUpdate applies, as the channel's owner, the joins and leaves of
// node from.
func (h *Hub) PresenceUpdate(from, name string, joined, left []*protocols.ClientInfo, sync bool) {
	if !h.presence(name) {
		return
	}
	ch := h.acquire(name)
	h.presenceApply(ch, from, joined, left, sync)
	h.release(ch)
}

// PresenceEvent hands the owner's events to the local subscriptions that
// asked for them.
func (h *Hub) PresenceEvent(name string, joined, left []*protocols.ClientInfo) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	if ch.pres != nil {
		h.deliverPresence(ch, joined, left)
	}
	h.release(ch)
}

// Presence answers, as the channel's owner (or a node on its own): the
// counts and up to limit members, sorted by client id.
func (h *Hub) Presence(name string, limit int) (*protocols.PresenceReply, error) {
	if !h.presence(name) {
		return nil, errNoPresence
	}
	r := &protocols.PresenceReply{Channel: name}
	ch := h.lookup(name)
	if ch == nil {
		return r, nil
	}
	defer ch.mu.Unlock()
	if ch.pres == nil {
		return r, nil
	}
	r.Clients, r.Users = uint32(len(ch.pres.all)), uint32(len(ch.pres.users))
	if limit <= 0 {
		r.Truncated = r.Clients > 0
		return r, nil
	}
	ids := make([]string, 0, len(ch.pres.all))
	for id := range ch.pres.all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) > limit {
		ids, r.Truncated = ids[:limit], true
	}
	r.Members = make([]*protocols.ClientInfo, len(ids))
	for i, id := range ids {
		r.Members[i] = ch.pres.all[id].info
	}
	return r, nil
}

var errNoPresence = errors.New("this channel keeps no presence (see --presence)")

// QueryPresence answers a presence query from this node: from its own
// state when it owns the channel, else from the owner's.
func (h *Hub) QueryPresence(ctx context.Context, name string, limit int) (*protocols.PresenceReply, error) {
	if !h.presence(name) {
		return nil, errNoPresence
	}
	if owner := h.presenceOwner(name); owner != "" && owner != h.self() {
		return h.pc.QueryPresence(ctx, name, limit)
	}
	return h.Presence(name, limit)
}

// presenceNodesGone drops, as the owner, the members of nodes that are no
// longer live (leave events). Locked.
func (h *Hub) presenceNodesGone(ch *channel) {
	if ch.pres == nil || len(ch.pres.all) == 0 || h.pc == nil {
		return
	}
	var left []*protocols.ClientInfo
	self := h.self()
	for id, e := range ch.pres.all {
		if e.node != self && !h.pc.Live(e.node) {
			ch.pres.drop(id, e)
			left = append(left, e.info)
		}
	}
	if len(left) > 0 {
		h.presenceEvents(ch, nil, left)
	}
}

// presenceMembersChanged drops the members of dead nodes as the owner, or
// everyone else's members when this node no longer owns the channel (the
// new owner gets them from each node's sync). Locked.
func (h *Hub) presenceMembersChanged(ch *channel, owner bool) {
	if ch.pres == nil {
		return
	}
	if owner {
		h.presenceNodesGone(ch)
	} else {
		ch.pres.all, ch.pres.users = nil, nil
	}
}

// eachChannel runs fn on every channel, locked, one at a time.
func (h *Hub) eachChannel(fn func(ch *channel)) {
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
			if !ch.gone {
				fn(ch)
			}
			h.release(ch)
		}
	}
}
