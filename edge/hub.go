package edge

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Position is a publication's place in its channel's stream.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Cluster connects a node to the other nodes of its mesh; mesh.Cluster
// satisfies it. Every channel has one owner node that sequences its
// publications and forwards them, encoded once, to the nodes with
// subscribers. A nil Cluster is a node on its own: it owns every channel.
type Cluster interface {
	// IsOwner reports whether this node sequences channel.
	IsOwner(channel string) bool
	// PublishAsync has the channel's owner sequence a publication, with an
	// idempotency key ("" for none), without waiting: done gets the
	// position once (dup: a publish with the same key was applied before),
	// or an error. Calls in one order reach the owner in that order.
	PublishAsync(channel, key string, data []byte, done func(epoch string, offset uint64, dup bool, err error))
	// Register asks, without blocking, for channel's publications to be
	// forwarded here; the mesh answers through Node.Registered, ordered
	// with the deliveries that follow.
	Register(channel string)
	// Unregister withdraws that interest, without blocking.
	Unregister(channel string)
	// Forward sends a publication this node sequenced to every other node
	// with subscribers, without blocking. The hub calls it in sequence
	// order.
	Forward(channel, epoch string, offset uint64, frame []byte)
	// PublishVolatile has the owner of a volatile channel sequence a
	// publication, unreliably and without blocking or answering.
	PublishVolatile(channel string, data []byte)
	// ForwardVolatile sends a volatile publication this node sequenced
	// (its sequence number and Message frame) to every other node with
	// subscribers, unreliably and without blocking.
	ForwardVolatile(channel string, seq uint64, frame []byte)
	// History asks the channel's owner for its position and history.
	History(ctx context.Context, channel string) (epoch string, offset uint64, history []protocols.Publication, err error)
}

// Hub holds the channels of one node and fans publications out to their
// local subscribers. Each publication is encoded once; every subscriber,
// here and on other nodes, gets the same bytes.
//
// Lock order: a shard's mu, then a channel's mu. Session.Send and the
// Cluster's Forward, called under a channel's mu, take only leaf locks.
type Hub struct {
	// immutable after NewHub
	seed     maphash.Seed
	cluster  Cluster // nil: this node owns every channel
	volatile func(string) bool
	history  func(string) (int, time.Duration)
	timeout  time.Duration
	idleTTL  time.Duration
	window   time.Duration // idempotency keys
	// replication (replica.go); rep nil: none
	rep            Replicator
	replicaTimeout time.Duration
	replicaRetry   time.Duration
	log            *slog.Logger
	logRate        protocols.LogLimiter
	repStats       ReplicationStats
	stats          hubStats // for /metrics (metrics.go)
	// presence (presence.go)
	presence           func(string) bool
	presenceEventLimit int
	pc                 PresenceCarrier // nil: presence is this node's alone

	shards [hubShards]hubShard
}

const hubShards = 64

type hubShard struct {
	mu       sync.Mutex
	channels map[string]*channel
}

// channel is the state of one channel on this node.
type channel struct {
	name     string
	volatile bool // publications travel as datagrams: a sequence number, no epoch

	mu        sync.Mutex // guards the fields below
	epoch     string
	offset    uint64           // the last position sequenced or delivered here
	sequencer bool             // this node assigned the current epoch
	used      time.Time        // last publication or subscription
	vseq      uint64           // volatile: the last datagram sequence number
	hist      *history         // the latest publications; nil: none kept
	keys      map[string]keyed // idempotency keys this node sequenced, within the window
	subs      []member
	index     map[protocols.Session]int // position in subs
	// With a cluster: registered is true once publications from the owner
	// flow here (or this node owns the channel); until then subscribers
	// wait in pending.
	registered  bool
	registering bool
	pending     []pendingSub
	gone        bool // removed from its shard; retry lookups

	// Replication (replica.go). As the sequencer: the successor holding
	// our copy ("" none yet: the next publication seeds one), one that
	// stopped answering, and the publications waiting for it.
	succ       string
	succDown   string
	succDownAt time.Time
	unacked    []unacked
	repTimer   *time.Timer
	// As the successor: our copy of the owner's state.
	rep *replica
	// After a hand-off: the new owner, whom publishes go to; former: the
	// channel's fields still hold the state this node sequenced (a
	// candidate if it must take the channel over again).
	movedTo string
	movedAt time.Time
	former  bool
	// A takeover waits for a copy: operations queue until it is in.
	taking bool
	queued []ownerOp
	tried  []string  // successors that did not hold the copy in time, since the last ack
	pres   *presence // nil: the channel keeps no presence

	// Operations sent here by a node that sees this one as the owner
	// before this node does: they wait for its view (awaitOwnership).
	awaiting   []ownerOp
	awaitTimer *time.Timer
}

// keyed is the position an idempotency key got, and when.
type keyed struct {
	pos Position
	at  time.Time
}

// maxAhead is how far a resubscribing client may be ahead of this node
// (in the same epoch, the node still receiving) and be told it recovered.
const maxAhead = 4096

// maxKeys bounds a channel's idempotency keys; past it the expired ones go,
// then the oldest half.
const maxKeys = 1 << 16

// member is one subscription: a session and the alias it gave the
// subscription. The hub fans out to members, not to sessions.
type member struct {
	s      protocols.Session
	alias  uint32
	events bool                  // wants the channel's presence events
	info   *protocols.ClientInfo // the session as a presence member; nil: none
	// skip: the session already has the publications up to this offset
	// (it came from a node that was ahead of this one).
	skip uint64
}

// pendingSub is a subscription waiting for the owner's registration.
type pendingSub struct {
	member
	since *Position // recover from here; nil: no recovery asked
	reply SubscribedFunc
	fail  []byte
}

// SubscribedFunc encodes the reply to a subscription: the position it
// starts after, and whether that is the position the client asked to
// recover from.
type SubscribedFunc func(p Position, recovered bool) []byte

// HubConfig tunes a hub. The zero value is usable.
type HubConfig struct {
	// Cluster is the mesh; nil for a node on its own.
	Cluster Cluster
	// RegisterTimeout fails subscriptions whose channel owner has not
	// answered in time. Zero: 5 s.
	RegisterTimeout time.Duration
	// IdleTTL is how long a channel without subscribers keeps its epoch
	// and offset after its last publication. Zero: 5 minutes.
	IdleTTL time.Duration
	// Volatile reports whether a channel is volatile (its publications
	// travel as datagrams, latest wins). Nil: none is.
	Volatile func(channel string) bool
	// History gives a channel's history size and TTL (size 0: none). Nil:
	// no channel keeps history.
	History func(channel string) (size int, ttl time.Duration)
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered by the node that sequences the channel. Zero: 2 minutes.
	IdempotencyWindow time.Duration
	// Replicas is how many nodes hold each channel's state: 2 (the
	// default) keeps a copy at the channel's successor when the Cluster is
	// a Replicator; 1 keeps none.
	Replicas int
	// ReplicaTimeout is how long publications wait for the successor's
	// copy before they go out without one. Zero: 1 s.
	ReplicaTimeout time.Duration
	// Log gets replication warnings; nil: none.
	Log *slog.Logger
	// Presence reports whether a channel keeps presence (who is in it).
	// Nil: none does.
	Presence func(channel string) bool
	// PresenceEventLimit is the most members a channel may have for its
	// join and leave events to be sent. Zero: 1,000.
	PresenceEventLimit int
}

// NewHub returns an empty hub.
func NewHub(cfg HubConfig) *Hub {
	if cfg.RegisterTimeout <= 0 {
		cfg.RegisterTimeout = 5 * time.Second
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 5 * time.Minute
	}
	if cfg.Volatile == nil {
		cfg.Volatile = func(string) bool { return false }
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = 2 * time.Minute
	}
	if cfg.History == nil {
		cfg.History = func(string) (int, time.Duration) { return 0, 0 }
	}
	if cfg.ReplicaTimeout <= 0 {
		cfg.ReplicaTimeout = time.Second
	}
	h := &Hub{seed: maphash.MakeSeed(), cluster: cfg.Cluster, volatile: cfg.Volatile, history: cfg.History,
		timeout: cfg.RegisterTimeout, idleTTL: cfg.IdleTTL, window: cfg.IdempotencyWindow,
		replicaTimeout: cfg.ReplicaTimeout, replicaRetry: 10 * cfg.ReplicaTimeout, log: cfg.Log}
	if r, ok := cfg.Cluster.(Replicator); ok && cfg.Replicas != 1 {
		h.rep = r
	}
	h.presence = cfg.Presence
	if h.presence == nil {
		h.presence = func(string) bool { return false }
	}
	h.presenceEventLimit = cfg.PresenceEventLimit
	if h.presenceEventLimit <= 0 {
		h.presenceEventLimit = 1000
	}
	h.pc, _ = cfg.Cluster.(PresenceCarrier)
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	return h
}

func (h *Hub) shard(name string) *hubShard {
	return &h.shards[maphash.String(h.seed, name)%hubShards]
}

func (h *Hub) owns(name string) bool { return h.cluster == nil || h.cluster.IsOwner(name) }

// acquire returns the channel locked, creating it when missing.
func (h *Hub) acquire(name string) *channel {
	sh := h.shard(name)
	for {
		sh.mu.Lock()
		ch := sh.channels[name]
		if ch == nil {
			ch = &channel{name: name, volatile: h.volatile(name), index: make(map[protocols.Session]int)}
			if !ch.volatile {
				ch.epoch = newEpoch()
				if size, ttl := h.history(name); size > 0 {
					ch.hist = newHistory(size, ttl)
				}
				if h.presence(name) {
					ch.pres = newPresence()
				}
			}
			// With replication, an owner sequences only once it took the
			// channel over (takeOver): a copy may exist elsewhere.
			ch.sequencer = h.owns(name) && (h.rep == nil || ch.volatile)
			ch.registered = ch.sequencer
			sh.channels[name] = ch
		}
		sh.mu.Unlock()
		ch.mu.Lock()
		if !ch.gone {
			return ch
		}
		ch.mu.Unlock()
	}
}

// lookup returns the channel locked, or nil when it does not exist.
func (h *Hub) lookup(name string) *channel {
	sh := h.shard(name)
	sh.mu.Lock()
	ch := sh.channels[name]
	sh.mu.Unlock()
	if ch == nil {
		return nil
	}
	ch.mu.Lock()
	if ch.gone {
		ch.mu.Unlock()
		return nil
	}
	return ch
}

func newEpoch() string { return protocols.NewID()[:8] }

// idle reports whether ch may be dropped: nobody subscribed or waiting,
// and no position this node assigns that was used within IdleTTL (an
// owner keeps its channels' epoch and offset for the other nodes).
func (h *Hub) idle(ch *channel, now time.Time) bool {
	if h.staleReplica(ch.rep, now) {
		ch.rep = nil
	}
	if len(ch.subs) > 0 || len(ch.pending) > 0 || len(ch.unacked) > 0 || len(ch.awaiting) > 0 || ch.taking || ch.rep != nil || ch.pres.busy() {
		return false
	}
	return !(ch.sequencer || ch.former) || now.Sub(ch.used) > h.idleTTL
}

// dropped is called for a channel removed from its shard (locked): its
// successor forgets its copy.
func (h *Hub) dropped(ch *channel) {
	if ch.succ != "" && h.rep != nil {
		h.rep.Forget(ch.succ, ch.name)
	}
	if ch.repTimer != nil {
		ch.repTimer.Stop()
	}
}

// release unlocks ch and drops it from its shard when idle.
func (h *Hub) release(ch *channel) {
	drop := h.idle(ch, time.Now())
	ch.mu.Unlock()
	if drop {
		h.drop(ch)
	}
}

func (h *Hub) drop(ch *channel) {
	sh := h.shard(ch.name)
	sh.mu.Lock()
	ch.mu.Lock()
	if !ch.gone && h.idle(ch, time.Now()) {
		ch.gone = true
		delete(sh.channels, ch.name)
		h.dropped(ch)
	}
	ch.mu.Unlock()
	sh.mu.Unlock()
}

// Sweep drops channels that have been idle for IdleTTL; the node calls it
// periodically.
func (h *Hub) Sweep() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		now := time.Now()
		for name, ch := range sh.channels {
			ch.mu.Lock()
			if h.idle(ch, now) {
				ch.gone = true
				delete(sh.channels, name)
				h.dropped(ch)
			}
			ch.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// IsVolatile reports whether the channel is volatile.
func (h *Hub) IsVolatile(name string) bool { return h.volatile(name) }

// Subscribe adds s to the channel and queues reply(position, recovered)
// to s before any publication that follows it, so the client sees
// Subscribed first. With since, the publications after since that the
// channel's history holds follow the reply when they are all there
// (recovered); otherwise the subscription starts at the current position.
// With a cluster, the first subscriber of a channel owned elsewhere waits
// until the owner forwards the channel here; fail is queued instead if the
// owner does not answer in time. It reports false if s was already
// subscribed or waiting.
// Deliveries go to s under alias (see protocols.Session.Deliver).
func (h *Hub) Subscribe(name string, s protocols.Session, alias uint32, since *Position, reply SubscribedFunc, fail []byte) bool {
	return h.SubscribeMember(name, s, alias, since, reply, fail, nil, false)
}

// SubscribeMember is Subscribe for a session that is a presence member of
// the channel (info; nil: none) and may want its presence events.
func (h *Hub) SubscribeMember(name string, s protocols.Session, alias uint32, since *Position, reply SubscribedFunc, fail []byte,
	info *protocols.ClientInfo, events bool) bool {
	ch := h.acquire(name)
	if _, ok := ch.index[s]; ok || ch.isPending(s) {
		ch.mu.Unlock()
		return false
	}
	ch.used = time.Now()
	first := len(ch.subs) == 0 && len(ch.pending) == 0
	register := false
	m := member{s: s, alias: alias, events: events && ch.pres != nil, info: info}
	if ch.registered {
		h.logLost(name, ch.admit(m, since, reply, time.Now()))
		h.presenceJoin(ch, m)
	} else {
		ch.pending = append(ch.pending, pendingSub{member: m, since: since, reply: reply, fail: fail})
		if !ch.registering {
			ch.registering = true
			register = true
		}
	}
	h.release(ch)
	if h.cluster != nil && (first || register) {
		// Announce the interest (and ask the owner when it is another
		// node); the answer arrives through Registered.
		h.cluster.Register(name)
		if register {
			time.AfterFunc(h.timeout, func() { h.registerTimedOut(name) })
		}
	}
	return true
}

// admit adds m and queues its Subscribed, then, when since is given and
// the history holds everything after it, the publications after since.
func (ch *channel) admit(m member, since *Position, reply SubscribedFunc, now time.Time) (lost string) {
	if since != nil && !ch.volatile && !ch.sequencer && since.Epoch != "" && since.Epoch == ch.epoch &&
		since.Offset > ch.offset && since.Offset-ch.offset <= maxAhead {
		// The client saw more than this node has yet (it comes from a
		// node that was ahead): what it saw is on its way here. It
		// starts from its own position; those it has are not sent again.
		m.skip = since.Offset
		ch.add(m)
		_ = m.s.Reply(reply(*since, true))
		return ""
	}
	ch.add(m)
	if since != nil && !ch.volatile && since.Epoch == "" && since.Offset == 0 {
		// A newcomer asks for what the history holds: all of it, then the
		// live stream; recovered when that is the channel from its start.
		kept := ch.kept(now)
		start := ch.out() - uint64(len(kept))
		if ch.replay(m, reply(Position{Epoch: ch.epoch, Offset: start}, start == 0), kept) {
			return ""
		}
	} else if since != nil && !ch.volatile && since.Epoch == ch.epoch {
		var missed []entry
		ok := since.Offset == ch.out()
		if !ok && ch.hist != nil && since.Offset < ch.out() {
			missed, ok = ch.hist.after(since.Offset, ch.out(), now)
		}
		if ok && ch.replay(m, reply(*since, true), missed) {
			return ""
		}
	}
	_ = m.s.Reply(reply(ch.position(), false))
	if since == nil || ch.volatile || (since.Epoch == "" && since.Offset == 0) {
		return ""
	}
	ring := "no history"
	if ch.hist != nil && ch.hist.n > 0 {
		ring = fmt.Sprintf("history %d..%d", ch.hist.at(0).offset, ch.hist.at(ch.hist.n-1).offset)
	} else if ch.hist != nil {
		ring = "history empty"
	}
	return fmt.Sprintf("asked after %s:%d, here %s:%d (out %d, %s, sequencer %v)", since.Epoch, since.Offset, ch.epoch, ch.offset, ch.out(), ring, ch.sequencer)
}

// logLost logs, rate-limited, why a subscription could not recover.
func (h *Hub) logLost(name, lost string) {
	if lost != "" && h.log != nil && h.logRate.Allow("lost:"+name, time.Second) {
		h.log.Info("subscription not recovered", "channel", name, "why", lost)
	}
}

// replay queues ack (the Subscribed that announces them) and kept
// publications to m, the publications at once past the session's frame
// limit when it can take a backlog. It reports false, having queued
// nothing, when the session cannot take that backlog (too many bytes at
// once): the subscription then starts at the current position instead, and
// the session goes on.
func (ch *channel) replay(m member, ack []byte, es []entry) bool {
	if bd, ok := m.s.(protocols.BacklogDeliverer); ok && len(es) > 1 {
		frames := make([][]byte, len(es))
		for i, e := range es {
			frames[i] = e.frame
		}
		return bd.DeliverBacklog(m.alias, ack, frames)
	}
	_ = m.s.Reply(ack)
	for _, e := range es {
		_ = m.s.Deliver(m.alias, e.frame)
	}
	return true
}

// endAll ends every subscription of the channel on this node, because
// publications were lost on the way here and the history cannot fill the
// gap: each session gets Unsubscribed with CodeMissedMessages (and
// resubscribes with its position, to recover what can be). The session
// stays up. It returns the members, whose deliveries the caller ends once
// the channel is unlocked.
func (ch *channel) endAll() []member {
	ended := ch.subs
	frame := protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Unsubscribed{Unsubscribed: &protocols.Unsubscribed{
		Channel: ch.name, Code: uint32(protocols.CodeMissedMessages),
		Reason: "publications were lost on the way to this node: subscribe again with your position to recover",
	}}})
	for _, m := range ended {
		_ = m.s.Reply(frame)
	}
	ch.subs = nil
	clear(ch.index)
	return ended
}

// endDeliveries ends the deliveries of subscriptions the hub ended (their
// streams, on WebTransport); called without any lock.
func endDeliveries(ended []member) {
	for _, m := range ended {
		m.s.EndDeliveries(m.alias)
	}
}

func (ch *channel) isPending(s protocols.Session) bool {
	for _, p := range ch.pending {
		if p.s == s {
			return true
		}
	}
	return false
}

func (ch *channel) add(m member) {
	ch.index[m.s] = len(ch.subs)
	ch.subs = append(ch.subs, m)
}

// position is where a subscriber starts: for a volatile channel, no epoch
// and the last sequence number.
func (ch *channel) position() Position {
	if ch.volatile {
		return Position{Offset: ch.vseq}
	}
	return Position{Epoch: ch.epoch, Offset: ch.out()}
}

// out is the last offset out to subscribers: ch.offset less the
// publications still waiting for the successor's copy.
func (ch *channel) out() uint64 { return ch.offset - uint64(len(ch.unacked)) }

// kept returns the history's publications up to ch.out(), oldest first.
func (ch *channel) kept(now time.Time) []entry {
	if ch.hist == nil {
		return nil
	}
	es := ch.hist.latest(0, now)
	out := ch.out()
	for len(es) > 0 && es[len(es)-1].offset > out {
		es = es[:len(es)-1]
	}
	return es
}

// remove takes s out of subs or pending; it reports whether s was there.
func (ch *channel) remove(s protocols.Session) bool {
	if i, ok := ch.index[s]; ok {
		last := len(ch.subs) - 1
		ch.subs[i] = ch.subs[last]
		ch.index[ch.subs[i].s] = i
		ch.subs[last] = member{}
		ch.subs = ch.subs[:last]
		delete(ch.index, s)
		return true
	}
	for i, p := range ch.pending {
		if p.s == s {
			ch.pending = append(ch.pending[:i], ch.pending[i+1:]...)
			return true
		}
	}
	return false
}

// registerTimedOut fails the subscriptions still waiting for the owner.
func (h *Hub) registerTimedOut(name string) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	if ch.registered || len(ch.pending) == 0 {
		h.release(ch)
		return
	}
	for _, p := range ch.pending {
		_ = p.s.Reply(p.fail)
	}
	ch.pending = nil
	ch.registering = false
	unregister := len(ch.subs) == 0
	h.release(ch)
	if unregister {
		h.cluster.Unregister(name)
	}
}

// Registered records that the owner forwards the channel here from the
// given position on, with its history up to there, and admits the
// subscriptions that waited for it. When publications were lost since the
// last registration (a link reset), the history fills the gap for the
// subscribers here, or, if it cannot, their subscriptions end (endAll).
func (h *Hub) Registered(name, epoch string, offset uint64, hist []protocols.Publication) {
	ch := h.lookup(name)
	if ch == nil {
		return // everyone left before the owner answered
	}
	now := time.Now()
	var ended []member
	if ch.volatile {
		ch.vseq = max(ch.vseq, offset)
	} else if !(ch.sequencer && h.owns(name)) {
		if ch.registered && !ch.sequencer && epoch == ch.epoch && offset > ch.offset {
			// A new registration with the same owner starts past what was
			// delivered here: the publications between were lost.
			if fill := missing(hist, ch.offset, offset); fill != nil {
				for _, p := range fill {
					for _, m := range ch.subs {
						if p.Offset > m.skip {
							_ = m.s.Deliver(m.alias, p.Frame)
						}
					}
				}
			} else {
				ended = ch.endAll()
			}
		} else if ch.registered && epoch != ch.epoch && len(ch.subs) > 0 {
			// The owner's copy does not continue what was delivered
			// here: tell the subscribers (they resubscribe and learn).
			ended = ch.endAll()
		}
		if ch.hist != nil {
			ch.hist.reset()
			for _, p := range hist {
				if p.Offset <= offset {
					ch.hist.add(p.Offset, p.Frame, now)
				}
			}
		}
		ch.epoch, ch.offset, ch.sequencer = epoch, offset, false
	}
	ch.registered, ch.registering = true, false
	h.presenceSync(ch) // the owner may be new: all of this node's members so far
	for _, p := range ch.pending {
		h.logLost(name, ch.admit(p.member, p.since, p.reply, now))
		h.presenceJoin(ch, p.member)
	}
	ch.pending = nil
	h.releaseEnded(ch, ended)
}

// releaseEnded unlocks ch after endAll ended the subscriptions in ended:
// it ends their deliveries and, if nobody is left, withdraws the interest,
// so that the next subscriber registers afresh and gets the owner's
// history with the registration.
func (h *Hub) releaseEnded(ch *channel, ended []member) {
	h.stats.resync(len(ended))
	unregister := len(ended) > 0 && len(ch.subs) == 0 && len(ch.pending) == 0 && h.cluster != nil
	if unregister {
		ch.registered, ch.registering = false, false
	}
	name := ch.name
	h.release(ch)
	endDeliveries(ended)
	if unregister {
		h.cluster.Unregister(name)
	}
}

// missing returns the publications of hist with offsets after..upto, if
// hist holds all of them, else nil.
func missing(hist []protocols.Publication, after, upto uint64) []protocols.Publication {
	for i, p := range hist {
		if p.Offset == after+1 {
			run := hist[i:]
			if uint64(len(run)) >= upto-after && run[upto-after-1].Offset == upto {
				return run[:upto-after]
			}
			return nil
		}
	}
	return nil
}

// Unsubscribe removes s from the channel and queues reply, after which s
// gets no publication of the channel. It reports false if s was not
// subscribed. reply may be nil.
func (h *Hub) Unsubscribe(name string, s protocols.Session, reply []byte) bool {
	ch := h.lookup(name)
	if ch == nil {
		return false
	}
	h.presenceLeave(ch, s)
	if !ch.remove(s) {
		h.release(ch)
		return false
	}
	if reply != nil {
		_ = s.Reply(reply)
	}
	last := len(ch.subs) == 0 && len(ch.pending) == 0
	if last {
		ch.registered, ch.registering = ch.sequencer && h.owns(name), false
	}
	h.release(ch)
	if last && h.cluster != nil {
		h.cluster.Unregister(name)
	}
	return true
}

// Publish publishes data on the channel and waits for its position: here
// when this node owns it, else through the owner. key, when set, makes it
// idempotent (dup: applied before, pos is that publication's). Sends never
// block: a subscriber whose queue is full is closed as a slow consumer by
// its session.
func (h *Hub) Publish(ctx context.Context, name, key string, data []byte) (pos Position, dup bool, err error) {
	type result struct {
		pos Position
		dup bool
		err error
	}
	done := make(chan result, 1)
	h.PublishAsync(name, key, data, func(p Position, dup bool, err error) { done <- result{p, dup, err} })
	select {
	case r := <-done:
		return r.pos, r.dup, r.err
	case <-ctx.Done():
		return Position{}, false, ctx.Err()
	}
}

// PublishAsync is Publish without waiting: done gets the answer once, when
// the publication is sequenced (and, with replication, held by the
// channel's successor), here when this node owns the channel, else through
// the owner. Publishes in one order are sequenced in that order.
func (h *Hub) PublishAsync(name, key string, data []byte, done func(Position, bool, error)) {
	if !h.owns(name) {
		h.cluster.PublishAsync(name, key, data, func(epoch string, offset uint64, dup bool, err error) {
			done(Position{Epoch: epoch, Offset: offset}, dup, err)
		})
		return
	}
	h.SequenceAsync(name, key, data, done)
}

// PublishDatagram publishes on a volatile channel without waiting: here
// when this node owns the channel, else it goes to the owner unreliably.
func (h *Hub) PublishDatagram(name string, data []byte) {
	if h.owns(name) {
		h.Sequence(name, data)
		return
	}
	h.cluster.PublishVolatile(name, data)
}

// Sequence assigns the next position in the channel as its owner, queues
// the encoded message to every local subscriber and forwards it to the
// other nodes with subscribers, and waits for that (with replication, until
// the channel's successor holds it).
func (h *Hub) Sequence(name string, data []byte) Position {
	p, _ := h.SequenceKeyed(name, "", data)
	return p
}

// SequenceKeyed is Sequence with an idempotency key ("" for none): a key
// this node sequenced for the channel within the window is not applied
// again; its first position is returned with dup true.
func (h *Hub) SequenceKeyed(name, key string, data []byte) (Position, bool) {
	if h.rep == nil {
		// No copy to wait for: answered at once, here or by the owner.
		if ch := h.acquire(name); ch.sequencer && !ch.volatile {
			pos, dup, _, after := h.sequenceLocked(ch, key, data, nil)
			h.release(ch)
			runAll(after)
			return pos, dup
		} else {
			h.release(ch)
		}
	}
	type result struct {
		pos Position
		dup bool
	}
	done := make(chan result, 1)
	h.SequenceAsync(name, key, data, func(p Position, dup bool, _ error) { done <- result{p, dup} })
	r := <-done
	return r.pos, r.dup
}

// SequenceAsync sequences a publication as the channel's owner (see
// SequenceKeyed); done gets the answer once it is out, in sequence order.
// A node that handed the channel to another passes the publish on to it.
func (h *Hub) SequenceAsync(name, key string, data []byte, done func(Position, bool, error)) {
	ch := h.acquire(name)
	if ch.volatile {
		p := h.sequenceVolatile(ch, data)
		done(p, false, nil)
		return
	}
	if !ch.sequencer && h.handedOn(ch) {
		via := ch.movedTo
		ch.used = time.Now()
		h.release(ch)
		h.rep.PublishVia(via, name, key, data, func(epoch string, offset uint64, dup bool, err error) {
			done(Position{Epoch: epoch, Offset: offset}, dup, err)
		})
		return
	}
	if ch.sequencer {
		pos, dup, now, after := h.sequenceLocked(ch, key, data, done)
		h.release(ch)
		if now {
			done(pos, dup, nil)
		}
		runAll(after)
		return
	}
	op := func(ch *channel) []func() {
		pos, dup, now, after := h.sequenceLocked(ch, key, data, done)
		if now {
			after = append(after, func() { done(pos, dup, nil) })
		}
		return after
	}
	a := ownerOp{run: op,
		expire: func(*channel) []func() {
			// Still not the owner here: pass it on to the one this node sees.
			return []func(){func() { h.PublishAsync(name, key, data, done) }}
		},
		fail: func(*channel) []func() {
			return []func(){func() { done(Position{}, false, errMoving) }}
		}}
	after := h.asOwner(ch, a)
	h.release(ch)
	runAll(after)
}

// asOwner runs op on ch as its sequencer: at once when it is, after a
// takeover when this node owns ch, or, with replication, once this node's
// view makes it the owner (a node that sees this one as the owner sent
// the request first); expire runs instead if that does not happen within
// the replica timeout. Locked; returns work for after unlock.
func (h *Hub) asOwner(ch *channel, a ownerOp) []func() {
	switch {
	case ch.sequencer:
		return a.run(ch)
	case h.owns(ch.name):
		ready, after := h.takeOver(ch, a)
		if ready {
			after = append(after, a.run(ch)...)
		}
		return after
	case h.rep == nil:
		return a.run(ch) // no replication: as the sender sees it
	}
	a.until = time.Now().Add(h.replicaTimeout)
	ch.awaiting = append(ch.awaiting, a)
	if ch.awaitTimer == nil {
		name := ch.name
		ch.awaitTimer = time.AfterFunc(h.replicaTimeout, func() { h.awaitExpired(name) })
	} else if len(ch.awaiting) == 1 {
		ch.awaitTimer.Reset(h.replicaTimeout)
	}
	return nil
}

// sequenceLocked sequences a publication on ch, this node being its
// sequencer; it returns the callbacks to run once ch is unlocked. Locked.
//
// It reports the position at once (now) when the publication is out, or
// leaves done to be called when its copy is held (with replication).
func (h *Hub) sequenceLocked(ch *channel, key string, data []byte, done func(Position, bool, error)) (pos Position, dup, now bool, after []func()) {
	t := time.Now()
	ch.used = t
	if key != "" {
		if k, ok := ch.keys[key]; ok && t.Sub(k.at) <= h.window && k.pos.Epoch == ch.epoch {
			for i := range ch.unacked { // not out yet: answer with it
				if u := &ch.unacked[i]; u.offset == k.pos.Offset {
					u.done, u.dups = append(u.done, done), append(u.dups, true)
					return Position{}, false, false, nil
				}
			}
			return k.pos, true, true, nil
		}
	}
	ch.offset++
	pos = Position{Epoch: ch.epoch, Offset: ch.offset}
	if key != "" {
		ch.remember(key, pos, t, h.window)
	}
	if len(ch.subs) == 0 && h.cluster == nil && ch.hist == nil {
		return pos, false, true, nil
	}
	frame := protocols.EncodeMessage(ch.name, pos.Epoch, pos.Offset, data)
	if ch.hist != nil {
		ch.hist.add(pos.Offset, frame, t)
	}
	if h.replicating(ch) && (h.replicate(ch, key, frame, t) || len(ch.unacked) > 0) {
		// Out once the successor holds it (ReplicaAcked), after those
		// before it.
		if len(ch.unacked) == 0 {
			h.armReplicaTimer(ch)
		}
		ch.unacked = append(ch.unacked, unacked{offset: pos.Offset, frame: frame, at: t,
			done: []func(Position, bool, error){done}, dups: []bool{false}})
		if ch.succ == "" { // nobody to wait for any more: out with those before it
			return Position{}, false, false, h.releaseUpTo(ch, ch.offset)
		}
		return Position{}, false, false, nil
	}
	for _, m := range ch.subs {
		_ = m.s.Deliver(m.alias, frame)
	}
	h.stats.delivered(t, len(ch.subs))
	if h.cluster != nil {
		h.cluster.Forward(ch.name, pos.Epoch, pos.Offset, frame)
	}
	return pos, false, true, nil
}

// remember records an idempotency key's position, keeping at most maxKeys.
func (ch *channel) remember(key string, pos Position, now time.Time, window time.Duration) {
	if ch.keys == nil {
		ch.keys = make(map[string]keyed)
	}
	if len(ch.keys) >= maxKeys {
		pruneKeys(ch.keys, now, window)
	}
	ch.keys[key] = keyed{pos: pos, at: now}
}

// pruneKeys drops the expired keys, then, if still full, half of them at
// random.
func pruneKeys(keys map[string]keyed, now time.Time, window time.Duration) {
	for k, v := range keys {
		if now.Sub(v.at) > window {
			delete(keys, k)
		}
	}
	for k := range keys {
		if len(keys) < maxKeys/2 {
			break
		}
		delete(keys, k)
	}
}

// Deliver hands a publication sequenced by the channel's owner on another
// node to the local subscribers, and keeps it in the channel's history. A
// publication that skips offsets of the current epoch means some were lost
// on the way (a link reset): the local subscriptions end with
// CodeMissedMessages (endAll), to recover what the history holds when
// they subscribe again, rather than silently miss them.
func (h *Hub) Deliver(name, epoch string, offset uint64, frame []byte) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	if ch.volatile {
		h.deliverVolatile(ch, offset, frame)
		return
	}
	var ended []member
	if epoch == ch.epoch && !ch.sequencer {
		if offset <= ch.offset {
			ch.mu.Unlock() // already delivered (or before our registration)
			return
		}
		if offset != ch.offset+1 {
			ended = ch.endAll()
		}
	} else if epoch != ch.epoch {
		if ch.registered && len(ch.subs) > 0 {
			ended = ch.endAll() // a new epoch: the subscribers must learn it
		}
		if ch.hist != nil {
			ch.hist.reset()
		}
	}
	ch.epoch, ch.offset, ch.sequencer = epoch, offset, false
	if ch.hist != nil {
		ch.hist.add(offset, frame, time.Now()) // after a gap, add starts the ring anew
	}
	for _, m := range ch.subs {
		if offset > m.skip {
			_ = m.s.Deliver(m.alias, frame)
		}
	}
	h.releaseEnded(ch, ended)
}

// sequenceVolatile numbers a publication of a volatile channel (locked)
// and hands it to every subscription: no history, no gap checks, latest
// wins. It unlocks ch.
func (h *Hub) sequenceVolatile(ch *channel, data []byte) Position {
	ch.vseq++
	ch.used = time.Now()
	ch.sequencer = true // keeps the count for IdleTTL, like an epoch
	pos := Position{Offset: ch.vseq}
	if len(ch.subs) > 0 || h.cluster != nil {
		frame := protocols.EncodeMessage(ch.name, "", ch.vseq, data)
		h.fanOutVolatile(ch, protocols.Volatile{Seq: ch.vseq, Data: data, Frame: frame})
		if h.cluster != nil {
			h.cluster.ForwardVolatile(ch.name, ch.vseq, frame)
		}
	}
	h.release(ch)
	return pos
}

func (h *Hub) fanOutVolatile(ch *channel, v protocols.Volatile) {
	for _, m := range ch.subs {
		v.Alias = m.alias
		m.s.DeliverVolatile(v)
	}
}

// deliverVolatile hands a volatile publication sequenced on another node
// (its Message frame) to the local subscribers.
func (h *Hub) deliverVolatile(ch *channel, seq uint64, frame []byte) {
	defer h.release(ch)
	body, _, err := protocols.NextFrame(frame, len(frame))
	if err != nil {
		return
	}
	f, err := protocols.DecodeFrame(body)
	if err != nil || f.GetMessage() == nil {
		return
	}
	ch.vseq = max(ch.vseq, seq)
	h.fanOutVolatile(ch, protocols.Volatile{Seq: seq, Data: f.GetMessage().Data, Frame: frame})
}

// Hold runs fn with the channel's position and history while no
// publication of it can be sequenced here. A node that owns the channel
// takes it over first (with replication, that may wait for a copy from
// another node): Hold returns once fn ran.
//
// When the takeover cannot complete (no copy could be had yet), fn gets
// what this node holds, unchanged: Hold never waits for long.
func (h *Hub) Hold(name string, fn func(epoch string, offset uint64, history []protocols.Publication)) {
	ran := make(chan struct{})
	h.holdFor(name, "", 0, func(e string, o uint64, hist []protocols.Publication) {
		fn(e, o, hist)
		close(ran)
	}, true)
	<-ran
}

// HoldFor is Hold for a node registering with this owner, which last saw
// the channel at (epoch, offset), without waiting: fn may run later, on
// another goroutine, once the takeover it waits for is done. A node ahead
// of this owner in the same epoch means the copies disagree: the owner
// starts a new epoch, and every subscriber is told (endAll) rather than
// left with publications numbered twice.
func (h *Hub) HoldFor(name, epoch string, offset uint64, fn func(epoch string, offset uint64, history []protocols.Publication)) {
	h.holdFor(name, epoch, offset, fn, false)
}

// holdFor is HoldFor; with always, fn runs even when this node cannot
// sequence the channel yet (with what it holds), else it is dropped then.
func (h *Hub) holdFor(name, epoch string, offset uint64, fn func(epoch string, offset uint64, history []protocols.Publication), always bool) {
	ch := h.acquire(name)
	asIs := func(ch *channel) []func() {
		pos := ch.position()
		var hist []protocols.Publication
		for _, e := range ch.kept(time.Now()) {
			hist = append(hist, protocols.Publication{Offset: e.offset, Frame: e.frame})
		}
		fn(pos.Epoch, pos.Offset, hist)
		return nil
	}
	otherwise := noOp
	if always {
		otherwise = asIs
	}
	op := func(ch *channel) []func() {
		var after []func()
		if ch.sequencer && !ch.volatile && epoch == ch.epoch && offset > ch.offset {
			h.repStats.Resyncs.Add(1)
			if h.log != nil && h.logRate.Allow("disagree:"+name, 10*time.Second) {
				h.log.Warn("a node is ahead of this owner: new epoch", "channel", name, "epoch", epoch,
					"its_offset", offset, "our_offset", ch.offset)
			}
			after = h.install(ch, nil)
		}
		ch.used = time.Now()
		pos := ch.position()
		var hist []protocols.Publication
		for _, e := range ch.kept(ch.used) {
			hist = append(hist, protocols.Publication{Offset: e.offset, Frame: e.frame})
		}
		fn(pos.Epoch, pos.Offset, hist)
		return after
	}
	var after []func()
	switch {
	case ch.sequencer || ch.volatile || h.rep == nil:
		after = h.asOwner(ch, ownerOp{run: op, expire: otherwise, fail: otherwise})
	case h.handedOn(ch):
		// Handed on: this node's position is no longer the channel's. The
		// registrant asks again (and finds the new owner once its view
		// has it) rather than start from a made-up position.
		after = otherwise(ch)
	default:
		// Unanswered when this node does not become the owner (or cannot
		// get the channel's copy yet): the registrant asks again.
		after = h.asOwner(ch, ownerOp{run: op, expire: otherwise, fail: otherwise})
	}
	h.release(ch)
	runAll(after)
}

// Position is the channel's position as this node last saw it (ok false:
// it has none), for a registration with the channel's owner.
func (h *Hub) Position(name string) (epoch string, offset uint64, ok bool) {
	ch := h.lookup(name)
	if ch == nil {
		return "", 0, false
	}
	defer ch.mu.Unlock()
	if ch.volatile || !(ch.registered || ch.sequencer) {
		return "", 0, false
	}
	return ch.epoch, ch.offset, true
}

// History returns the channel's kept publications, oldest first, with its
// position, as selectHistory picks them (limit 0: all).
func (h *Hub) History(name string, since *Position, limit int) (pos Position, pubs []protocols.Publication, complete bool) {
	ch := h.lookup(name)
	if ch == nil {
		return Position{}, nil, since == nil
	}
	defer ch.mu.Unlock()
	pos = ch.position()
	var hist []protocols.Publication
	if ch.hist != nil {
		for _, e := range ch.hist.latest(0, time.Now()) {
			hist = append(hist, protocols.Publication{Offset: e.offset, Frame: e.frame})
		}
	} else if since == nil {
		return pos, nil, false // this channel keeps no history
	}
	pubs, complete = selectHistory(pos, hist, since, limit)
	return pos, pubs, complete
}

// IsMember reports whether s is subscribed to the channel (or waiting).
func (h *Hub) IsMember(name string, s protocols.Session) bool {
	ch := h.lookup(name)
	if ch == nil {
		return false
	}
	defer ch.mu.Unlock()
	_, ok := ch.index[s]
	return ok || ch.isPending(s)
}

// Channels lists the channels with local subscribers (or subscribers
// waiting for the owner).
func (h *Hub) Channels() []string {
	var out []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, ch := range sh.channels {
			ch.mu.Lock()
			if len(ch.subs) > 0 || len(ch.pending) > 0 {
				out = append(out, name)
			}
			ch.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	return out
}

// Subscribers returns how many sessions are subscribed to the channel.
func (h *Hub) Subscribers(name string) int {
	ch := h.lookup(name)
	if ch == nil {
		return 0
	}
	defer ch.mu.Unlock()
	return len(ch.subs)
}

// ChannelCount returns how many channels the hub holds.
func (h *Hub) ChannelCount() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		n += len(sh.channels)
		sh.mu.Unlock()
	}
	return n
}
