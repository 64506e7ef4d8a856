package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

var soakDuration = flag.Duration("soak", 0, "run TestSoak with this much chaos (e.g. 3m); 0 skips it")

// TestSoak runs four nodes; a publisher on node a (which owns the
// channels and is never touched) publishes numbered messages on four
// channels; reconnecting subscribers (client.Connect) on the other nodes,
// over both transports, live through random session drops, SIGKILLs and
// SIGTERM drains of their nodes, each node restarted afterwards. At the end
// every subscriber must have every message of every channel exactly once,
// in order, from its first one on: no gap, no duplicate, no resync.
//
//	go test -run TestSoak ./cmd/switchyard/ -args -soak=3m
func TestSoak(t *testing.T) {
	if testing.Short() || *soakDuration <= 0 {
		t.Skip("a soak of minutes with four processes: go test -run TestSoak ./cmd/switchyard/ -args -soak=3m")
	}
	// A history long enough for the longest time away (a restart, under
	// -race): the soak checks delivery, not the dev default's size.
	procs := startClusterArgs(t, "eu", []string{"--history", "chat:*=5000/5m"}, "a", "b", "c", "d")
	a := procs[0]
	bin, _ := buildOnce()
	meshDir := a.meshDir
	channels := ownedChannels(t, a, 4)

	var mu sync.Mutex // guards nodes
	nodes := map[string]*proc{"b": procs[1], "c": procs[2], "d": procs[3]}
	urlsOf := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range nodes {
			out = append(out, p.ws, p.wt)
		}
		return out
	}

	ctx, cancel := context.WithTimeout(context.Background(), *soakDuration+90*time.Second)
	defer cancel()
	const subscribers = 6
	type seen struct {
		mu   sync.Mutex
		last map[string]int // channel → last number
		got  int
		bad  []string
	}
	subs := make([]*seen, subscribers)
	conns := make([]*client.Conn, subscribers)
	var csubs []*client.Sub
	var wg sync.WaitGroup
	for i := range subscribers {
		urls := urlsOf()
		rand.Shuffle(len(urls), func(x, y int) { urls[x], urls[y] = urls[y], urls[x] })
		urls = append(urls, a.ws) // the last resort, should b, c and d all move
		opts := client.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}}
		if os.Getenv("SOAK_DEBUG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("subscriber", i)
		}
		conn, err := client.Connect(ctx, urls, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
		s := &seen{last: map[string]int{}}
		subs[i] = s
		for _, ch := range channels {
			sub, err := conn.Subscribe(ctx, ch)
			if err != nil {
				t.Fatal(err)
			}
			csubs = append(csubs, sub)
			wg.Go(func() {
				for m := range sub.Messages() {
					n, err := strconv.Atoi(string(m.Data))
					s.mu.Lock()
					last, started := s.last[ch]
					switch {
					case err != nil:
						s.bad = append(s.bad, fmt.Sprintf("%s: %q", ch, m.Data))
					case started && n != last+1:
						s.bad = append(s.bad, fmt.Sprintf("%s: %d after %d", ch, n, last))
					}
					s.last[ch] = n
					s.got++
					s.mu.Unlock()
				}
			})
		}
	}

	// The publisher: numbered messages, round robin over the channels.
	var published atomic.Int64
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for n := 0; ; n++ {
			select {
			case <-stop:
				published.Store(int64(n))
				return
			default:
			}
			for _, ch := range channels {
				req, _ := http.NewRequest("POST", a.http+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":"%d"}`, ch, n)))
				req.Header.Set("X-API-Key", devAPIKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("publish %d: %v", n, err)
					published.Store(int64(n))
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("publish %d on %s: %d %s", n, ch, resp.StatusCode, body)
					published.Store(int64(n))
					return
				}
			}
			time.Sleep(20 * time.Millisecond) // ≈ 30 a second per channel: the history (100) covers 3 s away
		}
	}()

	// Chaos.
	var drops, kills, drains int
	deadline := time.Now().Add(*soakDuration)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		switch r := rand.IntN(10); {
		case r < 5: // a session drops
			if cl := conns[rand.IntN(subscribers)].Client(); cl != nil {
				cl.Close()
				drops++
			}
		default: // a node dies (kill -9) or drains (SIGTERM), and comes back
			names := []string{"b", "c", "d"}
			name := names[rand.IntN(len(names))]
			mu.Lock()
			p := nodes[name]
			mu.Unlock()
			if r < 8 {
				p.cmd.Process.Kill()
				kills++
			} else {
				p.cmd.Process.Signal(syscall.SIGTERM)
				drains++
			}
			p.cmd.Wait()
			np := startProc(t, bin, name, "eu", meshDir, a.gossip, p.extra...)
			mu.Lock()
			nodes[name] = np
			mu.Unlock()
			_ = np // the subscribers learn its new addresses from /api/nodes
		}
	}
	close(stop)
	<-pubDone
	last := int(published.Load()) - 1
	// Every subscriber catches up with the last message of every channel.
	for time.Now().Before(deadline.Add(60 * time.Second)) {
		done := true
		for _, s := range subs {
			s.mu.Lock()
			for _, ch := range channels {
				if s.last[ch] < last {
					done = false
				}
			}
			s.mu.Unlock()
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var reconnects, resyncs uint64
	total := 0
	for i, s := range subs {
		s.mu.Lock()
		for _, ch := range channels {
			if s.last[ch] != last {
				t.Errorf("subscriber %d, %s: last message %d, want %d (URLs %v, a %s)", i, ch, s.last[ch], last, conns[i].URLs(), a.ws)
			}
		}
		for _, b := range s.bad {
			t.Errorf("subscriber %d: %s", i, b)
		}
		total += s.got
		s.mu.Unlock()
		reconnects += conns[i].Reconnects()
	}
	for _, sub := range csubs {
		resyncs += sub.Resyncs()
	}
	if resyncs != 0 {
		t.Errorf("%d resyncs: the history should have covered every reconnect", resyncs)
	}
	t.Logf("soak %v: %d nodes killed, %d drained, %d sessions dropped; %d messages published on %d channels, %d delivered to %d subscribers, %d reconnects, 0 gaps or duplicates",
		*soakDuration, kills, drains, drops, (last+1)*len(channels), len(channels), total, subscribers, reconnects)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
