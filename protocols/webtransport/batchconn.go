package webtransport

import (
	"net"
	"sync"

	"golang.org/x/net/ipv4"
)

// batchConn is the UDP socket under the QUIC listener when Config.BatchWrites
// is set. quic-go writes each packet with its own sendmsg, one per datagram
// per session when a volatile publication fans out; batchConn instead
// queues the packets every connection writes and a single flusher sends
// them with sendmmsg, many per system call. Reads, socket options and the
// capabilities quic-go probes (GSO, ECN, DF) are the socket's own.
type batchConn struct {
	*net.UDPConn
	out *ipv4.PacketConn

	mu     sync.Mutex
	room   sync.Cond // signalled when the flusher takes the queue
	queue  []ipv4.Message
	spare  []ipv4.Message // the flusher's last batch, for reuse
	closed bool

	wake chan struct{} // cap 1: the queue has packets
	done chan struct{} // closed when the flusher returns
}

// maxQueuedPackets bounds the packets waiting for the flusher; a writer
// waits beyond it, as it would in a blocking sendmsg.
const maxQueuedPackets = 512

// packetBuffers recycles the copies of queued packets.
var packetBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{UDPConn: c, out: ipv4.NewPacketConn(c), wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.room.L = &b.mu
	go b.flush()
	return b
}

// WriteMsgUDP queues a copy of the packet and its control data; errors of
// the actual send are not reported (the packet counts as lost to QUIC).
func (b *batchConn) WriteMsgUDP(p, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	bp := packetBuffers.Get().(*[]byte)
	buf := append((*bp)[:0], p...)
	buf = append(buf, oob...)
	b.mu.Lock()
	for len(b.queue) >= maxQueuedPackets && !b.closed {
		b.room.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		packetBuffers.Put(bp)
		return 0, 0, net.ErrClosed
	}
	if len(b.queue) < cap(b.queue) {
		b.queue = b.queue[:len(b.queue)+1]
	} else {
		b.queue = append(b.queue, ipv4.Message{Buffers: make([][]byte, 1)})
	}
	m := &b.queue[len(b.queue)-1]
	if len(m.Buffers) != 1 {
		m.Buffers = make([][]byte, 1)
	}
	m.Buffers[0], m.OOB, m.Addr = buf[:len(p)], buf[len(p):], addr
	select { // under mu: Close closes wake under mu too
	case b.wake <- struct{}{}:
	default:
	}
	b.mu.Unlock()
	return len(p), len(oob), nil
}

// flush sends what is queued, in batches, until Close.
func (b *batchConn) flush() {
	defer close(b.done)
	for range b.wake {
		for {
			b.mu.Lock()
			if len(b.queue) == 0 {
				closed := b.closed
				b.mu.Unlock()
				if closed {
					return
				}
				break
			}
			// Swap: writers fill the other array while this one is sent.
			batch := b.queue
			b.queue, b.spare = b.spare[:0], nil
			b.room.Broadcast()
			b.mu.Unlock()
			for sent := batch; len(sent) > 0; {
				n, err := b.out.WriteBatch(sent, 0)
				if err != nil && n <= 0 {
					n = 1 // drop the packet the kernel refused, send the rest
				}
				sent = sent[n:]
			}
			for i := range batch {
				buf := batch[i].Buffers[0]
				buf = buf[:cap(buf)][:0]
				if cap(buf) <= 1500 {
					packetBuffers.Put(&buf)
				}
				batch[i].Buffers[0], batch[i].OOB, batch[i].Addr = nil, nil, nil
			}
			b.mu.Lock()
			b.spare = batch[:0]
			b.mu.Unlock()
		}
	}
}

// Close stops the flusher after what is queued, then closes the socket.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.UDPConn.Close()
	}
	b.closed = true
	b.room.Broadcast()
	close(b.wake)
	b.mu.Unlock()
	<-b.done
	return b.UDPConn.Close()
}
