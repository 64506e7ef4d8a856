package edge_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// holdingCluster owns every channel but "remote:*", whose publishes it
// holds until release: an owner node that is slow to answer.
type holdingCluster struct {
	mu   sync.Mutex
	held []func(string, uint64, bool, error)
}

func (h *holdingCluster) IsOwner(ch string) bool { return !strings.HasPrefix(ch, "remote:") }
func (h *holdingCluster) PublishAsync(ch, key string, data []byte, done func(string, uint64, bool, error)) {
	h.mu.Lock()
	h.held = append(h.held, done)
	h.mu.Unlock()
}
func (h *holdingCluster) Register(string)                        {}
func (h *holdingCluster) Unregister(string)                      {}
func (h *holdingCluster) Forward(string, string, uint64, []byte) {}
func (h *holdingCluster) PublishVolatile(string, []byte)         {}
func (h *holdingCluster) ForwardVolatile(string, uint64, []byte) {}
func (h *holdingCluster) History(context.Context, string) (string, uint64, []protocols.Publication, error) {
	return "", 0, nil, nil
}
func (h *holdingCluster) pending() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.held) }
func (h *holdingCluster) release(epoch string) {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for i, done := range held {
		done(epoch, uint64(i+1), false, nil)
	}
}

// A publish waiting for a slow owner does not hold up the session: its
// other requests are answered meanwhile, and the publish is acked when
// the owner answers.
func TestPublishDoesNotBlockTheSession(t *testing.T) {
	hc := &holdingCluster{}
	n := startNode(t, func(c *edge.Config) { c.Cluster = hc })
	for _, transport := range []string{protocols.WebSocket, protocols.WebTransport} {
		t.Run(transport, func(t *testing.T) {
			c := n.dial(t, transport)
			ctx := ctxT(t)
			type ack struct {
				offset uint64
				err    error
			}
			acks := make(chan ack, 2)
			for range 2 {
				go func() {
					p, err := c.Publish(ctx, "remote:x", []byte("slow"))
					acks <- ack{p.Offset, err}
				}()
			}
			deadline := time.Now().Add(10 * time.Second)
			for hc.pending() < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the publishes did not reach the owner")
				}
				time.Sleep(5 * time.Millisecond)
			}
			sub, err := c.Subscribe(ctx, "local-"+transport)
			if err != nil {
				t.Fatalf("subscribe while publishes wait: %v", err)
			}
			if _, err := c.Publish(ctx, "local-"+transport, []byte("fast")); err != nil {
				t.Fatalf("local publish while remote ones wait: %v", err)
			}
			if m := <-sub.Messages(); string(m.Data) != "fast" {
				t.Fatalf("got %q", m.Data)
			}
			select {
			case a := <-acks:
				t.Fatalf("a held publish was acked: %+v", a)
			default:
			}
			hc.release("remote")
			for range 2 {
				if a := <-acks; a.err != nil || a.offset == 0 {
					t.Fatalf("ack after the owner answered: %+v", a)
				}
			}
		})
	}
}

// A recovery of more publications than the send queue's frame limit
// (1024) is not taken for a slow consumer: all of them arrive, on both
// transports.
func TestLargeRecovery(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.History = []edge.HistoryRule{{Channels: "chat:*", Size: 5000, TTL: time.Hour}}
	})
	pub := n.dial(t, protocols.WebSocket)
	ctx := ctxT(t)
	const missed = 3000
	var first client.Position
	for i := range missed {
		p, err := pub.Publish(ctx, "chat:big", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	for _, transport := range []string{protocols.WebSocket, protocols.WebTransport} {
		c := n.dial(t, transport)
		sub, err := c.Subscribe(ctx, "chat:big", client.Since(client.Position{Epoch: first.Epoch, Offset: first.Offset - 1}))
		if err != nil {
			t.Fatal(err)
		}
		if !sub.Recovered() {
			t.Fatalf("%s: not recovered", transport)
		}
		for i := range missed {
			select {
			case m := <-sub.Messages():
				if string(m.Data) != fmt.Sprint(i) {
					t.Fatalf("%s: message %d is %q", transport, i, m.Data)
				}
			case <-c.Done():
				t.Fatalf("%s: session ended after %d of %d: %v", transport, i, missed, c.Err())
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d", transport, i, missed)
			}
		}
	}
}

// A recovery too large for the session's byte budget is refused for that
// subscription alone: it starts at the current position, not recovered,
// and the session goes on.
func TestRecoveryOverBudgetIsRefusedNotFatal(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.History = []edge.HistoryRule{{Channels: "chat:*", Size: 5000, TTL: time.Hour}}
		c.Session.SendQueueBytes = 32 << 10 // a backlog may take 4 × 32 KiB
	})
	pub := n.dial(t, protocols.WebSocket)
	ctx := ctxT(t)
	payload := make([]byte, 200)
	var first client.Position
	for i := range 1000 { // ≈ 250 KiB of frames
		p, err := pub.Publish(ctx, "chat:huge", payload)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	c := n.dial(t, protocols.WebSocket)
	sub, err := c.Subscribe(ctx, "chat:huge", client.Since(client.Position{Epoch: first.Epoch, Offset: first.Offset - 1}))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Recovered() || sub.Position().Offset != first.Offset+999 {
		t.Fatalf("recovered %v at %+v: want not recovered, at the current position", sub.Recovered(), sub.Position())
	}
	if _, err := pub.Publish(ctx, "chat:huge", []byte("live")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.Messages():
		if string(m.Data) != "live" {
			t.Fatalf("got %q", m.Data)
		}
	case <-c.Done():
		t.Fatalf("the session ended: %v", c.Err())
	case <-ctx.Done():
		t.Fatal("no live message")
	}
}
