package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/bench/internal/naive"
	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
	wsadapter "github.com/switchyard/switchyard/protocols/websocket"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve serves h on 127.0.0.1:0 until the test ends and returns the
// address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkResult asserts that a run delivered something and that every
// subscriber got every publication, in order.
func checkResult(t *testing.T, r *Result, subs int) {
	t.Helper()
	t.Logf("%s: %d publishes, %d deliveries (%.0f/s) in the window; %d publishes in all; latency p50 %.2f ms p99 %.2f ms",
		r.Target, r.Publishes, r.Deliveries, r.DeliveriesPerSec, r.TotalPublishes, r.LatencyP50Ms, r.LatencyP99Ms)
	if r.Deliveries == 0 || r.TotalPublishes == 0 {
		t.Fatalf("no deliveries: %+v", r)
	}
	if len(r.PerSub) != subs {
		t.Fatalf("%d subscriber counts, want %d", len(r.PerSub), subs)
	}
	for i, n := range r.PerSub {
		if n != r.TotalPublishes {
			t.Errorf("subscriber %d got %d deliveries, want %d (every subscriber the same)", i, n, r.TotalPublishes)
		}
	}
	if r.Lost != 0 || r.OutOfOrder != 0 || r.Disconnects != 0 || r.Errors != 0 {
		t.Errorf("lost %d, out of order %d, disconnects %d, errors %d: %s", r.Lost, r.OutOfOrder, r.Disconnects, r.Errors, r.FirstError)
	}
	if r.LatencySamples == 0 || r.LatencyP50Ms <= 0 || r.LatencyP99Ms < r.LatencyP50Ms {
		t.Errorf("latency: %d samples, p50 %v ms, p99 %v ms", r.LatencySamples, r.LatencyP50Ms, r.LatencyP99Ms)
	}
	if r.Readers != readersEpoll && (r.ArrivalSamples != 0 || r.LastArrivalSamples != 0) {
		t.Errorf("%d arrival and %d last-arrival samples without -readers epoll", r.ArrivalSamples, r.LastArrivalSamples)
	}
}

func TestRunNaive(t *testing.T) {
	srv := naive.New()
	addr := serve(t, srv)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name     string
		rate     float64
		duration time.Duration
	}{
		{"saturate", 0, time.Second},
		{"rate", 200, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const subs = 20
			r, err := Run(context.Background(), Config{
				Target:    targetNaive,
				URL:       "ws://" + addr + "/ws",
				Subs:      subs,
				Duration:  tc.duration,
				Rate:      tc.rate,
				ServerPID: os.Getpid(), // the server runs in this process
				Drain:     3 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, r, subs)
			if r.ServerCPU <= 0 || r.ServerRSSMiB <= 0 {
				t.Errorf("server CPU %v s, RSS %v MiB: want both > 0", r.ServerCPU, r.ServerRSSMiB)
			}
			// Subscribers leave the set once the load generator is gone.
			waitFor(t, 3*time.Second, "naive subscribers to leave", func() bool { return srv.Subscribers() == 0 })
		})
	}
}

// fakeNode speaks switchyard.v1 through the real session code in
// protocols/websocket, with a one-channel hub, so that the switchyard side
// of the load generator is tested without importing the edge.
type fakeNode struct {
	mu     sync.Mutex
	subs   map[protocols.Session]bool
	open   int
	offset uint64
}

type fakeClient struct {
	n *fakeNode
	s protocols.Session
}

func (n *fakeNode) Accept(s protocols.Session, _ *http.Request) (protocols.Handler, error) {
	n.mu.Lock()
	n.open++
	n.mu.Unlock()
	return &fakeClient{n: n, s: s}, nil
}

func (n *fakeNode) sessions() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.open
}

func (c *fakeClient) HandleFrame(f *protocols.Frame) error {
	n := c.n
	switch k := f.Kind.(type) {
	case *protocols.Frame_Connect:
		return c.s.Send(protocols.MustEncode(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
			SessionId: c.s.ID(), Protocol: protocols.ProtocolVersion,
		}}}))
	case *protocols.Frame_Subscribe:
		n.mu.Lock()
		defer n.mu.Unlock()
		n.subs[c.s] = true
		return c.s.Send(protocols.MustEncode(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{
			Channel: k.Subscribe.Channel, Epoch: "e", Offset: n.offset,
		}}}))
	case *protocols.Frame_Publish:
		n.mu.Lock()
		n.offset++
		off := n.offset
		msg := protocols.EncodeMessage(k.Publish.Channel, "e", off, k.Publish.Data)
		for s := range n.subs {
			_ = s.Send(msg)
		}
		n.mu.Unlock()
		return c.s.Send(protocols.MustEncode(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_PublishAck{PublishAck: &protocols.PublishAck{
			Epoch: "e", Offset: off,
		}}}))
	}
	return protocols.Closef(protocols.CodeBadFrame, "unexpected %T", f.Kind)
}

func (c *fakeClient) Closed(*protocols.CloseError) {
	c.n.mu.Lock()
	delete(c.n.subs, c.s)
	c.n.open--
	c.n.mu.Unlock()
}

func TestRunSwitchyardProtocol(t *testing.T) {
	node := &fakeNode{subs: make(map[protocols.Session]bool)}
	// Frequent pings: the load generator must answer them or be closed.
	ws := wsadapter.NewServer(node, wsadapter.Config{Session: protocols.SessionConfig{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  time.Second,
	}})
	addr := serve(t, ws)
	t.Cleanup(func() {
		waitFor(t, 5*time.Second, "sessions to end", func() bool { return node.sessions() == 0 })
	})

	const subs = 20
	r, err := Run(context.Background(), Config{
		Target:   targetSwitchyard,
		URL:      "ws://" + addr + "/ws",
		Subs:     subs,
		Duration: time.Second,
		Drain:    3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, subs)
}

func TestRunBadConfig(t *testing.T) {
	_, err := Run(context.Background(), Config{Target: "nats", URL: "ws://127.0.0.1:1/ws", Payload: 8})
	if err == nil {
		t.Fatal("Run accepted an unknown target and an 8-byte payload")
	}
}

// TestFrameKind checks the field numbers the hot path reads by hand
// against the generated code.
func TestFrameKind(t *testing.T) {
	for _, tc := range []struct {
		f    *protocols.Frame
		want int
	}{
		{&protocols.Frame{Id: 7, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{SessionId: "s"}}}, fieldFrameConnected},
		{&protocols.Frame{Id: 7, Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{}}}, fieldFrameSubscribed},
		{&protocols.Frame{Id: 300, Kind: &protocols.Frame_PublishAck{PublishAck: &protocols.PublishAck{Offset: 1}}}, fieldFramePublishAck},
		{&protocols.Frame{Kind: &protocols.Frame_Message{Message: &protocols.Message{Data: []byte("x")}}}, fieldFrameMessage},
		{&protocols.Frame{Id: 1, Kind: &protocols.Frame_Error{Error: &protocols.Error{Code: 1}}}, fieldFrameError},
		{&protocols.Frame{Kind: &protocols.Frame_Ping{Ping: &protocols.Ping{}}}, fieldFramePing},
		{&protocols.Frame{Kind: &protocols.Frame_Disconnect{Disconnect: &protocols.Disconnect{}}}, fieldFrameDisconnect},
	} {
		b := protocols.MustEncode(tc.f)
		body, rest, err := protocols.NextFrame(b, 1<<10)
		if err != nil || len(rest) != 0 {
			t.Fatalf("NextFrame(%T): %v, %d bytes left", tc.f.Kind, err, len(rest))
		}
		kind, _, err := frameKind(body)
		if err != nil || int(kind) != tc.want {
			t.Errorf("frameKind(%T) = %d, %v; want %d", tc.f.Kind, kind, err, tc.want)
		}
	}

	data := []byte("payload bytes")
	b := protocols.EncodeMessage("bench", "epoch", 42, data)
	body, _, err := protocols.NextFrame(b, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	kind, inner, err := frameKind(body)
	if err != nil || kind != fieldFrameMessage {
		t.Fatalf("frameKind(EncodeMessage) = %d, %v", kind, err)
	}
	got, err := messageData(inner)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("messageData = %q, %v; want %q", got, err, data)
	}
	if _, _, err := frameKind([]byte{0x08, 0x01}); err == nil {
		t.Error("frameKind accepted a frame with an id and no kind")
	}
}

func TestProc(t *testing.T) {
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Fatalf("procCPU(self) = %v, %v", cpu, err)
	}
	rss, err := procRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("procRSS(self) = %v, %v", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU(-1) succeeded")
	}
}

// TestRunDatagrams runs the datagrams scenario against a node in this
// process with a volatile channel.
func TestRunDatagrams(t *testing.T) {
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := edge.New(edge.Config{Name: "bench", Listen: "127.0.0.1:0", Certs: store, VolatileChannels: []string{"game:*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	const subs = 10
	r, err := RunDatagrams(context.Background(), DatagramConfig{
		URL:       "https://" + n.Addrs().QUIC.String(),
		CertHash:  store.Hash().Value,
		Subs:      subs,
		Rate:      200,
		Warmup:    100 * time.Millisecond,
		Duration:  time.Second,
		Settle:    50 * time.Millisecond,
		ServerPID: os.Getpid(), // the node runs in this process
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d publishes, %d deliveries, loss %.2f %%, latency p50 %.2f ms p99 %.2f ms, %.0f deliveries per core-s, idle session %.1f KiB",
		r.Publishes, r.Deliveries, r.LossPct, r.LatencyP50Ms, r.LatencyP99Ms, r.DeliveriesPerCoreSec, r.IdleSessionKiB)
	if r.Publishes < 100 || r.Deliveries == 0 || r.Deliveries > r.Publishes*subs {
		t.Fatalf("%d publishes, %d deliveries to %d subscribers", r.Publishes, r.Deliveries, subs)
	}
	// Loopback at 200 datagrams/s: loss, if any, is the race detector's
	// doing, never most of them.
	if r.LossPct > 10 || r.Disconnects != 0 {
		t.Errorf("loss %.2f %%, %d disconnects (%s)", r.LossPct, r.Disconnects, r.FirstError)
	}
	if r.LatencySamples != int(r.Deliveries) || r.LatencyP99Ms < r.LatencyP50Ms || r.LatencyP50Ms <= 0 {
		t.Errorf("latency: %d samples, p50 %v ms, p99 %v ms", r.LatencySamples, r.LatencyP50Ms, r.LatencyP99Ms)
	}
	if r.ServerCPU <= 0 || r.BaseRSSMiB <= 0 || r.IdleRSSMiB <= 0 || r.SubscribedRSSMiB <= 0 {
		t.Errorf("server CPU %v s, RSS %v / %v / %v MiB: want all > 0", r.ServerCPU, r.BaseRSSMiB, r.IdleRSSMiB, r.SubscribedRSSMiB)
	}
}

func TestRunDatagramsBadConfig(t *testing.T) {
	_, err := RunDatagrams(context.Background(), DatagramConfig{Payload: 8})
	if err == nil {
		t.Fatal("RunDatagrams accepted no URL and an 8-byte payload")
	}
}

// TestTable checks that -table sorts fan-out and datagram lines into
// their own tables.
func TestTable(t *testing.T) {
	name := t.TempDir() + "/runs.jsonl"
	lines := `{"target":"switchyard","subs":1000,"deliveries_per_s":5}
{"target":"centrifugo","subs":1000,"latency_p95_ms":2.5,"last_sub_p50_ms":3.25,"last_sub_p95_ms":4,"last_sub_p99_ms":5,"idle_session_kib":42.25,"base_rss_mib":60,"idle_rss_mib":101.3,"out_of_order":1}
not json: skipped
{"scenario":"datagrams","subs":1000,"loss_pct":1.5,"idle_session_kib":146.5}
`
	if err := os.WriteFile(name, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printTable(&out, []string{name}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, "arrival") {
		t.Errorf("arrival columns without arrival samples:\n%s", got)
	}
	for _, want := range []string{"| target | subs |", "| switchyard | 1000 |", "| centrifugo | 1000 |", "| 0.00 / 2.50 / 0.00 / 0.00 | 3.25 / 4.00 / 5.00 / 0.00 | 42.2 (60.0 → 101.3) |", "| 0 / 1 / 0 |", "| subs | payload B | datagrams/s |", "| 1000 | 0 | 0 | 0 | 1.500 |", "| 146.5 (0.0) |"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
