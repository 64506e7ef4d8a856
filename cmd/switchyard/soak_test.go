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

// TestSoak runs four nodes; a publisher publishes numbered messages on
// four channels (one owned by each node at the start) through any live
// node, retrying each with its idempotency key until it is acknowledged;
// reconnecting subscribers (client.Connect), over both transports, live
// through random session drops, SIGKILLs and SIGTERM drains of any node
// (owners included: their successors take over with the channel's epoch),
// each node restarted afterwards. At the end every subscriber must have
// every message of every channel exactly once, in order, from its first
// one on: no gap, no duplicate, no resync.
//
//	go test -run TestSoak ./cmd/switchyard/ -args -soak=3m
func TestSoak(t *testing.T) {
	if testing.Short() || *soakDuration <= 0 {
		t.Skip("a soak of minutes with four processes: go test -run TestSoak ./cmd/switchyard/ -args -soak=3m")
	}
	// A history long enough for the longest time away (a restart, under
	// -race): the soak checks delivery, not the dev default's size.
	procs := startClusterArgs(t, "eu", []string{"--history", "chat:*=5000/5m", "--log-level", "info"}, "a", "b", "c", "d")
	a := procs[0]
	bin, _ := buildOnce()
	meshDir := a.meshDir
	var channels []string
	for _, p := range procs {
		channels = append(channels, ownedBy(t, p))
	}

	var mu sync.Mutex // guards nodes
	nodes := map[string]*proc{"a": a, "b": procs[1], "c": procs[2], "d": procs[3]}
	anyNode := func() *proc {
		mu.Lock()
		defer mu.Unlock()
		names := []string{"a", "b", "c", "d"}
		return nodes[names[rand.IntN(len(names))]]
	}
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
	var acks sync.Map // "channel/n" → the acknowledged position
	subs := make([]*seen, subscribers)
	conns := make([]*client.Conn, subscribers)
	var csubs []*client.Sub
	var wg sync.WaitGroup
	for i := range subscribers {
		urls := urlsOf()
		rand.Shuffle(len(urls), func(x, y int) { urls[x], urls[y] = urls[y], urls[x] })
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
						ack, _ := acks.Load(fmt.Sprint(ch, "/", last+1))
						s.bad = append(s.bad, fmt.Sprintf("%s: %d (%s:%d) after %d; %d was acked at %v", ch, n, m.Epoch, m.Offset, last, last+1, ack))
					}
					s.last[ch] = n
					s.got++
					s.mu.Unlock()
				}
			})
		}
	}

	// The publisher: numbered messages, round robin over the channels.
	var published, retries atomic.Int64
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
				// Through any node, again (with the same key, on another
				// node maybe) until acknowledged: applied once.
				for try := 0; ; try++ {
					via := anyNode()
					pos, err := via.publishKeyed(ch, strconv.Itoa(n), fmt.Sprint(ch, "/", n))
					if err == nil {
						acks.Store(fmt.Sprint(ch, "/", n), fmt.Sprintf("%s:%d via %s at %s", pos.Epoch, pos.Offset, via.name, time.Now().Format("15:04:05.000")))
						break
					}
					if try == 300 {
						t.Errorf("publish %d on %s: %v", n, ch, err)
						published.Store(int64(n))
						return
					}
					retries.Add(1)
					time.Sleep(50 * time.Millisecond)
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
			names := []string{"a", "b", "c", "d"}
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
			t.Logf("%s %s stopped (%s)", time.Now().Format("15:04:05.000"), name, map[bool]string{true: "SIGKILL", false: "SIGTERM"}[r < 8])
			seed := nodes["a"]
			if name == "a" {
				seed = nodes["b"]
			}
			// Back on the same client addresses, as a restarted server is
			// (clients only know the addresses they were given or learnt).
			listen := strings.TrimPrefix(p.wt, "https://")
			httpAddr := strings.TrimPrefix(p.http, "http://")
			np := startProc(t, bin, name, "eu", meshDir, seed.gossip, append(p.extra, "--listen", listen, "--http", httpAddr)...)
			mu.Lock()
			nodes[name] = np
			mu.Unlock()
			// One failure at a time (what a copy per channel survives):
			// the next waits until the mesh took the new process in (a
			// killed node's name is reclaimed 5 s after it is declared
			// dead) and every node lists all four.
			time.Sleep(8 * time.Second)
			waitUntil(t, 60*time.Second, name+" back in everyone's view", func() bool {
				for _, q := range []string{"a", "b", "c", "d"} {
					if len(nodes[q].nodes(t)) != 4 {
						return false
					}
				}
				return true
			})
			t.Logf("%s %s back", time.Now().Format("15:04:05.000"), name)
			time.Sleep(time.Second) // and the copies made again
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
	behind := false
	for i, s := range subs {
		s.mu.Lock()
		for _, ch := range channels {
			if s.last[ch] != last {
				behind = true
			}
		}
		s.mu.Unlock()
		if cl := conns[i].Client(); cl != nil {
			t.Logf("subscriber %d: on %s over %s, session %s, reconnects %d, ended %v", i, cl.Connected().GetNode(), cl.Transport(), cl.SessionID(), conns[i].Reconnects(), cl.Err())
		} else {
			t.Logf("subscriber %d: no session (reconnects %d)", i, conns[i].Reconnects())
		}
	}
	if t.Failed() || behind {
		for _, ch := range channels {
			for _, name := range []string{"a", "b", "c", "d"} {
				p := nodes[name]
				req, _ := http.NewRequest("GET", p.http+"/api/history?channel="+ch+"&limit=1", nil)
				req.Header.Set("X-API-Key", devAPIKey)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Logf("%s on %s: %s", ch, name, b)
				}
			}
		}
	}
	var reconnects, resyncs uint64
	total := 0
	for i, s := range subs {
		s.mu.Lock()
		for _, ch := range channels {
			if s.last[ch] != last {
				t.Errorf("subscriber %d, %s: last message %d, want %d (URLs %v)", i, ch, s.last[ch], last, conns[i].URLs())
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
	verdict := "0 gaps, duplicates or resyncs"
	if t.Failed() {
		verdict = "FAILED (above)"
	}
	t.Logf("soak %v: %d nodes killed, %d drained (owners included), %d sessions dropped; %d messages published on %d channels (%d publish retries), %d delivered to %d subscribers, %d reconnects, %s",
		*soakDuration, kills, drains, drops, (last+1)*len(channels), len(channels), retries.Load(), total, subscribers, reconnects, verdict)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
