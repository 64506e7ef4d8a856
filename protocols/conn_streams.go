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
		c.mu.Unlock()
		c.kick()
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
