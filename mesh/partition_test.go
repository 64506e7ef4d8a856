package mesh

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPartitionHeal: a partition splits {n1,n2} from {n3}; each side
// declares the other dead; once the network heals, the periodic rejoin
// merges the sides and all nodes agree on members, routes and owners.
func TestPartitionHeal(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{rejoin: 300 * time.Millisecond, key: testKey})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n1.c.Register("left-side")
	n3.c.Register("right-side")
	waitFor(t, 5*time.Second, "interest everywhere", func() bool {
		return interestedEverywhere(nodes, "left-side", "n1", true)() && interestedEverywhere(nodes, "right-side", "n3", true)()
	})

	start := time.Now()
	tn.split([]string{"n1", "n2"}, []string{"n3"})
	waitFor(t, 10*time.Second, "both sides declare the other dead", func() bool {
		return slices.Equal(memberNames(n1.c), []string{"n1", "n2"}) &&
			slices.Equal(memberNames(n2.c), []string{"n1", "n2"}) &&
			slices.Equal(memberNames(n3.c), []string{"n3"})
	})
	t.Logf("partition: both sides split after %v", time.Since(start).Round(time.Millisecond))
	if !interestedEverywhere(nodes[:2], "right-side", "n3", false)() {
		t.Fatal("n3's interest survives on the other side of the partition")
	}
	// Each side owns every channel among its own members.
	for i := range 20 {
		ch := fmt.Sprintf("p-%d", i)
		if o := n1.c.Owner(ch); o != n2.c.Owner(ch) || o == "n3" || n3.c.Owner(ch) != "n3" {
			t.Fatalf("owners of %s during the partition: %s %s %s", ch, o, n2.c.Owner(ch), n3.c.Owner(ch))
		}
	}

	start = time.Now()
	tn.split() // heal
	took := waitConverged(t, nodes, 15*time.Second)
	t.Logf("partition healed: members merged %v after the network healed (RejoinInterval 300ms)", took.Round(time.Millisecond))
	waitFor(t, 5*time.Second, "routes agree again", func() bool {
		return interestedEverywhere(nodes, "left-side", "n1", true)() && interestedEverywhere(nodes, "right-side", "n3", true)()
	})
	t.Logf("partition healed: routes agree %v after the network healed", time.Since(start).Round(time.Millisecond))
	for i := range 20 {
		ch := fmt.Sprintf("p-%d", i)
		if o := n1.c.Owner(ch); o != n2.c.Owner(ch) || o != n3.c.Owner(ch) {
			t.Fatalf("owners of %s after healing: %s %s %s", ch, o, n2.c.Owner(ch), n3.c.Owner(ch))
		}
	}
	// And forwarding works across the healed partition.
	ch := channelOwnedBy(t, n1.c, "n1", "healed")
	n3.register(ch)
	if _, _, err := n2.c.Publish(context.Background(), ch, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n3 got the publication", func() bool { return n3.l.count(ch) == 1 })
}
