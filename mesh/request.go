package mesh

import (
	"context"
	"fmt"
	"time"
)

// call is a request waiting for its answer.
type call struct {
	peer string
	done chan callResult // cap 1
}

type callResult struct {
	epoch  string
	offset uint64
	err    error
}

// Publish publishes data on channel through its owner and returns the
// position the owner assigned. If this node owns channel, it calls
// local.Sequence directly; otherwise it sends a publish request over the
// link to the owner, which calls its own Sequence, and waits for the
// answer (at most Config.RequestTimeout, less if ctx ends or the owner
// dies). When Publish returns, the publication has been delivered to this
// node if it is interested in channel (the owner's delivery precedes its
// answer on the link). Before Start, this node owns every channel.
func (c *Cluster) Publish(ctx context.Context, channel string, data []byte) (epoch string, offset uint64, err error) {
	if c.isStopped() {
		return "", 0, ErrClosed
	}
	owner := c.Owner(channel)
	if owner == c.name {
		return c.local.Sequence(channel, data)
	}
	l := c.outLink(owner)
	if l == nil {
		return "", 0, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, ErrNoLink)
	}
	id, cl := c.newCall(owner)
	if !l.enqueue(publishMsg(id, channel, data)) {
		c.cancelCall(id)
		return "", 0, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, ErrNoLink)
	}
	t := time.NewTimer(c.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-cl.done:
		if r.err != nil {
			return "", 0, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, r.err)
		}
		return r.epoch, r.offset, nil
	case <-ctx.Done():
		c.cancelCall(id)
		return "", 0, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, ctx.Err())
	case <-t.C:
		c.cancelCall(id)
		return "", 0, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, ErrTimeout)
	}
}

func (c *Cluster) isStopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Cluster) newCall(peer string) (uint64, *call) {
	id := c.nextID.Add(1)
	cl := &call{peer: peer, done: make(chan callResult, 1)}
	c.pendMu.Lock()
	c.calls[id] = cl
	c.pendMu.Unlock()
	return id, cl
}

func (c *Cluster) cancelCall(id uint64) {
	c.pendMu.Lock()
	delete(c.calls, id)
	c.pendMu.Unlock()
}

// complete delivers the answer to request id, if peer is who we asked.
func (c *Cluster) complete(id uint64, peer string, r callResult) {
	c.pendMu.Lock()
	cl := c.calls[id]
	if cl == nil || cl.peer != peer {
		c.pendMu.Unlock()
		return
	}
	delete(c.calls, id)
	c.pendMu.Unlock()
	cl.done <- r
}

// failPeer fails every request waiting on peer.
func (c *Cluster) failPeer(peer string, err error) {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	for id, cl := range c.calls {
		if cl.peer == peer {
			delete(c.calls, id)
			cl.done <- callResult{err: err}
		}
	}
}

func (c *Cluster) failAll(err error) {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	for id, cl := range c.calls {
		delete(c.calls, id)
		cl.done <- callResult{err: err}
	}
}

// peerReset handles a link to or from peer that ended or dropped messages:
// requests waiting on it fail, and the worker registers again the channels
// peer owns.
func (c *Cluster) peerReset(peer string, err error) {
	c.failPeer(peer, err)
	c.resetMu.Lock()
	c.resets[peer] = struct{}{}
	c.resetMu.Unlock()
	c.kickWorker()
}

// Forward queues a frame that this node, as channel's owner, sequenced at
// (epoch, offset), for every other node interested in channel: gossiped
// interest and registrations received. It never blocks. frame is written
// as is to every link and must not be modified afterwards.
func (c *Cluster) Forward(channel string, epoch string, offset uint64, frame []byte) {
	var buf [8]string
	targets := c.interest.targets(buf[:0], channel)
	if len(targets) == 0 {
		return
	}
	var lbuf [8]*outLink
	links := lbuf[:0]
	c.linkMu.RLock()
	for _, t := range targets {
		if l := c.out[t]; l != nil {
			links = append(links, l)
		}
	}
	c.linkMu.RUnlock()
	if len(links) == 0 {
		return
	}
	it := item{hdr: deliverHeader(channel, epoch, offset, len(frame)), body: frame}
	for _, l := range links {
		l.enqueue(it)
	}
}
