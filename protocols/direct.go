package protocols

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DirectWire is a Wire that can also write without blocking. Sessions over
// such a wire have no goroutine of their own to write: a fan-out worker
// (one per core) writes what is queued straight to the socket when the
// socket takes it at once, and only a write that would block, or the work
// of a close or a heartbeat, starts the session's own writer. That turns
// the goroutine start and wake-up each delivery used to cost into a place
// in a worker's list, and a publication to many sessions into one wake-up
// per worker.
type DirectWire interface {
	Wire
	// Direct reports whether TryWriteFrames can be used at all (a plain TCP
	// socket, not TLS). It does not change over the wire's life.
	Direct() bool
	// TryWriteFrames writes frames as one batch without blocking, by the
	// same rules as WriteFrames, and says how far it got:
	//   - TryDone: all of it is out;
	//   - TryPartial: the socket took part of it; the wire keeps the rest
	//     and writes it first in the next WriteFrames or CloseWrite;
	//   - TryBusy: another write holds the wire (a control frame); nothing
	//     was written and frames are the caller's again.
	// A non-nil error is a failed transport, as from WriteFrames.
	TryWriteFrames(frames [][]byte) (TryResult, error)
}

// TryResult is how far DirectWire.TryWriteFrames got.
type TryResult uint8

const (
	TryDone TryResult = iota
	TryPartial
	TryBusy
)

// directRounds bounds how many batches a worker writes for one session in
// a row before it hands the session to a writer of its own: a session
// that always has more keeps its worker from the others.
const directRounds = 4

// workerIdle is how long a worker waits for work before its goroutine
// ends; the next session queued on it starts it again.
const workerIdle = 200 * time.Millisecond

// directWorker writes for the sessions queued on it, in order. Its
// goroutine runs while there is traffic, and ends after workerIdle without.
type directWorker struct {
	mu      sync.Mutex
	ready   []*conn       // sessions whose writer place the worker holds
	running bool          // the worker's goroutine runs
	waiting bool          // it waits on wake: the next schedule sends there
	wake    chan struct{} // cap 1

	// counters for DirectWriteStats, each written by this worker only
	written, partial, busy, handed atomic.Uint64
}

// DirectStats counts the fan-out workers' writes since the process
// started.
type DirectStats struct {
	Written uint64 // batches a worker wrote whole, without blocking
	Partial uint64 // batches the socket took only part of: the session's writer wrote the rest
	Busy    uint64 // batches a control write kept from the wire: the session's writer wrote them
	Handed  uint64 // turns handed to the session's writer for a close, the heartbeat or a long queue
}

// DirectWriteStats sums the workers' counters.
func DirectWriteStats() DirectStats {
	var st DirectStats
	for _, w := range directWorkers() {
		st.Written += w.written.Load()
		st.Partial += w.partial.Load()
		st.Busy += w.busy.Load()
		st.Handed += w.handed.Load()
	}
	return st
}

// directWorkers are made on first use, one per core.
var directWorkers = sync.OnceValue(func() []*directWorker {
	ws := make([]*directWorker, runtime.GOMAXPROCS(0))
	for i := range ws {
		ws[i] = &directWorker{wake: make(chan struct{}, 1)}
	}
	return ws
})

var nextWorker atomic.Uint32

// pickWorker spreads sessions over the workers, round robin. A session
// keeps its worker for life, though order does not depend on it: the
// writer's place (conn.writing) is what serialises a session's writes.
func pickWorker() *directWorker {
	ws := directWorkers()
	return ws[int(nextWorker.Add(1))%len(ws)]
}

// schedule queues c, whose writer place the caller holds, for writing.
func (w *directWorker) schedule(c *conn) {
	w.mu.Lock()
	w.ready = append(w.ready, c)
	start, wake := !w.running, w.waiting
	w.running, w.waiting = true, false
	w.mu.Unlock()
	switch {
	case start:
		go w.run()
	case wake:
		w.wake <- struct{}{} // one send per wait: never blocks
	}
}

func (w *directWorker) run() {
	var local []*conn
	var batch [][]byte
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		w.mu.Lock()
		local, w.ready = w.ready, local[:0]
		if len(local) == 0 {
			w.waiting = true
		}
		w.mu.Unlock()
		if len(local) == 0 {
			idle.Reset(workerIdle)
			select {
			case <-w.wake:
				continue
			case <-idle.C:
			}
			w.mu.Lock()
			if w.waiting { // nobody came: end
				w.running, w.waiting = false, false
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.wake // a schedule came with the timer: its send is on the way
			continue
		}
		for i, c := range local {
			batch = c.writeDirect(w, batch[:0])
			local[i] = nil
		}
		// Let a burst's list go rather than keep its size for good.
		if cap(local) > 4096 {
			local = nil
		}
	}
}

// writeDirect is the worker's turn as c's writer: it writes what is queued
// while the socket takes it at once, and returns the writer's place when
// nothing is left. Anything else (a write that would block, a close, the
// heartbeat, the reader's end) goes to a writer goroutine of c's own,
// which keeps the place. It returns batch for reuse.
func (c *conn) writeDirect(w *directWorker, batch [][]byte) [][]byte {
	for range directRounds {
		if c.readEnded.Load() || c.closeErr.Load() != nil || c.pingDue.Load() || c.pongDue.Load() {
			w.handed.Add(1)
			go c.writeLoop()
			return batch
		}
		batch = c.take(batch[:0])
		if len(batch) == 0 {
			if c.release() {
				return batch
			}
			continue
		}
		res, err := c.direct.TryWriteFrames(batch)
		if err != nil {
			clear(batch)
			c.cfg.Logger.Debug("session write failed", "session", c.id, "err", err)
			c.wire.Abort()
			c.end()
			return batch
		}
		switch res {
		case TryBusy:
			// The frames are ours again: the writer writes them first.
			w.busy.Add(1)
			held := append([][]byte(nil), batch...)
			clear(batch)
			go c.writeLoopFrom(held)
			return batch
		case TryPartial:
			w.partial.Add(1)
			c.traffic.wrote(batch, nil) // the wire owns the rest: it counts as written
			clear(batch)
			go c.writeLoop()
			return batch
		}
		w.written.Add(1)
		c.traffic.wrote(batch, nil)
		clear(batch)
	}
	w.handed.Add(1)
	go c.writeLoop()
	return batch
}
