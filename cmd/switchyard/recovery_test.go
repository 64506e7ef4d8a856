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
		procs = append(procs, startProc(t, bin, name, region, meshDir, join))
	}
	for _, p := range procs {
		waitUntil(t, 10*time.Second, fmt.Sprintf("%s sees %d nodes", p.name, len(procs)), func() bool { return len(p.nodes(t)) == len(procs) })
	}
	return procs
}
