package mesh

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Stats is a snapshot of what the cluster counts, for metrics (package
// metrics exports it to Prometheus; the mesh itself does not depend on
// it). Counters only grow over the Cluster's life.
type Stats struct {
	// Members are the members of the cluster-wide pool, this node
	// included, with their state.
	Members []MemberStats
	// HealthScore is memberlist's awareness of this node's own health:
	// 0 is healthy; higher means it misses probes (it is slow or cut off).
	HealthScore int

	LinksOut   int // outbound links (one per live peer)
	LinksOutUp int // of them, those connected now
	LinksIn    int // inbound links being read

	LinkQueued      int    // messages waiting on outbound links now
	LinkQueuedBytes int    // their bytes
	LinkSent        uint64 // messages written to outbound links
	LinkSentBytes   uint64 // their bytes
	LinkOverflows   uint64 // outbound queues dropped whole on overflow (each resets its link)
	LinkDropped     uint64 // messages those overflows dropped
	LinkErrors      uint64 // outbound links reset on a write error
	LinksRejected   uint64 // inbound links refused (certificate, hello, not a member)

	Forwarded         uint64 // publications this node sequenced, queued for another node (one per node)
	ForwardedVolatile uint64 // volatile publications this node sequenced, sent to another node (one per node)
	Received          uint64 // publications received from their owners over links
	DatagramsDropped  uint64 // mesh datagrams dropped on full queues or failed sends
	DatagramsOnLink   uint64 // volatile publications sent on a link instead of as a datagram
	GossipDeltas      uint64 // interest deltas received that were news
	Registrations     uint64 // registrations sent to other owners

	// RequestRTT is the round trip of requests to other nodes over the
	// links (publish, history, presence, hand-off): from queueing the
	// request to handling its answer, the peer's work included.
	RequestRTT Histogram
	// ProbeRTT is the round trip of memberlist's probes (UDP) of other
	// nodes: the network between them.
	ProbeRTT Histogram
	// DeliverDelay is, for publications other nodes own, the time from the
	// owner sending one on its link to its being queued for this node's
	// subscribers (the clocks of two nodes: their skew shifts it).
	DeliverDelay Histogram
}

// MemberStats is a member as Stats reports it.
type MemberStats struct {
	Name   string
	Region string
	// State is "alive", "draining" (alive, handing its channels over),
	// or "dead": our region's LAN pool declared it dead while the
	// cluster-wide pool still lists it, so it owns no channel.
	State string
}

// LatencyBuckets are the upper bounds, in seconds, of the buckets of the
// mesh's histograms.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Histogram is a snapshot of a latency histogram: Counts[i] observations
// fell in bucket i (at most LatencyBuckets[i] seconds, more than the bound
// before), Counts[len(LatencyBuckets)] above the last bound.
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// histogram is a latency histogram observed without locks or allocations.
type histogram struct {
	counts [16]atomic.Uint64 // len(LatencyBuckets)+1
	sum    atomic.Int64      // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Counts: make([]uint64, len(LatencyBuckets)+1), Sum: time.Duration(h.sum.Load())}
	for i := range s.Counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	return s
}

// meshStats are the counters that Cluster.stats does not hold (it holds
// those kept before metrics came).
type meshStats struct {
	linkDropped       atomic.Uint64
	linkSent          atomic.Uint64
	linkSentBytes     atomic.Uint64
	forwarded         atomic.Uint64
	forwardedVolatile atomic.Uint64
	received          atomic.Uint64
	requestRTT        histogram
	probeRTT          histogram
	deliverDelay      histogram
}

// Stats returns a snapshot of the cluster's state and counters. It takes
// the cluster's locks briefly, one at a time; call it at scrape time.
func (c *Cluster) Stats() Stats {
	st := Stats{
		LinkOverflows:     c.stats.linkDrops.Load(),
		LinkErrors:        c.stats.linkErrors.Load(),
		LinksRejected:     c.stats.rejected.Load(),
		GossipDeltas:      c.stats.deltasIn.Load(),
		Registrations:     c.stats.reregistered.Load(),
		LinkDropped:       c.metrics.linkDropped.Load(),
		LinkSent:          c.metrics.linkSent.Load(),
		LinkSentBytes:     c.metrics.linkSentBytes.Load(),
		Forwarded:         c.metrics.forwarded.Load(),
		ForwardedVolatile: c.metrics.forwardedVolatile.Load(),
		Received:          c.metrics.received.Load(),
		RequestRTT:        c.metrics.requestRTT.snapshot(),
		ProbeRTT:          c.metrics.probeRTT.snapshot(),
		DeliverDelay:      c.metrics.deliverDelay.snapshot(),
	}
	st.DatagramsDropped, st.DatagramsOnLink = c.dgStats()

	c.memberMu.RLock()
	st.Members = make([]MemberStats, 0, len(c.wan))
	for name, m := range c.wan {
		state := "alive"
		if live, ok := c.members[name]; !ok {
			state = "dead"
		} else if live.Draining {
			state = "draining"
		}
		st.Members = append(st.Members, MemberStats{Name: name, Region: m.Region, State: state})
	}
	c.memberMu.RUnlock()

	c.linkMu.RLock()
	outs := make([]*outLink, 0, len(c.out))
	for _, l := range c.out {
		outs = append(outs, l)
	}
	st.LinksIn = len(c.in)
	c.linkMu.RUnlock()
	st.LinksOut = len(outs)
	for _, l := range outs {
		l.mu.Lock()
		if l.conn != nil {
			st.LinksOutUp++
		}
		st.LinkQueued += len(l.queue)
		st.LinkQueuedBytes += l.bytes
		l.mu.Unlock()
	}

	if c.running.Load() {
		st.HealthScore = c.ml.GetHealthScore()
	}
	return st
}

// pinger records the round trips of memberlist's probes
// (memberlist.PingDelegate).
type pinger struct{ c *Cluster }

var _ memberlist.PingDelegate = pinger{}

func (pinger) AckPayload() []byte { return nil }

func (p pinger) NotifyPingComplete(_ *memberlist.Node, rtt time.Duration, _ []byte) {
	p.c.metrics.probeRTT.observe(rtt)
}
