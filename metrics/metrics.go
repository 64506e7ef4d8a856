// Package metrics exports to Prometheus what packages that do not depend
// on it count: the mesh (mesh.Cluster.Stats). The edge node serves its own
// metrics and whatever collectors it is given (edge.Config.MetricsCollectors)
// at /metrics; docs/metrics.md lists them all.
//
//	cfg.MetricsCollectors = []prometheus.Collector{metrics.Mesh(cluster)}
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/mesh"
)

// Mesh returns a collector that reads c.Stats at scrape time: the
// cluster's members, links, forwarding and latencies. It adds nothing to
// the mesh's hot paths beyond the counters the mesh keeps.
func Mesh(c *mesh.Cluster) prometheus.Collector { return meshCollector{stats: c.Stats} }

type meshCollector struct{ stats func() mesh.Stats }

var (
	descMembers = prometheus.NewDesc("switchyard_mesh_members",
		"Members of the cluster as this node sees them, itself included, by region and state (alive; draining; dead: its region's LAN pool declared it dead).",
		[]string{"region", "state"}, nil)
	descHealth = prometheus.NewDesc("switchyard_mesh_health_score",
		"memberlist's awareness of this node's own health: 0 is healthy, higher means it misses probes.", nil, nil)
	descLinks = prometheus.NewDesc("switchyard_mesh_links",
		"Forwarding links to and from other nodes, by direction (out, in) and state (up; connecting: dialling or redialling).",
		[]string{"direction", "state"}, nil)
	descLinkQueue = prometheus.NewDesc("switchyard_mesh_link_queue_messages",
		"Messages waiting on the outbound links now, summed.", nil, nil)
	descLinkQueueBytes = prometheus.NewDesc("switchyard_mesh_link_queue_bytes",
		"Bytes of the messages waiting on the outbound links now, summed.", nil, nil)
	descLinkSent = prometheus.NewDesc("switchyard_mesh_link_sent_messages_total",
		"Messages written to outbound links.", nil, nil)
	descLinkSentBytes = prometheus.NewDesc("switchyard_mesh_link_sent_bytes_total",
		"Bytes of the messages written to outbound links.", nil, nil)
	descOverflows = prometheus.NewDesc("switchyard_mesh_link_overflows_total",
		"Outbound link queues dropped whole on overflow; each resets its link and the peer registers again.", nil, nil)
	descLinkDropped = prometheus.NewDesc("switchyard_mesh_link_dropped_messages_total",
		"Messages dropped with overflowing link queues.", nil, nil)
	descLinkErrors = prometheus.NewDesc("switchyard_mesh_link_errors_total",
		"Outbound links reset on a write error.", nil, nil)
	descRejected = prometheus.NewDesc("switchyard_mesh_links_rejected_total",
		"Inbound links refused (certificate, hello, not a member).", nil, nil)
	descForwarded = prometheus.NewDesc("switchyard_mesh_forwarded_total",
		"Publications this node sequenced as their channel's owner, sent to another node with subscribers (one per node), by kind (reliable, volatile).",
		[]string{"kind"}, nil)
	descReceived = prometheus.NewDesc("switchyard_mesh_received_total",
		"Publications received over links from their channels' owners.", nil, nil)
	descDgDropped = prometheus.NewDesc("switchyard_mesh_datagrams_dropped_total",
		"Volatile publications between nodes dropped (full datagram queues, failed sends).", nil, nil)
	descDgOnLink = prometheus.NewDesc("switchyard_mesh_datagrams_on_link_total",
		"Volatile publications sent on a link instead of as a datagram (too large, or no datagram path).", nil, nil)
	descDeltas = prometheus.NewDesc("switchyard_mesh_gossip_deltas_total",
		"Interest gossip deltas received that were news.", nil, nil)
	descRegistrations = prometheus.NewDesc("switchyard_mesh_registrations_total",
		"Registrations sent to channels' owners on other nodes.", nil, nil)
	descRequestRTT = prometheus.NewDesc("switchyard_mesh_request_duration_seconds",
		"Round trip of requests to other nodes over the links (publish, history, presence, hand-off), from queueing to the answer, the peer's work included.",
		nil, nil)
	descProbeRTT = prometheus.NewDesc("switchyard_mesh_probe_rtt_seconds",
		"Round trip of memberlist's probes (UDP) of other nodes: the network between them.", nil, nil)
	descDeliverDelay = prometheus.NewDesc("switchyard_mesh_deliver_delay_seconds",
		"For publications another node owns: from the owner sending one on its link to its being queued for this node's subscribers (two nodes' clocks). With switchyard_publish_delivery_seconds at the owner, the publish→deliver latency of subscribers on other nodes.",
		nil, nil)
)

func (meshCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descHealth, descLinks, descLinkQueue, descLinkQueueBytes,
		descLinkSent, descLinkSentBytes, descOverflows, descLinkDropped, descLinkErrors, descRejected, descForwarded,
		descReceived, descDgDropped, descDgOnLink, descDeltas, descRegistrations, descRequestRTT, descProbeRTT, descDeliverDelay} {
		ch <- d
	}
}

func (mc meshCollector) Collect(ch chan<- prometheus.Metric) {
	st := mc.stats()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	type key struct{ region, state string }
	members := map[key]int{}
	for _, m := range st.Members {
		members[key{m.Region, m.State}]++
	}
	for k, n := range members {
		gauge(descMembers, n, k.region, k.state)
	}
	gauge(descHealth, st.HealthScore)
	gauge(descLinks, st.LinksOutUp, "out", "up")
	gauge(descLinks, st.LinksOut-st.LinksOutUp, "out", "connecting")
	gauge(descLinks, st.LinksIn, "in", "up")
	gauge(descLinkQueue, st.LinkQueued)
	gauge(descLinkQueueBytes, st.LinkQueuedBytes)
	counter(descLinkSent, st.LinkSent)
	counter(descLinkSentBytes, st.LinkSentBytes)
	counter(descOverflows, st.LinkOverflows)
	counter(descLinkDropped, st.LinkDropped)
	counter(descLinkErrors, st.LinkErrors)
	counter(descRejected, st.LinksRejected)
	counter(descForwarded, st.Forwarded, "reliable")
	counter(descForwarded, st.ForwardedVolatile, "volatile")
	counter(descReceived, st.Received)
	counter(descDgDropped, st.DatagramsDropped)
	counter(descDgOnLink, st.DatagramsOnLink)
	counter(descDeltas, st.GossipDeltas)
	counter(descRegistrations, st.Registrations)
	ch <- histogram(descRequestRTT, st.RequestRTT)
	ch <- histogram(descProbeRTT, st.ProbeRTT)
	ch <- histogram(descDeliverDelay, st.DeliverDelay)
}

// histogram turns a mesh histogram (counts per bucket) into Prometheus's
// (cumulative counts by upper bound).
func histogram(d *prometheus.Desc, h mesh.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(mesh.LatencyBuckets))
	var cum uint64
	for i, bound := range mesh.LatencyBuckets {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets)
}
