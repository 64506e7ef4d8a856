package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Volatile publications (datagram channels) travel between nodes as QUIC
// datagrams (RFC 9221): one QUIC connection per ordered pair of nodes,
// mutually authenticated by the mesh CA like the links, on a UDP socket of
// the node's own (advertised in its metadata, on the link port's number
// when it is free). They never wait behind the links' reliable traffic,
// and a lost one is not resent. A publication too large for a datagram, or
// for a peer that advertises no datagram address or cannot be reached
// over QUIC, goes on the link instead: never silently dropped for that.
//
// Each datagram is one message:
//
//	dgPublish  type channel:string data            a node asks the owner to sequence
//	dgDeliver  type channel:string seq:varint frame the owner forwards a sequenced publication

const (
	dgALPN = "switchyard-mesh-datagram/1"

	dgPublish byte = 1
	dgDeliver byte = 2

	// dgMaxSize is the largest datagram a node sends: it fits the smallest
	// QUIC packet (1,200 bytes) after QUIC's own headers.
	dgMaxSize = 1150
	// dgQueue bounds the datagrams waiting for one peer; past it the
	// oldest is dropped.
	dgQueue = 256
	// dgRedial is how long a peer that could not be reached over QUIC gets
	// its volatile traffic on the link before the next attempt.
	dgRedial = 2 * time.Second
)

// dgState is the datagram side of a Cluster; its fields are set by Start.
type dgState struct {
	pc   net.PacketConn
	tr   *quic.Transport
	ln   *quic.Listener
	conf *quic.Config

	mu    sync.Mutex
	links map[string]*dgLink // by peer
	conns map[*quic.Conn]struct{}

	dropped atomic.Uint64 // datagrams dropped on full queues or failed sends
	onLink  atomic.Uint64 // volatile publications sent on the link instead
}

// dgLink queues datagrams for one peer; a goroutine that exists only
// while there is work sends them.
type dgLink struct {
	c    *Cluster
	peer string

	mu       sync.Mutex // guards the fields below
	q        [][]byte
	running  bool
	conn     *quic.Conn
	failedAt time.Time
	closed   bool
}

// startDatagrams opens the node's datagram socket on host, on port when
// it is free (else any port), and starts accepting peers. Called by Start.
func (c *Cluster) startDatagrams(host string, port int) error {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return fmt.Errorf("mesh: listen for datagrams on %s: %w", host, err)
	}
	c.dg.conf = &quic.Config{
		EnableDatagrams:       true,
		MaxIdleTimeout:        30 * time.Second,
		KeepAlivePeriod:       10 * time.Second,
		MaxIncomingStreams:    -1, // datagrams only
		MaxIncomingUniStreams: -1,
	}
	c.dg.pc = pc
	c.dg.tr = &quic.Transport{Conn: pc}
	srv := c.serverTLS.Clone()
	srv.NextProtos = []string{dgALPN}
	srv.MinVersion = tls.VersionTLS13
	ln, err := c.dg.tr.Listen(srv, c.dg.conf)
	if err != nil {
		pc.Close()
		return fmt.Errorf("mesh: datagram listener: %w", err)
	}
	c.dg.ln = ln
	c.dg.links = make(map[string]*dgLink)
	c.dg.conns = make(map[*quic.Conn]struct{})
	c.memberMu.Lock()
	c.meta.Datagram = pc.LocalAddr().String()
	c.memberMu.Unlock()
	return nil
}

// datagramAddr is the address this node advertises for datagrams.
func (c *Cluster) datagramAddr() string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	return c.meta.Datagram
}

// dgAcceptLoop serves the QUIC connections of peers until shutdown.
func (c *Cluster) dgAcceptLoop() {
	defer c.wg.Done()
	for {
		conn, err := c.dg.ln.Accept(c.ctx)
		if err != nil {
			return
		}
		peer, ok := c.dgPeer(conn)
		if !ok {
			_ = conn.CloseWithError(1, "not a member")
			continue
		}
		if !c.dgTrack(conn) {
			return
		}
		c.wg.Add(1)
		go c.dgReceive(peer, conn)
	}
}

// dgPeer names the peer of an accepted connection: its certificate, which
// the mesh CA signed (the TLS handshake checked that), must name a member.
func (c *Cluster) dgPeer(conn *quic.Conn) (string, bool) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return "", false
	}
	for _, name := range certs[0].DNSNames {
		if name != c.name && c.isMember(name) {
			return name, true
		}
	}
	if c.rate.Allow("dg-reject", time.Minute) {
		c.log.Warn("datagram connection from a non-member refused", "names", certs[0].DNSNames, "addr", conn.RemoteAddr())
	}
	return "", false
}

// dgTrack records conn for shutdown; false once shutdown has begun.
func (c *Cluster) dgTrack(conn *quic.Conn) bool {
	c.dg.mu.Lock()
	defer c.dg.mu.Unlock()
	if c.dg.conns == nil {
		_ = conn.CloseWithError(0, "shutting down")
		return false
	}
	c.dg.conns[conn] = struct{}{}
	return true
}

func (c *Cluster) dgUntrack(conn *quic.Conn) {
	c.dg.mu.Lock()
	delete(c.dg.conns, conn)
	c.dg.mu.Unlock()
}

// dgReceive hands a peer's datagrams to Local until the connection ends.
func (c *Cluster) dgReceive(peer string, conn *quic.Conn) {
	defer c.wg.Done()
	defer c.dgUntrack(conn)
	for {
		b, err := conn.ReceiveDatagram(c.ctx)
		if err != nil {
			return
		}
		if err := c.dgHandle(b); err != nil && c.rate.Allow("dg-bad:"+peer, time.Minute) {
			c.log.Warn("bad datagram from peer", "peer", peer, "err", err)
		}
	}
}

// dgHandle runs one datagram message.
func (c *Cluster) dgHandle(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty datagram")
	}
	r := reader{b: b[1:]}
	channel := r.string()
	switch b[0] {
	case dgPublish:
		if r.err != nil {
			return r.err
		}
		_, _, _, err := c.local.Sequence(channel, "", r.b)
		return err
	case dgDeliver:
		seq := r.uvarint()
		if r.err != nil {
			return r.err
		}
		c.local.Deliver(channel, "", seq, r.b)
		return nil
	}
	return fmt.Errorf("datagram type %d", b[0])
}

// PublishVolatile has channel's owner sequence a volatile publication,
// without waiting and without an answer: a datagram to the owner (or the
// link, see above). A publication for a channel this node owns is for
// Local.Sequence instead.
func (c *Cluster) PublishVolatile(channel string, data []byte) {
	owner := c.Owner(channel)
	if owner == "" || owner == c.name {
		return
	}
	msg := make([]byte, 0, 1+sizeString(channel)+len(data))
	msg = append(msg, dgPublish)
	msg = appendString(msg, channel)
	msg = append(msg, data...)
	c.sendVolatile(owner, msg, func() item { return publishMsg(0, channel, "", data) })
}

// ForwardVolatile sends a volatile publication this node sequenced (seq,
// its Message frame) to every other node interested in channel, without
// blocking.
func (c *Cluster) ForwardVolatile(channel string, seq uint64, frame []byte) {
	var buf [8]string
	targets := c.interest.targets(buf[:0], channel)
	if len(targets) == 0 {
		return
	}
	msg := make([]byte, 0, 1+sizeString(channel)+10+len(frame))
	msg = append(msg, dgDeliver)
	msg = appendString(msg, channel)
	msg = appendUvarint(msg, seq)
	msg = append(msg, frame...)
	for _, peer := range targets {
		c.sendVolatile(peer, msg, func() item {
			return item{hdr: deliverHeader(channel, "", seq, len(frame)), body: frame}
		})
	}
	c.metrics.forwardedVolatile.Add(uint64(len(targets)))
}

// sendVolatile queues msg for peer as a datagram, or sends onLink() on the
// link when msg is too large or the peer has no datagram path now.
func (c *Cluster) sendVolatile(peer string, msg []byte, onLink func() item) {
	if l := c.dgLinkFor(peer); l != nil && len(msg) <= dgMaxSize && l.enqueue(msg) {
		return
	}
	c.dg.onLink.Add(1)
	c.send(peer, onLink())
}

// dgLinkFor returns the datagram link to peer, creating it; nil when the
// peer advertises no datagram address or the cluster is stopping.
func (c *Cluster) dgLinkFor(peer string) *dgLink {
	if c.dg.tr == nil || !c.running.Load() {
		return nil
	}
	c.dg.mu.Lock()
	defer c.dg.mu.Unlock()
	if c.dg.links == nil {
		return nil
	}
	l := c.dg.links[peer]
	if l == nil {
		c.memberMu.RLock()
		addr := c.members[peer].DatagramAddr
		c.memberMu.RUnlock()
		if addr == "" {
			return nil
		}
		l = &dgLink{c: c, peer: peer}
		c.dg.links[peer] = l
	}
	return l
}

// enqueue queues msg, dropping the oldest when full; false when the peer
// could not be reached lately (the caller then uses the link).
func (l *dgLink) enqueue(msg []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || (l.conn == nil && time.Since(l.failedAt) < dgRedial) {
		return false
	}
	if len(l.q) >= dgQueue {
		l.q[0] = nil
		l.q = l.q[1:]
		l.c.dg.dropped.Add(1)
	}
	l.q = append(l.q, msg)
	if !l.running {
		l.running = true
		l.c.wg.Add(1)
		go l.run()
	}
	return true
}

// run sends the queue, dialing the peer first when needed, and returns
// once the queue is empty.
func (l *dgLink) run() {
	defer l.c.wg.Done()
	for {
		l.mu.Lock()
		if len(l.q) == 0 || l.closed {
			l.q, l.running = nil, false
			l.mu.Unlock()
			return
		}
		msg := l.q[0]
		l.q[0] = nil
		l.q = l.q[1:]
		conn := l.conn
		l.mu.Unlock()
		if conn == nil {
			var err error
			if conn, err = l.dial(); err != nil {
				l.fail(err)
				return
			}
		}
		if err := conn.SendDatagram(msg); err != nil {
			l.c.dg.dropped.Add(1)
			var tooLarge *quic.DatagramTooLargeError
			if !errors.As(err, &tooLarge) {
				l.fail(err)
				return
			}
		}
	}
}

// dial connects to the peer's datagram address, checking that its
// certificate names it.
func (l *dgLink) dial() (*quic.Conn, error) {
	c := l.c
	c.memberMu.RLock()
	addr := c.members[l.peer].DatagramAddr
	c.memberMu.RUnlock()
	if addr == "" {
		return nil, fmt.Errorf("peer %s advertises no datagram address", l.peer)
	}
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	cfg := c.cfg.TLS.Clone()
	cfg.ServerName = l.peer
	cfg.NextProtos = []string{dgALPN}
	cfg.MinVersion = tls.VersionTLS13
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
	defer cancel()
	conn, err := c.dg.tr.Dial(ctx, udp, cfg, c.dg.conf)
	if err != nil {
		return nil, fmt.Errorf("datagram connection to %s at %s: %w", l.peer, addr, err)
	}
	if !conn.ConnectionState().SupportsDatagrams.Remote {
		_ = conn.CloseWithError(0, "")
		return nil, fmt.Errorf("%s does not take datagrams", l.peer)
	}
	if !c.dgTrack(conn) {
		return nil, ErrClosed
	}
	// The peer never sends on this connection (it dials its own), but a
	// reader notices when the connection ends.
	c.wg.Add(1)
	go c.dgReceive(l.peer, conn)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = conn.CloseWithError(0, "")
		return nil, ErrClosed
	}
	l.conn = conn
	l.mu.Unlock()
	return conn, nil
}

// fail drops the queue and the connection after an error; volatile
// publications take the link until dgRedial has passed.
func (l *dgLink) fail(err error) {
	l.mu.Lock()
	n := len(l.q)
	conn := l.conn
	l.q, l.conn, l.running, l.failedAt = nil, nil, false, time.Now()
	l.mu.Unlock()
	l.c.dg.dropped.Add(uint64(n))
	if conn != nil {
		_ = conn.CloseWithError(0, "")
	}
	if l.c.running.Load() && l.c.rate.Allow("dg-fail:"+l.peer, time.Minute) {
		l.c.log.Warn("datagram path to peer failed; volatile publications use the link for now", "peer", l.peer, "err", err)
	}
}

func (l *dgLink) close() {
	l.mu.Lock()
	l.closed = true
	conn := l.conn
	l.conn, l.q = nil, nil
	l.mu.Unlock()
	if conn != nil {
		_ = conn.CloseWithError(0, "")
	}
}

// dgDrop closes the datagram link to a peer that left.
func (c *Cluster) dgDrop(peer string) {
	c.dg.mu.Lock()
	l := c.dg.links[peer]
	delete(c.dg.links, peer)
	c.dg.mu.Unlock()
	if l != nil {
		l.close()
	}
}

// dgStop closes every datagram connection and the socket. Called by stop.
func (c *Cluster) dgStop() {
	if c.dg.tr == nil {
		return
	}
	c.dg.mu.Lock()
	links := c.dg.links
	conns := c.dg.conns
	c.dg.links, c.dg.conns = nil, nil
	c.dg.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	for conn := range conns {
		_ = conn.CloseWithError(0, "shutting down")
	}
	_ = c.dg.ln.Close()
	_ = c.dg.tr.Close()
	_ = c.dg.pc.Close()
}

// dgStats reports the datagram counters (for tests and, later, metrics).
func (c *Cluster) dgStats() (dropped, onLink uint64) {
	return c.dg.dropped.Load(), c.dg.onLink.Load()
}
