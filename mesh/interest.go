package mesh

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
)

// Interest gossip.
//
// Each node owns the set of channels it has local subscribers for and a
// version that grows with every change (it starts at the Unix time in
// nanoseconds, so a restarted node outranks its former self). A change goes
// out as a delta (node, version, channel, present) in a memberlist
// broadcast; push/pull carries every view this node knows. Both are
// protobuf messages (GossipDelta, GossipState in mesh/proto/gossip.proto;
// the encoding is at the end of this file).
//
// A view of node N is (base, entries): entries map a channel to the
// version of its latest known change and whether it is present (absent
// entries are tombstones); a channel without an entry was absent as of
// base. Merging is last-writer-wins per (node, channel) by version, and a
// view at base B removes the channels missing from it whose version is at
// most B. Old news never overwrites new: a change is applied only if its
// version is above both the entry's and (for a missing entry) the base.
// Tombstones at or below base are forgotten.
//
// The routing table (channel → nodes) is updated with every change and
// also holds the registrations this node received as a channel's owner.

type entry struct {
	version uint64
	present bool
}

type nodeView struct {
	base    uint64
	entries map[string]entry
	seen    time.Time // when the view was created, to prune strangers
}

// delta is one change of one node's interest.
type delta struct {
	node    string
	version uint64
	channel string
	present bool
}

// Route bits: why a node is a target of a channel.
const (
	routeGossip     = 1 << iota // the node's gossiped interest
	routeRegistered             // the node registered with us (we own the channel)
)

// interest is the versioned interest state and routing table of a node.
type interest struct {
	self string // immutable

	mu      sync.RWMutex
	version uint64                         // our own version
	views   map[string]*nodeView           // by node name, ours included
	left    map[string]time.Time           // nodes that died or left: their views are ignored until they join again
	routes  map[string]map[string]uint8    // channel → node → route bits
	regs    map[string]map[string]struct{} // node → channels it registered with us
}

func newInterest(self string, now time.Time) *interest {
	in := &interest{
		self:    self,
		version: uint64(now.UnixNano()),
		views:   make(map[string]*nodeView),
		left:    make(map[string]time.Time),
		routes:  make(map[string]map[string]uint8),
		regs:    make(map[string]map[string]struct{}),
	}
	in.views[self] = &nodeView{base: in.version, entries: make(map[string]entry), seen: now}
	return in
}

// setLocal records our own interest in channel and returns the delta to
// broadcast, or false if nothing changed.
func (in *interest) setLocal(channel string, present bool) (delta, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	v := in.views[in.self]
	if _, ok := v.entries[channel]; ok == present {
		return delta{}, false
	}
	in.version++
	v.base = in.version
	if present {
		v.entries[channel] = entry{version: in.version, present: true}
	} else {
		delete(v.entries, channel)
	}
	in.setRouteLocked(channel, in.self, routeGossip, present)
	return delta{node: in.self, version: in.version, channel: channel, present: present}, true
}

// applyDelta merges a change heard by gossip; it reports whether it was
// news (and should be passed on).
func (in *interest) applyDelta(d delta, now time.Time) bool {
	if d.node == in.self || d.node == "" {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, gone := in.left[d.node]; gone {
		return false
	}
	v := in.viewLocked(d.node, now)
	if e, ok := v.entries[d.channel]; ok {
		if e.version >= d.version {
			return false
		}
	} else if d.version <= v.base {
		return false
	}
	v.entries[d.channel] = entry{version: d.version, present: d.present}
	in.setRouteLocked(d.channel, d.node, routeGossip, d.present)
	return true
}

// stateView is one node's view in a full state.
type stateView struct {
	node    string
	base    uint64
	entries []stateEntry
}

type stateEntry struct {
	channel string
	entry
}

// applyView merges a full view of one node and returns the changes of
// presence it caused (to pass on as deltas).
func (in *interest) applyView(sv stateView, now time.Time) []delta {
	if sv.node == in.self || sv.node == "" {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, gone := in.left[sv.node]; gone {
		return nil
	}
	v := in.viewLocked(sv.node, now)
	var changes []delta
	var listed map[string]struct{}
	if sv.base > v.base {
		listed = make(map[string]struct{}, len(sv.entries))
	}
	for _, se := range sv.entries {
		if listed != nil {
			listed[se.channel] = struct{}{}
		}
		old, ok := v.entries[se.channel]
		if ok && old.version >= se.version || !ok && se.version <= v.base {
			continue
		}
		v.entries[se.channel] = se.entry
		if old.present != se.present {
			in.setRouteLocked(se.channel, sv.node, routeGossip, se.present)
			changes = append(changes, delta{node: sv.node, version: se.version, channel: se.channel, present: se.present})
		}
	}
	if listed != nil {
		for ch, e := range v.entries {
			if _, ok := listed[ch]; ok || e.version > sv.base {
				continue
			}
			delete(v.entries, ch)
			if e.present {
				in.setRouteLocked(ch, sv.node, routeGossip, false)
				changes = append(changes, delta{node: sv.node, version: sv.base, channel: ch, present: false})
			}
		}
		v.base = sv.base
		for ch, e := range v.entries {
			if !e.present && e.version <= v.base {
				delete(v.entries, ch)
			}
		}
	}
	return changes
}

func (in *interest) viewLocked(node string, now time.Time) *nodeView {
	v := in.views[node]
	if v == nil {
		v = &nodeView{entries: make(map[string]entry), seen: now}
		in.views[node] = v
	}
	return v
}

// state returns every view this node knows.
func (in *interest) state() []stateView {
	in.mu.RLock()
	defer in.mu.RUnlock()
	out := make([]stateView, 0, len(in.views))
	for node, v := range in.views {
		sv := stateView{node: node, base: v.base, entries: make([]stateEntry, 0, len(v.entries))}
		for ch, e := range v.entries {
			sv.entries = append(sv.entries, stateEntry{channel: ch, entry: e})
		}
		out = append(out, sv)
	}
	return out
}

// joined forgets that node had left, so its views are accepted again; it
// reports whether node had left (its interest must be fetched again).
func (in *interest) joined(node string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, gone := in.left[node]
	delete(in.left, node)
	return gone
}

// dropNode forgets a dead or departed node: its gossiped interest and its
// registrations. Its views are ignored until it joins again.
func (in *interest) dropNode(node string, now time.Time) {
	if node == in.self {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.left[node] = now
	if v := in.views[node]; v != nil {
		for ch, e := range v.entries {
			if e.present {
				in.setRouteLocked(ch, node, routeGossip, false)
			}
		}
		delete(in.views, node)
	}
	for ch := range in.regs[node] {
		in.setRouteLocked(ch, node, routeRegistered, false)
	}
	delete(in.regs, node)
}

// register records that node asked us, as owner, to forward channel.
func (in *interest) register(node, channel string, on bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if on {
		if _, gone := in.left[node]; gone {
			return
		}
		set := in.regs[node]
		if set == nil {
			set = make(map[string]struct{})
			in.regs[node] = set
		}
		set[channel] = struct{}{}
	} else if set := in.regs[node]; set != nil {
		delete(set, channel)
		if len(set) == 0 {
			delete(in.regs, node)
		}
	}
	in.setRouteLocked(channel, node, routeRegistered, on)
}

func (in *interest) setRouteLocked(channel, node string, bit uint8, on bool) {
	nodes := in.routes[channel]
	if on {
		if nodes == nil {
			nodes = make(map[string]uint8)
			in.routes[channel] = nodes
		}
		nodes[node] |= bit
		return
	}
	if nodes == nil {
		return
	}
	if b := nodes[node] &^ bit; b != 0 {
		nodes[node] = b
	} else {
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(in.routes, channel)
		}
	}
}

// targets appends to dst the nodes other than us interested in channel.
func (in *interest) targets(dst []string, channel string) []string {
	in.mu.RLock()
	for node := range in.routes[channel] {
		if node != in.self {
			dst = append(dst, node)
		}
	}
	in.mu.RUnlock()
	return dst
}

// interested lists the nodes, us included, with interest in channel
// (gossiped or registered), sorted.
func (in *interest) interested(channel string) []string {
	in.mu.RLock()
	out := make([]string, 0, len(in.routes[channel]))
	for node := range in.routes[channel] {
		out = append(out, node)
	}
	in.mu.RUnlock()
	sort.Strings(out)
	return out
}

// prune forgets views of nodes that are not members (strangers heard of by
// gossip that never joined) and old departure records.
func (in *interest) prune(now time.Time, ttl time.Duration, isMember func(string) bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for node, at := range in.left {
		if now.Sub(at) > ttl {
			delete(in.left, node)
		}
	}
	for node, v := range in.views {
		if node == in.self || isMember(node) || now.Sub(v.seen) <= ttl {
			continue
		}
		for ch, e := range v.entries {
			if e.present {
				in.setRouteLocked(ch, node, routeGossip, false)
			}
		}
		delete(in.views, node)
	}
}

// Gossip encodings: the messages GossipDelta (a memberlist broadcast) and
// GossipState (push/pull) of mesh/proto/gossip.proto, both starting with
// gossipFormat; a message of another format is malformed. Names are UTF-8:
// a channel whose name is not (the edge allows ASCII only) is not gossiped.

// gossipFormat is the format of GossipDelta and GossipState (1 was the
// hand-written encoding that came before the schema).
const gossipFormat = 2

var errGossip = errors.New("mesh: malformed gossip")

// gossipUnmarshal decodes gossip and metadata (hostile input): unknown
// fields are dropped, not kept.
var gossipUnmarshal = proto.UnmarshalOptions{DiscardUnknown: true}

// appendDelta appends the GossipDelta of d to b; it fails only on a name
// that is not UTF-8.
func appendDelta(b []byte, d delta) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(b, &wirepb.GossipDelta{
		Format:  gossipFormat,
		Node:    d.node,
		Version: d.version,
		Channel: d.channel,
		Present: d.present,
	})
}

func decodeDelta(b []byte) (delta, error) {
	var m wirepb.GossipDelta
	if err := gossipUnmarshal.Unmarshal(b, &m); err != nil {
		return delta{}, fmt.Errorf("%w: delta: %v", errGossip, err)
	}
	if m.Format != gossipFormat || m.Node == "" {
		return delta{}, fmt.Errorf("%w: delta of format %d from node %q", errGossip, m.Format, m.Node)
	}
	return delta{node: m.Node, version: m.Version, channel: m.Channel, present: m.Present}, nil
}

// encodeState encodes views as a GossipState, leaving out the names that
// are not UTF-8 (so that it cannot fail).
func encodeState(views []stateView) []byte {
	m := &wirepb.GossipState{Format: gossipFormat, Views: make([]*wirepb.GossipView, 0, len(views))}
	for _, v := range views {
		if !utf8.ValidString(v.node) {
			continue
		}
		pv := &wirepb.GossipView{Node: v.node, Base: v.base, Entries: make([]*wirepb.GossipEntry, 0, len(v.entries))}
		for _, e := range v.entries {
			if utf8.ValidString(e.channel) {
				pv.Entries = append(pv.Entries, &wirepb.GossipEntry{Channel: e.channel, Version: e.version, Present: e.present})
			}
		}
		m.Views = append(m.Views, pv)
	}
	b, err := proto.Marshal(m)
	if err != nil { // unreachable: every string is UTF-8
		return nil
	}
	return b
}

func decodeState(b []byte) ([]stateView, error) {
	var m wirepb.GossipState
	if err := gossipUnmarshal.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: state: %v", errGossip, err)
	}
	if m.Format != gossipFormat {
		return nil, fmt.Errorf("%w: state of format %d", errGossip, m.Format)
	}
	views := make([]stateView, 0, len(m.Views))
	for _, pv := range m.Views {
		v := stateView{node: pv.Node, base: pv.Base, entries: make([]stateEntry, 0, len(pv.Entries))}
		for _, e := range pv.Entries {
			v.entries = append(v.entries, stateEntry{channel: e.Channel, entry: entry{version: e.Version, present: e.Present}})
		}
		views = append(views, v)
	}
	return views, nil
}
