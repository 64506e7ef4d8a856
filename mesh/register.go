package mesh

import (
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Registration: a node with local interest in a channel registers with the
// channel's owner over the link, so the owner forwards to it from a known
// position on, whatever gossip has converged to. The worker goroutine
// sends registrations and registers again when the owner changes (a
// membership change), when a link to the owner was reset, or when an
// answer is overdue.

// regState is our registration of one channel. Guarded by Cluster.regMu.
type regState struct {
	owner     string // whom we last registered with; "" = nobody yet
	id        uint64 // the latest registration request; 0 = none
	sent      time.Time
	confirmed bool // the owner answered id
}

// Register announces local interest in channel and registers with its
// owner; it does not block. The mesh then calls local.Registered(channel,
// epoch, offset) with the owner's position — from the link reader, before
// any delivery the owner sequenced after it — and again whenever it had to
// register anew (new owner, link reset). If this node owns channel, it
// calls local.Hold to read the position and then local.Registered, both
// from the worker goroutine (never from inside Hold). Register is not
// reference-counted: the edge calls it when a channel gets its first local
// subscriber (calling it again asks for a fresh registration) and
// Unregister when it loses its last.
func (c *Cluster) Register(channel string) {
	c.regMu.Lock()
	r := c.regs[channel]
	if r == nil {
		r = &regState{}
		c.regs[channel] = r
	}
	r.confirmed, r.id = false, 0
	c.dirty[channel] = struct{}{}
	c.regMu.Unlock()
	if d, ok := c.interest.setLocal(channel, true); ok {
		c.queueDelta(d)
	}
	c.kickWorker()
}

// Unregister withdraws local interest in channel by gossip and tells the
// owner to stop forwarding it; it does not block.
func (c *Cluster) Unregister(channel string) {
	c.regMu.Lock()
	if r := c.regs[channel]; r != nil {
		delete(c.regs, channel)
		delete(c.dirty, channel)
		if r.owner != "" && r.owner != c.name {
			c.send(r.owner, unregisterMsg(channel)) // under regMu: ordered with registrations
		}
	}
	c.regMu.Unlock()
	if d, ok := c.interest.setLocal(channel, false); ok {
		c.queueDelta(d)
	}
}

// registered handles a registration answer from peer, on its reader.
func (c *Cluster) registered(peer string, m message) {
	c.regMu.Lock()
	r := c.regs[m.channel]
	ok := r != nil && r.id == m.id && r.owner == peer && !r.confirmed
	if ok {
		r.confirmed = true
		delete(c.dirty, m.channel)
	}
	c.regMu.Unlock()
	if ok {
		c.local.Registered(m.channel, m.epoch, m.offset, m.history)
	}
}

// worker sends registrations.
func (c *Cluster) worker() {
	defer c.wg.Done()
	tick := time.NewTicker(min(max(c.cfg.RequestTimeout/4, 50*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
		case <-tick.C:
		}
		c.reconcile(time.Now())
	}
}

type selfReg struct {
	channel string
	id      uint64
}

// reconcile brings every registration up to date with the current owners.
func (c *Cluster) reconcile(now time.Time) {
	var resets map[string]struct{}
	c.resetMu.Lock()
	if len(c.resets) > 0 {
		resets, c.resets = c.resets, make(map[string]struct{})
	}
	c.resetMu.Unlock()

	var selfRegs []selfReg
	c.regMu.Lock()
	view := c.view.Load()
	changed := view != c.lastView || len(resets) > 0
	if changed {
		c.lastView = view
		for ch, r := range c.regs {
			if _, reset := resets[r.owner]; reset && r.owner != c.name {
				r.confirmed, r.id = false, 0
			}
			if c.checkOwner(ch, r) || !r.confirmed {
				c.dirty[ch] = struct{}{}
			}
		}
	}
	for ch := range c.dirty {
		r := c.regs[ch]
		if r == nil {
			delete(c.dirty, ch)
			continue
		}
		c.checkOwner(ch, r)
		if r.confirmed {
			delete(c.dirty, ch)
			continue
		}
		if r.id != 0 && now.Sub(r.sent) < c.cfg.RequestTimeout {
			continue // answer still expected
		}
		r.id, r.sent = c.nextID.Add(1), now
		if r.owner == c.name {
			selfRegs = append(selfRegs, selfReg{ch, r.id})
			continue
		}
		c.stats.reregistered.Add(1)
		var epoch string
		var offset uint64
		if c.keeper != nil {
			epoch, offset, _ = c.keeper.Position(ch)
		}
		if !c.send(r.owner, registerMsg(r.id, ch, epoch, offset)) {
			r.id = 0 // no link yet: try again next tick
		}
	}
	c.regMu.Unlock()

	for _, s := range selfRegs {
		if c.keeper != nil {
			// Answered once this node sequences the channel: while it
			// still gathers the channel's copy from the others (a
			// takeover), a position made up now would start the
			// subscribers on a new epoch. Unanswered, the worker asks
			// again after RequestTimeout.
			c.keeper.HoldFor(s.channel, "", 0, func(e string, o uint64, _ []protocols.Publication) {
				go c.selfRegistered(s, e, o) // fn runs under the channel's lock
			})
			continue
		}
		var epoch string
		var offset uint64
		c.local.Hold(s.channel, func(e string, o uint64, _ []protocols.Publication) { epoch, offset = e, o })
		c.selfRegistered(s, epoch, offset)
	}
	if changed {
		if c.keeper != nil {
			c.keeper.MembersChanged(setList(resets))
		}
		c.signalsChanged(resets)
	}
}

// selfRegistered confirms the registration s with this node, the
// channel's owner, at (epoch, offset), unless a newer one replaced it.
func (c *Cluster) selfRegistered(s selfReg, epoch string, offset uint64) {
	c.regMu.Lock()
	r := c.regs[s.channel]
	ok := r != nil && r.id == s.id && !r.confirmed
	if ok {
		r.confirmed = true
		delete(c.dirty, s.channel)
	}
	c.regMu.Unlock()
	if ok {
		c.local.Registered(s.channel, epoch, offset, nil) // our own: nothing to catch up
	}
}

// checkOwner moves r to channel's current owner, telling the old one to
// stop forwarding; it reports whether the owner changed. Called with regMu.
func (c *Cluster) checkOwner(channel string, r *regState) bool {
	owner := c.Owner(channel)
	if owner == r.owner {
		return false
	}
	if r.owner != "" && r.owner != c.name {
		c.send(r.owner, unregisterMsg(channel))
	}
	r.owner, r.confirmed, r.id = owner, false, 0
	return true
}
