package mesh

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate plugs interest gossip and metadata into memberlist.
type delegate struct{ c *Cluster }

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns our metadata (its size was checked by New).
func (d *delegate) NodeMeta(limit int) []byte {
	d.c.memberMu.RLock()
	b := d.c.meta.encode()
	d.c.memberMu.RUnlock()
	if len(b) > limit {
		d.c.log.Error("node metadata over the limit; advertising none", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg applies a gossiped delta and passes news on.
func (d *delegate) NotifyMsg(b []byte) {
	dl, err := decodeDelta(b)
	if err != nil {
		if d.c.rate.Allow("gossip-msg", time.Minute) {
			d.c.log.Warn("dropping malformed gossip message", "size", len(b))
		}
		return
	}
	if d.c.interest.applyDelta(dl, time.Now()) {
		d.c.stats.deltasIn.Add(1)
		d.c.queueDelta(dl)
	}
}

// GetBroadcasts hands memberlist our queued deltas.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.bcast.GetBroadcasts(overhead, limit)
}

// LocalState is the full interest state of every node we know.
func (d *delegate) LocalState(join bool) []byte {
	return encodeState(d.c.interest.state())
}

// MergeRemoteState merges a peer's full state and passes the changes on as
// deltas, so that what one node learns by push/pull spreads by gossip.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	views, err := decodeState(buf)
	if err != nil {
		if d.c.rate.Allow("gossip-state", time.Minute) {
			d.c.log.Warn("dropping malformed gossip state", "size", len(buf))
		}
		return
	}
	now := time.Now()
	for _, v := range views {
		for _, dl := range d.c.interest.applyView(v, now) {
			d.c.queueDelta(dl)
		}
	}
}

// events tracks membership.
type events struct{ c *Cluster }

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node)   { e.c.memberUp(n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.c.memberUp(n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.c.memberDown(n.Name) }

// maxDelta is the largest delta we gossip: it must fit a UDP packet with
// memberlist's overhead. Larger ones (absurd channel names) travel by
// push/pull only; registrations do not depend on gossip.
const maxDelta = 1024

// deltaBroadcast is a queued delta; a newer one for the same node and
// channel replaces it. Node names cannot be empty, so keys never start
// with the sentinel's NUL.
type deltaBroadcast struct {
	key string
	msg []byte
}

var _ memberlist.NamedBroadcast = (*deltaBroadcast)(nil)

func (b *deltaBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*deltaBroadcast)
	return ok && ob.key == b.key
}
func (b *deltaBroadcast) Name() string    { return b.key }
func (b *deltaBroadcast) Message() []byte { return b.msg }
func (b *deltaBroadcast) Finished()       {}

func (c *Cluster) queueDelta(d delta) {
	msg, err := appendDelta(nil, d)
	if err != nil || len(msg) > maxDelta { // a name that is not UTF-8, or too long
		return
	}
	c.bcast.QueueBroadcast(&deltaBroadcast{key: d.node + "\x00" + d.channel, msg: msg})
}
