package mesh

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func routesOf(in *interest, ch string) []string { return in.interested(ch) }

func TestInterestDeltas(t *testing.T) {
	now := time.Now()
	in := newInterest("a", now)
	// LWW by version: an older delta never overwrites a newer one.
	if !in.applyDelta(delta{node: "b", version: 5, channel: "x", present: true}, now) {
		t.Fatal("first delta not applied")
	}
	if in.applyDelta(delta{node: "b", version: 4, channel: "x", present: false}, now) {
		t.Fatal("older removal applied")
	}
	if got := routesOf(in, "x"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("routes %v", got)
	}
	if in.applyDelta(delta{node: "b", version: 5, channel: "x", present: true}, now) {
		t.Fatal("duplicate delta reported as news")
	}
	if !in.applyDelta(delta{node: "b", version: 6, channel: "x", present: false}, now) {
		t.Fatal("newer removal not applied")
	}
	if got := routesOf(in, "x"); len(got) != 0 {
		t.Fatalf("routes after removal %v", got)
	}
	// The tombstone keeps an older add out.
	if in.applyDelta(delta{node: "b", version: 5, channel: "x", present: true}, now) {
		t.Fatal("older add applied over a tombstone")
	}
	// Our own name is ours alone.
	if in.applyDelta(delta{node: "a", version: 1 << 62, channel: "y", present: true}, now) {
		t.Fatal("a delta about ourselves applied")
	}
}

func TestInterestFullState(t *testing.T) {
	now := time.Now()
	in := newInterest("a", now)
	in.applyDelta(delta{node: "b", version: 10, channel: "old", present: true}, now)
	in.applyDelta(delta{node: "b", version: 20, channel: "new", present: true}, now)
	// A view at base 15 without "old": removes it (10 ≤ 15), keeps "new" (20 > 15).
	changes := in.applyView(stateView{node: "b", base: 15, entries: []stateEntry{{channel: "mid", entry: entry{version: 12, present: true}}}}, now)
	if got := routesOf(in, "old"); len(got) != 0 {
		t.Fatalf("old: %v", got)
	}
	if got := routesOf(in, "new"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("new: %v", got)
	}
	if got := routesOf(in, "mid"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("mid: %v", got)
	}
	if len(changes) != 2 {
		t.Fatalf("changes %+v, want mid added and old removed", changes)
	}
	// Old news: a view at a lower base re-adding "old" at version 10.
	in.applyView(stateView{node: "b", base: 11, entries: []stateEntry{{channel: "old", entry: entry{version: 10, present: true}}}}, now)
	if got := routesOf(in, "old"); len(got) != 0 {
		t.Fatalf("old came back: %v", got)
	}
	// A delta at or below base for a missing channel is old news too.
	if in.applyDelta(delta{node: "b", version: 14, channel: "gone", present: true}, now) {
		t.Fatal("delta below base applied")
	}

	// Round trip through the encoding, merged into a third node.
	other := newInterest("c", now)
	st, err := decodeState(encodeState(in.state()))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st {
		other.applyView(v, now)
	}
	for _, ch := range []string{"new", "mid"} {
		if got := routesOf(other, ch); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("%s on c: %v", ch, got)
		}
	}
}

func TestInterestLocalAndDrop(t *testing.T) {
	now := time.Now()
	in := newInterest("a", now)
	d, ok := in.setLocal("x", true)
	if !ok || d.node != "a" || !d.present {
		t.Fatalf("setLocal: %+v %v", d, ok)
	}
	if _, ok := in.setLocal("x", true); ok {
		t.Fatal("no-op setLocal reported a change")
	}
	d2, _ := in.setLocal("x", false)
	if d2.version <= d.version {
		t.Fatal("versions must grow")
	}
	// A restarted node outranks its former self: versions start at the clock.
	later := newInterest("a", now.Add(time.Second))
	if later.version <= d2.version {
		t.Fatal("a restarted node's version is not above the old one")
	}

	in.applyDelta(delta{node: "b", version: 1, channel: "y", present: true}, now)
	in.register("b", "z", true)
	in.dropNode("b", now)
	if len(routesOf(in, "y")) != 0 || len(routesOf(in, "z")) != 0 {
		t.Fatal("a dropped node keeps routes")
	}
	// Until it joins again, what others say of it is ignored.
	if in.applyDelta(delta{node: "b", version: 2, channel: "y", present: true}, now) {
		t.Fatal("delta about a departed node applied")
	}
	if !in.joined("b") || in.joined("b") {
		t.Fatal("joined must report the departure once")
	}
	if !in.applyDelta(delta{node: "b", version: 2, channel: "y", present: true}, now) {
		t.Fatal("delta about a rejoined node ignored")
	}
	in.prune(now.Add(time.Hour), time.Minute, func(string) bool { return false })
	if len(routesOf(in, "y")) != 0 {
		t.Fatal("prune kept a stranger's view")
	}
}

func TestGossipEncodingErrors(t *testing.T) {
	d := delta{node: "n", version: 7, channel: "c", present: true}
	b := mustDelta(t, d)
	if got, err := decodeDelta(b); err != nil || got != d {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	bad := map[string][]byte{
		"empty":             {},
		"cut in the node":   b[:4],
		"cut in a fixed64":  mustDelta(t, delta{node: "n", version: 1 << 60})[:8],
		"format 1":          protowire.AppendVarint([]byte{0x08}, 1),
		"not protobuf":      []byte("{\"v\":1}"),
		"empty node":        mustDelta(t, delta{version: 7, channel: "c"}),
		"node not UTF-8":    append(protowire.AppendVarint([]byte{0x08}, gossipFormat), 0x12, 1, 0xff),
		"state as a delta":  encodeState(nil),
		"tag without value": protowire.AppendVarint(protowire.AppendVarint([]byte{0x08}, gossipFormat), 0x12),
	}
	for name, b := range bad {
		if _, err := decodeDelta(b); err == nil {
			t.Errorf("%s: delta decoded", name)
		}
	}
	if _, err := decodeState(append(encodeState(nil), 0x12, 0xff, 0xff, 0xff, 0x0f)); err == nil {
		t.Error("a view longer than the state decoded")
	}
	if _, err := decodeState(protowire.AppendVarint([]byte{0x08}, 1)); err == nil {
		t.Error("a state of format 1 decoded")
	}
	// A name that is not UTF-8 is not gossiped (the edge allows ASCII only).
	if _, err := appendDelta(nil, delta{node: "n", channel: "\xff"}); err == nil {
		t.Error("a channel that is not UTF-8 encoded")
	}
	st, err := decodeState(encodeState([]stateView{{node: "n", base: 1, entries: []stateEntry{{channel: "\xff"}, {channel: "ok"}}}, {node: "\xfe"}}))
	if err != nil || len(st) != 1 || len(st[0].entries) != 1 || st[0].entries[0].channel != "ok" {
		t.Errorf("state with names that are not UTF-8: %+v %v", st, err)
	}
}

// TestGossipDeltaSize: a delta travels in UDP packets; its protobuf
// overhead over the two names is 17 bytes (15 for a removal).
func TestGossipDeltaSize(t *testing.T) {
	d := delta{node: "sy-eu-west-1a", version: uint64(time.Now().UnixNano()), channel: "chat:room-42", present: true}
	for _, present := range []bool{true, false} {
		d.present = present
		n := len(mustDelta(t, d))
		t.Logf("delta of %q, %q, present %v: %d bytes", d.node, d.channel, present, n)
		if over := n - len(d.node) - len(d.channel); over > 17 {
			t.Errorf("delta overhead %d bytes, want at most 17", over)
		}
	}
}

func mustDelta(t testing.TB, d delta) []byte {
	t.Helper()
	b, err := appendDelta(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBroadcastQueueKeepsInvalidator: a delta that replaces the only
// queued one survives later deltas of the same length (the memberlist
// queue alone loses it, see newBroadcastQueue).
func TestBroadcastQueueKeepsInvalidator(t *testing.T) {
	q := newBroadcastQueue(func() int { return 4 }, 4)
	add := func(node, ch string, present bool) {
		msg := mustDelta(t, delta{node: node, version: 1, channel: ch, present: present})
		q.QueueBroadcast(&deltaBroadcast{key: node + "\x00" + ch, msg: msg})
	}
	add("n3", "room", true)
	add("n3", "room", false) // replaces the only delta
	add("n2", "room", true)  // same lengths: these took the remove's id
	add("n4", "room", true)
	if got := queuedDeltas(q); got != 3 {
		t.Fatalf("%d deltas queued, want 3", got)
	}
	var removes int
	for _, b := range q.GetBroadcasts(3, 1400) {
		d, err := decodeDelta(b)
		if err != nil {
			t.Fatal(err)
		}
		if d.node == "n3" && !d.present {
			removes++
		}
	}
	if removes != 1 {
		t.Fatal("the removal was lost")
	}
}
