package edge

import (
	"hash/maphash"
	"sync"

	"github.com/switchyard/switchyard/protocols"
)

// Position is a publication's place in its channel's stream.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Hub holds the channels of one node and fans publications out to their
// subscribers. Each publication is encoded once; every subscriber gets the
// same bytes.
//
// Lock order: a shard's mu, then a channel's mu. Session.Send takes the
// session's own lock, which is a leaf.
type Hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
}

const hubShards = 64

type hubShard struct {
	mu       sync.Mutex
	channels map[string]*channel
}

// channel is the state of one channel with local subscribers.
type channel struct {
	name  string
	epoch string // immutable

	mu     sync.Mutex // guards the fields below
	offset uint64
	subs   []protocols.Session
	index  map[protocols.Session]int // position in subs
	gone   bool                      // removed from its shard; retry lookups
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	return h
}

func (h *Hub) shard(name string) *hubShard {
	return &h.shards[maphash.String(h.seed, name)%hubShards]
}

// acquire returns the channel locked, creating it when missing.
func (h *Hub) acquire(name string) *channel {
	sh := h.shard(name)
	for {
		sh.mu.Lock()
		ch := sh.channels[name]
		if ch == nil {
			ch = &channel{name: name, epoch: protocols.NewID()[:8], index: make(map[protocols.Session]int)}
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

// release unlocks ch and drops it from its shard when nobody is subscribed.
func (h *Hub) release(ch *channel) {
	empty := len(ch.subs) == 0
	ch.mu.Unlock()
	if !empty {
		return
	}
	sh := h.shard(ch.name)
	sh.mu.Lock()
	ch.mu.Lock()
	if len(ch.subs) == 0 && !ch.gone {
		ch.gone = true
		delete(sh.channels, ch.name)
	}
	ch.mu.Unlock()
	sh.mu.Unlock()
}

// Subscribe adds s to the channel and queues reply(position) to s before
// any publication that follows it, so the client sees Subscribed first.
// It reports false if s was already subscribed.
func (h *Hub) Subscribe(name string, s protocols.Session, reply func(Position) []byte) bool {
	ch := h.acquire(name)
	defer h.release(ch)
	if _, ok := ch.index[s]; ok {
		return false
	}
	ch.index[s] = len(ch.subs)
	ch.subs = append(ch.subs, s)
	_ = s.Send(reply(Position{Epoch: ch.epoch, Offset: ch.offset}))
	return true
}

// Unsubscribe removes s from the channel and queues reply, after which s
// gets no publication of the channel. It reports false if s was not
// subscribed. reply may be nil.
func (h *Hub) Unsubscribe(name string, s protocols.Session, reply []byte) bool {
	sh := h.shard(name)
	sh.mu.Lock()
	ch := sh.channels[name]
	sh.mu.Unlock()
	if ch == nil {
		return false
	}
	ch.mu.Lock()
	i, ok := ch.index[s]
	if !ok || ch.gone {
		ch.mu.Unlock()
		return false
	}
	last := len(ch.subs) - 1
	ch.subs[i] = ch.subs[last]
	ch.index[ch.subs[i]] = i
	ch.subs[last] = nil
	ch.subs = ch.subs[:last]
	delete(ch.index, s)
	if reply != nil {
		_ = s.Send(reply)
	}
	h.release(ch)
	return true
}

// Publish assigns the next offset in the channel and queues the encoded
// message to every subscriber. Sends never block: a subscriber whose queue
// is full is closed as a slow consumer by its session.
func (h *Hub) Publish(name string, data []byte) Position {
	ch := h.acquire(name)
	ch.offset++
	pos := Position{Epoch: ch.epoch, Offset: ch.offset}
	if len(ch.subs) > 0 {
		frame := protocols.EncodeMessage(name, pos.Epoch, pos.Offset, data)
		for _, s := range ch.subs {
			_ = s.Send(frame)
		}
	}
	h.release(ch)
	return pos
}

// Subscribers returns how many sessions are subscribed to the channel.
func (h *Hub) Subscribers(name string) int {
	sh := h.shard(name)
	sh.mu.Lock()
	ch := sh.channels[name]
	sh.mu.Unlock()
	if ch == nil {
		return 0
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.subs)
}

// Channels returns how many channels have subscribers.
func (h *Hub) Channels() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		n += len(sh.channels)
		sh.mu.Unlock()
	}
	return n
}
