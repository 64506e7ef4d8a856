package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

// A subscriber on one node, over WebSocket, is cut off mid-stream; it comes
// back to another node over WebTransport with the position it last saw and
// gets every publication exactly once, in order: those it missed from the
// history, then the live ones. The history API serves the same.
func TestRecoveryOnAnotherNodeAndTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	const channel = "chat:recovery" // the dev default keeps 100 for 5 minutes on chat:*
	ctx := context.Background()
	first := b.dial(t)
	sub, err := first.Subscribe(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	const total = 60
	for i := range 20 {
		a.publish(t, channel, fmt.Sprint(i))
	}
	var last client.Message
	for i := range 20 {
		last = <-sub.Messages()
		if string(last.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, last.Data)
		}
	}
	first.Close() // cut off
	for i := 20; i < 40; i++ {
		a.publish(t, channel, fmt.Sprint(i)) // missed
	}
	second := c.dialWT(t)
	sub2, err := second.Subscribe(ctx, channel, client.Since(last.Position))
	if err != nil {
		t.Fatal(err)
	}
	if !sub2.Recovered() {
		t.Fatalf("not recovered from %+v", last.Position)
	}
	for i := 40; i < total; i++ {
		a.publish(t, channel, fmt.Sprint(i)) // live
	}
	got := recvN(t, sub2, total-20)
	for i, d := range got {
		if d != fmt.Sprint(20+i) {
			t.Fatalf("after recovery, message %d is %q: %v", i, d, got)
		}
	}
	select {
	case m := <-sub2.Messages():
		t.Fatalf("a message too many: %q", m.Data)
	case <-time.After(200 * time.Millisecond):
	}

	// From a position the history no longer covers: not recovered, starts now.
	third := b.dial(t)
	sub3, err := third.Subscribe(ctx, channel, client.Since(client.Position{Epoch: last.Epoch + "x", Offset: 3}))
	if err != nil {
		t.Fatal(err)
	}
	if sub3.Recovered() {
		t.Fatal("recovered from another epoch")
	}

	// The history API, on a node with subscribers of the channel.
	req, _ := http.NewRequest("GET", c.http+"/api/history?channel="+channel+"&limit=5", nil)
	req.Header.Set("X-API-Key", devAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Offset       uint64
		Publications []struct {
			Offset uint64
			Data   string
		}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("history: %d %s", resp.StatusCode, body)
	}
	var data []string
	for _, p := range h.Publications {
		data = append(data, p.Data)
	}
	if strings.Join(data, ",") != "55,56,57,58,59" || h.Offset != total {
		t.Fatalf("history: %s", body)
	}
}

// startCluster runs one switchyard process per name, all in region, joined
// into one mesh, and waits until each sees all.
func startCluster(t *testing.T, region string, names ...string) []*proc {
	t.Helper()
	return startClusterArgs(t, region, nil, names...)
}

// startClusterArgs is startCluster with more flags for every node.
func startClusterArgs(t *testing.T, region string, extra []string, names ...string) []*proc {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	meshDir := t.TempDir()
	if err := runCerts([]string{"init", "--dir", meshDir, "--nodes", strings.Join(names, ",")}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var procs []*proc
	for i, name := range names {
		join := ""
		if i > 0 {
			join = procs[0].gossip
		}
		procs = append(procs, startProc(t, bin, name, region, meshDir, join, extra...))
	}
	for _, p := range procs {
		waitUntil(t, 10*time.Second, fmt.Sprintf("%s sees %d nodes", p.name, len(procs)), func() bool { return len(p.nodes(t)) == len(procs) })
	}
	return procs
}

// A publish retried with the same idempotency key, on three different
// nodes (two through the HTTP API, one through the Go SDK), is stored and
// delivered once, and every retry gets the first position.
func TestIdempotentPublishAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	ctx := context.Background()
	const channel = "chat:orders"
	sub, err := a.dial(t).Subscribe(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(p *proc) (pos client.Position, dup bool) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.http+"/api/publish",
			strings.NewReader(`{"channel":"`+channel+`","data":"order 1","idempotency_key":"order-1"}`))
		req.Header.Set("X-API-Key", devAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Epoch     string
			Offset    uint64
			Duplicate bool
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("publish on %s: %d %v", p.name, resp.StatusCode, err)
		}
		return client.Position{Epoch: r.Epoch, Offset: r.Offset}, r.Duplicate
	}
	first, dup := publish(a)
	if dup {
		t.Fatal("the first publish is a duplicate")
	}
	if again, dup := publish(b); !dup || again != first {
		t.Fatalf("retry on b: %+v duplicate %v, want %+v", again, dup, first)
	}
	pos, dup, err := c.dial(t).PublishIdempotent(ctx, channel, "order-1", []byte("order 1"))
	if err != nil || !dup || pos != first {
		t.Fatalf("retry on c through the SDK: %+v %v %v", pos, dup, err)
	}
	if m := <-sub.Messages(); m.Position != first {
		t.Fatalf("delivered %+v", m.Position)
	}
	a.publish(t, channel, "next")
	if m := <-sub.Messages(); string(m.Data) != "next" || m.Offset != first.Offset+1 {
		t.Fatalf("the retries were delivered: got %q at %d", m.Data, m.Offset)
	}
}

// certHash reads a node's dev certificate hash.
func (p *proc) certHash(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(p.http + "/certhash")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Value string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Value
}

// ownedBy finds a chat:* channel that p owns (its history API says so).
func ownedBy(t *testing.T, p *proc) string {
	t.Helper()
	return ownedChannels(t, p, 1)[0]
}

// ownedChannels finds n chat:* channels that p owns.
func ownedChannels(t *testing.T, p *proc, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < 400 && len(out) < n; i++ {
		ch := fmt.Sprintf("chat:kill-%d", i)
		req, _ := http.NewRequest("GET", p.http+"/api/history?channel="+ch, nil)
		req.Header.Set("X-API-Key", devAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var h struct{ Owner bool }
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 && h.Owner {
			out = append(out, ch)
		}
	}
	if len(out) < n {
		t.Fatalf("found %d channels owned by %s, want %d", len(out), p.name, n)
	}
	return out
}

// A reconnecting client (client.Connect) on node b, over WebSocket, while
// messages are published on a; b is killed with SIGKILL mid-stream: the
// client moves to node c over WebTransport and gets every publication
// exactly once, in order; a publish it makes across the kill is applied
// once.
func TestConnSurvivesANodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	channel := ownedBy(t, a) // the owner survives: its history is what the client recovers from
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := client.Connect(ctx, []string{b.ws, c.wt}, client.Options{CertHashes: []string{c.certHash(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.Client().Transport() != "websocket" {
		t.Fatalf("first session on %s", conn.Client().Transport())
	}
	sub, err := conn.Subscribe(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	const total = 120
	published := make(chan error, 1)
	go func() {
		for i := range total {
			req, _ := http.NewRequest("POST", a.http+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":"%d"}`, channel, i)))
			req.Header.Set("X-API-Key", devAPIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				published <- err
				return
			}
			resp.Body.Close()
			time.Sleep(5 * time.Millisecond) // a steady stream, not a burst
		}
		published <- nil
	}()
	for i := range total {
		select {
		case m := <-sub.Messages():
			if string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d is %q (reconnects %d)", i, m.Data, conn.Reconnects())
			}
		case <-ctx.Done():
			t.Fatalf("got %d of %d messages (reconnects %d)", i, total, conn.Reconnects())
		}
		if i == 30 {
			b.cmd.Process.Kill() // mid-stream
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if conn.Reconnects() == 0 || conn.Client().Transport() != "webtransport" || !sub.Recovered() {
		t.Fatalf("reconnects %d, transport %s, recovered %v", conn.Reconnects(), conn.Client().Transport(), sub.Recovered())
	}
	select {
	case m := <-sub.Messages():
		t.Fatalf("a message too many: %q", m.Data)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := conn.Publish(ctx, channel, []byte("from the client")); err != nil {
		t.Fatal(err)
	}
	if m := <-sub.Messages(); string(m.Data) != "from the client" {
		t.Fatalf("got %q", m.Data)
	}
}

// Given one node's URL, a Conn learns the others from /api/nodes and,
// when that node is killed, goes on through another.
func TestConnLearnsTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	channel := ownedBy(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := client.Connect(ctx, []string{b.ws}, client.Options{CertHashes: []string{a.certHash(t), c.certHash(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitUntil(t, 10*time.Second, "the Conn knows 3 nodes", func() bool { return len(conn.URLs()) == 3 })
	sub, err := conn.Subscribe(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Process.Kill()
	waitUntil(t, 20*time.Second, "a new session", func() bool { return conn.Reconnects() > 0 && conn.Client() != nil })
	a.publish(t, channel, "after")
	select {
	case m := <-sub.Messages():
		if string(m.Data) != "after" {
			t.Fatalf("got %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatalf("nothing after the reconnect (urls %v)", conn.URLs())
	}
}

// The history API answers on any node: one with no copy of the channel
// asks its owner.
func TestHistoryFromAnyNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two processes; skipped with -short")
	}
	procs := startCluster(t, "eu", "a", "b")
	a, b := procs[0], procs[1]
	channel := ownedBy(t, a)
	for i := range 5 {
		a.publish(t, channel, fmt.Sprint(i))
	}
	req, _ := http.NewRequest("GET", b.http+"/api/history?channel="+channel+"&limit=3", nil)
	req.Header.Set("X-API-Key", devAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var h struct {
		Offset       uint64
		Complete     bool
		Publications []struct{ Data string }
	}
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != 200 || h.Offset != 5 || len(h.Publications) != 3 ||
		h.Publications[0].Data != "2" || !h.Complete {
		t.Fatalf("history on b: %d %s", resp.StatusCode, body)
	}
}
