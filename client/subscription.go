package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/switchyard/switchyard/protocols"
)

// Position is a place in a channel's stream: the epoch of its sequencer and
// the offset within that epoch.
type Position struct {
	Epoch  string
	Offset uint64
}

// Message is one publication delivered to a subscription. Data belongs to
// the receiver, who may keep it.
type Message struct {
	Channel string
	Data    []byte
	Position
	// Datagram is true for a volatile channel's publication: Epoch is
	// empty and Offset is the channel's datagram sequence number, in which
	// a gap means publications were lost or replaced by newer ones.
	Datagram bool
}

// Subscription receives the messages of one channel.
type Subscription struct {
	// immutable after Subscribe
	c       *Client
	channel string
	alias   uint32
	ch      chan Message
	quit    chan struct{}      // closed when the subscription ends; unblocks delivery
	ready   chan struct{}      // closed once the server's answer to Subscribe is in
	events  chan PresenceEvent // WithPresence: join and leave events; else nil

	// pos and volatile are written by the read loop before ready is closed.
	pos      Position
	volatile bool
	// again, guarded by Client.mu, is closed when a resubscription (after
	// the server ended the subscription) is confirmed; nil when none is
	// under way. Stream readers wait on it as on ready.
	again chan struct{}

	recovered atomic.Bool   // the last (re)subscription recovered all it asked for
	resyncs   atomic.Uint64 // resubscriptions that could not recover
	last      Position      // guarded by mu: the last message delivered (or pos)

	readyOnce sync.Once
	lastSeq   atomic.Uint64 // the highest datagram sequence number seen
	lost      atomic.Uint64 // datagram sequence numbers skipped
	dropped   atomic.Uint64 // datagrams dropped here: Messages was full

	quitOnce sync.Once
	mu       sync.Mutex // held by the read loop while it delivers; guards closed
	closed   bool       // ch is closed

	// guarded by Client.mu
	active       bool // the server confirmed; messages are delivered
	unsubscribed bool // Unsubscribe was called
}

// SubscribeOption changes a Subscribe.
type SubscribeOption func(*protocols.Subscribe)

// Since asks for the publications after p (the position of the last
// message the caller saw, say before a reconnect) from the channel's
// history: they arrive on Messages first, then the live ones, none twice.
// Recovered tells whether the history held all of them. Since(Position{})
// asks for all the history holds (a newcomer's "recent messages").
func Since(p Position) SubscribeOption {
	return func(s *protocols.Subscribe) {
		s.Recover, s.SinceEpoch, s.SinceOffset = true, p.Epoch, p.Offset
	}
}

// Subscribe subscribes to channel and waits for the server to confirm.
// Messages published after the returned Position arrive on Messages.
// An Error reply (a bad channel name, too many subscriptions) is returned
// as a *protocols.RequestError; so is, without a round trip, a second
// subscription to one channel on one Client (ErrCodeAlreadySubscribed).
// A Subscribe abandoned through ctx holds its channel until the server's
// answer comes; the client then undoes it.
//
// When the server ends the subscription on its own because publications
// were lost on their way to its node (Unsubscribed, code 3005), the client
// subscribes again at once from the last message delivered, recovering
// from the channel's history; Resyncs counts the times that could not
// recover everything.
func (c *Client) Subscribe(ctx context.Context, channel string, opts ...SubscribeOption) (*Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Subscription{
		c:       c,
		channel: channel,
		ch:      make(chan Message, c.msgBuffer),
		quit:    make(chan struct{}),
		ready:   make(chan struct{}),
	}
	sub := &protocols.Subscribe{Channel: channel}
	for _, o := range opts {
		o(sub)
	}
	if sub.Presence {
		s.events = make(chan PresenceEvent, presenceBuffer)
	}
	id, cl, err := c.send(&protocols.Frame{Kind: &protocols.Frame_Subscribe{Subscribe: sub}}, s.confirm, func() error {
		if _, dup := c.subs[channel]; dup {
			return &protocols.RequestError{
				Code:    protocols.ErrCodeAlreadySubscribed,
				Message: fmt.Sprintf("already subscribed to %q", channel),
			}
		}
		c.subs[channel] = s // inactive until Subscribed
		s.alias = c.newAliasLocked()
		sub.Alias = s.alias
		c.aliases[s.alias] = s
		return nil
	})
	if err != nil {
		c.mu.Lock()
		if c.subs[channel] == s {
			delete(c.subs, channel) // the request never went out
			delete(c.aliases, s.alias)
		}
		c.mu.Unlock()
		return nil, err
	}
	// From here on s.confirm (or the client's end) takes s out of c.subs.
	f, err := c.wait(ctx, id, cl)
	if err != nil {
		return nil, err
	}
	if _, ok := f.Kind.(*protocols.Frame_Subscribed); !ok {
		return nil, unexpectedReply("Subscribe", f)
	}
	return s, nil
}

// confirm runs on the read loop with the reply to Subscribe, before any
// message that follows it is read.
func (s *Subscription) confirm(f *protocols.Frame, abandoned bool) {
	c := s.c
	unsubscribe := false
	c.mu.Lock()
	if c.subs[s.channel] == s {
		if k, ok := f.Kind.(*protocols.Frame_Subscribed); ok && !abandoned {
			s.pos = Position{Epoch: k.Subscribed.GetEpoch(), Offset: k.Subscribed.GetOffset()}
			s.volatile = k.Subscribed.GetVolatile()
			s.lastSeq.Store(s.pos.Offset)
			s.recovered.Store(k.Subscribed.GetRecovered())
			s.mu.Lock()
			s.last = s.pos
			s.mu.Unlock()
			s.active = true
		} else {
			delete(c.subs, s.channel)
			delete(c.aliases, s.alias)
			unsubscribe = ok // subscribed, but nobody waits for it
		}
	}
	c.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })
	if unsubscribe {
		c.log.Debug("client: undoing an abandoned subscribe", "channel", s.channel)
		c.sendUnsubscribe(s.channel)
	}
}

// sendUnsubscribe sends Unsubscribe without waiting for the reply.
func (c *Client) sendUnsubscribe(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closingLocked() {
		return
	}
	id := c.newIDLocked()
	b, err := protocols.EncodeFrame(&protocols.Frame{Id: id, Kind: &protocols.Frame_Unsubscribe{
		Unsubscribe: &protocols.Unsubscribe{Channel: channel},
	}})
	if err != nil {
		return
	}
	c.calls[id] = &call{reply: make(chan *protocols.Frame, 1)}
	c.queue = append(c.queue, outFrame{b: b})
	c.signal()
}

// Recovered reports whether the last subscription (Subscribe with Since,
// or the client's own resubscription after the server ended it) got every
// publication after the position it asked for. False when no position was
// asked for.
func (s *Subscription) Recovered() bool { return s.recovered.Load() }

// Resyncs counts the resubscriptions after which publications were missing
// (the history no longer held them): the application's state may lack
// them and should be fetched anew.
func (s *Subscription) Resyncs() uint64 { return s.resyncs.Load() }

// resubscribe runs on the read loop when the server ended the
// subscription to channel (Unsubscribed with a code): it subscribes again
// from the last message delivered, with recovery, and keeps delivering on
// the same Messages.
func (c *Client) resubscribe(channel string, code uint32, reason string) {
	c.mu.Lock()
	s := c.subs[channel]
	if s == nil || !s.active || s.unsubscribed {
		c.mu.Unlock()
		return
	}
	s.active = false // what arrives until the new Subscribed was not asked for
	again := make(chan struct{})
	s.again = again
	c.mu.Unlock()

	s.mu.Lock()
	since := s.last
	s.mu.Unlock()
	c.log.Debug("client: the server ended a subscription; subscribing again", "channel", channel, "code", code,
		"reason", reason, "since_epoch", since.Epoch, "since_offset", since.Offset)
	sub := &protocols.Subscribe{Channel: channel, Alias: s.alias, Presence: s.events != nil}
	Since(since)(sub)
	_, _, err := c.send(&protocols.Frame{Kind: &protocols.Frame_Subscribe{Subscribe: sub}}, func(f *protocols.Frame, _ bool) {
		k, ok := f.Kind.(*protocols.Frame_Subscribed)
		c.mu.Lock()
		current := c.subs[channel] == s && !s.unsubscribed
		if current && ok {
			s.active = true
		} else if current {
			delete(c.subs, channel)
			delete(c.aliases, s.alias)
		}
		if s.again == again {
			s.again = nil
		}
		close(again) // stream readers waiting for the new subscription go on
		c.mu.Unlock()
		if !current {
			return
		}
		if !ok {
			s.end() // refused: the subscription is over
			return
		}
		s.recovered.Store(k.Subscribed.GetRecovered())
		if !k.Subscribed.GetRecovered() {
			s.resyncs.Add(1)
			s.mu.Lock()
			s.last = Position{Epoch: k.Subscribed.GetEpoch(), Offset: k.Subscribed.GetOffset()}
			s.mu.Unlock()
		}
	}, nil)
	if err != nil {
		c.log.Debug("client: resubscribe failed", "channel", channel, "err", err)
	}
}

// Channel is the subscribed channel's name.
func (s *Subscription) Channel() string { return s.channel }

// Position is the channel's position when the subscription began: the
// first message delivered comes after it.
func (s *Subscription) Position() Position { return s.pos }

// Messages delivers the channel's messages in order. It is closed after
// Unsubscribe or when the client ends.
func (s *Subscription) Messages() <-chan Message { return s.ch }

// Unsubscribe ends the subscription and waits for the server to confirm.
// Messages is closed at once and later messages are dropped, even if ctx
// ends first. Calling it again returns nil.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if s.unsubscribed {
		c.mu.Unlock()
		return nil
	}
	s.unsubscribed = true
	if c.subs[s.channel] == s {
		delete(c.subs, s.channel)
		delete(c.aliases, s.alias)
	}
	c.mu.Unlock()
	s.end()

	f, err := c.roundTrip(ctx, &protocols.Frame{Kind: &protocols.Frame_Unsubscribe{Unsubscribe: &protocols.Unsubscribe{
		Channel: s.channel,
	}}})
	if err != nil {
		return err
	}
	if _, ok := f.Kind.(*protocols.Frame_Unsubscribed); !ok {
		return unexpectedReply("Unsubscribe", f)
	}
	return nil
}

// end closes Messages, first releasing a delivery blocked on it.
func (s *Subscription) end() {
	s.quitOnce.Do(func() { close(s.quit) })
	s.readyOnce.Do(func() { close(s.ready) })
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
	s.mu.Unlock()
}
