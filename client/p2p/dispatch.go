package p2p

import "sync"

// dispatcher runs the application's callbacks one at a time, in the order
// they were posted, on its own goroutine, so that a slow or blocking
// callback delays other callbacks but never the socket or a negotiation,
// and a callback may call any Room method (Leave included).
type dispatcher struct {
	mu     sync.Mutex
	q      []func()
	closed bool
	wake   chan struct{} // cap 1
	done   chan struct{} // closed when run returns
}

func newDispatcher() *dispatcher {
	return &dispatcher{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// post queues f; it reports false once close was called.
func (d *dispatcher) post(f func()) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	d.q = append(d.q, f)
	d.mu.Unlock()
	d.signal()
	return true
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close makes run return once what was posted before has run.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.signal()
}

func (d *dispatcher) run() {
	defer close(d.done)
	for range d.wake {
		for {
			d.mu.Lock()
			if len(d.q) == 0 {
				closed := d.closed
				d.q = nil
				d.mu.Unlock()
				if closed {
					return
				}
				break
			}
			f := d.q[0]
			d.q[0] = nil
			d.q = d.q[1:]
			d.mu.Unlock()
			f()
		}
	}
}
