package edge

import (
	"errors"
	"net/url"
	"strings"

	"github.com/switchyard/switchyard/protocols"
)

// NodeInfo describes a node of the cluster for /api/nodes and redirects.
type NodeInfo struct {
	Name     string            `json:"name"`
	Region   string            `json:"region"`
	URLs     map[string]string `json:"urls,omitempty"`
	Draining bool              `json:"draining,omitempty"`
	Self     bool              `json:"self,omitempty"`
}

// PublicURLs are the URLs clients use to reach this node, once started:
// "wt" (WebTransport), "wss" (WebSocket over TLS), "ws" (plain WebSocket).
// They come from Config.PublicURLs when set (an https URL gives "wt" and
// "wss", an http one "ws"), else from the listen addresses.
func (n *Node) PublicURLs() map[string]string {
	urls := map[string]string{}
	if len(n.cfg.PublicURLs) > 0 {
		for _, raw := range n.cfg.PublicURLs {
			u, err := url.Parse(raw)
			if err != nil {
				continue // New checked them
			}
			switch strings.ToLower(u.Scheme) {
			case "https":
				urls["wt"] = "https://" + u.Host + "/wt"
				urls["wss"] = "wss://" + u.Host + "/ws"
			case "wss":
				urls["wss"] = "wss://" + u.Host + "/ws"
			case "http", "ws":
				urls["ws"] = "ws://" + u.Host + "/ws"
			}
		}
		return urls
	}
	a := n.Addrs()
	if a.QUIC != nil {
		urls["wt"] = "https://" + a.QUIC.String() + "/wt"
	}
	if a.TLS != nil {
		urls["wss"] = "wss://" + a.TLS.String() + "/ws"
	}
	if a.HTTP != nil {
		urls["ws"] = "ws://" + a.HTTP.String() + "/ws"
	}
	return urls
}

// The methods below are what the mesh calls on its node (they satisfy
// mesh.Local, which edge does not import).

// Sequence publishes data on channel as its owner, for a publish request
// from another node; key, when set, makes it idempotent (Hub.SequenceKeyed).
func (n *Node) Sequence(channel, key string, data []byte) (string, uint64, bool, error) {
	if err := n.checkChannel(channel); err != nil {
		return "", 0, false, err
	}
	if limit := n.maxPayload(channel); len(data) > limit {
		return "", 0, false, errors.New("payload too large")
	}
	p, dup := n.hub.SequenceKeyed(channel, key, data)
	return p.Epoch, p.Offset, dup, nil
}

// SequenceAsync is Sequence for a publish request from another node,
// answered once the publication is out (with replication, once the
// channel's successor holds it).
func (n *Node) SequenceAsync(channel, key string, data []byte, done func(string, uint64, bool, error)) {
	if err := n.checkChannel(channel); err != nil {
		done("", 0, false, err)
		return
	}
	if limit := n.maxPayload(channel); len(data) > limit {
		done("", 0, false, errors.New("payload too large"))
		return
	}
	n.hub.SequenceAsync(channel, key, data, func(p Position, dup bool, err error) { done(p.Epoch, p.Offset, dup, err) })
}

// HoldFor is Hold for a node registering with this owner, which last saw
// the channel at (epoch, offset); fn may run later (Hub.HoldFor).
func (n *Node) HoldFor(channel, epoch string, offset uint64, fn func(string, uint64, []protocols.Publication)) {
	n.hub.HoldFor(channel, epoch, offset, fn)
}

// Position is the channel's position as this node last saw it.
func (n *Node) Position(channel string) (string, uint64, bool) { return n.hub.Position(channel) }

// Replicate keeps a publication of the channel's owner from, as its
// successor.
func (n *Node) Replicate(from, channel, epoch string, offset uint64, key string, frame []byte) (string, uint64, bool) {
	return n.hub.Replicate(from, channel, epoch, offset, key, frame)
}

// Seed replaces the replica of channel with its owner's state.
func (n *Node) Seed(from, channel string, st protocols.ChannelState, handed bool) {
	n.hub.Seed(from, channel, st, handed)
}

// Forget drops the replica of channel.
func (n *Node) Forget(from, channel string) { n.hub.Forget(from, channel) }

// ReplicaAcked releases the publications the successor from holds.
func (n *Node) ReplicaAcked(from, channel, epoch string, offset uint64, ok bool) {
	n.hub.ReplicaAcked(from, channel, epoch, offset, ok)
}

// HandOff gives the channel's state to its new owner to.
func (n *Node) HandOff(channel, to string) (protocols.ChannelState, bool) {
	return n.hub.HandOff(channel, to)
}

// PresenceUpdate applies, as the channel's owner, node from's joins and
// leaves (mesh.PresenceKeeper).
func (n *Node) PresenceUpdate(from, channel string, joined, left []*protocols.ClientInfo, sync bool) {
	if n.checkChannel(channel) != nil {
		return
	}
	n.hub.PresenceUpdate(from, channel, joined, left, sync)
}

// PresenceEvent hands the owner's presence events to local subscribers.
func (n *Node) PresenceEvent(channel string, joined, left []*protocols.ClientInfo) {
	n.hub.PresenceEvent(channel, joined, left)
}

// Presence answers a presence query as the channel's owner.
func (n *Node) Presence(channel string, limit int) (*protocols.PresenceReply, error) {
	return n.hub.Presence(channel, limit)
}

// MembersChanged re-seeds successors and hands channels on after a
// membership change.
func (n *Node) MembersChanged(reset []string) { n.hub.membersChanged(reset) }

// Deliver hands a publication sequenced by its owner on another node to
// the local subscribers.
func (n *Node) Deliver(channel, epoch string, offset uint64, frame []byte) {
	n.hub.Deliver(channel, epoch, offset, frame)
}

// Hold runs fn, with the channel's position and history, while no
// publication of channel can be sequenced here.
func (n *Node) Hold(channel string, fn func(epoch string, offset uint64, history []protocols.Publication)) {
	n.hub.Hold(channel, fn)
}

// Registered records that the channel's owner forwards it here, from the
// given position on, with its history up to it.
func (n *Node) Registered(channel, epoch string, offset uint64, history []protocols.Publication) {
	n.hub.Registered(channel, epoch, offset, history)
}

// Channels lists the channels with local subscribers.
func (n *Node) Channels() []string { return n.hub.Channels() }
