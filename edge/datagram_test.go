package edge_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

func volatileNode(t *testing.T) *testNode {
	return startNode(t, func(c *edge.Config) { c.VolatileChannels = []string{"game:*"} })
}

// Datagrams published over either transport reach subscribers on both:
// QUIC datagrams on WebTransport, messages on WebSocket, each marked as a
// datagram with the channel's sequence number.
func TestDatagramFanOut(t *testing.T) {
	n := volatileNode(t)
	ctx := ctxT(t)
	clients := map[string]*client.Client{
		"wt1": n.dial(t, protocols.WebTransport), "wt2": n.dial(t, protocols.WebTransport),
		"ws1": n.dial(t, protocols.WebSocket), "ws2": n.dial(t, protocols.WebSocket),
	}
	subs := map[string]*client.Subscription{}
	for name, c := range clients {
		if got := c.MaxDatagramSize(); got != protocols.DefaultMaxDatagramSize {
			t.Fatalf("%s: max datagram size %d", name, got)
		}
		sub, err := c.Subscribe(ctx, "game:lobby")
		if err != nil {
			t.Fatal(err)
		}
		if !sub.Volatile() {
			t.Fatalf("%s: game:lobby is not volatile", name)
		}
		subs[name] = sub
	}
	// One sender at a time, waiting for every receiver: on loopback
	// nothing is lost, so each datagram must arrive.
	for _, sender := range []string{"wt1", "ws1"} {
		for i := range 20 {
			payload := fmt.Sprintf("%s-%d", sender, i)
			if err := clients[sender].SendDatagram("game:lobby", []byte(payload)); err != nil {
				t.Fatal(err)
			}
			for name, sub := range subs {
				select {
				case m := <-sub.Messages():
					if !m.Datagram || m.Epoch != "" || string(m.Data) != payload || m.Channel != "game:lobby" {
						t.Fatalf("%s got %+v, want datagram %q", name, m, payload)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: datagram %q not received", name, payload)
				}
			}
		}
	}
	// Sequence numbers count every publication of the channel, from 1.
	for name, sub := range subs {
		if sub.Lost() != 0 || sub.Dropped() != 0 {
			t.Fatalf("%s: lost %d, dropped %d on loopback", name, sub.Lost(), sub.Dropped())
		}
	}
	// The HTTP API publishes to the volatile channel too.
	if code, body := n.apiPublish(t, testAPIKey, `{"channel":"game:lobby","data":"from-api"}`); code != 200 || body["epoch"] != "" || body["offset"] != float64(41) {
		t.Fatalf("api publish: %d %v", code, body)
	}
	for name, sub := range subs {
		m := receive(t, sub, 1)[0]
		if string(m.Data) != "from-api" || m.Offset != 41 || !m.Datagram {
			t.Fatalf("%s got %+v", name, m)
		}
	}
}

// Datagrams over the size limit, on channels that are not volatile or not
// subscribed, get clear errors.
func TestDatagramRefusals(t *testing.T) {
	n := volatileNode(t)
	ctx := ctxT(t)
	for _, tr := range []string{protocols.WebTransport, protocols.WebSocket} {
		t.Run(tr, func(t *testing.T) {
			c := n.dial(t, tr)
			if _, err := c.Subscribe(ctx, "game:x"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Subscribe(ctx, "chat"); err != nil {
				t.Fatal(err)
			}
			var tooLarge *client.DatagramTooLargeError
			if err := c.SendDatagram("game:x", make([]byte, c.MaxDatagramSize()+1)); !errors.As(err, &tooLarge) || tooLarge.Max != protocols.DefaultMaxDatagramSize {
				t.Fatalf("oversized: %v", err)
			}
			if err := c.SendDatagram("chat", []byte("x")); !errors.Is(err, client.ErrNotVolatile) {
				t.Fatalf("reliable channel: %v", err)
			}
			if err := c.SendDatagram("game:other", []byte("x")); !errors.Is(err, &protocols.RequestError{Code: protocols.ErrCodeNotSubscribed}) {
				t.Fatalf("not subscribed: %v", err)
			}
			// A reliable publish on a volatile channel has the datagram limit.
			_, err := c.Publish(ctx, "game:x", make([]byte, protocols.DefaultMaxDatagramSize+1))
			if !errors.Is(err, &protocols.RequestError{Code: protocols.ErrCodePayloadTooLarge}) {
				t.Fatalf("oversized publish: %v", err)
			}
		})
	}
	// What a client that skips the SDK's checks gets: an error frame with
	// id 0 per refused datagram (at most one a second), the session open.
	r := n.rawWS(t, "")
	r.send(connectFrame(), &protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:x", Alias: 5}}})
	a := r.readUntil(5*time.Second, func(a *answer) bool { return a.has(2, "subscribed") })
	if s := a.frames[len(a.frames)-1].GetSubscribed(); s == nil || s.Alias != 5 || !s.Volatile {
		t.Fatalf("subscribed: %v", a.frames)
	}
	r.send(&protocols.Frame{Kind: &protocols.Frame_Datagram{Datagram: &protocols.Datagram{Alias: 5, Data: make([]byte, 2000)}}})
	a = r.readUntil(5*time.Second, func(a *answer) bool { return a.errorFor(0) != nil })
	expectError(t, a, 0, protocols.ErrCodePayloadTooLarge, "payload is 2000 bytes, limit 1100")
	// An API publication over the limit is refused too.
	if code, body := n.apiPublish(t, testAPIKey, `{"channel":"game:x","data":"`+strings.Repeat("x", 1200)+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("api: %d %v", code, body)
	}
}

// A WebSocket subscriber of a volatile channel that does not keep up gets
// the latest publications, not all of them: older ones queued for it are
// replaced, the gaps show in the sequence numbers, and it is never closed
// as a slow consumer.
func TestVolatileConflatesOnWebSocket(t *testing.T) {
	n := volatileNode(t)
	r := n.rawWS(t, "")
	r.send(connectFrame(), &protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:pos"}}})
	r.readUntil(5*time.Second, func(a *answer) bool { return a.has(2, "subscribed") })
	// 20,000 publications of 1 KiB while the client does not read: far
	// more than the send queue's 1,024 frames and 4 MiB.
	payload := strings.Repeat("p", 1024)
	for range 20000 {
		n.Hub().Sequence("game:pos", []byte(payload))
	}
	var last uint64
	got := 0
	a := r.readUntil(10*time.Second, func(a *answer) bool {
		for _, f := range a.frames {
			if m := f.GetMessage(); m != nil {
				if m.Offset <= last {
					t.Fatalf("offset %d after %d", m.Offset, last)
				}
				last = m.Offset
				got++
			}
		}
		a.frames = a.frames[:0]
		return last == 20000
	})
	if a.code != 0 {
		t.Fatalf("closed: %d %q", a.code, a.reason)
	}
	t.Logf("received %d of 20000 volatile publications; the newest arrived", got)
	if got >= 20000 {
		t.Fatal("nothing was conflated")
	}
}

// On WebTransport each subscription has its own stream: a subscription
// whose reader is stuck holds up neither the session nor the others.
func TestStreamsIsolateSubscriptions(t *testing.T) {
	n := startNode(t, nil)
	c := n.dial(t, protocols.WebTransport, func(o *client.Options) { o.MessageBuffer = 4 })
	if !c.Connected().GetStreams() {
		t.Fatal("the server did not turn streams on")
	}
	ctx := ctxT(t)
	bulk, err := c.Subscribe(ctx, "bulk")
	if err != nil {
		t.Fatal(err)
	}
	chat, err := c.Subscribe(ctx, "chat")
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads bulk: 100 × 32 KiB (3.2 MiB: more than the client's
	// QUIC stream window, less than the server's 4 MiB send queue) wait
	// for it.
	big := strings.Repeat("b", 32<<10)
	for range 100 {
		n.Hub().Sequence("bulk", []byte(big))
	}
	for i := range 50 {
		if _, err := c.Publish(ctx, "chat", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if m := receive(t, chat, 1)[0]; string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("chat got %q, want %d", m.Data, i)
		}
	}
	// bulk still gets everything, in order, once read.
	for i, m := range receive(t, bulk, 100) {
		if m.Offset != uint64(i+1) {
			t.Fatalf("bulk message %d has offset %d", i, m.Offset)
		}
	}
	// Over a single stream the same stall holds chat up: its message waits
	// behind bulk's on the control stream.
	single := n.dial(t, protocols.WebTransport, func(o *client.Options) {
		o.SingleStream = true
		o.MessageBuffer = 4
	})
	if single.Connected().GetStreams() {
		t.Fatal("streams on although the client asked for a single stream")
	}
	sbulk, err := single.Subscribe(ctx, "bulk2")
	if err != nil {
		t.Fatal(err)
	}
	schat, err := single.Subscribe(ctx, "chat2")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n.Hub().Sequence("bulk2", []byte(big))
	}
	n.Hub().Sequence("chat2", []byte("stuck"))
	expectNoMessage(t, schat, 300*time.Millisecond)
	receive(t, sbulk, 100)
	if m := receive(t, schat, 1)[0]; string(m.Data) != "stuck" {
		t.Fatalf("chat2 got %q", m.Data)
	}
}

// With BatchUDPWrites the node's QUIC packets go out in batches: sessions,
// their streams and datagrams work the same, and shutdown leaves nothing
// running (goleak).
func TestBatchedUDPWrites(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.VolatileChannels = []string{"game:*"}
		c.BatchUDPWrites = true
	})
	ctx := ctxT(t)
	a, b := n.dial(t, protocols.WebTransport), n.dial(t, protocols.WebTransport)
	subA, err := a.Subscribe(ctx, "game:b")
	if err != nil {
		t.Fatal(err)
	}
	subB, err := b.Subscribe(ctx, "game:b")
	if err != nil {
		t.Fatal(err)
	}
	reliable, err := b.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := a.SendDatagram("game:b", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []*client.Subscription{subA, subB} {
			if m := receive(t, sub, 1)[0]; string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("got %q, want %d", m.Data, i)
			}
		}
	}
	big := strings.Repeat("x", 60000)
	for range 20 {
		if _, err := a.Publish(ctx, "news", []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range receive(t, reliable, 20) {
		if len(m.Data) != len(big) {
			t.Fatalf("message of %d bytes", len(m.Data))
		}
	}
}

// A WebTransport datagram that does not parse gets a clear error (id 0,
// code 100), and the session lives on.
func TestMalformedDatagram(t *testing.T) {
	n := volatileNode(t)
	r := n.rawWT(t, "")
	r.send(connectFrame(), &protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:m", Alias: 3}}})
	r.readUntil(5*time.Second, func(a *answer) bool { return a.has(2, "subscribed") })
	if err := r.sess.SendDatagram([]byte{0xff, 0xff, 0xff}); err != nil { // alias over 16383, cut short
		t.Fatal(err)
	}
	a := r.readUntil(5*time.Second, func(a *answer) bool { return a.errorFor(0) != nil })
	expectError(t, a, 0, protocols.ErrCodeBadRequest, "malformed datagram")
}
