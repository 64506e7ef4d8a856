package protocols

import (
	"fmt"
	"time"
)

// outStream is the stream of one subscription's deliveries. Its queue is
// guarded by conn.mu; w belongs to the goroutine that runs it.
type outStream struct {
	alias   uint32
	q       [][]byte
	backlog int  // the first frames of q that came from DeliverBacklog
	running bool // a runStream goroutine drains q
	ending  bool // close the stream once q is drained
	w       StreamWriter
}

func (c *conn) UseStreams() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams = c.sw != nil
	return c.streams
}

func (c *conn) Deliver(alias uint32, frame []byte) error {
	if err := c.admitLocking(frame); err != nil {
		return err
	}
	if !c.streams {
		c.q.push(item{b: frame, kind: delivery})
		start := c.startWriterLocked()
		c.mu.Unlock()
		if start {
			c.startWriter()
		}
		return nil
	}
	o := c.outs[alias]
	if o == nil || o.ending {
		o = &outStream{alias: alias}
		if c.outs == nil {
			c.outs = make(map[uint32]*outStream)
		}
		c.outs[alias] = o
	}
	o.q = append(o.q, frame)
	if !o.running {
		o.running = true
		c.bg.Go(func() { c.runStream(o) })
	}
	c.mu.Unlock()
	return nil
}

// DeliverBacklog queues ack (the reply that announces them), then a recovery's missed publications for a
// subscription, at once: they count against SendQueueBytes (times
// backlogBytesFactor) but not SendQueueFrames, so that a client recovering
// more publications than the frame limit is not taken for a slow consumer.
// A backlog over that byte budget is refused whole (false) and nothing is
// queued: the subscription is answered otherwise, the session goes on.
func (c *conn) DeliverBacklog(alias uint32, ack []byte, frames [][]byte) bool {
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	c.mu.Lock()
	if c.closed || c.sentBytes+size > backlogBytesFactor*c.cfg.SendQueueBytes {
		c.mu.Unlock()
		return false
	}
	c.q.push(item{b: ack, kind: reply})
	c.replies++
	c.sent += len(frames)
	c.backlog += len(frames)
	c.sentBytes += size
	c.traffic.deliveries += uint64(len(frames))
	if !c.streams {
		for _, f := range frames {
			c.q.push(item{b: f, kind: backlog})
		}
		c.mu.Unlock()
		c.kick()
		return true
	}
	o := c.outs[alias]
	if o == nil || o.ending {
		o = &outStream{alias: alias}
		if c.outs == nil {
			c.outs = make(map[uint32]*outStream)
		}
		c.outs[alias] = o
	}
	o.q = append(o.q, frames...)
	o.backlog += len(frames)
	if !o.running {
		o.running = true
		c.bg.Go(func() { c.runStream(o) })
	}
	c.mu.Unlock()
	c.kick() // the reply
	return true
}

// backlogBytesFactor is how many times SendQueueBytes a recovery backlog
// may take.
const backlogBytesFactor = 4

func (c *conn) EndDeliveries(alias uint32) {
	c.mu.Lock()
	delete(c.slots, alias)
	o := c.outs[alias]
	if o == nil {
		c.mu.Unlock()
		return
	}
	o.ending = true
	var w StreamWriter
	if !o.running {
		delete(c.outs, alias)
		w = o.w
	}
	c.mu.Unlock()
	if w != nil {
		_ = w.Close()
	}
}

// runStream drains one subscription's stream queue, opening the stream on
// first use, and returns once the queue is empty (Deliver starts it
// again). A write that fails or times out closes the session as a slow
// consumer.
func (c *conn) runStream(o *outStream) {
	batch := make([][]byte, 0, 16)
	for {
		c.mu.Lock()
		size := 0
		for len(o.q) > 0 && (len(batch) == 0 || size+len(o.q[0]) <= c.cfg.BatchBytes) {
			batch = append(batch, o.q[0])
			size += len(o.q[0])
			o.q[0] = nil
			o.q = o.q[1:]
		}
		c.sent -= len(batch)
		c.sentBytes -= size
		if b := min(len(batch), o.backlog); b > 0 {
			o.backlog -= b
			c.backlog -= b
		}
		if len(batch) == 0 {
			o.running, o.q = false, nil
			end := o.ending
			if end && c.outs[o.alias] == o {
				delete(c.outs, o.alias)
			}
			c.mu.Unlock()
			if end && o.w != nil {
				_ = o.w.Close()
			}
			return
		}
		c.mu.Unlock()
		var err error
		if o.w == nil {
			o.w, err = c.sw.OpenStream(AppendVarintAlias(nil, o.alias), time.Now().Add(c.cfg.WriteTimeout))
		}
		if err == nil {
			err = o.w.WriteFrames(batch, time.Now().Add(c.cfg.WriteTimeout))
		}
		c.traffic.wrote(batch, err)
		clear(batch)
		batch = batch[:0]
		if err != nil {
			c.mu.Lock()
			o.running = false
			c.mu.Unlock()
			c.cfg.Logger.Debug("session stream write failed", "session", c.id, "alias", o.alias, "err", err)
			c.Close(CodeSlowConsumer, fmt.Sprintf("the stream of subscription %d stalled", o.alias))
			return
		}
	}
}
