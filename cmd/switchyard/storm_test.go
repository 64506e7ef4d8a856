package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

var (
	stormSessions = flag.Int("storm", 1000, "sessions in TestReconnectStorm (15000 for the figures of bench/RESULTS.md)")
	stormRate     = flag.Int("storm-rate", 0, "TestReconnectStorm's --limits.connect-rate (0: a quarter of -storm a second)")
)

// startNodeProc runs the binary as a node of its own (a process apart, so
// that its sockets and the test's count against separate open-file
// limits) and returns its plain WebSocket URL.
func startNodeProc(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	ws := regexp.MustCompile(`^\s+WebSocket\s+(ws://\S+)`)
	sc := bufio.NewScanner(stdout)
	url := ""
	for sc.Scan() && url == "" {
		if m := ws.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
	}
	go io.Copy(io.Discard, stdout)
	if url == "" {
		t.Fatal("the node printed no ws:// URL")
	}
	return cmd, url
}

// TestReconnectStorm: N reconnecting clients on one node; the node is
// killed and restarted on the same address, and all of them reconnect at
// once. Admission control (--limits.connect-rate) paces them with 3006
// and a retry-after each: the node stays up and every client is back, in
// about N / rate seconds. The time is printed; bench/RESULTS.md has the
// figures for 15,000 (go test -run TestReconnectStorm ./cmd/switchyard/
// -args -storm=15000).
func TestReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test with a separate node process; skipped with -short")
	}
	n := *stormSessions
	rate := *stormRate
	if rate == 0 {
		rate = max(n/4, 250) // the storm takes about four seconds to admit
	}
	args := func(http string) []string {
		return []string{"--listen", "", "--http", http, "--log-level", "warn", "--limits.http-conns-per-ip", "0", // one client IP here
			"--limits.connect-rate", strconv.Itoa(rate), "--limits.connect-burst", strconv.Itoa(rate / 4)}
	}
	node, url := startNodeProc(t, args("127.0.0.1:0")...)
	addr := regexp.MustCompile(`ws://([^/]+)/ws`).FindStringSubmatch(url)[1]

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conns := make([]*client.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	sem := make(chan struct{}, 200) // dials in flight
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := client.Connect(ctx, []string{url}, client.Options{Transport: "websocket"})
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d sessions failed to connect", f, n)
	}
	t.Logf("%d sessions connected in %v", n, time.Since(start).Round(time.Millisecond))
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// The node dies; a new one comes up on the same address at once.
	node.Process.Signal(syscall.SIGKILL)
	node.Wait()
	for _, c := range conns {
		waitUntil(t, 10*time.Second, "every session sees the node go", func() bool { return c.Client() == nil })
	}
	stormAt := time.Now()
	startNodeProc(t, args(addr)...)
	back := waitUntil(t, 3*time.Minute, "every session back", func() bool {
		for _, c := range conns {
			if c.Client() == nil {
				return false
			}
		}
		return true
	})
	took := time.Since(stormAt)
	ideal := time.Duration(float64(n)/float64(rate)*float64(time.Second)) - time.Duration(float64(rate/4)/float64(rate)*float64(time.Second))
	t.Logf("storm: %d sessions reconnected in %v after the restart (connect rate %d/s: at best %v); waited %v", n, took.Round(time.Millisecond), rate, ideal.Round(time.Millisecond), back.Round(time.Millisecond))
	// No speed assertion (a shared machine): the bound is waitUntil's,
	// and the node must still serve.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("the node after the storm: %v", err)
	}
	resp.Body.Close()
}
