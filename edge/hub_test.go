package edge

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// fakeSession records what the hub sends. Hub unit tests only: everything
// else runs on real sockets.
type fakeSession struct {
	id string
	mu sync.Mutex
	// frames holds what was sent; with keep false only the count is kept.
	frames [][]byte
	keep   bool
	n      int
	closed *protocols.CloseError
}

func (f *fakeSession) ID() string                        { return f.id }
func (f *fakeSession) Protocol() string                  { return "fake" }
func (f *fakeSession) Context() context.Context          { return context.Background() }
func (f *fakeSession) Close(protocols.CloseCode, string) {}
func (f *fakeSession) CloseWith(ce *protocols.CloseError) {
	f.mu.Lock()
	f.closed = ce
	f.mu.Unlock()
}
func (f *fakeSession) Send(b []byte) error {
	f.mu.Lock()
	f.n++
	if f.keep {
		f.frames = append(f.frames, b)
	}
	f.mu.Unlock()
	return nil
}

func (f *fakeSession) Reply(b []byte) error                 { return f.Send(b) }
func (f *fakeSession) Deliver(_ uint32, b []byte) error     { return f.Send(b) }
func (f *fakeSession) EndDeliveries(uint32)                 {}
func (f *fakeSession) UseStreams() bool                     { return false }
func (f *fakeSession) ReceiveDatagrams()                    {}
func (f *fakeSession) DeliverVolatile(v protocols.Volatile) { _ = f.Send(v.Frame) }

func (f *fakeSession) messages(t *testing.T) []*protocols.Message {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*protocols.Message
	for _, b := range f.frames {
		err := protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			fr, err := protocols.DecodeFrame(body)
			if err != nil {
				return err
			}
			if m := fr.GetMessage(); m != nil {
				out = append(out, m)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func subscribedReply(p Position, _ bool) []byte {
	return protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{Epoch: p.Epoch, Offset: p.Offset}}})
}

func TestHubOneOrderForEverySubscriber(t *testing.T) {
	h := NewHub(HubConfig{})
	subs := make([]*fakeSession, 5)
	for i := range subs {
		subs[i] = &fakeSession{id: fmt.Sprint(i), keep: true}
		if !h.Subscribe("room", subs[i], 1, nil, subscribedReply, nil) {
			t.Fatal("subscribe failed")
		}
	}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 250 {
				h.Sequence("room", []byte(fmt.Sprintf("p%d-%d", p, i)))
			}
		})
	}
	wg.Wait()
	ref := subs[0].messages(t)
	if len(ref) != 1000 {
		t.Fatalf("got %d messages, want 1000", len(ref))
	}
	for i, m := range ref {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d has offset %d", i, m.Offset)
		}
	}
	for _, s := range subs[1:] {
		got := s.messages(t)
		for i := range ref {
			if string(got[i].Data) != string(ref[i].Data) || got[i].Offset != ref[i].Offset {
				t.Fatalf("session %s saw another order at %d", s.id, i)
			}
		}
	}
}

func TestHubUnsubscribeStopsDelivery(t *testing.T) {
	h := NewHub(HubConfig{})
	a, b := &fakeSession{id: "a", keep: true}, &fakeSession{id: "b", keep: true}
	h.Subscribe("c", a, 1, nil, subscribedReply, nil)
	h.Subscribe("c", b, 1, nil, subscribedReply, nil)
	if h.Subscribe("c", a, 1, nil, subscribedReply, nil) {
		t.Fatal("second subscribe of the same session succeeded")
	}
	h.Sequence("c", []byte("1"))
	if !h.Unsubscribe("c", a, protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Unsubscribed{Unsubscribed: &protocols.Unsubscribed{Channel: "c"}}})) {
		t.Fatal("unsubscribe failed")
	}
	if h.Unsubscribe("c", a, nil) {
		t.Fatal("unsubscribe twice succeeded")
	}
	h.Sequence("c", []byte("2"))
	if n := len(a.messages(t)); n != 1 {
		t.Fatalf("a got %d messages after unsubscribe, want 1", n)
	}
	if n := len(b.messages(t)); n != 2 {
		t.Fatalf("b got %d messages, want 2", n)
	}
	h.Unsubscribe("c", b, nil)
	if n := len(h.Channels()); n != 0 {
		t.Fatalf("%d channels with subscribers after the last one went", n)
	}
}

func TestHubKeepsPositionsForIdleTTL(t *testing.T) {
	h := NewHub(HubConfig{IdleTTL: time.Hour})
	p := h.Sequence("nobody", []byte("x"))
	if p.Offset != 1 || p.Epoch == "" {
		t.Fatalf("position %+v", p)
	}
	// A channel without subscribers keeps counting within the TTL...
	if q := h.Sequence("nobody", []byte("y")); q.Epoch != p.Epoch || q.Offset != 2 {
		t.Fatalf("second publication at %+v after %+v", q, p)
	}
	h.Sweep()
	if h.ChannelCount() != 1 {
		t.Fatal("a channel used just now was swept")
	}
	// ...and is dropped once idle for longer.
	h2 := NewHub(HubConfig{IdleTTL: time.Nanosecond})
	h2.Sequence("nobody", []byte("x"))
	time.Sleep(time.Millisecond) // let the nanosecond TTL pass: the behaviour under test is expiry
	h2.Sweep()
	if h2.ChannelCount() != 0 {
		t.Fatal("an idle channel was kept past its TTL")
	}
}

// BenchmarkHubFanout publishes a 64-byte payload to one channel with 1,000
// subscribers. One op is one publication, i.e. 1,000 deliveries; allocs/op
// divided by 1,000 is allocations per delivery.
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := NewHub(HubConfig{})
			for i := range n {
				h.Subscribe("bench", &fakeSession{id: fmt.Sprint(i)}, 1, nil, subscribedReply, nil)
			}
			payload := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.Sequence("bench", payload)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// discardWire is a transport that swallows writes and counts frames, to
// measure the hub with real session queues and writers but no socket.
type discardWire struct {
	frames  *atomicCounter
	stopped chan struct{}
	once    sync.Once
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add(n int) { c.mu.Lock(); c.n += n; c.mu.Unlock() }
func (c *atomicCounter) get() int  { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func (w *discardWire) ReadFrame() ([]byte, error) { <-w.stopped; return nil, context.Canceled }
func (w *discardWire) WriteFrames(f [][]byte, _ time.Time) error {
	w.frames.add(len(f))
	return nil
}
func (w *discardWire) CloseWrite(protocols.CloseCode, string, time.Time) error { return nil }
func (w *discardWire) Abort()                                                  { w.once.Do(func() { close(w.stopped) }) }

// hubAcceptor subscribes every session to one channel.
type hubAcceptor struct {
	hub     *Hub
	channel string
	ready   sync.WaitGroup
}

func (a *hubAcceptor) Accept(s protocols.Session, _ *http.Request) (protocols.Handler, error) {
	a.hub.Subscribe(a.channel, s, 1, nil, subscribedReply, nil)
	a.ready.Done()
	return nopHandler{}, nil
}

type nopHandler struct{}

func (nopHandler) HandleFrame(*protocols.Frame) error { return nil }
func (nopHandler) Closed(*protocols.CloseError)       {}

// BenchmarkHubFanoutSessions is BenchmarkHubFanout with real sessions: each
// Send goes through a bounded queue to a writer goroutine that batches.
func BenchmarkHubFanoutSessions(b *testing.B) {
	const n = 1000
	h := NewHub(HubConfig{})
	acc := &hubAcceptor{hub: h, channel: "bench"}
	acc.ready.Add(n)
	counter := &atomicCounter{}
	wires := make([]*discardWire, n)
	var served sync.WaitGroup
	cfg := protocols.SessionConfig{PingInterval: -1, SendQueueFrames: 1 << 16, SendQueueBytes: 64 << 20}
	for i := range wires {
		wires[i] = &discardWire{frames: counter, stopped: make(chan struct{})}
		served.Go(func() { protocols.Serve(wires[i], "discard", nil, acc, cfg) })
	}
	acc.ready.Wait()
	base := n // the Subscribed replies
	for counter.get() < base {
		runtime.Gosched()
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.Sequence("bench", payload)
	}
	want := base + b.N*n
	for counter.get() < want {
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
	for _, w := range wires {
		w.Abort()
	}
	served.Wait()
}

// A volatile channel numbers its publications from 1, with or without
// subscribers, and a subscriber starts after the last number.
func TestHubVolatileSequence(t *testing.T) {
	h := NewHub(HubConfig{Volatile: func(ch string) bool { return strings.HasPrefix(ch, "game:") }})
	for i := uint64(1); i <= 3; i++ {
		if p := h.Sequence("game:1", []byte("x")); p != (Position{Offset: i}) {
			t.Fatalf("publication %d at %+v", i, p)
		}
	}
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("game:1", s, 1, nil, subscribedReply, nil)
	h.Sequence("game:1", []byte("y"))
	kinds := frameKinds(t, s)
	if len(kinds) != 2 || kinds[0] != "subscribed@" || kinds[1] != "message@" {
		t.Fatalf("frames %v", kinds)
	}
	if m := s.messages(t); len(m) != 1 || m[0].Offset != 4 || m[0].Epoch != "" {
		t.Fatalf("messages %v", m)
	}
}
