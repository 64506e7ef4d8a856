package mesh

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles for Config.Profile.
const (
	ProfileLAN = "lan"
	ProfileWAN = "wan"
)

// memberlistConfig returns the memberlist preset for profile.
//
// LAN (one data centre, RTT well under 10 ms), from DefaultLANConfig:
//
//	ProbeInterval 500 ms, ProbeTimeout 200 ms, IndirectChecks 3
//	SuspicionMult 2: the suspicion timeout is 2 × 500 ms × max(1, log10 n)
//	    = 1 s below 10 nodes, 2 s at 100; with SuspicionMult 2 memberlist
//	    expects no peer confirmations (k = SuspicionMult-2 = 0), so the
//	    timer starts at that minimum.
//	    A crashed node is declared dead after: wait for some survivor to
//	    probe it (≤ 500 ms with 3+ survivors) + failed probe and indirect
//	    probes (500 ms) + suspicion (1 s) ≈ 1.5–2.5 s, then the dead
//	    message is gossiped in ~100 ms. Measured (TestKillDetected, 5 nodes
//	    on loopback, -race, 2 cores, 14 runs, some with three test binaries
//	    at once): 1.67–2.83 s until every survivor declared the node dead.
//	GossipInterval 100 ms to 3 nodes, PushPullInterval 15 s, TCPTimeout 2 s,
//	GossipToTheDeadTime 15 s, DeadNodeReclaimTime 5 s (a restarted node may
//	reuse its name from a new address 5 s after it was declared dead).
//
// WAN (regions apart, RTT up to ~300 ms), from DefaultWANConfig:
//
//	ProbeInterval 1 s, ProbeTimeout 600 ms, SuspicionMult 3 (3 s below 10
//	nodes; one peer confirmation expected), SuspicionMaxTimeoutMult 3
//	(9 s without confirmations), GossipInterval 200 ms to 4 nodes,
//	PushPullInterval 30 s, TCPTimeout 5 s, GossipToTheDeadTime 30 s,
//	DeadNodeReclaimTime 15 s. A crashed node is declared dead in ≈ 4–7 s;
//	measured before the LAN pool existed (3 nodes in one "wan" pool, 50 ms
//	one-way between two regions, -race, same runs): 4.1–6.3 s, for the
//	crashed node's own region too.
//
// Memberlist has one set of timings per pool, not per peer: a cluster that
// spans regions runs "wan" everywhere (LAN nodes with a 200 ms probe
// timeout would keep suspecting the far region). So with Profile "wan" each
// node also runs a LAN pool of its region with the LAN preset (lan.go, "Two
// pools" in doc.go), and a same-region node the LAN pool declares dead is
// dead at once. Measured (TestRegions, TestRegionPartitions: eu = n1, n2,
// us = n3, n4, 50 ms one-way added between the regions on both pools'
// traffic and on the links; -race, 2 cores, 7 runs, some beside another
// test binary):
//
//	killed n2 declared dead by n1 (same region, LAN pool; n1's WAN pool
//	    still listed n2 every time): 1.86–2.39 s
//	killed n2 declared dead by n3, n4 (other region, WAN pool): 4.40–5.48 s
//	eu's LAN pool cut while the WAN pool connects: n1, n2 drop each other
//	    after 1.53–1.54 s; the LAN rejoin merges them 0.10–0.12 s after
//	    the cut heals
//	partition between the regions: all four see the split after
//	    7.9–10.9 s (each node probes its 3 peers round robin, 1 s apart,
//	    and suspicion lasts 3–9 s); merged 0.25–0.46 s after healing
//	    (seed rejoin, RejoinInterval 300 ms)
//	cost of the 50 ms across regions (medians; same-region numbers are
//	    mostly the test's 5 ms polling): registration with the owner
//	    5–6 ms → 103–107 ms (two hops); owner's publish → delivery
//	    5–6 ms → 53–55 ms (one hop); publish answered by the owner
//	    < 1 ms → 101–102 ms (two hops)
//
// The LAN pools carry no traffic across regions (the tests count it).
func memberlistConfig(profile string) *memberlist.Config {
	var mc *memberlist.Config
	switch profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
		mc.ProbeInterval = time.Second
		mc.ProbeTimeout = 600 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 3
		mc.GossipInterval = 200 * time.Millisecond
		mc.GossipNodes = 4
		mc.PushPullInterval = 30 * time.Second
		mc.TCPTimeout = 5 * time.Second
		mc.GossipToTheDeadTime = 30 * time.Second
		mc.DeadNodeReclaimTime = 15 * time.Second
	default:
		mc = memberlist.DefaultLANConfig()
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 200 * time.Millisecond
		mc.IndirectChecks = 3
		mc.SuspicionMult = 2
		mc.SuspicionMaxTimeoutMult = 3
		mc.GossipInterval = 100 * time.Millisecond
		mc.GossipNodes = 3
		mc.PushPullInterval = 15 * time.Second
		mc.TCPTimeout = 2 * time.Second
		mc.GossipToTheDeadTime = 15 * time.Second
		mc.DeadNodeReclaimTime = 5 * time.Second
	}
	// Seeds given as DNS names resolve through Go's resolver, not
	// memberlist's TCP-first lookup that reads /etc/resolv.conf itself.
	mc.DNSConfigPath = ""
	return mc
}
