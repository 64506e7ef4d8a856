package client

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// ErrNotVolatile is returned by SendDatagram for a channel that is not
// volatile: publish on it with Publish.
var ErrNotVolatile = errors.New("client: not a volatile channel")

// DatagramTooLargeError is returned by SendDatagram for a payload over the
// server's limit (Connected.max_datagram_size).
type DatagramTooLargeError struct{ Size, Max int }

func (e *DatagramTooLargeError) Error() string {
	return fmt.Sprintf("client: datagram payload is %d bytes, limit %d", e.Size, e.Max)
}

// MaxDatagramSize is the largest payload SendDatagram takes.
func (c *Client) MaxDatagramSize() int { return int(c.connected.GetMaxDatagramSize()) }

// SendDatagram publishes data on a volatile channel the client is
// subscribed to, unreliably: as a QUIC datagram on WebTransport, as a
// Datagram frame on WebSocket. There is no acknowledgement; subscribers
// (the sender included) receive it as a Message with Datagram set. It
// returns ErrNotVolatile for a channel that is not volatile, a
// *protocols.RequestError (ErrCodeNotSubscribed) without a subscription,
// and a *DatagramTooLargeError for a payload over MaxDatagramSize.
func (c *Client) SendDatagram(channel string, data []byte) error {
	c.mu.Lock()
	s := c.subs[channel]
	ok := s != nil && s.active
	closing := c.closingLocked()
	c.mu.Unlock()
	switch {
	case closing:
		return c.endErrOr(ErrClosed)
	case !ok:
		return &protocols.RequestError{Code: protocols.ErrCodeNotSubscribed, Message: fmt.Sprintf("subscribe to %q before sending datagrams on it", channel)}
	case !s.volatile:
		return ErrNotVolatile
	case len(data) > c.MaxDatagramSize():
		return &DatagramTooLargeError{Size: len(data), Max: c.MaxDatagramSize()}
	}
	seq := c.datagramSeq.Add(1)
	if wt, ok := c.tr.(*wtTransport); ok {
		return wt.sess.SendDatagram(protocols.AppendDatagram(nil, s.alias, seq, data))
	}
	b, err := protocols.EncodeFrame(&protocols.Frame{Kind: &protocols.Frame_Datagram{Datagram: &protocols.Datagram{
		Alias: s.alias, Seq: seq, Data: data,
	}}})
	if err != nil {
		return err
	}
	return c.enqueue(outFrame{b: b})
}

// endErrOr is the connection's end cause, or err while it has none.
func (c *Client) endErrOr(err error) error {
	if e := c.endErr(); e != nil {
		return e
	}
	return err
}

// newAliasLocked gives out the next free alias. Aliases go up to
// protocols.MaxAlias before any is used again, so that a stray delivery
// for an ended subscription cannot reach a new one.
func (c *Client) newAliasLocked() uint32 {
	for {
		c.nextAlias = c.nextAlias%protocols.MaxAlias + 1
		if _, used := c.aliases[c.nextAlias]; !used {
			return c.nextAlias
		}
	}
}

// subscriptionFor returns the subscription with alias once the server has
// answered its Subscribe, or nil.
func (c *Client) subscriptionFor(alias uint32) *Subscription {
	c.mu.Lock()
	s := c.aliases[alias]
	var again chan struct{}
	if s != nil {
		again = s.again
	}
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	select {
	case <-s.ready:
	case <-c.ctx.Done():
		return nil
	}
	if again != nil { // a resubscription's stream: wait for its Subscribed
		select {
		case <-again:
		case <-c.ctx.Done():
			return nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.active || c.aliases[alias] != s {
		return nil
	}
	return s
}

// readDatagrams delivers the server's datagrams until the session ends.
func (c *Client) readDatagrams(t *wtTransport) {
	for {
		b, err := t.sess.ReceiveDatagram(c.ctx)
		if err != nil {
			return
		}
		alias, seq, payload, err := protocols.ParseDatagram(b)
		if err != nil {
			c.log.Debug("client: malformed datagram", "err", err)
			continue
		}
		if s := c.subscriptionFor(alias); s != nil && s.volatile {
			s.deliverDatagram(seq, payload)
		}
	}
}

// deliverDatagram hands a volatile publication to the subscription without
// ever waiting: when Messages is full it is dropped and counted.
func (s *Subscription) deliverDatagram(seq uint64, data []byte) {
	if last := s.lastSeq.Load(); seq > last {
		s.lastSeq.Store(seq)
		s.lost.Add(seq - last - 1)
	} else if s.lost.Load() > 0 {
		s.lost.Add(^uint64(0)) // a late one: it was counted lost
	}
	msg := Message{Channel: s.channel, Data: data, Position: Position{Offset: seq}, Datagram: true}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- msg:
	default:
		s.dropped.Add(1)
	}
}

// acceptStreams reads every unidirectional stream the server opens: one
// per subscription, starting with its alias.
func (c *Client) acceptStreams(t *wtTransport) {
	for {
		str, err := t.sess.AcceptUniStream(c.ctx)
		if err != nil {
			return
		}
		c.wg.Go(func() { c.readStream(str) })
	}
}

// readStream delivers the messages of one subscription's stream, in order,
// waiting while the subscription's Messages channel is full (which holds
// up only this stream).
func (c *Client) readStream(str io.Reader) {
	br := bufio.NewReader(str)
	alias, err := binary.ReadUvarint(br)
	if err != nil || alias > protocols.MaxAlias {
		return
	}
	s := c.subscriptionFor(uint32(alias))
	fr := protocols.NewFrameReader(br, maxFrameSize)
	for {
		body, err := fr.Next()
		if err != nil {
			return
		}
		c.lastSeen.Store(time.Now().UnixNano())
		f, err := protocols.DecodeFrame(body)
		if err != nil || f.GetMessage() == nil || s == nil || f.GetMessage().GetChannel() != s.channel {
			continue // only messages of this subscription come on its stream
		}
		s.deliver(f.GetMessage())
	}
}

// Volatile reports whether the channel is volatile: its messages are
// datagrams (Message.Datagram).
func (s *Subscription) Volatile() bool { return s.volatile }

// Lost is how many datagrams of a volatile channel never arrived: the gaps
// in their sequence numbers (loss on the way, or publications the server
// replaced with newer ones while the client was slow).
func (s *Subscription) Lost() uint64 { return s.lost.Load() }

// Dropped is how many datagrams arrived but were dropped because Messages
// was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }
