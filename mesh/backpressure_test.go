package mesh

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestFrozenPeer: a peer whose Deliver is stuck stalls neither the owner
// nor the other peers. The owner's queue for it overflows, the link is
// dropped (counted) and re-dialled; once unstuck, the peer registers again.
func TestFrozenPeer(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{queue: 64})
	release := make(chan struct{})
	var once sync.Once
	unfreeze := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unfreeze) // before the nodes stop (cleanups run last-in first-out)
	owner, frozen, healthy := nodes[0], nodes[1], nodes[2]
	ch := channelOwnedBy(t, owner.c, owner.name, "frozen")
	frozen.register(ch)
	healthy.register(ch)
	regs := frozen.l.registeredCount(ch)
	frozen.l.mu.Lock()
	frozen.l.onDeliver = func(string, uint64) { <-release }
	frozen.l.mu.Unlock()

	payload := make([]byte, 32<<10)
	const total, batch = 480, 32
	var slowest time.Duration
	for i := 0; i < total; i += batch {
		for range batch {
			start := time.Now()
			if _, _, err := owner.c.Publish(context.Background(), ch, payload); err != nil {
				t.Fatal(err)
			}
			slowest = max(slowest, time.Since(start))
		}
		// Pace on the healthy peer so that only the frozen one overflows.
		waitFor(t, 10*time.Second, "the healthy peer keeps up", func() bool { return healthy.l.count(ch) == i+batch })
	}
	t.Logf("%d publications of 32 KiB with a frozen peer: slowest Publish on the owner %v; link overflows %d",
		total, slowest, owner.c.stats.linkDrops.Load())
	if owner.c.stats.linkDrops.Load() == 0 {
		t.Fatal("the frozen peer's link never overflowed")
	}
	got := healthy.l.received(ch)
	for i, r := range got {
		if r.offset != uint64(i+1) {
			t.Fatalf("healthy peer: delivery %d has offset %d", i, r.offset)
		}
	}
	unfreeze()
	waitFor(t, 10*time.Second, "the unfrozen peer registers again", func() bool { return frozen.l.registeredCount(ch) > regs })
	if _, _, err := owner.c.Publish(context.Background(), ch, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the unfrozen peer gets new publications", func() bool {
		r := frozen.l.received(ch)
		return len(r) > 0 && r[len(r)-1].data == "after"
	})
}
