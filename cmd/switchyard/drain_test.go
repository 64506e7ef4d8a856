package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

// TestDrainUnderLoad: three nodes; reconnecting subscribers (both
// transports) on b; numbered publications on channels owned by each node,
// published without a pause through a and c; b drains (SIGTERM) in the
// middle. Every subscriber must get every publication of every channel
// once, in order, with no resync: b hands its channels to their new
// owners and sends its clients to another node, where they recover.
func TestDrainUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	// A history that covers a client's time away at this rate (the dev
	// default keeps 100 publications).
	procs, _ := startMeshArgs(t, "eu", []string{"--history", "chat:*=5000/5m"}, 3, "a", "b", "c")
	a, b, c := procs[0], procs[1], procs[2]
	var channels []string
	for _, p := range procs {
		channels = append(channels, ownedChannels(t, p, 2)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type seen struct {
		mu     sync.Mutex
		last   map[string]int
		offset map[string]uint64
		bad    []string
	}
	var subs []*seen
	var csubs []*client.Sub
	var conns []*client.Conn
	var wg sync.WaitGroup
	for i, url := range []string{b.ws, b.wt, b.ws, b.wt} {
		conn, err := client.Connect(ctx, []string{url}, client.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		s := &seen{last: map[string]int{}, offset: map[string]uint64{}}
		subs = append(subs, s)
		for _, ch := range channels {
			sub, err := conn.Subscribe(ctx, ch)
			if err != nil {
				t.Fatal(err)
			}
			csubs = append(csubs, sub)
			wg.Go(func() {
				for m := range sub.Messages() {
					s.mu.Lock()
					s.offset[ch] = m.Offset
					if string(m.Data) == "end" {
						s.mu.Unlock()
						continue
					}
					n, _ := strconv.Atoi(string(m.Data))
					if last, ok := s.last[ch]; ok && n != last+1 {
						s.bad = append(s.bad, fmt.Sprintf("subscriber %d, %s: %d after %d", i, ch, n, last))
					}
					s.last[ch] = n
					s.mu.Unlock()
				}
			})
		}
	}

	var sent atomic.Int64
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	for i, ch := range channels {
		via := []*proc{a, c}[i%2]
		pubs.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				via.publishUntilAcked(t, ch, strconv.Itoa(n), fmt.Sprint(ch, "/", n))
				sent.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	before := sent.Load()
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	drained := sent.Load()
	time.Sleep(2 * time.Second)
	close(stop)
	pubs.Wait()
	total := sent.Load()
	if drained-before == 0 || total-drained == 0 {
		t.Fatalf("published %d before, %d during and %d after the drain: the publisher stalled", before, drained-before, total-drained)
	}

	// Every subscriber catches up with the last acknowledged message of
	// every channel (the publisher numbers each channel from 0).
	want := map[string]int{}
	for _, ch := range channels {
		pos, err := a.publishKeyed(ch, "end", fmt.Sprint(ch, "/end"))
		if err != nil {
			t.Fatal(err)
		}
		want[ch] = int(pos.Offset)
	}
	waitUntil(t, 30*time.Second, "every subscriber has every message", func() bool {
		for _, s := range subs {
			s.mu.Lock()
			for _, ch := range channels {
				if s.offset[ch] < uint64(want[ch]) {
					s.mu.Unlock()
					return false
				}
			}
			s.mu.Unlock()
		}
		return true
	})
	for _, s := range subs {
		s.mu.Lock()
		for _, bad := range s.bad {
			t.Error(bad)
		}
		s.mu.Unlock()
	}
	for _, sub := range csubs {
		if sub.Resyncs() != 0 {
			t.Errorf("%s: %d resyncs", sub.Channel(), sub.Resyncs())
		}
	}
	t.Logf("%d publications on %d channels (%d while b drained), 4 subscribers on b moved elsewhere: every one once, in order", total, len(channels), drained-before)
	for _, conn := range conns {
		conn.Close() // ends the subscriptions' Messages
	}
	wg.Wait()
}
