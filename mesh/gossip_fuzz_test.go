package mesh

import (
	"reflect"
	"testing"
	"time"
)

// FuzzGossip feeds arbitrary bytes to the decoders of what nodes gossip
// (deltas, push/pull state, node metadata): none may panic, and whatever
// decodes must encode again and decode to the same value.
func FuzzGossip(f *testing.F) {
	for _, b := range gossipSeeds(f) {
		f.Add(b)
	}
	for _, b := range metaSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDelta(t, b)
		checkState(t, b)
		checkMeta(t, b)
	})
}

// gossipSeeds are valid deltas and states, and a few near misses.
func gossipSeeds(tb testing.TB) [][]byte {
	v := uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return [][]byte{
		mustDelta(tb, delta{node: "n1", version: v, channel: "room", present: true}),
		mustDelta(tb, delta{node: "sy-eu-west-1a", version: v + 1, channel: "chat:room-42"}),
		encodeState([]stateView{
			{node: "n1", base: 3, entries: []stateEntry{{channel: "a", entry: entry{2, true}}, {channel: "b", entry: entry{3, false}}}},
			{node: "n2", base: v},
			{},
		}),
		encodeState(nil),
		{},
		{0x01, 0x02, 'n', '1'},
	}
}

// metaSeeds are valid metadata, and a few near misses.
func metaSeeds() [][]byte {
	const longest = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
	return [][]byte{
		nodeMeta{Region: "eu", Forward: "10.0.0.1:7000", URLs: map[string]string{"ws": "wss://a/ws"}, Drain: true}.encode(),
		nodeMeta{Region: "eu-west", Forward: longest, LAN: longest, Datagram: longest, URLs: map[string]string{
			"wt": "https://rt.example.com/wt", "wss": "wss://rt.example.com/ws", "ws": "ws://rt.example.com/ws"}}.encode(),
		nodeMeta{}.encode(),
		[]byte("\x08\x02\x30\x30"), // urls (6) as a varint
		[]byte(`{"v":1}`),
	}
}

func checkDelta(t *testing.T, b []byte) {
	d, err := decodeDelta(b)
	if err != nil {
		return
	}
	if d.node == "" {
		t.Fatalf("delta with an empty node decoded: %+v", d)
	}
	enc, err := appendDelta(nil, d)
	if err != nil {
		t.Fatalf("decoded delta %+v does not encode: %v", d, err)
	}
	if got, err := decodeDelta(enc); err != nil || got != d {
		t.Fatalf("delta does not round-trip: %+v, then %+v %v", d, got, err)
	}
}

func checkState(t *testing.T, b []byte) {
	st, err := decodeState(b)
	if err != nil {
		return
	}
	got, err := decodeState(encodeState(st))
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("state does not round-trip: %+v, then %+v %v", st, got, err)
	}
	now := time.Now()
	in := newInterest("self", now)
	for _, v := range st {
		in.applyView(v, now)
	}
}

func checkMeta(t *testing.T, b []byte) {
	m, err := decodeMeta(b)
	if err != nil {
		return
	}
	got, err := decodeMeta(m.encode())
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("metadata does not round-trip: %+v, then %+v %v", m, got, err)
	}
	m.member("n", "10.0.0.1:7946")
}
