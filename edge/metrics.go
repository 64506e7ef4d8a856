package edge

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard/switchyard/protocols"
)

// Metrics (docs/metrics.md). Every node has a Prometheus registry of its
// own, never the global one, so that several nodes can run in one
// process. Most values are read at scrape time from counters the code
// keeps anyway (each session's, the hub's, replication's); the session
// and publish paths gain at most an atomic add or a histogram
// observation, and no allocation.

// transports indexes per-transport values.
var transports = [...]string{protocols.WebSocket, protocols.WebTransport}

func transportIndex(protocol string) int {
	if protocol == protocols.WebTransport {
		return 1
	}
	return 0
}

// publishDelayBuckets are the bounds, in seconds, of
// switchyard_publish_delivery_seconds: from a local fan-out (tens of
// microseconds) to a successor's copy across regions (hundreds of
// milliseconds).
var publishDelayBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// nodeMetrics are a node's Prometheus metrics and its /metrics handler.
type nodeMetrics struct {
	// immutable after newNodeMetrics
	node    *Node
	reg     *prometheus.Registry
	handler http.Handler

	connects    *prometheus.CounterVec // transport, result, reason
	connectsOK  [len(transports)]prometheus.Counter
	disconnects *prometheus.CounterVec // transport, code
	errorFrames *prometheus.CounterVec // code
	recoveries  [2]prometheus.Counter  // [0] not recovered, [1] recovered
	apiErrors   *prometheus.CounterVec // endpoint, status

	// guarded by Node.mu, with Node.clients: the traffic of the sessions
	// that ended, by transport. A scrape counts a session either live or
	// here, never both.
	retired [len(transports)]protocols.SessionStats
}

// hubStats are the hub's measurements for /metrics.
type hubStats struct {
	delay    prometheus.Histogram // nil: not measured (a hub made without a node)
	resynced atomic.Uint64        // subscriptions ended with CodeMissedMessages
}

// resync counts n subscriptions ended with CodeMissedMessages (endAll).
func (s *hubStats) resync(n int) {
	if n > 0 {
		s.resynced.Add(uint64(n))
	}
}

// delivered observes, once per publication and node, how long ago a
// publication was sequenced, now that it is queued for n local
// subscribers.
func (s *hubStats) delivered(sequenced time.Time, n int) {
	if s.delay != nil && n > 0 {
		s.delay.Observe(time.Since(sequenced).Seconds())
	}
}

func newNodeMetrics(n *Node) (*nodeMetrics, error) {
	m := &nodeMetrics{node: n, reg: prometheus.NewRegistry()}
	m.connects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_connects_total",
		Help: "Sessions that sent Connect or ended before it, by transport, result (ok, refused: the node closed it; abandoned: the client left) and reason (the close code's name; empty when ok).",
	}, []string{"transport", "result", "reason"})
	for i, tr := range transports {
		m.connectsOK[i] = m.connects.WithLabelValues(tr, "ok", "")
	}
	m.disconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_disconnects_total",
		Help: "Connected sessions that ended, by transport and close code name (slow_consumer: the send queue overflowed).",
	}, []string{"transport", "code"})
	m.errorFrames = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_error_frames_total",
		Help: "Error frames sent to clients (a request failed, the session lives on), by error code name.",
	}, []string{"code"})
	rec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_recoveries_total",
		Help: "Subscriptions that asked to recover from a position (a resubscription, typically after a reconnect), by whether the missed publications could be sent.",
	}, []string{"recovered"})
	m.recoveries[0], m.recoveries[1] = rec.WithLabelValues("false"), rec.WithLabelValues("true")
	m.apiErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_http_api_errors_total",
		Help: "HTTP API (/api/...) answers with a status of 400 or more, by endpoint and status.",
	}, []string{"endpoint", "status"})
	delay := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchyard_publish_delivery_seconds",
		Help:    "From a publication being sequenced by this node, its channel's owner, to its being queued for the local subscribers (with replication, the wait for the successor's copy included); observed once per publication with local subscribers.",
		Buckets: publishDelayBuckets,
	})
	for _, c := range []prometheus.Collector{
		m.connects, m.disconnects, m.errorFrames, rec, m.apiErrors, delay, nodeCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		m.reg.MustRegister(c) // ours: distinct by construction
	}
	for i, c := range n.cfg.MetricsCollectors {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("edge: MetricsCollectors[%d]: %w", i, err)
		}
	}
	n.hub.stats.delay = delay
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m, nil
}

// ServeHTTP serves /metrics, asking for Config.MetricsKey on listeners
// not bound to a loopback address when it is set.
func (m *nodeMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if key := m.node.cfg.MetricsKey; key != "" && !onLoopbackListener(r) {
		got := r.Header.Get("X-API-Key")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && got == "" {
			got = strings.TrimSpace(bearer)
		}
		switch {
		case got == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard metrics"`)
			m.node.refuse(w, r, http.StatusUnauthorized, "missing_metrics_key", "send the metrics key as Authorization: Bearer <key> or X-API-Key")
			return
		case subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1:
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard metrics"`)
			m.node.refuse(w, r, http.StatusUnauthorized, "bad_metrics_key", "the metrics key is wrong")
			return
		}
	}
	m.handler.ServeHTTP(w, r)
}

// onLoopbackListener reports whether r came in on a listener bound to a
// loopback address (its connection's local address is one).
func onLoopbackListener(r *http.Request) bool {
	var ip net.IP
	switch a := r.Context().Value(http.LocalAddrContextKey).(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	return ip != nil && ip.IsLoopback()
}

// connected counts a session that connected.
func (m *nodeMetrics) connected(s protocols.Session) {
	m.connectsOK[transportIndex(s.Protocol())].Inc()
}

// refused counts a session that Node.Accept turned away.
func (m *nodeMetrics) refused(s protocols.Session, err error) {
	code := protocols.CodeInternalError
	var ce *protocols.CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	m.connects.WithLabelValues(transports[transportIndex(s.Protocol())], "refused", closeCodeLabel(code)).Inc()
}

// closed counts the end of a session: a disconnect when it had
// connected, else a connect that was refused or abandoned.
func (m *nodeMetrics) closed(s protocols.Session, connected bool, ce *protocols.CloseError) {
	if ce == nil {
		ce = &protocols.CloseError{Code: 1006, Remote: true}
	}
	tr, code := transports[transportIndex(s.Protocol())], closeCodeLabel(ce.Code)
	switch {
	case connected:
		m.disconnects.WithLabelValues(tr, code).Inc()
	case ce.Remote:
		m.connects.WithLabelValues(tr, "abandoned", code).Inc()
	default:
		m.connects.WithLabelValues(tr, "refused", code).Inc()
	}
}

// recovery counts the answer to a subscription that asked to recover from
// since (nil or the zero position: it did not).
func (m *nodeMetrics) recovery(since *Position, recovered bool) {
	if since == nil || (since.Epoch == "" && since.Offset == 0) {
		return
	}
	if recovered {
		m.recoveries[1].Inc()
	} else {
		m.recoveries[0].Inc()
	}
}

// errorFrame counts an Error frame sent to a client.
func (m *nodeMetrics) errorFrame(code protocols.ErrorCode) {
	m.errorFrames.WithLabelValues(errorCodeLabel(code)).Inc()
}

// retire adds the final counters of a session that ended to the totals.
// Called with Node.mu, as the session leaves Node.clients.
func (m *nodeMetrics) retire(c *client) {
	if sr, ok := c.session.(protocols.StatsReporter); ok {
		addStats(&m.retired[transportIndex(c.session.Protocol())], sr.Stats())
	}
}

// addStats adds the counters of s to t (not the queue's gauges).
func addStats(t *protocols.SessionStats, s protocols.SessionStats) {
	t.FramesIn += s.FramesIn
	t.BytesIn += s.BytesIn
	t.FramesOut += s.FramesOut
	t.BytesOut += s.BytesOut
	t.Deliveries += s.Deliveries
	t.DatagramsIn += s.DatagramsIn
	t.DatagramsOut += s.DatagramsOut
	t.Dropped += s.Dropped
}

// countAPIErrors wraps the routes: answers of 400 and more to /api/
// requests are counted by endpoint and status. Other paths pass as they
// are (a WebSocket upgrade needs the server's own ResponseWriter).
func (m *nodeMetrics) countAPIErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&statusWriter{ResponseWriter: w, m: m, endpoint: apiEndpoint(r.URL.Path)}, r)
	})
}

// apiEndpoint names an API path for a label: one of the endpoints, or
// "other", never the path itself.
func apiEndpoint(path string) string {
	switch path {
	case "/api/publish", "/api/nodes", "/api/history", "/api/presence":
		return strings.TrimPrefix(path, "/api/")
	}
	return "other"
}

// statusWriter counts an API answer's error status as it is written
// (before the client can see it). Unwrap lets http.ResponseController
// reach the server's writer (deadlines, flush).
type statusWriter struct {
	http.ResponseWriter
	m        *nodeMetrics
	endpoint string
	wrote    bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if code >= 400 {
			w.m.apiErrors.WithLabelValues(w.endpoint, strconv.Itoa(code)).Inc()
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true // 200, unless WriteHeader said otherwise
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// closeCodeLabel names a close code for a label: the codes of
// protocols/codes.go by name, the others by range, so that the values
// stay few whatever a client sends.
func closeCodeLabel(c protocols.CloseCode) string {
	if s := c.String(); !strings.HasPrefix(s, "close code ") {
		return strings.ReplaceAll(s, " ", "_")
	}
	switch {
	case c == 1000:
		return "normal_closure"
	case c == 1001:
		return "client_going_away"
	case c == 1006:
		return "connection_lost"
	case c < 3000:
		return "transport_other"
	case c < 3500:
		return "reconnect_other"
	case c < 4000:
		return "terminal_other"
	case c < 4500:
		return "application_reconnect"
	case c < 5000:
		return "application_terminal"
	}
	return "other"
}

// errorCodeLabel names an Error frame's code for a label.
func errorCodeLabel(c protocols.ErrorCode) string {
	switch c {
	case protocols.ErrCodeBadRequest:
		return "bad_request"
	case protocols.ErrCodeUnknownFrame:
		return "unknown_frame"
	case protocols.ErrCodeInvalidChannel:
		return "invalid_channel"
	case protocols.ErrCodeTooManySubscriptions:
		return "too_many_subscriptions"
	case protocols.ErrCodeAlreadySubscribed:
		return "already_subscribed"
	case protocols.ErrCodeNotSubscribed:
		return "not_subscribed"
	case protocols.ErrCodePayloadTooLarge:
		return "payload_too_large"
	case protocols.ErrCodePermissionDenied:
		return "permission_denied"
	case protocols.ErrCodeInternal:
		return "internal"
	case protocols.ErrCodeNotConnected:
		return "not_connected"
	case protocols.ErrCodeUnauthorized:
		return "unauthorized"
	case protocols.ErrCodeRateLimited:
		return "rate_limited"
	}
	if c >= 100 && c < 200 {
		return strconv.Itoa(int(c)) // a code added since: still one of few
	}
	return "other"
}

// nodeCollector reads, at scrape time, what the node counts anyway.
type nodeCollector struct{ m *nodeMetrics }

var (
	descInfo = prometheus.NewDesc("switchyard_node_info",
		"The node's name and region (always 1).", []string{"node", "region"}, nil)
	descSessions = prometheus.NewDesc("switchyard_sessions",
		"Sessions open now (connected or still handshaking), by transport and region.", []string{"transport", "region"}, nil)
	descFramesIn = prometheus.NewDesc("switchyard_received_frames_total",
		"Frames received from clients, pings included, by transport.", []string{"transport"}, nil)
	descBytesIn = prometheus.NewDesc("switchyard_received_bytes_total",
		"Bytes of the frames received from clients, by transport.", []string{"transport"}, nil)
	descFramesOut = prometheus.NewDesc("switchyard_sent_frames_total",
		"Frames written to clients (deliveries, replies, pings), by transport; datagrams not included.", []string{"transport"}, nil)
	descBytesOut = prometheus.NewDesc("switchyard_sent_bytes_total",
		"Bytes of the frames written to clients, by transport.", []string{"transport"}, nil)
	descDeliveries = prometheus.NewDesc("switchyard_deliveries_total",
		"Publications queued for clients' subscriptions (reliable and volatile), by transport.", []string{"transport"}, nil)
	descDatagramsIn = prometheus.NewDesc("switchyard_datagrams_received_total",
		"Datagrams received from clients, by transport.", []string{"transport"}, nil)
	descDatagramsOut = prometheus.NewDesc("switchyard_datagrams_sent_total",
		"Datagrams sent to clients, by transport.", []string{"transport"}, nil)
	descDropped = prometheus.NewDesc("switchyard_volatile_dropped_total",
		"Volatile publications dropped for clients (latest wins: replaced, queue full, failed send), by transport.", []string{"transport"}, nil)
	descQueueFrames = prometheus.NewDesc("switchyard_send_queue_frames",
		"Deliveries waiting in the sessions' send queues now, summed, by transport.", []string{"transport"}, nil)
	descQueueBytes = prometheus.NewDesc("switchyard_send_queue_bytes",
		"Bytes of the deliveries waiting in the sessions' send queues now, summed, by transport.", []string{"transport"}, nil)
	descQueueMax = prometheus.NewDesc("switchyard_send_queue_max_frames",
		"Deliveries waiting in the deepest send queue now.", nil, nil)
	descDirect = prometheus.NewDesc("switchyard_direct_writes_total",
		"WebSocket writes by the fan-out workers (process-wide), by result: written (whole, without blocking), partial (the session's writer wrote the rest), busy (a control frame held the socket: the writer wrote it), handed (a close, the heartbeat or a long queue went to the writer).", []string{"result"}, nil)
	descChannels = prometheus.NewDesc("switchyard_channels",
		"Channels the node holds now (with subscribers, or positions it keeps).", nil, nil)
	descResyncs = prometheus.NewDesc("switchyard_resyncs_total",
		"Subscriptions ended because publications were lost on the way here (missed messages): their clients subscribe again to recover.", nil, nil)
	descReplicated = prometheus.NewDesc("switchyard_replicated_total",
		"Publications this node sequenced that the channel's successor held before they went out.", nil, nil)
	descUnreplicated = prometheus.NewDesc("switchyard_unreplicated_total",
		"Publications taken back because no other node held their copy in time (their publishers try again).", nil, nil)
	descSeeds = prometheus.NewDesc("switchyard_replica_seeds_total",
		"Whole channel states sent to a successor.", nil, nil)
	descTakeOvers = prometheus.NewDesc("switchyard_channel_takeovers_total",
		"Channels this node took over as their new owner with their epoch kept.", nil, nil)
	descNewEpochs = prometheus.NewDesc("switchyard_channel_new_epochs_total",
		"Channels this node started a new epoch for, by reason (no_copy: none was left; copies_disagreed): their subscribers resync.", []string{"reason"}, nil)
)

func (nc nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descSessions, descFramesIn, descBytesIn, descFramesOut, descBytesOut,
		descDeliveries, descDatagramsIn, descDatagramsOut, descDropped, descQueueFrames, descQueueBytes, descQueueMax, descDirect,
		descChannels, descResyncs, descReplicated, descUnreplicated, descSeeds, descTakeOvers, descNewEpochs} {
		ch <- d
	}
}

func (nc nodeCollector) Collect(ch chan<- prometheus.Metric) {
	m, n := nc.m, nc.m.node
	n.mu.Lock()
	live := make([]*client, 0, len(n.clients))
	for c := range n.clients {
		live = append(live, c)
	}
	totals := m.retired
	n.mu.Unlock()

	var open, queuedFrames, queuedBytes [len(transports)]int
	maxQueued := 0
	for _, c := range live {
		i := transportIndex(c.session.Protocol())
		open[i]++
		sr, ok := c.session.(protocols.StatsReporter)
		if !ok {
			continue
		}
		st := sr.Stats()
		addStats(&totals[i], st)
		queuedFrames[i] += st.QueuedFrames
		queuedBytes[i] += st.QueuedBytes
		maxQueued = max(maxQueued, st.QueuedFrames)
	}

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descInfo, 1, n.cfg.Name, n.cfg.Region)
	for i, tr := range transports {
		t := totals[i]
		gauge(descSessions, float64(open[i]), tr, n.cfg.Region)
		counter(descFramesIn, t.FramesIn, tr)
		counter(descBytesIn, t.BytesIn, tr)
		counter(descFramesOut, t.FramesOut, tr)
		counter(descBytesOut, t.BytesOut, tr)
		counter(descDeliveries, t.Deliveries, tr)
		counter(descDatagramsIn, t.DatagramsIn, tr)
		counter(descDatagramsOut, t.DatagramsOut, tr)
		counter(descDropped, t.Dropped, tr)
		gauge(descQueueFrames, float64(queuedFrames[i]), tr)
		gauge(descQueueBytes, float64(queuedBytes[i]), tr)
	}
	gauge(descQueueMax, float64(maxQueued))
	ds := protocols.DirectWriteStats()
	counter(descDirect, ds.Written, "written")
	counter(descDirect, ds.Partial, "partial")
	counter(descDirect, ds.Busy, "busy")
	counter(descDirect, ds.Handed, "handed")
	h := n.hub
	gauge(descChannels, float64(h.ChannelCount()))
	counter(descResyncs, h.stats.resynced.Load())
	counter(descReplicated, h.repStats.Replicated.Load())
	counter(descUnreplicated, h.repStats.Unreplicated.Load())
	counter(descSeeds, h.repStats.Seeds.Load())
	counter(descTakeOvers, h.repStats.TakeOvers.Load())
	counter(descNewEpochs, h.repStats.NewEpochs.Load(), "no_copy")
	counter(descNewEpochs, h.repStats.Resyncs.Load(), "copies_disagreed")
}
