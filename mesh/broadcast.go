package mesh

import "github.com/hashicorp/memberlist"

// deltaRetransmitMult scales memberlist's RetransmitMult for our deltas.
// Each node sends a delta that is news to it mult × ceil(log10(n+1))
// times; with memberlist's 4, one node in a few hundred missed a delta in
// a 6-node cluster (measured) until the next push/pull, up to 15 s later.
// Deltas are ~40 bytes: sending each twice as often costs little.
const deltaRetransmitMult = 2

// newBroadcastQueue returns the queue of our gossip deltas: memberlist's
// TransmitLimitedQueue plus a sentinel that keeps it from ever being empty.
//
// memberlist v0.7.0 resets the queue's id generator whenever the queue
// becomes empty, including in the middle of QueueBroadcast when the new
// broadcast invalidates the only queued one; the new broadcast keeps its
// old id, a later one of the same length gets the same id, and the btree,
// which orders by (transmits, length, id), silently replaces the first:
// that delta is never sent (hashicorp/memberlist PR #263, open; TestBroadcastQueueKeepsInvalidator
// reproduces it). The sentinel's message is longer than any gossip packet,
// so GetBroadcasts, which only picks what fits, never sends or removes it.
func newBroadcastQueue(numNodes func() int, retransmitMult int) *memberlist.TransmitLimitedQueue {
	q := &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: retransmitMult}
	q.QueueBroadcast(sentinel{})
	return q
}

// queuedDeltas is the number of deltas waiting to be gossiped.
func queuedDeltas(q *memberlist.TransmitLimitedQueue) int { return q.NumQueued() - 1 }

type sentinel struct{}

var _ memberlist.NamedBroadcast = sentinel{}

// sentinelMsg is larger than any UDP packet memberlist builds.
var sentinelMsg = make([]byte, 64<<10)

func (sentinel) Invalidates(memberlist.Broadcast) bool { return false }
func (sentinel) Name() string                          { return "\x00sentinel" } // no delta key starts with NUL
func (sentinel) Message() []byte                       { return sentinelMsg }
func (sentinel) Finished()                             {}
