package mesh

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// call is a request waiting for its answer: on done, or given to cb.
type call struct {
	peer string
	done chan callResult // cap 1; nil with cb
	sent time.Time       // when the request was queued
	cb   func(callResult)
}

type callResult struct {
	epoch    string
	offset   uint64
	dup      bool
	history  []protocols.Publication
	state    *protocols.ChannelState // hand-off reply; nil: none
	presence *protocols.PresenceReply
	err      error
}

func (cl *call) finish(r callResult) {
	if cl.cb != nil {
		cl.cb(r)
		return
	}
	cl.done <- r
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
	done := make(chan callResult, 1)
	c.PublishAsync(channel, "", data, func(epoch string, offset uint64, _ bool, err error) {
		done <- callResult{epoch: epoch, offset: offset, err: err}
	})
	select {
	case r := <-done:
		return r.epoch, r.offset, r.err
	case <-ctx.Done():
		return "", 0, fmt.Errorf("mesh: publish to %s: %w", channel, ctx.Err())
	}
}

// PublishAsync is Publish without waiting, with an idempotency key (see
// Local.Sequence; "" for none): done gets the owner's answer, once, on
// another goroutine or (when this node owns channel, or the request
// cannot be sent) before PublishAsync returns. Requests to one owner
// travel in the order of the calls, so a caller that publishes in order
// gets its publications sequenced in that order.
func (c *Cluster) PublishAsync(channel, key string, data []byte, done func(epoch string, offset uint64, dup bool, err error)) {
	if c.isStopped() {
		done("", 0, false, ErrClosed)
		return
	}
	c.publishTo(c.Owner(channel), channel, key, data, done)
}

// publishTo sends a publish request to owner (or sequences it here when
// owner is this node).
func (c *Cluster) publishTo(owner, channel, key string, data []byte, done func(epoch string, offset uint64, dup bool, err error)) {
	if owner == c.name {
		if c.keeper != nil {
			c.keeper.SequenceAsync(channel, key, data, done)
			return
		}
		done(c.local.Sequence(channel, key, data))
		return
	}
	fail := func(err error) { done("", 0, false, fmt.Errorf("mesh: publish to %s via %s: %w", channel, owner, err)) }
	l := c.outLink(owner)
	if l == nil {
		fail(ErrNoLink)
		return
	}
	var timer *time.Timer
	var once sync.Once
	id := c.nextID.Add(1)
	cl := &call{peer: owner, sent: time.Now(), cb: func(r callResult) {
		once.Do(func() {
			timer.Stop()
			if r.err != nil {
				fail(r.err)
				return
			}
			done(r.epoch, r.offset, r.dup, nil)
		})
	}}
	c.pendMu.Lock()
	c.calls[id] = cl
	timer = time.AfterFunc(c.cfg.RequestTimeout, func() {
		c.cancelCall(id)
		cl.cb(callResult{err: ErrTimeout})
	})
	c.pendMu.Unlock()
	if !l.enqueue(publishMsg(id, channel, key, data)) {
		c.cancelCall(id)
		cl.cb(callResult{err: ErrNoLink})
	}
}

// History asks channel's owner for its position and history (the latest
// publications it keeps, oldest first), and waits for the answer (at most
// Config.RequestTimeout).
func (c *Cluster) History(ctx context.Context, channel string) (epoch string, offset uint64, history []protocols.Publication, err error) {
	if c.isStopped() {
		return "", 0, nil, ErrClosed
	}
	owner := c.Owner(channel)
	if owner == c.name {
		c.local.Hold(channel, func(e string, o uint64, h []protocols.Publication) { epoch, offset, history = e, o, h })
		return epoch, offset, history, nil
	}
	l := c.outLink(owner)
	if l == nil {
		return "", 0, nil, fmt.Errorf("mesh: history of %s from %s: %w", channel, owner, ErrNoLink)
	}
	id := c.nextID.Add(1)
	done := make(chan callResult, 1)
	c.pendMu.Lock()
	c.calls[id] = &call{peer: owner, done: done, sent: time.Now()}
	c.pendMu.Unlock()
	if !l.enqueue(historyMsg(id, channel)) {
		c.cancelCall(id)
		return "", 0, nil, fmt.Errorf("mesh: history of %s from %s: %w", channel, owner, ErrNoLink)
	}
	t := time.NewTimer(c.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return "", 0, nil, fmt.Errorf("mesh: history of %s from %s: %w", channel, owner, r.err)
		}
		return r.epoch, r.offset, r.history, nil
	case <-ctx.Done():
		c.cancelCall(id)
		return "", 0, nil, ctx.Err()
	case <-t.C:
		c.cancelCall(id)
		return "", 0, nil, fmt.Errorf("mesh: history of %s from %s: %w", channel, owner, ErrTimeout)
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
	c.metrics.requestRTT.observe(time.Since(cl.sent))
	cl.finish(r)
}

// failPeer fails every request waiting on peer.
func (c *Cluster) failPeer(peer string, err error) {
	c.failWhere(func(cl *call) bool { return cl.peer == peer }, err)
}

func (c *Cluster) failAll(err error) { c.failWhere(func(*call) bool { return true }, err) }

// failWhere fails the requests that match, outside pendMu (their callbacks
// reply to sessions).
func (c *Cluster) failWhere(match func(*call) bool, err error) {
	var failed []*call
	c.pendMu.Lock()
	for id, cl := range c.calls {
		if match(cl) {
			delete(c.calls, id)
			failed = append(failed, cl)
		}
	}
	c.pendMu.Unlock()
	for _, cl := range failed {
		cl.finish(callResult{err: err})
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
	it := item{hdr: deliverHeaderAt(channel, epoch, offset, len(frame), time.Now().UnixNano()), body: frame}
	for _, l := range links {
		l.enqueue(it)
	}
	c.metrics.forwarded.Add(uint64(len(links)))
}
