package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/edge"
)

// A Conn lives through its sessions being dropped: its subscription gets
// every message once, in order, and its publishes are applied once; when
// it is closed, nothing of it is left running (goleak in TestMain).
func TestConnThroughDrops(t *testing.T) {
	node, err := edge.New(edge.Config{
		Name: "conn-test", HTTP: "127.0.0.1:0",
		History: []edge.HistoryRule{{Channels: "chat:*", Size: 1000, TTL: time.Minute}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Shutdown(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws://" + node.Addrs().HTTP.String() + "/ws"
	conn, err := Connect(ctx, []string{url}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := conn.Subscribe(ctx, "chat:conn")
	if err != nil {
		t.Fatal(err)
	}
	const total = 60
	for i := range total {
		if i%15 == 7 {
			conn.Client().Close() // the session drops; the next publish waits for the next
		}
		if _, err := conn.Publish(ctx, "chat:conn", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i := range total {
		select {
		case m := <-sub.Messages():
			if string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d is %q", i, m.Data)
			}
		case <-ctx.Done():
			t.Fatalf("got %d of %d (reconnects %d)", i, total, conn.Reconnects())
		}
	}
	if conn.Reconnects() < 3 || !sub.Recovered() || sub.Resyncs() != 0 {
		t.Fatalf("reconnects %d, recovered %v, resyncs %d", conn.Reconnects(), sub.Recovered(), sub.Resyncs())
	}
	select {
	case m := <-sub.Messages():
		t.Fatalf("a message too many: %q", m.Data)
	case <-time.After(100 * time.Millisecond):
	}
	conn.Close()
	if _, ok := <-sub.Messages(); ok {
		t.Fatal("Messages not closed after Close")
	}
}

// Since(Position{}) on a Conn's first subscription starts with what the
// history holds.
func TestConnSubscribeWithHistory(t *testing.T) {
	node, err := edge.New(edge.Config{
		Name: "conn-history", HTTP: "127.0.0.1:0",
		History: []edge.HistoryRule{{Channels: "chat:*", Size: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Shutdown(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, []string{"ws://" + node.Addrs().HTTP.String() + "/ws"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 {
		if _, err := conn.Publish(ctx, "chat:h", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := conn.Subscribe(ctx, "chat:h", Since(Position{}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if m := <-sub.Messages(); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("history %d: %q", i, m.Data)
		}
	}
	if !sub.Recovered() {
		t.Fatal("the whole channel was in the history: recovered")
	}
}
