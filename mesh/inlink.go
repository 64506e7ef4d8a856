package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/switchyard/switchyard/protocols"
	"io"
	"net"
	"slices"
	"time"
)

// inLink is the current inbound connection from a peer; done is closed
// when its reader has stopped.
type inLink struct {
	peer string
	conn net.Conn
	done chan struct{}
}

var errRejected = errors.New("mesh: link rejected")

// acceptLoop accepts inbound links until the listener closes.
func (c *Cluster) acceptLoop() {
	defer c.wg.Done()
	var backoff time.Duration
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			c.log.Warn("link accept failed", "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		c.linkMu.Lock()
		if c.closing {
			c.linkMu.Unlock()
			conn.Close()
			return
		}
		c.conns[conn] = struct{}{}
		c.wg.Add(1)
		c.linkMu.Unlock()
		go c.serveInbound(conn)
	}
}

// serveInbound authenticates an inbound link and reads it until it ends.
func (c *Cluster) serveInbound(raw net.Conn) {
	defer c.wg.Done()
	defer func() {
		c.linkMu.Lock()
		delete(c.conns, raw)
		c.linkMu.Unlock()
		raw.Close()
	}()
	peer, br, err := c.handshake(raw)
	if err != nil {
		c.stats.rejected.Add(1)
		host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
		if c.rate.Allow("reject:"+host+":"+err.Error(), 10*time.Second) {
			c.log.Warn("rejected inbound link", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}

	il := &inLink{peer: peer, conn: raw, done: make(chan struct{})}
	c.linkMu.Lock()
	if c.closing {
		c.linkMu.Unlock()
		return
	}
	old := c.in[peer]
	c.in[peer] = il
	c.linkMu.Unlock()
	defer func() {
		c.linkMu.Lock()
		if c.in[peer] == il {
			delete(c.in, peer)
		}
		c.linkMu.Unlock()
		close(il.done)
	}()
	if old != nil { // one reader per peer at a time, in connection order
		old.conn.Close()
		select {
		case <-old.done:
		case <-c.done:
			return
		}
	}

	var scratch []byte
	for {
		m, err := readMessage(br, &scratch)
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.rate.Allow("read:"+peer, 10*time.Second) {
				c.log.Info("inbound link ended", "peer", peer, "err", err)
			}
			// Deliveries may have been lost with it: register again.
			c.peerReset(peer, fmt.Errorf("%w: inbound link ended", ErrLinkReset))
			return
		}
		c.handle(peer, m)
	}
}

// handshake runs the TLS handshake and reads the hello, and accepts the
// peer only if it is a current member named by its certificate.
func (c *Cluster) handshake(raw net.Conn) (string, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	tc := tls.Server(raw, c.serverTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", nil, fmt.Errorf("%w: tls: %v", errRejected, err)
	}
	br := bufio.NewReaderSize(tc, linkBufSize)
	var scratch []byte
	m, err := readMessage(br, &scratch)
	if err != nil {
		return "", nil, fmt.Errorf("%w: read hello: %v", errRejected, err)
	}
	if m.typ != msgHello || m.version != linkVersion {
		return "", nil, fmt.Errorf("%w: want hello version %d, got type %d version %d", errRejected, linkVersion, m.typ, m.version)
	}
	certs := tc.ConnectionState().PeerCertificates
	switch {
	case len(certs) == 0:
		return "", nil, fmt.Errorf("%w: no client certificate", errRejected)
	case m.name == c.name:
		return "", nil, fmt.Errorf("%w: peer claims our own name %q", errRejected, m.name)
	case !slices.Contains(certs[0].DNSNames, m.name):
		return "", nil, fmt.Errorf("%w: peer %q is not named by its certificate %v", errRejected, m.name, certs[0].DNSNames)
	case !c.isMember(m.name):
		tc.Write([]byte{helloNotMember}) // best effort: the peer will sync with us
		return "", nil, fmt.Errorf("%w: peer %q is not a member", errRejected, m.name)
	}
	if _, err := tc.Write([]byte{helloAck}); err != nil {
		return "", nil, fmt.Errorf("%w: acknowledge hello: %v", errRejected, err)
	}
	if !stop() {
		return "", nil, fmt.Errorf("%w: handshake timed out", errRejected)
	}
	raw.SetDeadline(time.Time{})
	return m.name, br, nil
}

// handle runs one message from peer, on peer's reader goroutine.
func (c *Cluster) handle(peer string, m message) {
	switch m.typ {
	case msgDeliver:
		c.metrics.received.Add(1)
		c.local.Deliver(m.channel, m.epoch, m.offset, m.rest)
		if m.sent != 0 {
			// From the owner's send to queued for the subscribers here
			// (two clocks: skew shows as a shift; a negative one as 0).
			c.metrics.deliverDelay.observe(max(time.Since(time.Unix(0, m.sent)), 0))
		}
	case msgPublish:
		reply := func(epoch string, offset uint64, dup bool, err error) {
			errText := ""
			if err != nil {
				errText = err.Error()
				if errText == "" {
					errText = "sequence failed"
				}
			}
			c.send(peer, publishReplyMsg(m.id, epoch, offset, dup, errText))
		}
		if c.keeper != nil {
			c.keeper.SequenceAsync(m.channel, m.key, m.rest, reply)
		} else {
			reply(c.local.Sequence(m.channel, m.key, m.rest))
		}
	case msgPublishReply:
		r := callResult{epoch: m.epoch, offset: m.offset, dup: m.dup}
		if m.errText != "" {
			r.err = &RemoteError{Node: peer, Msg: m.errText}
		}
		c.complete(m.id, peer, r)
	case msgRegister:
		reply := func(epoch string, offset uint64, history []protocols.Publication) {
			c.interest.register(peer, m.channel, true)
			c.send(peer, registerReplyMsg(m.id, m.channel, epoch, offset, history))
		}
		if c.keeper != nil {
			c.keeper.HoldFor(m.channel, m.epoch, m.offset, reply)
		} else {
			c.local.Hold(m.channel, reply)
		}
	case msgRegisterReply:
		c.registered(peer, m)
	case msgUnregister:
		c.interest.register(peer, m.channel, false)
	case msgHistory:
		reply := func(epoch string, offset uint64, history []protocols.Publication) {
			c.send(peer, historyReplyMsg(m.id, m.channel, epoch, offset, history))
		}
		if c.keeper != nil {
			c.keeper.HoldFor(m.channel, "", 0, reply) // may answer later: never block the reader
		} else {
			c.local.Hold(m.channel, reply)
		}
	case msgHistoryReply:
		c.complete(m.id, peer, callResult{epoch: m.epoch, offset: m.offset, history: m.history})
	case msgReplicate, msgReplicaAck, msgHandOff, msgHandOffReply:
		c.handleReplica(peer, m)
	case msgPresenceUpdate, msgPresenceEvent, msgPresenceQuery, msgPresenceReply:
		c.handlePresence(peer, m)
	case msgSignal:
		if s := c.signals.Load(); s != nil {
			(*s).HandleSignal(peer, m.rest)
		}
	default:
		if c.rate.Allow("msg:"+peer, time.Minute) {
			c.log.Warn("unexpected link message", "peer", peer, "type", m.typ)
		}
	}
}
