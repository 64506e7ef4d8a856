package protocols

// maxQueuedDatagrams bounds the datagrams waiting to be sent on one
// session; past it the oldest is dropped.
const maxQueuedDatagrams = 64

// maxConflated bounds the volatile publications of one subscription
// waiting in a session's queue (without datagrams); past it the oldest
// waiting one is dropped: latest wins. More than one, so that what several
// publishers send at the same moment (every player's tick) gets through.
const maxConflated = 8

// slot holds the unwritten volatile publications of a subscription, oldest
// first (guarded by conn.mu).
type slot struct{ frames [][]byte }

func (c *conn) DeliverVolatile(v Volatile) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.traffic.deliveries++
	if c.dw != nil {
		if c.dq == nil {
			c.dq = newDatagrams()
		}
		if c.dq.push(v) {
			c.dropped++
		}
		if !c.dsending {
			c.dsending = true
			c.bg.Go(c.sendDatagrams)
		}
		c.mu.Unlock()
		return
	}
	sl := c.slots[v.Alias]
	if sl == nil {
		sl = &slot{}
		if c.slots == nil {
			c.slots = make(map[uint32]*slot)
		}
		c.slots[v.Alias] = sl
	}
	if len(sl.frames) > 0 {
		// Some are still queued: this one joins them, in their place.
		if len(sl.frames) == maxConflated {
			copy(sl.frames, sl.frames[1:])
			sl.frames[len(sl.frames)-1] = v.Frame
			c.dropped++
		} else {
			sl.frames = append(sl.frames, v.Frame)
		}
		c.mu.Unlock()
		return
	}
	sl.frames = append(sl.frames, v.Frame)
	c.q.push(item{kind: volatile, slot: sl})
	c.mu.Unlock()
	c.kick()
}

// Dropped returns how many volatile publications the session dropped.
func (c *conn) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// datagrams is a session's queue of datagrams to send: a ring that grows
// to maxQueuedDatagrams and then drops the oldest.
type datagrams struct {
	// guarded by conn.mu
	buf  []Volatile
	head int
	n    int

	frame []byte // owned by the sender: the datagram being sent
}

func newDatagrams() *datagrams { return &datagrams{} }

// push queues v and reports whether the oldest was dropped for it.
func (d *datagrams) push(v Volatile) (dropped bool) {
	if d.n == len(d.buf) {
		if len(d.buf) == maxQueuedDatagrams {
			d.buf[d.head] = v
			d.head = (d.head + 1) % len(d.buf)
			return true
		}
		nb := make([]Volatile, max(4, 2*len(d.buf)))
		for i := 0; i < d.n; i++ {
			nb[i] = d.buf[(d.head+i)%len(d.buf)]
		}
		d.buf, d.head = nb, 0
	}
	d.buf[(d.head+d.n)%len(d.buf)] = v
	d.n++
	return false
}

func (d *datagrams) pop() (Volatile, bool) {
	if d.n == 0 {
		return Volatile{}, false
	}
	v := d.buf[d.head]
	d.buf[d.head] = Volatile{}
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	if d.n == 0 && len(d.buf) > 8 {
		d.buf, d.head = nil, 0 // a burst is over: let its room go
	}
	return v, true
}

// sendDatagrams sends the queued datagrams and returns once the queue is
// empty (DeliverVolatile starts it again).
func (c *conn) sendDatagrams() {
	c.mu.Lock()
	d := c.dq
	c.mu.Unlock()
	for {
		c.mu.Lock()
		v, ok := d.pop()
		if !ok || c.closed {
			c.dsending = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		d.frame = AppendDatagram(d.frame[:0], v.Alias, v.Seq, v.Data)
		if err := c.dw.SendDatagram(d.frame); err != nil {
			c.mu.Lock()
			c.dropped++
			c.mu.Unlock()
		} else {
			c.traffic.datagramsOut.Add(1)
		}
	}
}

func (c *conn) ReceiveDatagrams() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.receiving || c.closed || c.dw == nil || c.dh == nil {
		return
	}
	c.receiving = true
	h := c.dh
	c.bg.Go(func() { c.receiveDatagrams(h) })
}

// receiveDatagrams hands the client's datagrams to h until the transport
// is aborted. Malformed ones are dropped.
func (c *conn) receiveDatagrams(h DatagramHandler) {
	for {
		b, err := c.dw.ReceiveDatagram()
		if err != nil {
			return
		}
		c.traffic.datagramsIn.Add(1)
		if c.closeErr.Load() != nil {
			continue // closing: drain until the transport goes
		}
		alias, _, payload, err := ParseDatagram(b)
		if err != nil {
			alias, payload = 0, nil // no subscription has alias 0: the handler refuses it
		}
		h.HandleDatagram(alias, payload)
	}
}
