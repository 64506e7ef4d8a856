package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// adminStats is the body of GET /admin/api/stats: a snapshot of the node
// read from its Prometheus registry. Counters count since the node
// started; the page derives rates from successive snapshots.
type adminStats struct {
	Node          string       `json:"node"`
	Region        string       `json:"region"`
	Time          time.Time    `json:"time"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	Sessions      adminSess    `json:"sessions"`
	Channels      int64        `json:"channels"`
	Totals        adminTotals  `json:"totals"`
	Queues        adminQueues  `json:"queues"`
	Connects      adminConn    `json:"connects"`
	Disconnects   counts       `json:"disconnects"` // by close code name
	Latency       adminLatency `json:"latency"`
	Mesh          *adminMesh   `json:"mesh,omitempty"` // in a cluster
	Runtime       adminRuntime `json:"runtime"`
	Nodes         []NodeInfo   `json:"nodes"` // as /api/nodes lists them
}

// counts are counts by label value.
type counts map[string]uint64

type adminSess struct {
	Total       uint64 `json:"total"`
	ByTransport counts `json:"by_transport"`
}

// adminTotals are counters over both transports.
type adminTotals struct {
	MessagesIn  uint64 `json:"messages_in"`  // frames received from clients
	MessagesOut uint64 `json:"messages_out"` // frames written to clients
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	Deliveries  uint64 `json:"deliveries"`
	Published   uint64 `json:"published"` // publications sequenced here with local subscribers
	Dropped     uint64 `json:"volatile_dropped"`
	ErrorFrames uint64 `json:"error_frames"`
	Resyncs     uint64 `json:"resyncs"`
}

type adminQueues struct {
	Frames    uint64 `json:"frames"`
	Bytes     uint64 `json:"bytes"`
	MaxFrames uint64 `json:"max_frames"`
}

type adminConn struct {
	OK        uint64 `json:"ok"`
	Refused   counts `json:"refused"`   // by reason
	Abandoned counts `json:"abandoned"` // by reason
}

// adminLatency is switchyard_publish_delivery_seconds: its cumulative
// buckets, and quantiles over every observation since the start (nil
// without one). The page computes recent quantiles from bucket deltas.
type adminLatency struct {
	Count      uint64        `json:"count"`
	SumSeconds float64       `json:"sum_seconds"`
	P50        *float64      `json:"p50_seconds"`
	P95        *float64      `json:"p95_seconds"`
	P99        *float64      `json:"p99_seconds"`
	Buckets    []adminBucket `json:"buckets"`
}

// adminBucket is a cumulative bucket: Count observations were at most LE
// seconds. The +Inf bucket is left out: its count is adminLatency.Count.
type adminBucket struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

type adminMesh struct {
	Members     map[string]counts `json:"members"` // region → state → count
	Links       counts            `json:"links"`   // "out_up", "out_connecting", "in_up"
	HealthScore float64           `json:"health_score"`
	QueueFrames uint64            `json:"link_queue_messages"`
	Forwarded   uint64            `json:"forwarded"`
	Received    uint64            `json:"received"`
	Overflows   uint64            `json:"link_overflows"`
	RequestP50  *float64          `json:"request_p50_seconds"`
	RequestP99  *float64          `json:"request_p99_seconds"`
}

type adminRuntime struct {
	GoVersion     string  `json:"go_version"`
	Goroutines    uint64  `json:"goroutines"`
	HeapBytes     uint64  `json:"heap_alloc_bytes"`
	ResidentBytes uint64  `json:"resident_bytes"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	OpenFDs       uint64  `json:"open_fds"`
	GCCycles      uint64  `json:"gc_cycles"`
}

// gather reads the registry and the node list into an adminStats, as
// JSON. A collector that fails leaves its values out; a registry that
// yields nothing is an error.
func (a *admin) gather() ([]byte, error) {
	n := a.node
	mfs, err := n.metrics.reg.Gather()
	if len(mfs) == 0 {
		if err == nil {
			err = errors.New("empty registry")
		}
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	fams := make(map[string]*dto.MetricFamily, len(mfs))
	for _, f := range mfs {
		fams[f.GetName()] = f
	}
	each := func(name string, fn func(m *dto.Metric, v float64)) {
		if f := fams[name]; f != nil {
			for _, m := range f.Metric {
				fn(m, metricValue(m))
			}
		}
	}
	sum := func(name string) uint64 {
		var t float64
		each(name, func(_ *dto.Metric, v float64) { t += v })
		return uint64(t)
	}

	now := time.Now()
	s := adminStats{
		Node: n.cfg.Name, Region: n.cfg.Region, Time: now.UTC(), UptimeSeconds: now.Sub(a.created).Seconds(),
		Sessions:    adminSess{ByTransport: counts{}},
		Connects:    adminConn{Refused: counts{}, Abandoned: counts{}},
		Disconnects: counts{},
		Latency:     adminLatency{Buckets: []adminBucket{}},
		Nodes:       n.nodeList(),
	}
	for _, tr := range transports {
		s.Sessions.ByTransport[tr] = 0
	}
	each("switchyard_sessions", func(m *dto.Metric, v float64) {
		s.Sessions.ByTransport[label(m, "transport")] += uint64(v)
		s.Sessions.Total += uint64(v)
	})
	each("switchyard_channels", func(_ *dto.Metric, v float64) { s.Channels = int64(v) })
	s.Totals = adminTotals{
		MessagesIn: sum("switchyard_received_frames_total"), MessagesOut: sum("switchyard_sent_frames_total"),
		BytesIn: sum("switchyard_received_bytes_total"), BytesOut: sum("switchyard_sent_bytes_total"),
		Deliveries: sum("switchyard_deliveries_total"), Dropped: sum("switchyard_volatile_dropped_total"),
		ErrorFrames: sum("switchyard_error_frames_total"), Resyncs: sum("switchyard_resyncs_total"),
	}
	s.Queues = adminQueues{Frames: sum("switchyard_send_queue_frames"), Bytes: sum("switchyard_send_queue_bytes"),
		MaxFrames: sum("switchyard_send_queue_max_frames")}
	each("switchyard_connects_total", func(m *dto.Metric, v float64) {
		switch label(m, "result") {
		case "ok":
			s.Connects.OK += uint64(v)
		case "refused":
			s.Connects.Refused[label(m, "reason")] += uint64(v)
		case "abandoned":
			s.Connects.Abandoned[label(m, "reason")] += uint64(v)
		}
	})
	each("switchyard_disconnects_total", func(m *dto.Metric, v float64) {
		s.Disconnects[label(m, "code")] += uint64(v)
	})
	each("switchyard_publish_delivery_seconds", func(m *dto.Metric, _ float64) {
		h := m.GetHistogram()
		if h == nil {
			return
		}
		s.Latency.Count, s.Latency.SumSeconds = h.GetSampleCount(), h.GetSampleSum()
		s.Totals.Published = h.GetSampleCount()
		bounds, cum := histBuckets(h)
		for i := range bounds {
			s.Latency.Buckets = append(s.Latency.Buckets, adminBucket{LE: bounds[i], Count: cum[i]})
		}
		s.Latency.P50 = quantileOrNil(.50, bounds, cum, h.GetSampleCount())
		s.Latency.P95 = quantileOrNil(.95, bounds, cum, h.GetSampleCount())
		s.Latency.P99 = quantileOrNil(.99, bounds, cum, h.GetSampleCount())
	})
	if fams["switchyard_mesh_members"] != nil {
		s.Mesh = meshStats(each, sum)
	}
	each("go_info", func(m *dto.Metric, _ float64) { s.Runtime.GoVersion = label(m, "version") })
	s.Runtime.Goroutines = sum("go_goroutines")
	s.Runtime.HeapBytes = sum("go_memstats_heap_alloc_bytes")
	s.Runtime.ResidentBytes = sum("process_resident_memory_bytes")
	s.Runtime.OpenFDs = sum("process_open_fds")
	each("process_cpu_seconds_total", func(_ *dto.Metric, v float64) { s.Runtime.CPUSeconds = v })
	each("go_gc_duration_seconds", func(m *dto.Metric, _ float64) { s.Runtime.GCCycles = m.GetSummary().GetSampleCount() })
	return json.Marshal(s)
}

// meshStats reads the mesh's metrics (metrics.Mesh).
func meshStats(each func(string, func(*dto.Metric, float64)), sum func(string) uint64) *adminMesh {
	ms := &adminMesh{Members: map[string]counts{}, Links: counts{}}
	each("switchyard_mesh_members", func(m *dto.Metric, v float64) {
		region := label(m, "region")
		if ms.Members[region] == nil {
			ms.Members[region] = counts{}
		}
		ms.Members[region][label(m, "state")] += uint64(v)
	})
	each("switchyard_mesh_links", func(m *dto.Metric, v float64) {
		ms.Links[label(m, "direction")+"_"+label(m, "state")] += uint64(v)
	})
	each("switchyard_mesh_health_score", func(_ *dto.Metric, v float64) { ms.HealthScore = v })
	ms.QueueFrames = sum("switchyard_mesh_link_queue_messages")
	ms.Forwarded = sum("switchyard_mesh_forwarded_total")
	ms.Received = sum("switchyard_mesh_received_total")
	ms.Overflows = sum("switchyard_mesh_link_overflows_total")
	each("switchyard_mesh_request_duration_seconds", func(m *dto.Metric, _ float64) {
		if h := m.GetHistogram(); h != nil {
			bounds, cum := histBuckets(h)
			ms.RequestP50 = quantileOrNil(.50, bounds, cum, h.GetSampleCount())
			ms.RequestP99 = quantileOrNil(.99, bounds, cum, h.GetSampleCount())
		}
	})
	return ms
}

// nodeList is the cluster's nodes, as /api/nodes lists them.
func (n *Node) nodeList() []NodeInfo {
	if n.cfg.Nodes != nil {
		return n.cfg.Nodes()
	}
	return []NodeInfo{{Name: n.cfg.Name, Region: n.cfg.Region, URLs: n.PublicURLs(), Self: true}}
}

// metricValue is a counter's or gauge's value (0 for other types).
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// histBuckets returns a histogram's finite bounds and cumulative counts.
func histBuckets(h *dto.Histogram) (bounds []float64, cumulative []uint64) {
	for _, b := range h.Bucket {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue
		}
		bounds = append(bounds, b.GetUpperBound())
		cumulative = append(cumulative, b.GetCumulativeCount())
	}
	return bounds, cumulative
}

// quantileOrNil is quantile rounded to the nanosecond, or nil without
// observations.
func quantileOrNil(q float64, bounds []float64, cumulative []uint64, total uint64) *float64 {
	v := quantile(q, bounds, cumulative, total)
	if math.IsNaN(v) {
		return nil
	}
	v = math.Round(v*1e9) / 1e9
	return &v
}
