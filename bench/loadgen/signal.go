package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The signal scenario (-scenario signal) measures the node's WebRTC
// signaling at /signal (docs/signaling.md) with raw gorilla/websocket JSON
// clients, as a client in any language would speak the protocol. Two modes:
//
//   - latency: Pairs pairs of peers, each pair in a room of its own, peer X
//     connected to URL and peer Y to URL2. X sends an offer (a 4.4 KB
//     Chromium-style SDP) and ICE candidates (200–260 B of JSON each); Y
//     answers each offer on receipt (4.2 KB) and sends its own candidates. Every relayed
//     message carries its sender's sequence number and send time, so the
//     receiver (in this process: one clock) times it. The total message rate
//     is fixed and spread evenly over the pairs, within the node's
//     per-connection rate limit.
//   - capacity: Peers idle peers in rooms of RoomSize, the server's RSS read
//     from /proc before and after (with a settle time), per peer and room.

const scenarioSignal = "signal"

// Modes of the signal scenario.
const (
	signalLatency  = "latency"
	signalCapacity = "capacity"
)

// maxConnRate is the most messages per second one connection may send in
// the latency mode: below the node's default limit of 50 per second
// (bursts of 200) per connection, with room for timer jitter.
const maxConnRate = 40

// SignalConfig describes one run of the signal scenario. Zero values take
// the defaults given.
type SignalConfig struct {
	// Mode is "latency" or "capacity". Zero: latency.
	Mode string
	// URL is the node's signaling URL, ws://host:port/signal: peer X of
	// every pair (latency), every peer (capacity).
	URL string
	// URL2 is peer Y's node (latency). Zero: URL.
	URL2 string
	// Nodes names the live nodes of the mesh, the one at URL first and the
	// one at URL2 second (when it differs), to report each room's owner
	// (rendezvous hashing, as the mesh computes it). Zero: not reported.
	Nodes []string
	// Label names the run in the table. Zero: made up from the mode.
	Label string

	// Pairs is the number of peer pairs, one room each (latency). Zero: 100.
	Pairs int
	// Rate is relayed messages per second, all pairs together (latency).
	// Zero: 1000.
	Rate float64
	// Candidates is how many ICE candidates each side sends per offer and
	// answer (latency). Zero: 4; negative: none.
	Candidates int
	// Warmup is the load before the measurement window. Zero: none.
	Warmup time.Duration
	// Duration is the measurement window. Zero: 10 s.
	Duration time.Duration
	// Drain is how long to wait after the load stops for every message to
	// arrive. Zero: 10 s.
	Drain time.Duration

	// Peers is the number of idle peers (capacity). Zero: 5000.
	Peers int
	// RoomSize is the peers per room (capacity). Zero: 2.
	RoomSize int
	// Settle is how long the peers sit idle before the RSS is read
	// (capacity). Zero: 3 s.
	Settle time.Duration

	// ServerPID and ServerPID2 are the processes of the nodes at URL and
	// URL2 whose CPU time and RSS are read from /proc. Zero: not read.
	ServerPID, ServerPID2 int
	// DialConcurrency bounds the peers (latency: pairs) set up at once.
	// Zero: 8 pairs (latency), 32 peers (capacity).
	DialConcurrency int
	// Logf reports progress. Zero: silent.
	Logf func(format string, args ...any)
}

func (c SignalConfig) withDefaults() SignalConfig {
	if c.Mode == "" {
		c.Mode = signalLatency
	}
	if c.URL2 == "" {
		c.URL2 = c.URL
	}
	if c.Pairs == 0 {
		c.Pairs = 100
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Candidates == 0 {
		c.Candidates = 4
	} else if c.Candidates < 0 {
		c.Candidates = 0
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 10 * time.Second
	}
	if c.Peers == 0 {
		c.Peers = 5000
	}
	if c.RoomSize == 0 {
		c.RoomSize = 2
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
	if c.DialConcurrency == 0 {
		// Latency: few pairs at once, so that the join latency is not
		// mostly the setup's own burst.
		c.DialConcurrency = 8
		if c.Mode == signalCapacity {
			c.DialConcurrency = 32
		}
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Label == "" {
		switch {
		case c.Mode == signalCapacity:
			c.Label = fmt.Sprintf("%d peers, rooms of %d", c.Peers, c.RoomSize)
		case c.URL2 != c.URL:
			c.Label = "two nodes"
		default:
			c.Label = "one node"
		}
	}
	return c
}

func (c SignalConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Mode != signalLatency && c.Mode != signalCapacity {
		bad("mode %q: want %s or %s", c.Mode, signalLatency, signalCapacity)
	}
	for _, u := range []string{c.URL, c.URL2} {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			bad("url %q: want the node's ws://host:port/signal", u)
		}
	}
	if c.Pairs < 1 || c.Peers < 1 || c.RoomSize < 1 || c.Rate <= 0 || c.DialConcurrency < 1 {
		bad("pairs, peers, room size, rate and dial concurrency must be positive")
	}
	if c.Warmup < 0 || c.Duration <= 0 || c.Drain < 0 || c.Settle < 0 {
		bad("durations must not be negative")
	}
	if c.Mode == signalLatency {
		if r := c.connRate(); r > maxConnRate {
			bad("%.1f messages/s per connection (rate %g over %d pairs, %d candidates): over %d, the node's limit is 50; raise -pairs to at least %d",
				r, c.Rate, c.Pairs, c.Candidates, maxConnRate, int(math.Ceil(float64(c.Pairs)*r/maxConnRate)))
		}
	}
	want := 1
	if c.URL2 != c.URL {
		want = 2
	}
	if len(c.Nodes) > 0 && len(c.Nodes) < want {
		bad("nodes %q: name the node at -url first and the one at -url2 second", c.Nodes)
	}
	return errors.Join(errs...)
}

// round is the number of messages of one negotiation: an offer, an answer,
// and the candidates of both sides.
func (c SignalConfig) round() int { return 2 + 2*c.Candidates }

// interval is how often each pair negotiates in the latency mode.
func (c SignalConfig) interval() time.Duration {
	return time.Duration(float64(time.Second) * float64(c.Pairs*c.round()) / c.Rate)
}

// connRate is what one connection sends per second in the latency mode.
func (c SignalConfig) connRate() float64 {
	return float64(1+c.Candidates) / c.interval().Seconds()
}

// LatencyStats summarises latencies in milliseconds.
type LatencyStats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func latencyStats(ns []int64) LatencyStats {
	slices.Sort(ns)
	s := LatencyStats{N: len(ns)}
	if len(ns) == 0 {
		return s
	}
	pct := func(p float64) float64 {
		i := min(len(ns)-1, int(math.Ceil(p*float64(len(ns))))-1)
		return float64(ns[max(i, 0)]) / 1e6
	}
	s.P50, s.P95, s.P99, s.Max = pct(0.50), pct(0.95), pct(0.99), pct(1)
	return s
}

// SignalResult is what one signal run measured.
type SignalResult struct {
	Scenario  string `json:"scenario"` // "signal"
	Mode      string `json:"mode"`
	Label     string `json:"label"`
	CPUs      int    `json:"cpus"` // shared by the load generator and the nodes
	CrossNode bool   `json:"cross_node"`

	// Latency mode. The latencies are of the messages sent in the window;
	// MessagesPerSec counts those received in it.
	Pairs          int          `json:"pairs,omitempty"`
	Candidates     int          `json:"candidates,omitempty"` // per side per negotiation
	Rate           float64      `json:"rate,omitempty"`       // messages per second asked for
	OfferBytes     int          `json:"offer_bytes,omitempty"`
	AnswerBytes    int          `json:"answer_bytes,omitempty"`
	CandidateBytes int          `json:"candidate_bytes,omitempty"` // the largest "candidate" member, as sent
	Seconds        float64      `json:"seconds,omitempty"`
	Messages       uint64       `json:"messages,omitempty"`
	MessagesPerSec float64      `json:"messages_per_s,omitempty"`
	Offer          LatencyStats `json:"offer"`
	Answer         LatencyStats `json:"answer"`
	Candidate      LatencyStats `json:"candidate"`
	All            LatencyStats `json:"all"`
	// Join is join → joined of every peer; with Nodes, split by whether the
	// room's owner is the peer's own node.
	Join            LatencyStats `json:"join"`
	JoinOwnerLocal  LatencyStats `json:"join_owner_local"`
	JoinOwnerRemote LatencyStats `json:"join_owner_remote"`
	// OwnerRooms counts rooms per owner; RelayByOwner is the latency of
	// every relayed message of the window by its room's owner.
	OwnerRooms   map[string]int          `json:"owner_rooms,omitempty"`
	RelayByOwner map[string]LatencyStats `json:"relay_by_owner,omitempty"`

	// Server figures need the PIDs; ServerCPU is both nodes' together.
	ServerCPU      float64 `json:"server_cpu_s"`
	ServerCPU1     float64 `json:"server1_cpu_s"`
	ServerCPU2     float64 `json:"server2_cpu_s"`
	ServerCores    float64 `json:"server_cores"`
	CPUPerMsgUs    float64 `json:"server_cpu_us_per_msg"`
	ServerRSSMiB   float64 `json:"server_rss_mib"`
	Server2RSSMiB  float64 `json:"server2_rss_mib,omitempty"`
	LoadgenCPU     float64 `json:"loadgen_cpu_s"`
	Lost           uint64  `json:"lost"`
	OutOfOrder     uint64  `json:"out_of_order"`
	Corrupt        uint64  `json:"corrupt"` // relayed content that differs from what was sent
	Errors         uint64  `json:"errors"`  // error messages from the node
	Disconnects    int     `json:"disconnects"`
	FirstError     string  `json:"first_error,omitempty"`
	SetupSeconds   float64 `json:"setup_s"`
	ConnectedPeers int     `json:"peers"`

	// Capacity mode: RSS before the peers, with them after Settle, the
	// peak (VmHWM), per peer and per room; the server's OS threads; the
	// network namespace's TCP sockets and their buffer memory
	// (/proc/net/sockstat, both ends of every connection) before and after.
	RoomSize         int     `json:"room_size,omitempty"`
	Rooms            int     `json:"rooms,omitempty"`
	JoinsPerSec      float64 `json:"joins_per_s,omitempty"`
	BaseRSSMiB       float64 `json:"base_rss_mib,omitempty"`
	PeersRSSMiB      float64 `json:"peers_rss_mib,omitempty"`
	PeakRSSMiB       float64 `json:"peak_rss_mib,omitempty"`
	KiBPerPeer       float64 `json:"kib_per_peer,omitempty"`
	KiBPerRoom       float64 `json:"kib_per_room,omitempty"`
	Threads          int     `json:"server_threads,omitempty"`
	TCPSocketsBefore int     `json:"tcp_inuse_before,omitempty"`
	TCPSocketsAfter  int     `json:"tcp_inuse_after,omitempty"`
	TCPBufKiBBefore  int     `json:"tcp_mem_kib_before,omitempty"`
	TCPBufKiBAfter   int     `json:"tcp_mem_kib_after,omitempty"`
	// SlabMiB is the kernel's slab memory (/proc/meminfo Slab: the whole
	// machine), where socket structures live, before and after.
	SlabMiBBefore float64 `json:"slab_mib_before,omitempty"`
	SlabMiBAfter  float64 `json:"slab_mib_after,omitempty"`
}

// RunSignal runs the signal scenario against live nodes.
func RunSignal(ctx context.Context, cfg SignalConfig) (*SignalResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &sigRun{cfg: cfg, stop: make(chan struct{}), quit: make(chan struct{}), prefix: fmt.Sprintf("bench-%08x", rand.Uint32())}
	defer r.shutdown()
	res := &SignalResult{Scenario: scenarioSignal, Mode: cfg.Mode, Label: cfg.Label, CPUs: runtime.NumCPU(), CrossNode: cfg.URL2 != cfg.URL}
	if cfg.Mode == signalCapacity {
		return res, r.capacity(ctx, res)
	}
	return res, r.latency(ctx, res)
}

// Message kinds of the latency mode.
const (
	kindOffer = iota
	kindAnswer
	kindCandidate
	numKinds
)

var kindNames = [numKinds]string{"offer", "answer", "candidate"}

// sigRun is the state of one run.
type sigRun struct {
	cfg    SignalConfig
	prefix string        // of the room names: unique per run
	stop   chan struct{} // closed when the load stops: the drivers end
	quit   chan struct{} // closed when the run ends: writers end too
	tpl    [2]sdpTemplate

	peers   []*sigPeer // every connection
	peersMu sync.Mutex

	queued  atomic.Uint64 // offers queued by the drivers
	sent    [numKinds]atomic.Uint64
	recv    [numKinds]atomic.Uint64
	closing atomic.Bool // connections are being closed: their errors are expected
	errs    atomic.Uint64
	once    sync.Once // of shutdown

	mu       sync.Mutex // guards firstErr
	firstErr string

	bg sync.WaitGroup // readers, writers and drivers
}

func (r *sigRun) fail(format string, args ...any) {
	r.errs.Add(1)
	r.mu.Lock()
	if r.firstErr == "" {
		r.firstErr = fmt.Sprintf(format, args...)
	}
	r.mu.Unlock()
}

// epoch is the zero of the send and receive times: both ends of every
// message are in this process, so one monotonic clock times them.
var epoch = time.Now()

func mono() int64 { return int64(time.Since(epoch)) }

// sigPeer is one signaling connection: one peer in one room.
type sigPeer struct {
	r    *sigRun
	c    *websocket.Conn
	side int // 0: X (offers), 1: Y (answers)
	room string
	node string // the name of its node, "" when not known
	id   string // its peer id, from joined
	to   string // its partner's id (latency)

	reading atomic.Bool // a read loop runs (and closes ended)

	out   chan int      // kinds to send, to the writer; candidates are kindCandidate+i
	ready chan struct{} // X: closed at the partner's peer-joined

	// owned by the writer
	seq uint64
	buf []byte

	// owned by the reader; read after it ends
	heard   bool   // X: the partner's peer-joined came
	last    uint64 // last sequence number received
	lat     [numKinds][]sample
	ooo     uint64
	corrupt uint64
	endErr  error
	ended   chan struct{}
}

type sample struct{ sent, ns int64 }

var sigDialer = websocket.Dialer{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4 << 10,
	WriteBufferSize:  8 << 10,
}

// dial connects to url and joins room, returning the joined message and
// how long the join took (join sent → joined read).
func (r *sigRun) dial(ctx context.Context, url, room string) (*sigPeer, *joinedMsg, time.Duration, error) {
	c, resp, err := sigDialer.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, nil, 0, fmt.Errorf("dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, nil, 0, fmt.Errorf("dial %s: %w", url, err)
	}
	p := &sigPeer{r: r, c: c, room: room, ended: make(chan struct{})}
	r.peersMu.Lock()
	r.peers = append(r.peers, p)
	r.peersMu.Unlock()
	join, _ := json.Marshal(map[string]string{"type": "join", "room": room})
	t0 := time.Now()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	if err := c.WriteMessage(websocket.TextMessage, join); err != nil {
		return nil, nil, 0, fmt.Errorf("join %s: %w", room, err)
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("join %s: %w", room, err)
		}
		var m joinedMsg
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, nil, 0, fmt.Errorf("join %s: %w", room, err)
		}
		switch m.Type {
		case "joined":
			_ = c.SetReadDeadline(time.Time{})
			p.id = m.Peer
			return p, &m, time.Since(t0), nil
		case "error":
			return nil, nil, 0, fmt.Errorf("join %s: error %s: %s", room, m.Code, m.Message)
		}
		// peer-joined of a peer that joined meanwhile: the read loop
		// catches up with the room from joined on.
	}
}

type joinedMsg struct {
	Type    string   `json:"type"`
	Peer    string   `json:"peer"`
	Peers   []string `json:"peers"`
	Code    string   `json:"code"`
	Message string   `json:"message"`
}

// latency runs the latency mode.
func (r *sigRun) latency(ctx context.Context, res *SignalResult) error {
	cfg := r.cfg
	res.Pairs, res.Candidates, res.Rate = cfg.Pairs, cfg.Candidates, cfg.Rate
	r.tpl = [2]sdpTemplate{newSDPTemplate(chromiumOffer), newSDPTemplate(chromiumAnswer)}
	res.OfferBytes, res.AnswerBytes = r.tpl[0].size(), r.tpl[1].size()
	for side := range candidates {
		p := &sigPeer{r: r, side: side, to: "0123456789abcdef"}
		for k := range candidates[side] {
			var m struct{ Candidate json.RawMessage }
			if err := json.Unmarshal(p.build(nil, kindCandidate+k, 1000, mono()), &m); err != nil {
				return fmt.Errorf("candidate %d: %w", k, err)
			}
			res.CandidateBytes = max(res.CandidateBytes, len(m.Candidate))
		}
	}

	// Set up the pairs: X joins, Y joins (joined names X), X hears
	// peer-joined of Y; then both read on.
	type pair struct {
		x, y  *sigPeer
		owner string
	}
	pairs := make([]pair, cfg.Pairs)
	var joins, joinLocal, joinRemote []int64
	var jmu sync.Mutex
	addJoin := func(p *sigPeer, d time.Duration, owner string) {
		jmu.Lock()
		defer jmu.Unlock()
		joins = append(joins, int64(d))
		if owner != "" && owner == p.node {
			joinLocal = append(joinLocal, int64(d))
		} else if owner != "" {
			joinRemote = append(joinRemote, int64(d))
		}
	}
	node := func(i int) string {
		if i < len(cfg.Nodes) {
			return cfg.Nodes[i]
		}
		return ""
	}
	start := time.Now()
	cfg.Logf("setting up %d pairs: X at %s, Y at %s", cfg.Pairs, cfg.URL, cfg.URL2)
	err := r.each(ctx, cfg.Pairs, func(ctx context.Context, i int) error {
		room := fmt.Sprintf("%s-%d", r.prefix, i)
		owner := ""
		if len(cfg.Nodes) > 0 {
			owner = roomOwner(room, cfg.Nodes)
		}
		x, _, dx, err := r.dial(ctx, cfg.URL, room)
		if err != nil {
			return err
		}
		x.side, x.node, x.ready = 0, node(0), make(chan struct{})
		addJoin(x, dx, owner)
		y, jy, dy, err := r.dial(ctx, cfg.URL2, room)
		if err != nil {
			return err
		}
		y.side, y.node = 1, node(0)
		if cfg.URL2 != cfg.URL {
			y.node = node(1)
		}
		addJoin(y, dy, owner)
		if !slices.Contains(jy.Peers, x.id) {
			return fmt.Errorf("room %s: joined lists %q, not X %s", room, jy.Peers, x.id)
		}
		// X learns of Y from peer-joined (read by its reader from now on),
		// and sends to Y only after it: until then X's node may not know Y.
		x.to, y.to = y.id, x.id
		r.start(x)
		r.start(y)
		select {
		case <-x.ready:
		case <-x.ended:
			return fmt.Errorf("room %s: X ended before Y's peer-joined: %v", room, x.endErr)
		case <-ctx.Done():
			return fmt.Errorf("room %s: no peer-joined of Y at X: %w", room, ctx.Err())
		}
		pairs[i] = pair{x: x, y: y, owner: owner}
		return nil
	})
	if err != nil {
		return err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	res.ConnectedPeers = 2 * cfg.Pairs
	cfg.Logf("%d pairs up in %v; %d messages/s, %.1f/s per connection, a negotiation (offer, answer, 2×%d candidates) every %v per pair",
		cfg.Pairs, time.Since(start).Round(time.Millisecond), int(cfg.Rate), cfg.connRate(), cfg.Candidates, cfg.interval())

	// The drivers: each pair negotiates every interval on a fixed
	// schedule, from a random phase so that the pairs spread evenly.
	iv := cfg.interval()
	for _, p := range pairs {
		phase := rand.N(iv)
		r.bg.Go(func() {
			t := time.NewTimer(phase)
			defer t.Stop()
			t0 := time.Now().Add(phase)
			for n := 1; ; n++ {
				select {
				case <-r.stop:
					return
				case <-t.C:
				}
				r.queued.Add(1)
				if !p.x.queue(kindOffer) {
					return
				}
				for k := range cfg.Candidates {
					if !p.x.queue(kindCandidate + k) {
						return
					}
				}
				t.Reset(time.Until(t0.Add(time.Duration(n) * iv)))
			}
		})
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if cfg.Warmup > 0 {
		cfg.Logf("warming up for %v", cfg.Warmup)
		if err := wait(cfg.Warmup); err != nil {
			return err
		}
	}
	cfg.Logf("measuring for %v", cfg.Duration)
	s0 := r.snapshot()
	if err := wait(cfg.Duration); err != nil {
		return err
	}
	s1 := r.snapshot()
	rss1, rssErr1 := procRSS(cfg.ServerPID)
	rss2, rssErr2 := procRSS(cfg.ServerPID2)

	// Stop the drivers, then wait until every message queued has been
	// sent and received, and every offer answered.
	close(r.stop)
	deadline := time.Now().Add(cfg.Drain)
	for !r.drained() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if !r.drained() {
		r.fail("not drained %v after the load stopped: %d offers queued; sent/received offers %d/%d, answers %d/%d, candidates %d/%d",
			cfg.Drain, r.queued.Load(), r.sent[kindOffer].Load(), r.recv[kindOffer].Load(), r.sent[kindAnswer].Load(),
			r.recv[kindAnswer].Load(), r.sent[kindCandidate].Load(), r.recv[kindCandidate].Load())
	}
	r.shutdown()

	res.Seconds = time.Duration(s1.at - s0.at).Seconds()
	res.Messages = s1.recv - s0.recv
	res.MessagesPerSec = float64(res.Messages) / res.Seconds
	res.LoadgenCPU = s1.selfCPU - s0.selfCPU
	if err := errors.Join(s0.err, s1.err, rssErr1, rssErr2); err != nil {
		return fmt.Errorf("sample servers: %w", err)
	}
	res.ServerCPU1 = s1.cpu1 - s0.cpu1
	res.ServerCPU2 = s1.cpu2 - s0.cpu2
	res.ServerCPU = res.ServerCPU1 + res.ServerCPU2
	res.ServerCores = res.ServerCPU / res.Seconds
	if res.Messages > 0 && res.ServerCPU > 0 {
		res.CPUPerMsgUs = res.ServerCPU / float64(res.Messages) * 1e6
	}
	res.ServerRSSMiB, res.Server2RSSMiB = float64(rss1)/(1<<20), float64(rss2)/(1<<20)

	// Latencies of the messages sent in the window.
	in := func(s sample) bool { return s.sent >= s0.at && s.sent < s1.at }
	var byKind [numKinds][]int64
	var all []int64
	byOwner := map[string][]int64{}
	for _, p := range pairs {
		for _, q := range []*sigPeer{p.x, p.y} {
			for k := range numKinds {
				for _, s := range q.lat[k] {
					if in(s) {
						byKind[k] = append(byKind[k], s.ns)
						all = append(all, s.ns)
						if p.owner != "" {
							byOwner[p.owner] = append(byOwner[p.owner], s.ns)
						}
					}
				}
			}
			res.OutOfOrder += q.ooo
			res.Corrupt += q.corrupt
		}
	}
	res.Offer, res.Answer, res.Candidate = latencyStats(byKind[kindOffer]), latencyStats(byKind[kindAnswer]), latencyStats(byKind[kindCandidate])
	res.All = latencyStats(all)
	res.Join, res.JoinOwnerLocal, res.JoinOwnerRemote = latencyStats(joins), latencyStats(joinLocal), latencyStats(joinRemote)
	if len(cfg.Nodes) > 0 {
		res.OwnerRooms = map[string]int{}
		res.RelayByOwner = map[string]LatencyStats{}
		for _, p := range pairs {
			res.OwnerRooms[p.owner]++
		}
		for o, ns := range byOwner {
			res.RelayByOwner[o] = latencyStats(ns)
		}
	}
	for k := range numKinds {
		if s, g := r.sent[k].Load(), r.recv[k].Load(); s > g {
			res.Lost += s - g
		}
	}
	r.finish(res)
	return nil
}

// each runs fn for 0..n-1 on DialConcurrency goroutines, within a minute,
// and stops at the first error.
func (r *sigRun) each(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for range min(r.cfg.DialConcurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// start starts a latency peer's writer and reader.
func (r *sigRun) start(p *sigPeer) {
	p.out = make(chan int, 4*(1+r.cfg.Candidates)+8)
	p.reading.Store(true)
	r.bg.Go(p.write)
	r.bg.Go(p.read)
}

// queue hands a message to p's writer; false when the run ends.
func (p *sigPeer) queue(kind int) bool {
	select {
	case p.out <- kind:
		return true
	case <-p.r.quit:
		return false
	}
}

// drained reports whether every offer queued was sent, received and
// answered, and every answer and candidate sent was received.
func (r *sigRun) drained() bool {
	q := r.queued.Load()
	so, sa, sc := r.sent[kindOffer].Load(), r.sent[kindAnswer].Load(), r.sent[kindCandidate].Load()
	c := uint64(r.cfg.Candidates)
	return so == q && sa == so && sc == c*(so+sa) &&
		r.recv[kindOffer].Load() == so && r.recv[kindAnswer].Load() == sa && r.recv[kindCandidate].Load() == sc
}

// write is a latency peer's writer: it builds each message with its
// sequence number and send time at the moment it writes it.
func (p *sigPeer) write() {
	for {
		var kind int
		select {
		case kind = <-p.out:
		case <-p.r.quit:
			return
		}
		p.seq++
		ts := mono()
		p.buf = p.build(p.buf[:0], kind, p.seq, ts)
		if err := p.c.WriteMessage(websocket.TextMessage, p.buf); err != nil {
			if !p.r.closing.Load() {
				p.r.fail("peer %s: write: %v", p.id, err)
			}
			return
		}
		p.r.sent[min(kind, kindCandidate)].Add(1)
	}
}

// build appends the JSON of one message to b.
func (p *sigPeer) build(b []byte, kind int, seq uint64, ts int64) []byte {
	typ := kindNames[min(kind, kindCandidate)]
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","to":"`...)
	b = append(b, p.to...)
	if kind < kindCandidate {
		t := &p.r.tpl[kind]
		b = append(b, `","sdp":"`...)
		b = append(b, t.headJSON...)
		b = append(b, "a="+benchMarker+":"...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `\r\n`...)
		b = append(b, t.tailJSON...)
		return append(b, `"}`...)
	}
	side := candidates[p.side]
	b = append(b, `","candidate":{"candidate":"`...)
	b = append(b, side[(kind-kindCandidate)%len(side)]...)
	b = append(b, " "+benchMarker+" "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"`...)
	b = append(b, ufrags[p.side]...)
	return append(b, `"}}`...)
}

// relayed is a message from the node, as a client decodes it.
type relayed struct {
	Type      string          `json:"type"`
	From      string          `json:"from"`
	Peer      string          `json:"peer"`
	SDP       string          `json:"sdp"`
	Candidate json.RawMessage `json:"candidate"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
}

// read is a latency peer's reader: it times every relayed message from
// the receive time taken before decoding, checks its sequence and
// content, and on the Y side answers every offer.
func (p *sigPeer) read() {
	defer close(p.ended)
	r := p.r
	for {
		_, b, err := p.c.ReadMessage()
		now := mono()
		if err != nil {
			if !r.closing.Load() {
				p.endErr = err
			}
			return
		}
		var m relayed
		if err := json.Unmarshal(b, &m); err != nil {
			r.fail("peer %s: bad JSON from the node: %v", p.id, err)
			continue
		}
		var kind int
		var text string
		switch m.Type {
		case "offer", "answer":
			kind = kindOffer
			if m.Type == "answer" {
				kind = kindAnswer
			}
			text = m.SDP
			t := &r.tpl[kind]
			if !strings.HasPrefix(text, t.head) || !strings.HasSuffix(text, t.tail) || len(text) > t.size()+64 {
				p.corrupt++
			}
		case "candidate":
			kind = kindCandidate
			var c struct {
				Candidate string `json:"candidate"`
				SDPMid    string `json:"sdpMid"`
				Ufrag     string `json:"usernameFragment"`
			}
			if json.Unmarshal(m.Candidate, &c) != nil || c.SDPMid != "0" || c.Ufrag != ufrags[1-p.side] {
				p.corrupt++
			}
			text = c.Candidate
		case "peer-joined":
			if p.side == 0 && m.Peer == p.to && !p.heard {
				p.heard = true
				close(p.ready)
			} else {
				r.fail("peer %s: peer-joined of %s, a stranger in room %s", p.id, m.Peer, p.room)
			}
			continue
		case "pong":
			continue
		case "peer-left":
			if !r.closing.Load() {
				r.fail("peer %s: peer-left of %s during the run", p.id, m.Peer)
			}
			continue
		case "error":
			r.fail("peer %s: error %s: %s", p.id, m.Code, m.Message)
			continue
		default:
			r.fail("peer %s: unexpected %s %s", p.id, m.Type, m.Peer)
			continue
		}
		if m.From != p.to {
			r.fail("peer %s: %s from %s, not from its partner %s", p.id, m.Type, m.From, p.to)
		}
		seq, sent, ok := parseMarker(text)
		if !ok {
			p.corrupt++
			r.fail("peer %s: %s without the bench marker", p.id, m.Type)
			continue
		}
		if seq != p.last+1 {
			p.ooo++
		}
		p.last = seq
		p.lat[kind] = append(p.lat[kind], sample{sent: sent, ns: now - sent})
		r.recv[kind].Add(1)
		if kind == kindOffer && p.side == 1 {
			if !p.queue(kindAnswer) {
				return
			}
			for k := range r.cfg.Candidates {
				if !p.queue(kindCandidate + k) {
					return
				}
			}
		}
	}
}

// benchMarker leads the sequence number and send time in every relayed
// message: an SDP attribute line a=x-sy-bench:SEQ:NS in offers and
// answers, a candidate extension attribute x-sy-bench SEQ:NS (RFC 8839
// extension-att-name and -value) at the end of every candidate.
const benchMarker = "x-sy-bench"

func parseMarker(s string) (seq uint64, sent int64, ok bool) {
	i := strings.Index(s, benchMarker)
	if i < 0 || i+len(benchMarker)+1 >= len(s) {
		return 0, 0, false
	}
	s = s[i+len(benchMarker)+1:]
	j := strings.IndexByte(s, ':')
	if j < 0 {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(s[:j], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	s = s[j+1:]
	k := 0
	for k < len(s) && s[k] >= '0' && s[k] <= '9' {
		k++
	}
	sent, err = strconv.ParseInt(s[:k], 10, 64)
	return seq, sent, err == nil
}

// sigSnapshot is the state at one edge of the measurement window.
type sigSnapshot struct {
	at         int64 // mono
	recv       uint64
	cpu1, cpu2 float64
	selfCPU    float64
	err        error
}

func (r *sigRun) snapshot() sigSnapshot {
	s := sigSnapshot{at: mono()}
	for k := range numKinds {
		s.recv += r.recv[k].Load()
	}
	var e1, e2 error
	if r.cfg.ServerPID != 0 {
		s.cpu1, e1 = procCPU(r.cfg.ServerPID)
	}
	if r.cfg.ServerPID2 != 0 && r.cfg.ServerPID2 != r.cfg.ServerPID {
		s.cpu2, e2 = procCPU(r.cfg.ServerPID2)
	}
	s.err = errors.Join(e1, e2)
	s.selfCPU, _ = procCPU(os.Getpid())
	return s
}

// finish copies the errors and disconnects into res.
func (r *sigRun) finish(res *SignalResult) {
	res.Errors = r.errs.Load()
	r.mu.Lock()
	res.FirstError = r.firstErr
	r.mu.Unlock()
	for _, p := range r.peers {
		if p.endErr != nil {
			res.Disconnects++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("peer %s in %s: %v", p.id, p.room, p.endErr)
			}
		}
	}
}

// shutdown ends the run: the writers and drivers stop, and every
// connection is closed with the WebSocket closing handshake (1000, then
// the node's close is awaited), so that every peer leaves its room at
// once. Closing the socket right after the close frame, with a message of
// the node's unread, makes the kernel reset the connection and may drop
// the close frame: the node then keeps the peer for its grace period. It
// is safe to call more than once.
func (r *sigRun) shutdown() {
	r.once.Do(func() {
		r.closing.Store(true)
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		close(r.quit)
		r.peersMu.Lock()
		peers := slices.Clone(r.peers)
		r.peersMu.Unlock()
		deadline := time.Now().Add(2 * time.Second)
		closeMsg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		var wg sync.WaitGroup
		for chunk := range slices.Chunk(peers, 64) {
			wg.Go(func() {
				for _, p := range chunk {
					_ = p.c.WriteControl(websocket.CloseMessage, closeMsg, deadline)
				}
			})
		}
		wg.Wait()
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		for _, p := range peers {
			if p.reading.Load() {
				select {
				case <-p.ended: // the node's close came
				case <-t.C:
				}
			}
			p.c.Close()
		}
		r.bg.Wait()
	})
}

// capacity runs the capacity mode: Peers idle peers in rooms of RoomSize.
func (r *sigRun) capacity(ctx context.Context, res *SignalResult) error {
	cfg := r.cfg
	res.ConnectedPeers, res.RoomSize = cfg.Peers, cfg.RoomSize
	res.Rooms = (cfg.Peers + cfg.RoomSize - 1) / cfg.RoomSize
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	base, err := procRSS(cfg.ServerPID)
	if err != nil {
		return err
	}
	res.BaseRSSMiB = mib(base)
	res.TCPSocketsBefore, res.TCPBufKiBBefore = sockstatTCP()
	res.SlabMiBBefore = meminfoMiB("Slab")
	start := time.Now()
	cfg.Logf("joining %d peers at %s in %d rooms of %d", cfg.Peers, cfg.URL, res.Rooms, cfg.RoomSize)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = r.each(ctx, cfg.Peers, func(ctx context.Context, i int) error {
		p, _, _, err := r.dial(ctx, cfg.URL, fmt.Sprintf("%s-%d", r.prefix, i/cfg.RoomSize))
		if err != nil {
			return fmt.Errorf("peer %d: %w", i, err)
		}
		p.reading.Store(true)
		r.bg.Go(p.idle)
		return nil
	})
	if err != nil {
		return err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	res.JoinsPerSec = float64(cfg.Peers) / res.SetupSeconds
	cfg.Logf("%d peers joined in %v; idle for %v", cfg.Peers, time.Since(start).Round(time.Millisecond), cfg.Settle)
	t := time.NewTimer(cfg.Settle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
	rss, err := procRSS(cfg.ServerPID)
	if err != nil {
		return err
	}
	res.PeersRSSMiB = mib(rss)
	res.TCPSocketsAfter, res.TCPBufKiBAfter = sockstatTCP()
	res.SlabMiBAfter = meminfoMiB("Slab")
	if cfg.ServerPID != 0 {
		hwm, _ := procStatus(cfg.ServerPID, "VmHWM")
		res.PeakRSSMiB = float64(hwm) / 1024
		th, _ := procStatus(cfg.ServerPID, "Threads")
		res.Threads = int(th)
		grown := float64(rss-base) / 1024
		res.KiBPerPeer = grown / float64(cfg.Peers)
		res.KiBPerRoom = grown / float64(res.Rooms)
	}
	r.shutdown()
	r.finish(res)
	return nil
}

// idle is a capacity peer's reader: it reads (and so answers the node's
// pings) until the run ends.
func (p *sigPeer) idle() {
	defer close(p.ended)
	for {
		_, b, err := p.c.ReadMessage()
		if err != nil {
			if !p.r.closing.Load() {
				p.endErr = err
			}
			return
		}
		if bytes.Contains(b, []byte(`"type":"error"`)) {
			p.r.fail("peer %s: %s", p.id, b)
		}
	}
}

// procStatus reads a numeric field of /proc/PID/status (kB for sizes).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// meminfoMiB reads a field of /proc/meminfo in MiB; 0 if unreadable.
func meminfoMiB(field string) float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// sockstatTCP reads the TCP sockets in use and their buffer memory in KiB
// from /proc/net/sockstat (this network namespace: both ends of every
// loopback connection, and anything else running); zeros if unreadable.
func sockstatTCP() (inuse, memKiB int) {
	f, err := os.Open("/proc/net/sockstat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "TCP:")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		for i := 0; i+1 < len(fs); i += 2 {
			v, _ := strconv.Atoi(fs[i+1])
			switch fs[i] {
			case "inuse":
				inuse = v
			case "mem":
				memKiB = v * os.Getpagesize() / 1024
			}
		}
	}
	return inuse, memKiB
}

// roomOwner is the node that owns room among nodes: rendezvous hashing of
// "signal/"+room as the mesh computes a key's owner (mesh/owner.go:
// score = mix64(fnv1a(key) ^ fnv1a(node)), the highest wins, ties to the
// larger name). A copy; TestRoomOwnerMatchesMesh checks it against a real
// two-node mesh.
func roomOwner(room string, nodes []string) string { return keyOwner("signal/"+room, nodes) }

// keyOwner is the node that owns key (a channel's name, or signal/ROOM)
// among nodes, as the mesh computes it.
func keyOwner(key string, nodes []string) string {
	fnv1a := func(s string) uint64 {
		h := uint64(14695981039346656037)
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		return h
	}
	mix64 := func(h uint64) uint64 {
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
		return h
	}
	hc := fnv1a(key)
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		s := mix64(hc ^ fnv1a(n))
		if best == "" || s > bestScore || (s == bestScore && n > best) {
			best, bestScore = n, s
		}
	}
	return best
}

// sdpTemplate is an SDP split where the bench attribute line goes (after
// the session's t= line), as text and as JSON string content.
type sdpTemplate struct {
	head, tail         string
	headJSON, tailJSON []byte
}

func newSDPTemplate(sdp string) sdpTemplate {
	sdp = strings.ReplaceAll(strings.TrimLeft(sdp, "\n"), "\n", "\r\n")
	i := strings.Index(sdp, "t=0 0\r\n") + len("t=0 0\r\n")
	t := sdpTemplate{head: sdp[:i], tail: sdp[i:]}
	esc := func(s string) []byte {
		b, _ := json.Marshal(s)
		return b[1 : len(b)-1]
	}
	t.headJSON, t.tailJSON = esc(t.head), esc(t.tail)
	return t
}

// size is the SDP's length with a typical bench line.
func (t *sdpTemplate) size() int {
	return len(t.head) + len(t.tail) + len("a="+benchMarker+":1000:10000000000\r\n")
}

// signalFlags registers the flags of the signal scenario on fs; the
// shared ones (-url, -rate, -warmup, -duration, -drain, -settle,
// -server-pid) are copied in by runSignalScenario.
func signalFlags(fs *flag.FlagSet) *SignalConfig {
	sc := &SignalConfig{}
	fs.StringVar(&sc.Mode, "mode", signalLatency, "signal: `mode`, latency (relay latency of offers, answers, candidates) or capacity (idle peers, server RSS)")
	fs.StringVar(&sc.URL2, "url2", "", "signal: `URL` of peer Y's node (latency; default -url)")
	fs.IntVar(&sc.Pairs, "pairs", 100, "signal: peer `pairs`, a room each (latency)")
	fs.IntVar(&sc.Candidates, "candidates", 4, "signal: ICE candidates per side per negotiation (latency; -1: none)")
	fs.IntVar(&sc.Peers, "peers", 5000, "signal: idle `peers` (capacity)")
	fs.IntVar(&sc.RoomSize, "room-size", 2, "signal: peers per room (capacity)")
	fs.IntVar(&sc.ServerPID2, "server-pid2", 0, "signal: `PID` of the node at -url2")
	fs.StringVar(&sc.Label, "label", "", "signal: the run's name in the table")
	fs.Func("nodes", "signal: `names` of the mesh's live nodes, the one at -url first and the one at -url2 second (reports each room's owner)", func(s string) error {
		sc.Nodes = strings.Split(s, ",")
		return nil
	})
	return sc
}

// runSignalScenario runs -scenario signal with the shared flags of cfg.
func runSignalScenario(ctx context.Context, sc *SignalConfig, cfg Config, settle time.Duration, set map[string]bool, asJSON bool, stdout io.Writer) error {
	c := *sc
	c.URL, c.Rate, c.Warmup, c.Duration, c.Drain, c.ServerPID, c.Logf = cfg.URL, cfg.Rate, cfg.Warmup, cfg.Duration, cfg.Drain, cfg.ServerPID, cfg.Logf
	if set["settle"] {
		c.Settle = settle
	}
	r, err := RunSignal(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		printSignalText(stdout, r)
	}
	if r.Lost > 0 || r.OutOfOrder > 0 || r.Corrupt > 0 || r.Errors > 0 || r.Disconnects > 0 {
		return fmt.Errorf("signal: %d lost, %d out of order, %d corrupt, %d errors, %d disconnects (%s)",
			r.Lost, r.OutOfOrder, r.Corrupt, r.Errors, r.Disconnects, r.FirstError)
	}
	return nil
}

func fmtLat(s LatencyStats) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", s.P50, s.P95, s.P99, s.Max)
}

func printSignalText(w io.Writer, r *SignalResult) {
	fmt.Fprintf(w, "scenario            signal %s: %s; load generator and nodes share %d CPUs\n", r.Mode, r.Label, r.CPUs)
	if r.Mode == signalCapacity {
		fmt.Fprintf(w, "peers               %d in %d rooms of %d, joined in %.2f s (%.0f joins/s)\n", r.ConnectedPeers, r.Rooms, r.RoomSize, r.SetupSeconds, r.JoinsPerSec)
		fmt.Fprintf(w, "server RSS          %.1f MiB before, %.1f MiB with the peers (peak %.1f MiB); %d threads\n", r.BaseRSSMiB, r.PeersRSSMiB, r.PeakRSSMiB, r.Threads)
		fmt.Fprintf(w, "per peer / room     %.1f KiB / %.1f KiB of server RSS\n", r.KiBPerPeer, r.KiBPerRoom)
		fmt.Fprintf(w, "TCP (sockstat)      %d → %d sockets, %d → %d KiB of buffers (both ends, whole namespace)\n", r.TCPSocketsBefore, r.TCPSocketsAfter, r.TCPBufKiBBefore, r.TCPBufKiBAfter)
		fmt.Fprintf(w, "kernel slab         %.1f → %.1f MiB (whole machine)\n", r.SlabMiBBefore, r.SlabMiBAfter)
	} else {
		fmt.Fprintf(w, "load                %d pairs, %g messages/s asked, %d candidates per side; offer %d B, answer %d B, candidate ≤ %d B\n",
			r.Pairs, r.Rate, r.Candidates, r.OfferBytes, r.AnswerBytes, r.CandidateBytes)
		fmt.Fprintf(w, "window              %.2f s: %d messages relayed (%.0f/s)\n", r.Seconds, r.Messages, r.MessagesPerSec)
		fmt.Fprintf(w, "latency ms          p50 / p95 / p99 / max (samples)\n")
		for _, k := range []struct {
			name string
			s    LatencyStats
		}{{"offer", r.Offer}, {"answer", r.Answer}, {"candidate", r.Candidate}, {"all", r.All}, {"join", r.Join}} {
			fmt.Fprintf(w, "  %-17s %s (%d)\n", k.name, fmtLat(k.s), k.s.N)
		}
		if r.OwnerRooms != nil {
			fmt.Fprintf(w, "  join, owner local  %s (%d)\n", fmtLat(r.JoinOwnerLocal), r.JoinOwnerLocal.N)
			fmt.Fprintf(w, "  join, owner remote %s (%d)\n", fmtLat(r.JoinOwnerRemote), r.JoinOwnerRemote.N)
			for _, o := range slices.Sorted(maps.Keys(r.OwnerRooms)) {
				fmt.Fprintf(w, "  relays, owner %-4s %s (%d rooms)\n", o, fmtLat(r.RelayByOwner[o]), r.OwnerRooms[o])
			}
		}
		if r.ServerCPU > 0 {
			fmt.Fprintf(w, "server CPU          %.2f s (%.2f cores; %.2f + %.2f), %.1f µs per message; RSS %.1f MiB (%.1f)\n",
				r.ServerCPU, r.ServerCores, r.ServerCPU1, r.ServerCPU2, r.CPUPerMsgUs, r.ServerRSSMiB, r.Server2RSSMiB)
		}
		fmt.Fprintf(w, "loadgen CPU         %.2f s\n", r.LoadgenCPU)
		fmt.Fprintf(w, "lost / out of order %d / %d; corrupt %d; errors %d; disconnects %d\n", r.Lost, r.OutOfOrder, r.Corrupt, r.Errors, r.Disconnects)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error         %s\n", r.FirstError)
	}
}

// printSignalTable prints the signal lines of the -json output in files as
// Markdown tables (loadgen -scenario signal -table FILE...).
func printSignalTable(w io.Writer, files []string) error {
	var rs []SignalResult
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var r SignalResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if r.Scenario == scenarioSignal {
				rs = append(rs, r)
			}
		}
	}
	var lat, capy []SignalResult
	owners := false
	for _, r := range rs {
		if r.Mode == signalCapacity {
			capy = append(capy, r)
		} else {
			lat = append(lat, r)
			owners = owners || r.OwnerRooms != nil
		}
	}
	if len(lat) > 0 {
		fmt.Fprintln(w, "| run | pairs | messages/s | offer p50 / p95 / p99 / max ms | answer p50 / p95 / p99 / max ms | candidate p50 / p95 / p99 / max ms | server CPU µs per message (cores) | loadgen CPU s | lost / errors |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range lat {
			fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %.1f (%.2f) | %.2f | %d / %d |\n", r.Label, r.Pairs, r.MessagesPerSec,
				fmtLat(r.Offer), fmtLat(r.Answer), fmtLat(r.Candidate), r.CPUPerMsgUs, r.ServerCores, r.LoadgenCPU, r.Lost, r.Errors)
		}
	}
	if owners {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| run | rooms by owner | relays p50 / p99 ms, by owner | join p50 / p99 ms, owner the peer's node | join p50 / p99 ms, owner the other node |")
		fmt.Fprintln(w, "|---|---|---|---:|---:|")
		for _, r := range lat {
			if r.OwnerRooms == nil {
				continue
			}
			var rooms, relays []string
			for _, o := range slices.Sorted(maps.Keys(r.OwnerRooms)) {
				rooms = append(rooms, fmt.Sprintf("%s %d", o, r.OwnerRooms[o]))
				s := r.RelayByOwner[o]
				relays = append(relays, fmt.Sprintf("%s %.2f / %.2f", o, s.P50, s.P99))
			}
			pp := func(s LatencyStats) string {
				if s.N == 0 {
					return "—"
				}
				return fmt.Sprintf("%.2f / %.2f (%d)", s.P50, s.P99, s.N)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.Label, strings.Join(rooms, ", "), strings.Join(relays, "; "), pp(r.JoinOwnerLocal), pp(r.JoinOwnerRemote))
		}
	}
	if len(capy) > 0 {
		if len(lat) > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "| run | peers | room size | rooms | joins/s | server RSS MiB: before → with the peers (peak) | KiB per peer | KiB per room (RSS ÷ rooms) | server threads | TCP sockets (both ends) | TCP buffers KiB | kernel slab MiB (machine) |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range capy {
			fmt.Fprintf(w, "| %s | %d | %d | %d | %.0f | %.1f → %.1f (%.1f) | %.1f | %.1f | %d | %d → %d | %d → %d | %.0f → %.0f |\n", r.Label, r.ConnectedPeers, r.RoomSize, r.Rooms,
				r.JoinsPerSec, r.BaseRSSMiB, r.PeersRSSMiB, r.PeakRSSMiB, r.KiBPerPeer, r.KiBPerRoom, r.Threads,
				r.TCPSocketsBefore, r.TCPSocketsAfter, r.TCPBufKiBBefore, r.TCPBufKiBAfter, r.SlabMiBBefore, r.SlabMiBAfter)
		}
	}
	return nil
}

// ICE candidates as Chromium gathers them (mDNS host candidates, server
// reflexive, TCP, relay), one list per side, and the sides' ufrags.
var (
	ufrags     = [2]string{"Jx7q", "Rb2m"}
	candidates = [2][]string{
		{
			"candidate:1467250027 1 udp 2122260223 2f0c8c3e-5a4b-4b5e-9e1c-8f7c6d5e4a3b.local 54321 typ host generation 0 ufrag Jx7q network-id 1 network-cost 10",
			"candidate:842163049 1 udp 1686052607 203.0.113.47 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Jx7q network-id 1 network-cost 10",
			"candidate:1519817547 1 tcp 1518280447 2f0c8c3e-5a4b-4b5e-9e1c-8f7c6d5e4a3b.local 9 typ host tcptype active generation 0 ufrag Jx7q network-id 1 network-cost 10",
			"candidate:2934715306 1 udp 41885439 198.51.100.20 63412 typ relay raddr 203.0.113.47 rport 54321 generation 0 ufrag Jx7q network-id 1 network-cost 10",
		},
		{
			"candidate:3480801251 1 udp 2122194687 7d1e4b2a-93c6-4f08-b5e7-1c2a9d8f6e34.local 60412 typ host generation 0 ufrag Rb2m network-id 1 network-cost 10",
			"candidate:1953276445 1 udp 1685987071 198.51.100.133 60412 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Rb2m network-id 1 network-cost 10",
			"candidate:2211586779 1 tcp 1518214911 7d1e4b2a-93c6-4f08-b5e7-1c2a9d8f6e34.local 9 typ host tcptype active generation 0 ufrag Rb2m network-id 1 network-cost 10",
			"candidate:3102437861 1 udp 25108223 198.51.100.20 50871 typ relay raddr 198.51.100.133 rport 60412 generation 0 ufrag Rb2m network-id 1 network-cost 10",
		},
	}
)

// chromiumOffer is an offer as Chromium makes it for an audio and a video
// track and a data channel (BUNDLE, unified plan), its codec list trimmed
// a little: 4.4 KB with CRLF line ends. chromiumAnswer is the answer of
// another Chromium to it: 4.2 KB.
//
//go:embed testdata/chromium-offer.sdp
var chromiumOffer string

//go:embed testdata/chromium-answer.sdp
var chromiumAnswer string
