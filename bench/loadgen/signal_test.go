package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/signaling"
)

// signalNode serves a signaling.Server on loopback until the test ends and
// returns its ws:// URL.
func signalNode(t *testing.T, cfg signaling.Config) (*signaling.Server, string) {
	t.Helper()
	srv, err := signaling.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		ts.Close()
	})
	return srv, "ws" + strings.TrimPrefix(ts.URL, "http") + "/signal"
}

func checkSignalLatency(t *testing.T, r *SignalResult, pairs int) {
	t.Helper()
	t.Logf("%.0f messages/s; offer %s, answer %s, candidate %s ms; join %s ms; server %.1f µs per message",
		r.MessagesPerSec, fmtLat(r.Offer), fmtLat(r.Answer), fmtLat(r.Candidate), fmtLat(r.Join), r.CPUPerMsgUs)
	if r.Lost != 0 || r.OutOfOrder != 0 || r.Corrupt != 0 || r.Errors != 0 || r.Disconnects != 0 {
		t.Fatalf("%d lost, %d out of order, %d corrupt, %d errors, %d disconnects (%s)",
			r.Lost, r.OutOfOrder, r.Corrupt, r.Errors, r.Disconnects, r.FirstError)
	}
	for _, k := range []struct {
		name string
		s    LatencyStats
	}{{"offer", r.Offer}, {"answer", r.Answer}, {"candidate", r.Candidate}} {
		if k.s.N == 0 || k.s.P50 <= 0 || k.s.P99 < k.s.P50 || k.s.Max < k.s.P99 {
			t.Errorf("%s latency: %+v", k.name, k.s)
		}
	}
	// Two candidates a side: 4 of every 6 messages are candidates, and
	// every offer of the window is answered (give or take the edges).
	if r.Candidate.N < r.Offer.N || r.Answer.N < r.Offer.N-pairs || r.Answer.N > r.Offer.N+pairs {
		t.Errorf("%d offers, %d answers, %d candidates", r.Offer.N, r.Answer.N, r.Candidate.N)
	}
	if r.Messages == 0 || r.Join.N != 2*pairs {
		t.Errorf("%d messages, %d joins", r.Messages, r.Join.N)
	}
}

// TestRunSignal runs both modes against a signaling server in this
// process.
func TestRunSignal(t *testing.T) {
	srv, url := signalNode(t, signaling.Config{})
	const pairs = 4
	r, err := RunSignal(context.Background(), SignalConfig{
		URL: url, Pairs: pairs, Rate: 240, Candidates: 2,
		Warmup: 100 * time.Millisecond, Duration: 600 * time.Millisecond, Drain: 2 * time.Second,
		ServerPID: os.Getpid(), // the server runs in this process
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSignalLatency(t, r, pairs)
	if r.ServerCPU <= 0 || r.CPUPerMsgUs <= 0 || r.OfferBytes < 4000 || r.AnswerBytes < 4000 {
		t.Errorf("server CPU %v s (%v µs per message); offer %d B, answer %d B", r.ServerCPU, r.CPUPerMsgUs, r.OfferBytes, r.AnswerBytes)
	}
	waitFor(t, 5*time.Second, "the peers to leave", func() bool { return srv.Stats().Peers == 0 })

	c, err := RunSignal(context.Background(), SignalConfig{
		Mode: signalCapacity, URL: url, Peers: 30, RoomSize: 4, Settle: 10 * time.Millisecond, ServerPID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Rooms != 8 || c.ConnectedPeers != 30 || c.PeersRSSMiB <= 0 || c.Threads <= 0 || c.Errors != 0 || c.Disconnects != 0 {
		t.Errorf("capacity: %+v", c)
	}
	waitFor(t, 5*time.Second, "the peers to leave", func() bool { return srv.Stats().Peers == 0 })

	var out bytes.Buffer
	name := t.TempDir() + "/signal.jsonl"
	var lines bytes.Buffer
	for _, x := range []*SignalResult{r, c} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		lines.Write(append(b, '\n'))
	}
	if err := os.WriteFile(name, lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := printSignalTable(&out, []string{name}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n| one node |"); got != 1 || !strings.Contains(out.String(), "| 30 peers, rooms of 4 | 30 | 4 | 8 |") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestRunSignalBadConfig(t *testing.T) {
	// 100 messages/s over one pair is 50 per connection: over the limit.
	_, err := RunSignal(context.Background(), SignalConfig{URL: "ws://127.0.0.1:1/signal", Pairs: 1, Rate: 100})
	if err == nil || !strings.Contains(err.Error(), "raise -pairs") {
		t.Fatalf("err = %v, want a complaint about the rate per connection", err)
	}
}

func TestParseMarker(t *testing.T) {
	for _, c := range []struct {
		in   string
		seq  uint64
		sent int64
		ok   bool
	}{
		{"v=0\r\na=" + benchMarker + ":12:345\r\nm=audio", 12, 345, true},
		{"candidate:1 1 udp 1 1.2.3.4 5 typ host " + benchMarker + " 7:890", 7, 890, true},
		{"candidate:1 1 udp 1 1.2.3.4 5 typ host", 0, 0, false},
		{benchMarker + " x:1", 0, 0, false},
	} {
		seq, sent, ok := parseMarker(c.in)
		if seq != c.seq || sent != c.sent || ok != c.ok {
			t.Errorf("parseMarker(%q) = %d, %d, %v; want %d, %d, %v", c.in, seq, sent, ok, c.seq, c.sent, c.ok)
		}
	}
}

// TestRoomOwnerMatchesMesh checks the load generator's copy of the room
// owner against a real two-node mesh, and runs the latency mode across it
// (X on one node, Y on the other).
func TestRoomOwnerMatchesMesh(t *testing.T) {
	ca, err := certs.NewCA("loadgen test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b"}
	var cls []*mesh.Cluster
	var urls []string
	for i, name := range names {
		certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg, err := certs.MeshTLS(ca.CertPEM(), certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{cls[0].Addr()}
		}
		cl, err := mesh.New(mesh.Config{
			Name: name, Region: "r1", Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0", Join: join, TLS: tlsCfg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, noChannels{})
		if err != nil {
			t.Fatal(err)
		}
		srv, url := signalNode(t, signaling.Config{Cluster: cl, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		cl.SetSignals(srv)
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = cl.Shutdown(ctx)
		})
		cls = append(cls, cl)
		urls = append(urls, url)
	}
	waitFor(t, 20*time.Second, "the mesh to converge", func() bool {
		return len(cls[0].Members()) == 2 && len(cls[1].Members()) == 2
	})
	owned := map[string]int{}
	for i := range 500 {
		room := fmt.Sprintf("room-%d", i)
		want := cls[0].Owner("signal/" + room)
		if got := roomOwner(room, names); got != want {
			t.Fatalf("roomOwner(%q) = %s, the mesh says %s", room, got, want)
		}
		owned[want]++
	}
	if owned["a"] < 150 || owned["b"] < 150 {
		t.Errorf("owners of 500 rooms: %v", owned)
	}

	const pairs = 6
	r, err := RunSignal(context.Background(), SignalConfig{
		URL: urls[0], URL2: urls[1], Nodes: names, Pairs: pairs, Rate: 240, Candidates: 2,
		Warmup: 100 * time.Millisecond, Duration: 600 * time.Millisecond, Drain: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSignalLatency(t, r, pairs)
	if !r.CrossNode || r.OwnerRooms["a"]+r.OwnerRooms["b"] != pairs || r.JoinOwnerLocal.N+r.JoinOwnerRemote.N != 2*pairs {
		t.Errorf("owners %v, joins local %d remote %d", r.OwnerRooms, r.JoinOwnerLocal.N, r.JoinOwnerRemote.N)
	}
}

// noChannels is the mesh.Local of a node that serves signaling only.
type noChannels struct{}

func (noChannels) Sequence(string, string, []byte) (string, uint64, bool, error) {
	return "", 0, false, fmt.Errorf("no channels on this test node")
}
func (noChannels) Deliver(string, string, uint64, []byte)                          {}
func (noChannels) Hold(_ string, fn func(string, uint64, []protocols.Publication)) { fn("", 0, nil) }
func (noChannels) Registered(string, string, uint64, []protocols.Publication)      {}
func (noChannels) Channels() []string                                              { return nil }
