package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func interestedEverywhere(nodes []*testNode, channel string, node string, want bool) func() bool {
	return func() bool {
		for _, n := range nodes {
			if slices.Contains(n.c.interested(channel), node) != want {
				return false
			}
		}
		return true
	}
}

// TestInterestGossip: a node's interest reaches every other node by
// gossip, and is withdrawn when it unregisters.
func TestInterestGossip(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 5, nodeOpts{key: testKey})
	n5 := nodes[4]

	n5.c.Register("room")
	took := waitFor(t, 5*time.Second, "interest of n5 everywhere", interestedEverywhere(nodes, "room", "n5", true))
	t.Logf("5 nodes: interest of an existing node reached all others in %v", took.Round(time.Millisecond))

	n5.c.Unregister("room")
	took = waitFor(t, 5*time.Second, "interest of n5 withdrawn everywhere", interestedEverywhere(nodes, "room", "n5", false))
	t.Logf("5 nodes: withdrawal reached all others in %v", took.Round(time.Millisecond))

	// A new node that joins with local subscribers already in place.
	start := time.Now()
	n6 := startNode(t, tn, "n6", nodeOpts{key: testKey, seeds: []string{nodes[0].c.Addr()}, channels: []string{"lobby", "chat"}})
	nodes = append(nodes, n6)
	waitFor(t, 5*time.Second, "n6's interest everywhere", func() bool {
		return interestedEverywhere(nodes, "lobby", "n6", true)() && interestedEverywhere(nodes, "chat", "n6", true)()
	})
	t.Logf("6th node: interest reached all others %v after Start began", time.Since(start).Round(time.Millisecond))
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

// TestForwardOnlyInterested: the owner forwards a channel only to nodes
// with interest.
func TestForwardOnlyInterested(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 4, nodeOpts{})
	owner := nodes[0]
	ch := channelOwnedBy(t, owner.c, owner.name, "fwd")
	nodes[1].register(ch)
	nodes[2].register(ch)

	const N = 200
	for i := 0; i < N; i++ {
		if _, _, err := owner.c.Publish(context.Background(), ch, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[1:3] {
		waitFor(t, 5*time.Second, n.name+" got all", func() bool { return n.l.count(ch) == N })
	}
	// n4 has no interest: after n2 and n3 got everything, n4 got nothing.
	if got := nodes[3].l.count(ch); got != 0 {
		t.Fatalf("n4 without interest received %d frames", got)
	}
	for _, n := range nodes {
		if n.l.badFrame != 0 {
			t.Fatalf("%s received %d frames that do not match their position", n.name, n.l.badFrame)
		}
	}

	// Withdrawn interest: n3 unregisters; later publications skip it.
	nodes[2].c.Unregister(ch)
	waitFor(t, 5*time.Second, "n3 dropped from the owner's routes", func() bool {
		return !slices.Contains(owner.c.interested(ch), "n3")
	})
	for i := 0; i < 10; i++ {
		owner.c.Publish(context.Background(), ch, []byte("after"))
	}
	waitFor(t, 5*time.Second, "n2 got the rest", func() bool { return nodes[1].l.count(ch) == N+10 })
	if got := nodes[2].l.count(ch); got != N {
		t.Fatalf("n3 received %d frames after unregistering, want %d", got-N, 0)
	}
}

// TestPublishOrder: concurrent publishers on every node; every interested
// node delivers the channel's publications in one order.
func TestPublishOrder(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 4, nodeOpts{})
	ch := "ordered"
	owner := nodes[0].c.Owner(ch)
	for _, n := range nodes {
		if n.name != owner {
			n.register(ch)
		}
	}
	const per = 60
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*per)
	for _, n := range nodes {
		for p := 0; p < 2; p++ { // two publishers per node
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per/2; i++ {
					_, _, err := n.c.Publish(context.Background(), ch, fmt.Appendf(nil, "%s/%d/%d", n.name, p, i))
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := per * len(nodes)
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.name+" delivered all", func() bool { return n.l.count(ch) == total })
	}
	ref := nodes[0].l.received(ch)
	for i, r := range ref {
		if r.offset != uint64(i+1) {
			t.Fatalf("n1: delivery %d has offset %d", i, r.offset)
		}
	}
	for _, n := range nodes[1:] {
		if got := n.l.received(ch); !slices.Equal(got, ref) {
			t.Fatalf("%s delivered a different sequence than n1", n.name)
		}
	}
}

// TestRegisterThenPublish: once Registered was called on B, a publication
// made on A right away reaches B, before gossip could have told anyone.
func TestRegisterThenPublish(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{})
	for i := 0; i < 30; i++ {
		ch := fmt.Sprintf("race-%d", i)
		owner := nodes[0].c.Owner(ch)
		var a, b *testNode
		for _, n := range nodes { // B and A are both not the owner when possible
			switch {
			case n.name == owner:
			case b == nil:
				b = n
			case a == nil:
				a = n
			}
		}
		if a == nil {
			a = nodes[0]
		}
		b.register(ch)
		if _, _, err := a.c.Publish(context.Background(), ch, []byte("x")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, b.name+" got the publication on "+ch, func() bool { return b.l.count(ch) == 1 })
	}
}

// TestShutdownGraceful: a node that shuts down leaves at once (no
// failure detection), and Shutdown is idempotent.
func TestShutdownGraceful(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := nodes[2].c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	waitConverged(t, nodes[:2], 5*time.Second)
	t.Logf("graceful leave seen by the others %v after Shutdown began (Shutdown took %v)",
		time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	if err := nodes[2].c.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	nodes[2].c.Kill()
	if err := nodes[2].c.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown: %v, want ErrClosed", err)
	}
	if _, _, err := nodes[2].c.Publish(ctx, "x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Shutdown: %v, want ErrClosed", err)
	}
}

// TestKillDetected: a crashed node is declared dead within ~3 s, its
// interest is dropped, and ownership moves consistently.
func TestKillDetected(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 5, nodeOpts{})
	victim, survivors := nodes[2], slices.Delete(slices.Clone(nodes), 2, 3)
	owned := channelOwnedBy(t, nodes[0].c, victim.name, "kill")
	victim.register("victim-interest")
	waitFor(t, 5*time.Second, "victim's interest everywhere", interestedEverywhere(survivors, "victim-interest", victim.name, true))
	sub := survivors[0]
	sub.register(owned)
	regsBefore := sub.l.registeredCount(owned)

	start := time.Now()
	victim.c.Kill()
	var mu sync.Mutex
	detected := map[string]time.Duration{}
	waitFor(t, 10*time.Second, "all survivors declare the victim dead", func() bool {
		for _, n := range survivors {
			if _, ok := detected[n.name]; ok {
				continue
			}
			if !slices.Contains(memberNames(n.c), victim.name) {
				mu.Lock()
				detected[n.name] = time.Since(start)
				mu.Unlock()
			}
		}
		return len(detected) == len(survivors)
	})
	var first, last time.Duration
	for _, d := range detected {
		if first == 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	t.Logf("LAN, 5 nodes: killed node declared dead after %v (first survivor) to %v (last)", first.Round(time.Millisecond), last.Round(time.Millisecond))

	if !interestedEverywhere(survivors, "victim-interest", victim.name, false)() {
		t.Fatal("victim's interest survives it")
	}
	newOwner := survivors[0].c.Owner(owned)
	owners := 0
	for _, n := range survivors {
		if o := n.c.Owner(owned); o != newOwner {
			t.Fatalf("%s thinks %s owns %s, %s thinks %s", n.name, o, owned, survivors[0].name, newOwner)
		}
		if n.c.IsOwner(owned) {
			owners++
		}
	}
	if newOwner == victim.name || owners != 1 {
		t.Fatalf("owner of %s after the kill: %s, %d survivors claim it", owned, newOwner, owners)
	}
	// The subscriber registered with the new owner and gets its publications.
	waitFor(t, 5*time.Second, "re-registration with the new owner", func() bool { return sub.l.registeredCount(owned) > regsBefore })
	var pub *testNode
	for _, n := range survivors {
		if n != sub {
			pub = n
			break
		}
	}
	if _, _, err := pub.c.Publish(context.Background(), owned, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delivery from the new owner", func() bool {
		r := sub.l.received(owned)
		return len(r) > 0 && r[len(r)-1].data == "after"
	})
}

// TestPendingFailsFast: a publish waiting on an owner that dies fails as
// soon as the mesh knows, not after RequestTimeout.
func TestPendingFailsFast(t *testing.T) {
	tn := newTestNet()
	block := make(chan struct{})
	entered := make(chan string, 1)
	opts := nodeOpts{timeout: 30 * time.Second}
	nodes := startCluster(t, tn, 3, opts)
	owner := nodes[0]
	owner.l.seqBlock = map[string]chan struct{}{}
	ch := channelOwnedBy(t, owner.c, owner.name, "slow")
	owner.l.mu.Lock()
	owner.l.seqBlock[ch] = block
	owner.l.seqEntered = entered
	owner.l.mu.Unlock()

	res := make(chan error, 1)
	go func() {
		_, _, err := nodes[1].c.Publish(context.Background(), ch, []byte("x"))
		res <- err
	}()
	<-entered
	start := time.Now()
	killed := make(chan struct{})
	go func() {
		owner.c.Kill()
		close(killed)
	}()
	err := <-res
	t.Logf("publish to a killed owner failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrPeerGone) && !errors.Is(err, ErrLinkReset) {
		t.Fatalf("Publish: %v, want ErrPeerGone or ErrLinkReset", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Publish took %v to fail", time.Since(start))
	}
	close(block)
	<-killed
}

// TestDraining: a draining node owns nothing while others can.
func TestDraining(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{urls: map[string]string{"ws": "wss://example.test/ws"}})
	ch := channelOwnedBy(t, nodes[0].c, "n2", "drain")
	nodes[1].c.SetDraining(true)
	waitFor(t, 5*time.Second, "everyone sees n2 draining and moves its channel", func() bool {
		for _, n := range nodes {
			if n.c.Owner(ch) == "n2" {
				return false
			}
			for _, m := range n.c.Members() {
				if m.Name == "n2" && !m.Draining {
					return false
				}
			}
		}
		return true
	})
	for _, m := range nodes[0].c.Members() {
		if m.PublicURLs["ws"] != "wss://example.test/ws" || m.ForwardAddr == "" || m.Addr == "" || m.Region != "r1" {
			t.Fatalf("member %+v lacks its metadata", m)
		}
	}
	nodes[1].c.SetDraining(false)
	waitFor(t, 5*time.Second, "n2 owns its channel again", func() bool {
		for _, n := range nodes {
			if n.c.Owner(ch) != "n2" {
				return false
			}
		}
		return true
	})
}

// TestPendingFailsOnDeath: a publish waiting on an owner whose links stay
// up but which memberlist declares dead (a gossip-only partition) fails
// when the death is known, long before RequestTimeout.
func TestPendingFailsOnDeath(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{timeout: 30 * time.Second})
	owner := nodes[0]
	block := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(block) }) })
	ch := channelOwnedBy(t, owner.c, owner.name, "cut")
	entered := make(chan string, 1)
	owner.l.mu.Lock()
	owner.l.seqBlock = map[string]chan struct{}{ch: block}
	owner.l.seqEntered = entered
	owner.l.mu.Unlock()

	res := make(chan error, 1)
	go func() {
		_, _, err := nodes[1].c.Publish(context.Background(), ch, []byte("x"))
		res <- err
	}()
	<-entered
	start := time.Now()
	tn.split([]string{"n1"}, []string{"n2", "n3"}) // gossip only: the open links stay up
	err := <-res
	t.Logf("publish to an owner declared dead failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrPeerGone) && !errors.Is(err, ErrLinkReset) {
		t.Fatalf("Publish: %v, want ErrPeerGone or ErrLinkReset", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatalf("Publish took %v to fail", time.Since(start))
	}
}
