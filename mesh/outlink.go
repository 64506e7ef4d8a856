package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const (
	dialBackoffMin = 50 * time.Millisecond
	dialBackoffMax = 2 * time.Second
	writeTimeout   = 10 * time.Second       // per flush
	closeFlush     = 500 * time.Millisecond // flush deadline when closing gracefully
	linkBufSize    = 64 << 10
)

var (
	errOverflow  = fmt.Errorf("%w: queue overflow", ErrLinkReset)
	errNotMember = errors.New("we are not a member in its view")
)

// syncAfterNacks is how many refusals in a row (errNotMember) make the
// dialler push/pull with the peer: the first ones are normal while a new
// member's alive message spreads.
const syncAfterNacks = 3

// outLink is the outbound connection to one peer and its queue. Anyone
// may enqueue; only run (the writer goroutine) touches the connection's
// bytes.
type outLink struct {
	c      *Cluster // immutable
	peer   string   // immutable
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // cap 1

	mu       sync.Mutex
	addr     string   // peer's forward address
	queue    []item   // waiting to be written
	bytes    int      // payload bytes in queue
	gen      uint64   // bumped when the queue is dropped: the writer redials
	conn     net.Conn // current connection, nil while dialling
	closed   bool
	graceful bool // flush the queue before closing
}

// ensureLink starts (or re-addresses) the outbound link to peer.
func (c *Cluster) ensureLink(peer, addr string) {
	c.linkMu.Lock()
	if c.closing {
		c.linkMu.Unlock()
		return
	}
	if l := c.out[peer]; l != nil {
		c.linkMu.Unlock()
		l.setAddr(addr)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	l := &outLink{c: c, peer: peer, addr: addr, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
	c.out[peer] = l
	c.wg.Add(1)
	c.linkMu.Unlock()
	go l.run()
}

// dropLinks closes both links with peer.
func (c *Cluster) dropLinks(peer string) {
	c.linkMu.Lock()
	l := c.out[peer]
	delete(c.out, peer)
	var conn net.Conn
	if il := c.in[peer]; il != nil {
		conn = il.conn
	}
	c.linkMu.Unlock()
	if l != nil {
		l.close(false)
	}
	if conn != nil {
		conn.Close()
	}
}

func (c *Cluster) outLink(peer string) *outLink {
	c.linkMu.RLock()
	defer c.linkMu.RUnlock()
	return c.out[peer]
}

// send queues a message for peer; false if there is no link to it.
func (c *Cluster) send(peer string, it item) bool {
	l := c.outLink(peer)
	return l != nil && l.enqueue(it)
}

func (l *outLink) setAddr(addr string) {
	l.mu.Lock()
	if addr == l.addr {
		l.mu.Unlock()
		return
	}
	l.addr = addr
	conn := l.conn
	l.mu.Unlock()
	if conn != nil {
		conn.Close() // the writer redials the new address
	}
}

// enqueue queues it without blocking. On overflow the queue is dropped
// whole and the connection reset (the peer registers again); it is then
// queued on the fresh queue.
func (l *outLink) enqueue(it item) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	if len(l.queue) >= l.c.cfg.LinkQueue || l.bytes+it.size() > maxLinkQueueBytes {
		dropped := len(l.queue)
		clear(l.queue)
		l.queue = l.queue[:0]
		l.bytes = 0
		l.gen++
		conn := l.conn
		l.conn = nil
		l.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		n := l.c.stats.linkDrops.Add(1)
		l.c.metrics.linkDropped.Add(uint64(dropped))
		if l.c.rate.Allow("overflow:"+l.peer, 5*time.Second) {
			l.c.log.Warn("link queue overflow: dropped the queue and reset the link",
				"peer", l.peer, "dropped", dropped, "overflows", n)
		}
		l.c.peerReset(l.peer, errOverflow)
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return false
		}
	}
	l.queue = append(l.queue, it)
	l.bytes += it.size()
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// close stops the link. A graceful close flushes what is queued (bounded
// by closeFlush); a later close(false) still cuts the connection.
func (l *outLink) close(graceful bool) {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	if first {
		l.graceful = graceful
	} else if !graceful {
		l.graceful = false
	}
	conn := l.conn
	l.mu.Unlock()
	l.cancel()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if !graceful && conn != nil {
		conn.Close()
	}
}

func (l *outLink) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// run is the writer goroutine: dial, write batches, redial on failure.
func (l *outLink) run() {
	defer l.c.wg.Done()
	backoff := dialBackoffMin
	nacks := 0
	for !l.isClosed() {
		conn, err := l.connect()
		if err != nil {
			if l.isClosed() {
				return
			}
			if errors.Is(err, errNotMember) {
				if nacks++; nacks%syncAfterNacks == 0 {
					l.c.requestSync(l.peer)
				}
			} else {
				nacks = 0
			}
			if l.c.rate.Allow("dial:"+l.peer, 10*time.Second) {
				l.c.log.Warn("link dial failed; retrying", "peer", l.peer, "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, dialBackoffMax)
			continue
		}
		backoff, nacks = dialBackoffMin, 0
		l.serve(conn)
	}
}

// connect dials the peer and completes the TLS handshake, verifying that
// the peer's certificate names it.
func (l *outLink) connect() (net.Conn, error) {
	l.mu.Lock()
	addr := l.addr
	l.mu.Unlock()
	if addr == "" {
		return nil, fmt.Errorf("peer %s advertises no forward address", l.peer)
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.c.cfg.RequestTimeout)
	defer cancel()
	raw, err := l.c.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	cfg := l.c.cfg.TLS.Clone()
	cfg.ServerName = l.peer
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s at %s: %w", l.peer, addr, err)
	}
	// With TLS 1.3 the client is done before the server has checked the
	// client certificate, and the hello is checked after that: the link is
	// up only once the acceptor says so.
	var ack [1]byte
	hello := helloMsg(l.c.name)
	if _, err := tc.Write(hello.hdr); err != nil {
		raw.Close()
		return nil, fmt.Errorf("send hello to %s: %w", l.peer, err)
	}
	if _, err := io.ReadFull(tc, ack[:]); err != nil || ack[0] != helloAck {
		raw.Close()
		switch {
		case err != nil:
		case ack[0] == helloNotMember:
			err = errNotMember
		default:
			err = fmt.Errorf("bad acknowledgement %#x", ack[0])
		}
		return nil, fmt.Errorf("%s at %s did not accept the link (see its log): %w", l.peer, addr, err)
	}
	if !stop() {
		raw.Close()
		return nil, fmt.Errorf("link to %s at %s: %w", l.peer, addr, context.DeadlineExceeded)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// serve writes batches to conn until it fails, the queue is dropped or the
// link closes.
func (l *outLink) serve(conn net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		conn.Close()
		return
	}
	gen := l.gen
	l.conn = conn
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.conn == conn {
			l.conn = nil
		}
		l.mu.Unlock()
		conn.Close()
	}()

	// The peer never writes after its acknowledgement: a read ends only
	// when it closes the connection (it dropped us, or replaced the link),
	// which the writer would otherwise notice only by losing a write.
	peerClosed := make(chan struct{})
	l.c.wg.Add(1) // the writer is counted: safe while shutting down
	go func() {
		defer l.c.wg.Done()
		defer close(peerClosed)
		var b [1]byte
		conn.Read(b[:])
	}()

	bw := bufio.NewWriterSize(conn, linkBufSize)
	var batch []item
	for {
		l.mu.Lock()
		if l.gen != gen {
			l.mu.Unlock()
			return
		}
		closed, graceful := l.closed, l.graceful
		batch, l.queue = l.queue, batch[:0]
		size := l.bytes
		l.bytes = 0
		l.mu.Unlock()
		if closed && !graceful {
			return
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			select {
			case <-l.wake:
			case <-peerClosed:
				l.mu.Lock()
				reset := l.gen != gen || l.closed // we closed it ourselves
				l.mu.Unlock()
				if !reset {
					l.c.peerReset(l.peer, fmt.Errorf("%w: peer closed the link", ErrLinkReset))
				}
				return
			}
			continue
		}
		deadline := writeTimeout
		if closed {
			deadline = closeFlush
		}
		conn.SetWriteDeadline(time.Now().Add(deadline))
		for _, it := range batch {
			bw.Write(it.hdr)
			bw.Write(it.body)
		}
		err := bw.Flush()
		clear(batch)
		if err != nil {
			l.mu.Lock()
			reset := l.gen != gen || l.closed // we closed it ourselves
			l.mu.Unlock()
			if !reset {
				l.c.stats.linkErrors.Add(1)
				if l.c.rate.Allow("write:"+l.peer, 10*time.Second) {
					l.c.log.Warn("link write failed; redialling", "peer", l.peer, "err", err)
				}
				l.c.peerReset(l.peer, fmt.Errorf("%w: %v", ErrLinkReset, err))
			}
			return
		}
		l.c.metrics.linkSent.Add(uint64(len(batch)))
		l.c.metrics.linkSentBytes.Add(uint64(size))
		if closed {
			return
		}
	}
}
