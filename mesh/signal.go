package mesh

import (
	"fmt"
	"sort"
)

// Signals is the node's WebRTC signaling as the mesh sees it
// (signaling.Server satisfies it). The mesh carries its messages between
// nodes on the links, in order per pair of nodes, without looking inside.
type Signals interface {
	// HandleSignal handles a message from node from's signaling. It runs on
	// the reader goroutine of the link from that node: it must not block.
	HandleSignal(from string, msg []byte)
	// MembersChanged is called, without any lock of the mesh held, after
	// the live members (and so the owners) changed, with the nodes whose
	// links were reset since the last call (their messages may be lost).
	MembersChanged(reset []string)
}

// SetSignals connects the node's signaling; call it before Start.
func (c *Cluster) SetSignals(s Signals) {
	if s == nil {
		c.signals.Store(nil)
		return
	}
	c.signals.Store(&s)
}

// SendSignal queues msg for node's signaling on the link to it, without
// blocking. It fails when there is no link to node (not a live member, or
// the mesh is stopping) or node is this one.
func (c *Cluster) SendSignal(node string, msg []byte) error {
	if c.isStopped() {
		return ErrClosed
	}
	if node == c.name {
		return fmt.Errorf("mesh: signal to %s: that is this node", node)
	}
	if len(msg) > maxLinkMessage {
		return fmt.Errorf("mesh: signal to %s: %d bytes, limit %d", node, len(msg), maxLinkMessage)
	}
	if !c.send(node, item{hdr: startMsg(nil, msgSignal, len(msg)), body: msg}) {
		return fmt.Errorf("mesh: signal to %s: %w", node, ErrNoLink)
	}
	return nil
}

// Live reports whether node is a live member (this node included).
func (c *Cluster) Live(node string) bool { return c.isMember(node) }

func (c *Cluster) signalsChanged(resets map[string]struct{}) {
	s := c.signals.Load()
	if s == nil {
		return
	}
	(*s).MembersChanged(setList(resets))
}

// setList returns the names in set, sorted.
func setList(set map[string]struct{}) []string {
	list := make([]string, 0, len(set))
	for n := range set {
		list = append(list, n)
	}
	sort.Strings(list)
	return list
}
