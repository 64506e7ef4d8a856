package mesh

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Multi-region clusters: Profile "wan", so each node runs the cluster-wide
// (WAN) pool with WAN timings and a LAN pool of its region with LAN
// timings. The test net adds a one-way delay to all traffic between
// regions: both pools' packets and streams (the LAN pools must carry none)
// and the links.

const regionDelay = 50 * time.Millisecond

// startRegions starts n1, n2 in "eu" and n3, n4 in "us", all joining
// through n1, and waits until every node sees all four and every LAN pool
// holds its region's two nodes.
func startRegions(t *testing.T, tn *testNet, o nodeOpts) []*testNode {
	t.Helper()
	o.profile = ProfileWAN
	var nodes []*testNode
	for i, region := range []string{"eu", "eu", "us", "us"} {
		oi := o
		oi.region = region
		oi.urls = map[string]string{"ws": "wss://" + region + ".example.test/ws"}
		if i > 0 {
			oi.seeds = append(slices.Clone(o.seeds), nodes[0].c.Addr())
		}
		nodes = append(nodes, startNode(t, tn, fmt.Sprintf("n%d", i+1), oi))
	}
	waitConverged(t, nodes, 10*time.Second)
	waitFor(t, 10*time.Second, "LAN pools of two", func() bool {
		for _, n := range nodes {
			if n.c.lanML.NumMembers() != 2 || len(lanMemberNames(n.c)) != 1 {
				return false
			}
		}
		return true
	})
	return nodes
}

func lanMemberNames(c *Cluster) []string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	var out []string
	for name := range c.lanMembers {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// wanLists reports whether c's cluster-wide pool lists name.
func wanLists(c *Cluster, name string) bool {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	_, ok := c.wan[name]
	return ok
}

func lanDeclaredDead(c *Cluster, name string) bool {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	_, ok := c.lanDown[name]
	return ok
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

// TestRegions: a two-region cluster (eu: n1, n2; us: n3, n4) with 50 ms
// one-way between the regions. Each LAN pool holds its region only and
// carries nothing across; delivery across regions works and keeps one
// order; a killed node is declared dead by its region at LAN speed and by
// the other region at WAN speed. The test logs what the delay costs.
func TestRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("WAN failure detection takes several seconds; skipped with -short")
	}
	tn := newTestNet()
	tn.wanDelay = regionDelay
	nodes := startRegions(t, tn, nodeOpts{key: testKey})
	n1, n2, n3, n4 := nodes[0], nodes[1], nodes[2], nodes[3]

	for _, n := range nodes {
		m := n.c.Members()
		for _, mm := range m {
			if mm.LANAddr == "" {
				t.Fatalf("%s: member %s advertises no LAN pool address", n.name, mm.Name)
			}
		}
		if n.lanTr.cross.Load() != 0 {
			t.Fatalf("%s: the LAN pool sent %d packets to the other region", n.name, n.lanTr.cross.Load())
		}
	}
	if got, want := lanMemberNames(n1.c), []string{"n2"}; !slices.Equal(got, want) {
		t.Fatalf("n1's LAN pool: %v, want %v", got, want)
	}
	if got, want := lanMemberNames(n3.c), []string{"n4"}; !slices.Equal(got, want) {
		t.Fatalf("n3's LAN pool: %v, want %v", got, want)
	}
	byRegion := map[string][]string{}
	for _, m := range n1.c.Members() {
		byRegion[m.Region] = append(byRegion[m.Region], m.PublicURLs["ws"])
	}
	if len(byRegion["eu"]) != 2 || len(byRegion["us"]) != 2 || byRegion["us"][0] != "wss://us.example.test/ws" {
		t.Fatalf("public URLs by region: %v", byRegion)
	}

	// Registration with an owner in eu: from eu (n2) and from us (n3).
	var regEU, regUS []time.Duration
	for i := range 5 {
		ch := channelOwnedBy(t, n1.c, "n1", fmt.Sprintf("reg%d", i))
		start := time.Now()
		n2.register(ch)
		regEU = append(regEU, time.Since(start))
		start = time.Now()
		n3.register(ch)
		regUS = append(regUS, time.Since(start))
	}
	t.Logf("regions: registration with the owner answered: same region %v, across regions %v (median of 5)", median(regEU), median(regUS))

	// Publications sequenced by n1 (eu): delivery in eu (n2) and in us (n3,
	// n4); publish answered for n2 (same region) and n4 (across).
	ch := channelOwnedBy(t, n1.c, "n1", "wan")
	for _, n := range []*testNode{n2, n3, n4} {
		n.register(ch)
	}
	var delEU, delUS []time.Duration
	for i := range 10 {
		start := time.Now()
		if _, _, err := n1.c.Publish(context.Background(), ch, []byte("x")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "n2 got it", func() bool { return n2.l.count(ch) == i+1 })
		delEU = append(delEU, time.Since(start))
		waitFor(t, 5*time.Second, "n3 got it", func() bool { return n3.l.count(ch) == i+1 })
		delUS = append(delUS, time.Since(start))
	}
	t.Logf("regions: owner's publish → delivery: same region %v, across regions (one 50 ms hop) %v (median of 10)", median(delEU), median(delUS))
	var pubEU, pubUS []time.Duration
	for range 10 {
		start := time.Now()
		if _, _, err := n2.c.Publish(context.Background(), ch, []byte("y")); err != nil {
			t.Fatal(err)
		}
		pubEU = append(pubEU, time.Since(start))
		start = time.Now()
		if _, _, err := n4.c.Publish(context.Background(), ch, []byte("z")); err != nil {
			t.Fatal(err)
		}
		pubUS = append(pubUS, time.Since(start))
	}
	t.Logf("regions: publish answered by the eu owner: from eu %v, from us (two 50 ms hops) %v (median of 10)", median(pubEU), median(pubUS))

	// Ordering: publishers in both regions at once; every subscriber in
	// both regions delivers the owner's sequence.
	const per = 20
	var wg sync.WaitGroup
	errs := make(chan error, 4*per)
	for _, n := range []*testNode{n2, n2, n4, n4} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, _, err := n.c.Publish(context.Background(), ch, fmt.Appendf(nil, "%s/%d", n.name, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ref := n1.l.received(ch)
	for i, r := range ref {
		if r.offset != uint64(i+1) {
			t.Fatalf("owner: publication %d has offset %d", i, r.offset)
		}
	}
	for _, n := range []*testNode{n2, n3, n4} {
		waitFor(t, 10*time.Second, n.name+" delivered all", func() bool { return n.l.count(ch) == len(ref) })
		if got := n.l.received(ch); !slices.Equal(got, ref) {
			t.Fatalf("%s delivered a different sequence than the owner", n.name)
		}
		if n.l.badFrame != 0 {
			t.Fatalf("%s: %d frames do not match their position", n.name, n.l.badFrame)
		}
	}

	// Failure detection: kill n2 (eu).
	start := time.Now()
	n2.c.Kill()
	survivors := []*testNode{n1, n3, n4}
	detected := map[string]time.Duration{}
	wanStill := false // n1's WAN pool still listed n2 when n1 dropped it
	waitFor(t, 20*time.Second, "all survivors declare n2 dead", func() bool {
		for _, n := range survivors {
			if _, ok := detected[n.name]; ok {
				continue
			}
			wan := wanLists(n.c, "n2")
			if !slices.Contains(memberNames(n.c), "n2") {
				detected[n.name] = time.Since(start)
				if n == n1 {
					wanStill = wan
				}
			}
		}
		return len(detected) == len(survivors)
	})
	t.Logf("regions: killed n2 (eu) declared dead by n1 (eu, LAN pool) after %v (its WAN pool still listed n2: %v); by n3, n4 (us, WAN pool) after %v, %v",
		detected["n1"].Round(time.Millisecond), wanStill, detected["n3"].Round(time.Millisecond), detected["n4"].Round(time.Millisecond))
	if !lanDeclaredDead(n1.c, "n2") {
		t.Error("n1's LAN pool never declared n2 dead")
	}
	waitFor(t, 10*time.Second, "n1's WAN pool declares n2 dead", func() bool { return !wanLists(n1.c, "n2") })
	for i := range 20 {
		c := fmt.Sprintf("after-%d", i)
		if o := n1.c.Owner(c); o != n3.c.Owner(c) || o != n4.c.Owner(c) || o == "n2" {
			t.Fatalf("owners of %s after the kill: %s %s %s", c, o, n3.c.Owner(c), n4.c.Owner(c))
		}
	}
	// Delivery across regions still works: publish in eu, subscriber in us.
	after := channelOwnedBy(t, n1.c, "n1", "after-kill")
	n4.register(after)
	if _, _, err := n1.c.Publish(context.Background(), after, []byte("still")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n4 got it", func() bool { return n4.l.count(after) == 1 })
	for _, n := range survivors {
		if n.lanTr.cross.Load() != 0 {
			t.Fatalf("%s: the LAN pool sent %d packets to the other region", n.name, n.lanTr.cross.Load())
		}
	}
}

// TestRegionPartitions: (a) the LAN pool of eu is cut while the WAN pool
// still connects n1 and n2: each drops the other at once, the us nodes
// still list both (the views disagree, as documented), and once the LAN
// heals the LAN rejoin merges it again; (b) a partition between the
// regions: each region declares the other dead while its LAN pool stays
// whole, and once the network heals the seeds' rejoin merges the cluster;
// owners agree and delivery across regions works again.
func TestRegionPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("WAN failure detection takes several seconds; skipped with -short")
	}
	tn := newTestNet()
	tn.wanDelay = regionDelay
	nodes := startRegions(t, tn, nodeOpts{key: testKey, rejoin: 300 * time.Millisecond})
	n1, n2, n3, n4 := nodes[0], nodes[1], nodes[2], nodes[3]
	n1.c.Register("eu-side")
	n3.c.Register("us-side")
	waitFor(t, 5*time.Second, "interest everywhere", func() bool {
		return interestedEverywhere(nodes, "eu-side", "n1", true)() && interestedEverywhere(nodes, "us-side", "n3", true)()
	})

	// (a) Cut eu's LAN pool only.
	start := time.Now()
	n1.lanTr.cut.Store(true)
	n2.lanTr.cut.Store(true)
	waitFor(t, 10*time.Second, "n1 and n2 drop each other", func() bool {
		return slices.Equal(memberNames(n1.c), []string{"n1", "n3", "n4"}) &&
			slices.Equal(memberNames(n2.c), []string{"n2", "n3", "n4"})
	})
	t.Logf("eu LAN pool cut: n1 and n2 dropped each other after %v", time.Since(start).Round(time.Millisecond))
	if !wanLists(n1.c, "n2") || !wanLists(n2.c, "n1") {
		t.Fatal("the WAN pool, still connected, dropped a node too")
	}
	if !slices.Equal(memberNames(n3.c), []string{"n1", "n2", "n3", "n4"}) {
		t.Fatalf("n3 (us) sees %v during eu's LAN cut", memberNames(n3.c))
	}
	// The routes follow the view as soon as the mesh worker has run.
	waitFor(t, 2*time.Second, "n2 stops routing to n1, which its LAN pool declared dead", interestedEverywhere(nodes[1:2], "eu-side", "n1", false))
	n1.lanTr.cut.Store(false)
	n2.lanTr.cut.Store(false)
	took := waitConverged(t, nodes, 10*time.Second)
	t.Logf("eu LAN pool healed: all four agree again after %v", took.Round(time.Millisecond))
	waitFor(t, 5*time.Second, "routes agree again", interestedEverywhere(nodes, "eu-side", "n1", true))

	// (b) Partition between the regions.
	start = time.Now()
	tn.split([]string{"n1", "n2"}, []string{"n3", "n4"})
	waitFor(t, 20*time.Second, "each region declares the other dead", func() bool {
		return slices.Equal(memberNames(n1.c), []string{"n1", "n2"}) &&
			slices.Equal(memberNames(n2.c), []string{"n1", "n2"}) &&
			slices.Equal(memberNames(n3.c), []string{"n3", "n4"}) &&
			slices.Equal(memberNames(n4.c), []string{"n3", "n4"})
	})
	t.Logf("region partition: both regions split after %v", time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		if len(lanMemberNames(n.c)) != 1 {
			t.Fatalf("%s: the LAN pool lost its region's other node in a partition between regions", n.name)
		}
	}
	if !interestedEverywhere(nodes[:2], "us-side", "n3", false)() {
		t.Fatal("n3's interest survives in eu across the partition")
	}
	tn.split() // heal
	took = waitConverged(t, nodes, 20*time.Second)
	t.Logf("region partition healed: members merged %v after the network healed (RejoinInterval 300ms)", took.Round(time.Millisecond))
	waitFor(t, 10*time.Second, "routes agree again", func() bool {
		return interestedEverywhere(nodes, "eu-side", "n1", true)() && interestedEverywhere(nodes, "us-side", "n3", true)()
	})
	for i := range 20 {
		ch := fmt.Sprintf("p-%d", i)
		o := n1.c.Owner(ch)
		for _, n := range nodes[1:] {
			if n.c.Owner(ch) != o {
				t.Fatalf("owners of %s after healing: %s thinks %s, n1 thinks %s", ch, n.name, n.c.Owner(ch), o)
			}
		}
	}
	ch := channelOwnedBy(t, n2.c, "n2", "healed")
	n4.register(ch)
	if _, _, err := n1.c.Publish(context.Background(), ch, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n4 got the publication", func() bool { return n4.l.count(ch) == 1 })
	for _, n := range nodes {
		if n.lanTr.cross.Load() != 0 {
			t.Fatalf("%s: the LAN pool sent %d packets to the other region", n.name, n.lanTr.cross.Load())
		}
	}
}
