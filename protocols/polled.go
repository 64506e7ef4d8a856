package protocols

import (
	"net/http"
	"sync/atomic"
)

// PolledWire is a Wire whose reads can be woken by readiness, so that a
// session whose peer is silent has no goroutine blocked in ReadFrame
// (ServePolled). ReadFrame, Buffered and Arm are called by one goroutine
// at a time: the session's current read step.
type PolledWire interface {
	Wire
	// Buffered reports whether the wire holds bytes from the peer that
	// ReadFrame has not returned yet: the next ReadFrame needs no
	// readiness to start (it may still wait for the rest of a frame). It
	// may read what the transport has without blocking.
	Buffered() bool
	// Arm asks the wire to call wake once, on a goroutine of its own, when
	// the transport has bytes to read or has failed, or when the wire is
	// aborted. It reports false, and will not call wake, when it cannot:
	// the wire is aborted or its poller failed. The caller then reads on
	// without waiting for readiness (a ReadFrame on an aborted wire fails
	// at once). The session arms only after Buffered reported false, so
	// the wire may let go of its read buffers until wake.
	Arm(wake func()) bool
}

// ServePolled runs one session over w like Serve, but reads the peer's
// frames only when w reports that there are some: a read step runs on a
// goroutine of its own while frames are buffered or arriving, then arms w
// and ends. A silent session has no goroutine at all (the writer, too,
// exists only while there is something to write). A frame that has only
// partly arrived keeps its step waiting in ReadFrame until the rest comes
// or the heartbeat closes the session. When MaxQueuedReplies replies wait
// to be written the step parks the frame it read and ends; the writer's
// progress resumes it.
//
// ServePolled admits the session (Acceptor.Accept) and returns once its
// reads are armed; while w cannot arm, it reads on as Serve does. The
// Handler's Closed is called once, from the goroutine that saw the end.
func ServePolled(w PolledWire, protocol string, r *http.Request, acc Acceptor, cfg SessionConfig) {
	serve(w, w, protocol, r, acc, cfg)
}

// pollReader is the read side of a polled session. At most one read step
// runs at a time: a step ends by arming the wire (which then starts the
// next one) or by parking a frame for reply room (resume starts the next
// one), never both.
type pollReader struct {
	c    *conn
	w    PolledWire
	h    Handler // nil: the session was refused; frames are drained
	wake func()  // run, as one func value for every Arm

	parked atomic.Bool // a frame waits in held for reply room; resume runs the next step

	// owned by the running step
	held  *Frame // the frame that waits for reply room
	pings bucket
}

func (c *conn) startPolled(w PolledWire, h Handler) {
	p := &pollReader{c: c, w: w, h: h}
	p.wake = p.run
	c.pr.Store(p)
	if !p.arm() {
		p.run() // the wire cannot arm: read on this goroutine, as Serve does
	}
}

// run is one read step: it reads and handles the frames the wire has, and
// ends by arming the wire again, by parking a frame for reply room, or,
// once the transport has ended, with the session's end.
func (p *pollReader) run() {
	c := p.c
	if f := p.held; f != nil { // resumed: reply room, or the session closes
		p.held = nil
		if !p.deliver(f) {
			return
		}
	}
	for {
		if !p.w.Buffered() && p.arm() {
			return
		}
		body, err := p.w.ReadFrame()
		if err != nil {
			p.end(c.readFailed(err))
			return
		}
		if f, ok := c.inbound(body, &p.pings); ok && !p.deliver(f) {
			return
		}
	}
}

// arm hands the next step to the wire's readiness. It reports false when
// the wire cannot arm: the caller reads on.
// Once it reports true another step may already run: the caller must
// leave p alone.
func (p *pollReader) arm() bool { return p.w.Arm(p.wake) }

// deliver hands f to the Handler once fewer than MaxQueuedReplies replies
// wait, dropping it if the session closes first (as readLoop does). It
// reports false when it parked f instead: the step must end, and resume
// starts the next one with f.
func (p *pollReader) deliver(f *Frame) bool {
	c := p.c
	for {
		if p.h == nil {
			return true
		}
		room, closing := c.replyRoom()
		if closing {
			return true
		}
		if room {
			c.handle(p.h, f)
			return true
		}
		p.held = f
		p.parked.Store(true)
		// Room may have come between the look and the parking, its signal
		// missed: look again, and take the step back unless resume did.
		if room, closing := c.replyRoom(); !room && !closing {
			return false
		}
		if !p.parked.CompareAndSwap(true, false) {
			return false // resume has started the next step
		}
		p.held = nil
	}
}

// resume starts the next step of a reader parked for reply room. The
// writer calls it (signalRoom) when replies drain, the session closes, or
// the writer ends.
func (p *pollReader) resume() {
	if p.parked.CompareAndSwap(true, false) {
		go p.run()
	}
}

// end runs the end of the session on the step's goroutine.
func (p *pollReader) end(remote *CloseError) {
	ce := p.c.endRead(remote)
	if p.h != nil {
		p.h.Closed(ce)
	}
}

// replyRoom is waitReplyRoom's look, without the wait: whether fewer than
// MaxQueuedReplies replies wait, or the session closes (or its writer has
// ended for good) so that no frame will be handled.
func (c *conn) replyRoom() (room, closing bool) {
	c.mu.Lock()
	room, closed := c.replies < c.cfg.MaxQueuedReplies, c.closed
	c.mu.Unlock()
	if closed || c.closeErr.Load() != nil {
		return false, true
	}
	if room {
		return true, false
	}
	select {
	case <-c.done:
		return false, true
	default:
	}
	return false, false
}
