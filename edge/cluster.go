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
