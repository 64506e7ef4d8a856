package mesh

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
	"github.com/switchyard/switchyard/protocols"
)

// Measurements. They log (t.Log) or report (b.ReportMetric) numbers and
// assert only what does not depend on timing.

// TestIdleGossipTraffic measures what an idle 5-node cluster (encrypted
// gossip, some interest) sends per node: memberlist probes, acks and
// push/pull, all counted in the transport.
func TestIdleGossipTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("a 6 s measurement; skipped with -short")
	}
	tn := newTestNet()
	nodes := startCluster(t, tn, 5, nodeOpts{key: testKey})
	for i, n := range nodes {
		for j := range 20 {
			n.c.Register(fmt.Sprintf("room-%d-%d", i, j))
		}
	}
	waitFor(t, 5*time.Second, "interest everywhere", interestedEverywhere(nodes, "room-4-19", "n5", true))
	// Let the interest broadcasts run out (each is sent a few times).
	waitFor(t, 10*time.Second, "broadcast queues drain", func() bool {
		for _, n := range nodes {
			if queuedDeltas(n.c.bcast) > 0 {
				return false
			}
		}
		return true
	})
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		before[i] = n.tr.sent.Load()
	}
	const window = 6 * time.Second
	start := time.Now()
	holds(t, window, "the cluster stays whole", func() bool { return len(nodes[0].c.Members()) == 5 })
	secs := time.Since(start).Seconds()
	var worst float64
	for i, n := range nodes {
		bps := float64(n.tr.sent.Load()-before[i]) / secs
		worst = max(worst, bps)
		t.Logf("%s: %.0f bytes/s = %.1f kbit/s", n.name, bps, bps*8/1000)
	}
	t.Logf("idle gossip, 5 nodes, LAN preset, encrypted: worst node %.1f kbit/s (target ≤ 50)", worst*8/1000)
	// A push/pull (every 15 s per node, so maybe not in the window) sends
	// both states, each the interest state plus ~60 bytes per member.
	state := len(encodeState(nodes[0].c.interest.state())) + 60*len(nodes)
	t.Logf("push/pull: %d bytes of state each way with 100 channels: ≈ %.1f kbit/s per node averaged over the 15 s interval",
		state, float64(2*state*8)/15/1000)
	if worst*8 > 50_000 {
		t.Errorf("idle gossip traffic %.1f kbit/s per node, target ≤ 50", worst*8/1000)
	}
}

// forwardLatencies measures owner Forward → peer Deliver over a loopback
// link, one frame at a time.
func forwardLatencies(t testing.TB, n int, size int) []time.Duration {
	tn := newTestNet()
	got := make(chan struct{}, 1)
	nodes := startCluster(t, tn, 2, nodeOpts{})
	owner, peer := nodes[0], nodes[1]
	ch := channelOwnedBy(t, owner.c, owner.name, "latency")
	peer.register(ch)
	peer.l.mu.Lock()
	peer.l.onDeliver = func(string, uint64) { got <- struct{}{} }
	peer.l.mu.Unlock()
	frame := protocols.EncodeMessage(ch, "e", 1, make([]byte, size))
	out := make([]time.Duration, 0, n)
	for i := range n + 100 {
		start := time.Now()
		owner.c.Forward(ch, "e", uint64(i+1), frame)
		<-got
		if i >= 100 { // warm-up
			out = append(out, time.Since(start))
		}
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

func TestForwardLatency(t *testing.T) {
	d := forwardLatencies(t, 2000, 256)
	t.Logf("Forward → Deliver over a loopback TLS link, 256 B payload, 2000 frames one at a time: p50 %v, p99 %v, max %v (target p99 ≤ 1 ms; -race slows this)",
		pct(d, 0.5), pct(d, 0.99), d[len(d)-1])
}

// BenchmarkForwardDeliver reports the latency of owner Forward → peer
// Deliver; run it without -race:
//
//	go test -run='^$' -bench=ForwardDeliver ./mesh/
func BenchmarkForwardDeliver(b *testing.B) {
	d := forwardLatencies(b, max(b.N, 1000), 256)
	b.ReportMetric(float64(pct(d, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(d, 0.99).Microseconds()), "p99-µs")
}

// BenchmarkForwardThroughput measures Forward to two peers, pipelined.
func BenchmarkForwardThroughput(b *testing.B) {
	tn := newTestNet()
	nodes := startCluster(b, tn, 3, nodeOpts{})
	owner := nodes[0]
	ch := channelOwnedBy(b, owner.c, owner.name, "tput")
	nodes[1].register(ch)
	nodes[2].register(ch)
	frame := protocols.EncodeMessage(ch, "e", 1, make([]byte, 256))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		owner.c.Forward(ch, "e", uint64(i+1), frame)
	}
	waitFor(b, 60*time.Second, "all delivered", func() bool {
		return nodes[1].l.count(ch) == b.N && nodes[2].l.count(ch) == b.N
	})
}

// benchDeliver is a deliver message as an owner writes it (header, then
// the shared frame with 256 bytes of data), its payload and the frame.
func benchDeliver() (msg, payload, frame []byte) {
	frame = protocols.EncodeMessage("room-1234", "e-5678", 1, make([]byte, 256))
	msg = append(deliverHeader("room-1234", "e-5678", 123456, len(frame)), frame...)
	_, n := protowire.ConsumeVarint(msg[1:])
	return msg, msg[1+n:], frame
}

// BenchmarkDeliverHeader measures what the owner encodes per forwarded
// publication: the header only, the frame is shared by every peer.
func BenchmarkDeliverHeader(b *testing.B) {
	_, _, frame := benchDeliver()
	b.ReportAllocs()
	for i := range b.N {
		deliverHeader("room-1234", "e-5678", uint64(i), len(frame))
	}
}

// BenchmarkReadDeliver measures the reader's side of a deliver: framing,
// the payload copy the frame lives in, and the decoding.
func BenchmarkReadDeliver(b *testing.B) {
	msg, _, frame := benchDeliver()
	r := bytes.NewReader(msg)
	br := bufio.NewReaderSize(r, linkBufSize)
	var scratch []byte
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for range b.N {
		r.Reset(msg)
		br.Reset(r)
		m, err := readMessage(br, &scratch)
		if err != nil || m.offset != 123456 || len(m.rest) != len(frame) {
			b.Fatalf("%+v %v", m, err)
		}
	}
}

// BenchmarkDecodeDeliver measures decodeMessage alone on a deliver payload.
func BenchmarkDecodeDeliver(b *testing.B) {
	_, p, frame := benchDeliver()
	b.ReportAllocs()
	for range b.N {
		m, err := decodeMessage(msgDeliver, p)
		if err != nil || m.offset != 123456 || len(m.rest) != len(frame) {
			b.Fatalf("%+v %v", m, err)
		}
	}
}

// BenchmarkDecodeDeliverGenerated decodes the same payload with the
// generated Unmarshal, which copies the frame: what decodeDeliver saves.
func BenchmarkDecodeDeliverGenerated(b *testing.B) {
	_, p, frame := benchDeliver()
	b.ReportAllocs()
	for range b.N {
		var d wirepb.Deliver
		if err := proto.Unmarshal(p, &d); err != nil || d.Offset != 123456 || len(d.Frame) != len(frame) {
			b.Fatalf("%v %v", &d, err)
		}
	}
}
