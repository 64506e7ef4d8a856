package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Targets the load generator speaks to.
const (
	targetSwitchyard = "switchyard"
	targetNaive      = "naive"
	targetFloor      = "floor" // bench/floor: the naive protocol, at the least cost
	targetCentrifugo = "centrifugo"
)

// Config describes one load run. Zero values take the defaults given.
type Config struct {
	// Target is "switchyard", "naive" or "centrifugo".
	Target string
	// URL is the subscribers' WebSocket URL (ws://host:port/ws;
	// centrifugo: ws://host:port/connection/websocket).
	URL string
	// SubURLs, when set, are the subscribers' URLs instead of URL:
	// subscriber i connects to SubURLs[i % len(SubURLs)] (the mesh
	// scenario: subscribers on two nodes, the publisher on a third).
	SubURLs []string
	// PubURL is where the publisher publishes. Zero: URL for switchyard,
	// URL with the path /pub for naive, and for centrifugo the HTTP API's
	// publish endpoint: URL with the scheme http (https for wss) and the
	// path /api/publish.
	PubURL string
	// APIKey is the key of the server's HTTP API (centrifugo only, sent as
	// X-API-Key). Zero: none.
	APIKey string
	// Channel is the channel subscribed and published to. Zero: "bench".
	Channel string
	// Subs is the number of subscriber connections. Zero: 1000.
	Subs int
	// Payload is the payload size in bytes; at least 16 (a send timestamp
	// and a sequence number lead every payload), for centrifugo at least
	// 24 (the payload is a JSON string there, see centrifugo.go). Zero: 64.
	Payload int
	// Settle is how long the subscribers sit subscribed and idle before the
	// server's RSS is read for IdleSessionKiB. Zero: no wait.
	Settle time.Duration
	// Warmup runs the load before the measurement window opens. Zero: none.
	Warmup time.Duration
	// Duration is the measurement window. Zero: 10 s.
	Duration time.Duration
	// Rate is publishes per second; 0 publishes as fast as the server
	// keeps up (saturation), within Window.
	Rate float64
	// Window bounds the work in flight: the publisher waits while the
	// slowest subscriber is Window publications behind, and (switchyard)
	// while Window publishes are unacknowledged. Zero: 32.
	Window int
	// LatencySubs is how many subscribers time every message they get.
	// Zero: 10.
	LatencySubs int
	// ServerPID is the server process whose CPU time and RSS are sampled
	// from /proc. Zero: not sampled.
	ServerPID int
	// MorePIDs are more server processes (the other nodes of a mesh)
	// whose CPU time counts with ServerPID's.
	MorePIDs []int
	// Insecure skips the verification of the server's certificate for
	// wss:// URLs (the benchmark's servers use self-signed ones).
	Insecure bool
	// TimelineStep is how often the deliveries are counted for the
	// throughput-over-time chart, from the start of the warmup to the end
	// of the window. Zero: 100 ms.
	TimelineStep time.Duration
	// DialConcurrency bounds simultaneous handshakes. Zero: 32.
	DialConcurrency int
	// Drain is how long to wait, after the publisher stops, for every
	// subscriber to get every publication. Zero: 10 s.
	Drain time.Duration
	// Readers is how subscribers read: "goroutine" (a goroutine each,
	// blocked in gorilla's read) or "epoll" (experimental, Linux, ws://
	// only: GOMAXPROCS goroutines with an epoll instance each read all the
	// sockets and parse the frames themselves, see epoll_linux.go).
	// Zero: goroutine.
	Readers string
	// Logf reports progress. Zero: silent.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.Channel == "" {
		c.Channel = "bench"
	}
	if c.Subs == 0 {
		c.Subs = 1000
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Window == 0 {
		c.Window = 32
	}
	if c.LatencySubs == 0 {
		c.LatencySubs = 10
	}
	c.LatencySubs = min(c.LatencySubs, c.Subs)
	if c.DialConcurrency == 0 {
		c.DialConcurrency = 32
	}
	if c.Drain == 0 {
		c.Drain = 10 * time.Second
	}
	if c.TimelineStep == 0 {
		c.TimelineStep = 100 * time.Millisecond
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Readers == "" {
		c.Readers = readersGoroutine
	}
	if c.PubURL == "" && c.URL != "" {
		c.PubURL = c.URL
		if u, err := url.Parse(c.URL); err == nil {
			switch c.Target {
			case targetNaive, targetFloor:
				u.Path = "/pub"
				c.PubURL = u.String()
			case targetCentrifugo:
				u.Scheme = map[string]string{"ws": "http", "wss": "https"}[u.Scheme]
				u.Path = "/api/publish"
				c.PubURL = u.String()
			}
		}
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Target != targetSwitchyard && c.Target != targetNaive && c.Target != targetFloor && c.Target != targetCentrifugo {
		errs = append(errs, fmt.Errorf("target %q: want %s, %s, %s or %s", c.Target, targetSwitchyard, targetNaive, targetFloor, targetCentrifugo))
	}
	if c.URL == "" {
		errs = append(errs, errors.New("url is required"))
	}
	if c.Subs < 1 {
		errs = append(errs, fmt.Errorf("subs %d: want at least 1", c.Subs))
	}
	if c.Payload < payloadHeader {
		errs = append(errs, fmt.Errorf("payload %d: want at least %d bytes (timestamp and sequence number)", c.Payload, payloadHeader))
	} else if c.Target == targetCentrifugo && c.Payload < cfMinPayload {
		errs = append(errs, fmt.Errorf("payload %d: centrifugo wants at least %d bytes (a JSON string holding the timestamp and sequence number in base64)", c.Payload, cfMinPayload))
	}
	if c.Target == targetCentrifugo && c.PubURL != "" {
		if u, err := url.Parse(c.PubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Errorf("pub-url %q: centrifugo publishes through its HTTP API, want http:// or https://", c.PubURL))
		}
	}
	switch c.Readers {
	case readersGoroutine:
	case readersEpoll:
		for _, u := range append([]string{c.URL}, c.SubURLs...) {
			if !strings.HasPrefix(u, "ws://") {
				errs = append(errs, fmt.Errorf("readers epoll: subscriber URL %q: want ws:// (the reader reads the TCP socket, no TLS)", u))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("readers %q: want %s or %s", c.Readers, readersGoroutine, readersEpoll))
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Drain < 0 || c.Rate < 0 || c.Window < 0 || c.Settle < 0 {
		errs = append(errs, errors.New("durations, rate and window must not be negative"))
	}
	return errors.Join(errs...)
}

// Subscriber read paths (Config.Readers).
const (
	readersGoroutine = "goroutine"
	readersEpoll     = "epoll"
)

// payloadHeader leads every payload: the send time in unix nanoseconds and
// the publication's sequence number (from 1), both big-endian.
const payloadHeader = 16

// Result is what one run measured. Rates are over the measurement window
// only; Lost, OutOfOrder and Disconnects cover the whole run.
type Result struct {
	Target  string  `json:"target"`
	Subs    int     `json:"subs"`
	Payload int     `json:"payload_bytes"`
	Rate    float64 `json:"rate"` // publishes/s asked for; 0: saturate
	Window  int     `json:"window"`
	Readers string  `json:"readers,omitempty"` // set for -readers epoll only
	CPUs    int     `json:"cpus"`              // shared by the load generator and the server

	Seconds          float64 `json:"seconds"`
	Publishes        uint64  `json:"publishes"`
	PublishesPerSec  float64 `json:"publishes_per_s"`
	Deliveries       uint64  `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`

	// Server figures need ServerPID; they are zero without it.
	ServerCPU            float64 `json:"server_cpu_s"`
	ServerCores          float64 `json:"server_cores"` // ServerCPU / Seconds
	DeliveriesPerCoreSec float64 `json:"deliveries_per_server_core_s"`
	ServerRSSMiB         float64 `json:"server_rss_mib"` // at the end of the window
	LoadgenCPU           float64 `json:"loadgen_cpu_s"`
	// Server RSS before the subscribers connect and with all of them
	// subscribed and idle for Settle (before anything is published), and
	// the growth per subscriber.
	BaseRSSMiB     float64 `json:"base_rss_mib"`
	IdleRSSMiB     float64 `json:"idle_rss_mib"`
	IdleSessionKiB float64 `json:"idle_session_kib"`
	// The subscribers' connects (upgrade, connect, subscribe): how long
	// they took with DialConcurrency at a time, and how many the server
	// took per second of its CPU (its CPU over the dial phase).
	ConnectSeconds     float64 `json:"connect_s"`
	ConnectsPerCoreSec float64 `json:"connects_per_server_core_s"`

	// Publish → deliver latency of every delivery to the first
	// LatencySubs subscribers in the window.
	LatencySamples int     `json:"latency_samples"`
	LatencyP50Ms   float64 `json:"latency_p50_ms"`
	LatencyP95Ms   float64 `json:"latency_p95_ms"`
	// LatencyCDFMs is the latency at each of cdfQuantiles, for charts.
	LatencyCDFMs  []float64 `json:"latency_cdf_ms,omitempty"`
	LatencyP99Ms  float64   `json:"latency_p99_ms"`
	LatencyP999Ms float64   `json:"latency_p999_ms"`
	LatencyMaxMs  float64   `json:"latency_max_ms"`
	// Publish → delivery to the last of all Subs subscribers, per
	// publication whose last delivery fell in the window.
	LastSamples int     `json:"last_sub_samples"`
	LastP50Ms   float64 `json:"last_sub_p50_ms"`
	LastP95Ms   float64 `json:"last_sub_p95_ms"`
	LastP99Ms   float64 `json:"last_sub_p99_ms"`
	LastP999Ms  float64 `json:"last_sub_p999_ms"`
	LastMaxMs   float64 `json:"last_sub_max_ms"`

	// Arrival latency: the same deliveries timed at the kernel's receive
	// timestamp of their bytes in the subscriber's socket instead of at
	// the load generator's read, so that the time the load generator
	// waits for a CPU (it shares the cores with the server) is left out.
	// Only -readers epoll reads with recvmsg and gets the timestamps: the
	// fields are zero, and absent from the JSON, otherwise. TCP reports
	// the timestamp of the last segment a read took, so messages that
	// arrive together share the later time: arrival latency errs high,
	// never low.
	ArrivalSamples int     `json:"arrival_samples,omitempty"`
	ArrivalP50Ms   float64 `json:"arrival_p50_ms,omitempty"`
	ArrivalP95Ms   float64 `json:"arrival_p95_ms,omitempty"`
	ArrivalP99Ms   float64 `json:"arrival_p99_ms,omitempty"`
	ArrivalP999Ms  float64 `json:"arrival_p999_ms,omitempty"`
	ArrivalMaxMs   float64 `json:"arrival_max_ms,omitempty"`
	// Publish → the latest arrival at any of the Subs subscribers, for
	// the publications of LastSamples whose every delivery had a
	// timestamp.
	LastArrivalSamples int     `json:"last_sub_arrival_samples,omitempty"`
	LastArrivalP50Ms   float64 `json:"last_sub_arrival_p50_ms,omitempty"`
	LastArrivalP95Ms   float64 `json:"last_sub_arrival_p95_ms,omitempty"`
	LastArrivalP99Ms   float64 `json:"last_sub_arrival_p99_ms,omitempty"`
	LastArrivalP999Ms  float64 `json:"last_sub_arrival_p999_ms,omitempty"`
	LastArrivalMaxMs   float64 `json:"last_sub_arrival_max_ms,omitempty"`

	// Throughput over time: deliveries/s in each TimelineStepMs from the
	// start of the warmup (the window opens at TimelineWindowS seconds).
	TimelineStepMs  float64   `json:"timeline_step_ms,omitempty"`
	TimelineWindowS float64   `json:"timeline_window_s,omitempty"`
	Timeline        []float64 `json:"timeline_deliveries_per_s,omitempty"`

	// Lost counts publications some subscriber had not received when the
	// drain ended; OutOfOrder those that arrived with an unexpected
	// sequence number. Both must be zero.
	Lost        uint64 `json:"lost"`
	OutOfOrder  uint64 `json:"out_of_order"`
	Disconnects int    `json:"disconnects"`
	Errors      uint64 `json:"errors"` // Error frames from the server
	FirstError  string `json:"first_error,omitempty"`

	// TotalPublishes and PerSub count the whole run, warmup and drain
	// included: after a clean drain every PerSub equals TotalPublishes.
	TotalPublishes uint64   `json:"-"`
	PerSub         []uint64 `json:"-"`
}

// load is the state of one run.
type load struct {
	// immutable after Run starts
	cfg   Config
	proto protocol
	subs  []*subscriber
	pub   *publisher

	arrivals  bool        // deliveries carry their arrival time (-readers epoll)
	measuring atomic.Bool // subscribers record latency while set
	closing   atomic.Bool // the run is ending; conn errors are expected
	slots     []fanSlot   // indexed by sequence number modulo its length
	published atomic.Uint64
	acked     atomic.Uint64
	errs      atomic.Uint64

	mu       sync.Mutex // guards firstErr
	firstErr string

	readers sync.WaitGroup // one per connection's read loop (or epoll reader)
	ep      *epollReaders  // -readers epoll; nil otherwise
}

// protocol is what differs between the targets.
type protocol interface {
	// subscribe starts the subscription on a fresh connection; the
	// subscriber's read loop reports when it is in place.
	subscribe(s *subscriber) error
	// connectPublisher prepares a fresh publisher connection.
	connectPublisher(p *publisher) error
	// handle processes one binary message on a subscriber connection.
	handle(s *subscriber, msg []byte) error
	// handleText processes one text message on a subscriber connection.
	handleText(s *subscriber, msg []byte) error
	// publish sends one payload; it is called from one goroutine.
	publish(p *publisher, payload []byte) error
	// handlePublisher processes one binary message on the publisher
	// connection.
	handlePublisher(p *publisher, msg []byte) error
	// acks reports whether publishes are acknowledged.
	acks() bool
}

// apiPublisher is a protocol whose publisher calls the server's HTTP API
// instead of writing to a WebSocket connection: the publisher then has no
// connection, and connectPublisher and handlePublisher are not called.
type apiPublisher interface {
	// startAPI prepares the HTTP client and checks that the API answers.
	startAPI(ctx context.Context) error
	// stopAPI cancels a call in flight and closes idle connections. It is
	// safe to call more than once.
	stopAPI()
}

// fanSlot counts the subscribers that got one publication, so that the
// last of them can time it, and keeps the latest arrival time among them
// (with -readers epoll). The publisher resets a slot before it publishes
// the sequence number that reuses it; by then every live subscriber is
// done with the slot's previous publication (the ring is longer than the
// window, and a subscriber counts itself in the slot before it raises its
// own count, which the window looks at).
type fanSlot struct {
	seq     atomic.Uint64
	got     atomic.Int64
	arrival atomic.Int64 // unix ns; 0: none yet; arrivalUnknown: some delivery had none
	_       [40]byte     // one slot per cache line
}

// arrivalUnknown marks a slot one of whose deliveries came without an
// arrival time: the publication's last arrival cannot be known then. It
// is above every real time, so that noteArrival keeps it.
const arrivalUnknown = math.MaxInt64

// noteArrival raises the slot's latest arrival to a (unix ns; 0: unknown).
func (f *fanSlot) noteArrival(a int64) {
	if a == 0 {
		a = arrivalUnknown
	}
	for {
		old := f.arrival.Load()
		if old >= a || f.arrival.CompareAndSwap(old, a) {
			return
		}
	}
}

// lastDelivery counts a delivery of publication seq that arrived at
// arrival (unix ns; 0: unknown) and reports whether it was the last of
// the Subs subscribers to get it. The last one also gets the latest
// arrival among all of them (with -readers epoll; 0 when some delivery
// had none, or otherwise): the subscriber that reads a publication last
// need not be the one whose bytes arrived last. Each delivery notes its
// arrival before it counts itself, so the one that completes the count
// sees every arrival.
func (l *load) lastDelivery(seq uint64, arrival int64) (bool, int64) {
	slot := &l.slots[seq%uint64(len(l.slots))]
	if slot.seq.Load() != seq {
		return false, 0
	}
	if l.arrivals {
		slot.noteArrival(arrival)
	}
	if slot.got.Add(1) != int64(l.cfg.Subs) {
		return false, 0
	}
	if !l.arrivals {
		return true, 0
	}
	latest := slot.arrival.Load()
	if latest == arrivalUnknown {
		latest = 0
	}
	return true, latest
}

func (l *load) fail(format string, args ...any) {
	l.errs.Add(1)
	l.mu.Lock()
	if l.firstErr == "" {
		l.firstErr = fmt.Sprintf(format, args...)
	}
	l.mu.Unlock()
}

// subscriber is one subscriber connection.
type subscriber struct {
	count atomic.Uint64 // deliveries; written by the read loop only
	_     [56]byte      // keep counters of neighbours off one cache line

	// immutable after dial
	l      *load
	i      int
	c      *websocket.Conn
	sample bool          // record latency
	ready  chan struct{} // closed once the subscription is in place

	// owned by the read loop
	readyOnce sync.Once
	lat       []int64 // nanoseconds
	last      []int64 // nanoseconds, of the publications this subscriber got last
	bad       uint64  // out-of-order deliveries
	endErr    error   // why the read loop ended early; read after ended

	// arrival is the kernel's receive time (unix ns) of the bytes being
	// handled: the epoll reader sets it before it parses what one
	// recvmsg returned, and deliver reads it; 0 when unknown (always
	// with -readers goroutine, which reads through gorilla). Also owned
	// by the read loop.
	arrival     int64
	arrivalLat  []int64 // nanoseconds, arrival − send of the deliveries in lat that had an arrival time
	arrivalLast []int64 // nanoseconds, latest arrival − send of the publications in last whose every delivery had an arrival time

	done  atomic.Bool   // set when the read loop has ended
	ended chan struct{} // closed when the read loop has ended
}

// deliver accounts for one delivered payload.
func (s *subscriber) deliver(payload []byte) {
	n := s.count.Load() + 1 // only this read loop writes count
	inOrder := len(payload) >= payloadHeader && binary.BigEndian.Uint64(payload[8:]) == n
	if !inOrder {
		s.bad++
	}
	// Count this delivery in its slot before raising count: the publisher
	// reuses the slot once count shows that every subscriber is past it.
	var last bool
	var lastArrival int64
	if inOrder {
		last, lastArrival = s.l.lastDelivery(n, s.arrival)
	}
	if s.l.measuring.Load() && len(payload) >= payloadHeader && (s.sample || last) {
		sent := int64(binary.BigEndian.Uint64(payload))
		lat := time.Now().UnixNano() - sent
		if s.sample {
			s.lat = append(s.lat, lat)
			if s.arrival != 0 {
				s.arrivalLat = append(s.arrivalLat, s.arrival-sent)
			}
		}
		if last {
			s.last = append(s.last, lat)
			if lastArrival != 0 {
				s.arrivalLast = append(s.arrivalLast, lastArrival-sent)
			}
		}
	}
	s.count.Store(n)
}

func (s *subscriber) markReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// publisher is the publishing connection.
type publisher struct {
	// immutable after dial
	l *load
	c *websocket.Conn // nil for an apiPublisher

	wmu sync.Mutex // serializes writes to c
	id  uint32     // last request id; owned by the publish loop
}

func (p *publisher) write(msg []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.c.WriteMessage(websocket.BinaryMessage, msg)
}

// newLoad is the state of a run of cfg (with its defaults), before any
// connection.
func newLoad(cfg Config) *load {
	l := &load{cfg: cfg, slots: make([]fanSlot, 2*cfg.Window), arrivals: cfg.Readers == readersEpoll}
	switch cfg.Target {
	case targetSwitchyard:
		l.proto = newSwitchyard(cfg.Channel)
	case targetNaive, targetFloor:
		l.proto = naiveProto{}
	case targetCentrifugo:
		l.proto = newCentrifugo(cfg)
	}
	return l
}

// Run performs one load run against a live server.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := newLoad(cfg)
	baseRSS, err := procRSS(cfg.ServerPID)
	if err != nil {
		return nil, fmt.Errorf("sample server %d: %w", cfg.ServerPID, err)
	}
	start := time.Now()
	cpu0, _ := serverCPU(cfg.ServerPID, cfg.MorePIDs)
	cfg.Logf("dialing %d subscribers at %s", cfg.Subs, cfg.URL)
	if err := l.dialSubscribers(ctx); err != nil {
		l.shutdown()
		return nil, err
	}
	cpu1, _ := serverCPU(cfg.ServerPID, cfg.MorePIDs)
	connectSecs := time.Since(start).Seconds()
	cfg.Logf("%d subscribers ready in %v; idle for %v", cfg.Subs, time.Since(start).Round(time.Millisecond), cfg.Settle)
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		l.shutdown()
		return nil, err
	}
	idleRSS, err := procRSS(cfg.ServerPID)
	if err != nil {
		l.shutdown()
		return nil, fmt.Errorf("sample server %d: %w", cfg.ServerPID, err)
	}
	if err := l.dialPublisher(ctx); err != nil {
		l.shutdown()
		return nil, err
	}

	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	tl := startTimeline(l.delivered, cfg.TimelineStep)
	defer tl.stop()
	go func() { pubDone <- l.publishLoop(stop) }()
	stopPublisher := func() error {
		if stop != nil {
			close(stop)
			stop = nil
			return <-pubDone
		}
		return nil
	}
	defer func() {
		l.shutdown() // first: unblocks a publisher stuck in a write or an API call
		_ = stopPublisher()
		if a, ok := l.proto.(apiPublisher); ok {
			a.stopAPI() // again: the last call may have put its connection back
		}
	}()

	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case err := <-pubDone:
			pubDone <- err
			if err == nil {
				err = errors.New("publisher stopped")
			}
			return fmt.Errorf("during the run: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if cfg.Warmup > 0 {
		cfg.Logf("warming up for %v", cfg.Warmup)
		if err := wait(cfg.Warmup); err != nil {
			return nil, err
		}
	}
	cfg.Logf("measuring for %v", cfg.Duration)
	s0 := l.snapshot()
	l.measuring.Store(true)
	if err := wait(cfg.Duration); err != nil {
		return nil, err
	}
	l.measuring.Store(false)
	s1 := l.snapshot()
	timeline := tl.stop()
	rss, rssErr := procRSS(cfg.ServerPID)
	if err := stopPublisher(); err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}

	total := l.published.Load()
	cfg.Logf("published %d; draining", total)
	l.drain(ctx, total)
	l.shutdown()

	r := &Result{
		Target:         cfg.Target,
		Subs:           cfg.Subs,
		Payload:        cfg.Payload,
		Rate:           cfg.Rate,
		Window:         cfg.Window,
		Readers:        map[string]string{readersEpoll: readersEpoll}[cfg.Readers],
		CPUs:           runtime.NumCPU(),
		Seconds:        s1.at.Sub(s0.at).Seconds(),
		Publishes:      s1.published - s0.published,
		Deliveries:     s1.delivered - s0.delivered,
		LoadgenCPU:     s1.selfCPU - s0.selfCPU,
		TotalPublishes: total,
		Errors:         l.errs.Load(),
		FirstError:     l.firstErr,
	}
	r.PublishesPerSec = float64(r.Publishes) / r.Seconds
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Seconds
	if cfg.ServerPID != 0 {
		if s0.serverErr != nil || s1.serverErr != nil || rssErr != nil {
			return nil, fmt.Errorf("sample server %d: %w", cfg.ServerPID, errors.Join(s0.serverErr, s1.serverErr, rssErr))
		}
		r.ServerCPU = s1.serverCPU - s0.serverCPU
		r.ServerCores = r.ServerCPU / r.Seconds
		if r.ServerCPU > 0 {
			r.DeliveriesPerCoreSec = float64(r.Deliveries) / r.ServerCPU
		}
		r.ServerRSSMiB = float64(rss) / (1 << 20)
		r.BaseRSSMiB = float64(baseRSS) / (1 << 20)
		r.IdleRSSMiB = float64(idleRSS) / (1 << 20)
		r.IdleSessionKiB = float64(idleRSS-baseRSS) / 1024 / float64(cfg.Subs)
	}
	r.ConnectSeconds = connectSecs
	if cpu1 > cpu0 {
		r.ConnectsPerCoreSec = float64(cfg.Subs) / (cpu1 - cpu0)
	}
	var lat, last, arrival, arrivalLast []int64
	for _, s := range l.subs {
		n := s.count.Load()
		r.PerSub = append(r.PerSub, n)
		if n < total {
			r.Lost += total - n
		}
		r.OutOfOrder += s.bad
		lat = append(lat, s.lat...)
		last = append(last, s.last...)
		arrival = append(arrival, s.arrivalLat...)
		arrivalLast = append(arrivalLast, s.arrivalLast...)
		if s.endErr != nil {
			r.Disconnects++
			if r.FirstError == "" {
				r.FirstError = fmt.Sprintf("subscriber %d: %v", s.i, s.endErr)
			}
		}
	}
	slices.Sort(lat)
	r.LatencySamples = len(lat)
	r.LatencyP50Ms, r.LatencyP95Ms, r.LatencyP99Ms, r.LatencyP999Ms, r.LatencyMaxMs = percentileMs(lat, 0.50), percentileMs(lat, 0.95), percentileMs(lat, 0.99), percentileMs(lat, 0.999), percentileMs(lat, 1)
	for _, q := range cdfQuantiles {
		r.LatencyCDFMs = append(r.LatencyCDFMs, percentileMs(lat, q))
	}
	slices.Sort(last)
	r.LastSamples = len(last)
	r.LastP50Ms, r.LastP95Ms, r.LastP99Ms, r.LastP999Ms, r.LastMaxMs = percentileMs(last, 0.50), percentileMs(last, 0.95), percentileMs(last, 0.99), percentileMs(last, 0.999), percentileMs(last, 1)
	slices.Sort(arrival)
	r.ArrivalSamples = len(arrival)
	r.ArrivalP50Ms, r.ArrivalP95Ms, r.ArrivalP99Ms, r.ArrivalP999Ms, r.ArrivalMaxMs = percentileMs(arrival, 0.50), percentileMs(arrival, 0.95), percentileMs(arrival, 0.99), percentileMs(arrival, 0.999), percentileMs(arrival, 1)
	slices.Sort(arrivalLast)
	r.LastArrivalSamples = len(arrivalLast)
	r.LastArrivalP50Ms, r.LastArrivalP95Ms, r.LastArrivalP99Ms, r.LastArrivalP999Ms, r.LastArrivalMaxMs = percentileMs(arrivalLast, 0.50), percentileMs(arrivalLast, 0.95), percentileMs(arrivalLast, 0.99), percentileMs(arrivalLast, 0.999), percentileMs(arrivalLast, 1)
	r.TimelineStepMs = float64(cfg.TimelineStep) / float64(time.Millisecond)
	r.TimelineWindowS = cfg.Warmup.Seconds()
	r.Timeline = timeline
	return r, nil
}

// percentileMs returns the p-th quantile (nearest rank) of the sorted
// nanoseconds in ms, or 0 for none.
func percentileMs(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(math.Ceil(p*float64(len(sorted))))-1)
	return float64(sorted[max(i, 0)]) / 1e6
}

// snapshot is the state at one edge of the measurement window.
type snapshot struct {
	at                   time.Time
	published, delivered uint64
	serverCPU, selfCPU   float64 // seconds
	serverErr            error
}

// delivered is the deliveries to all subscribers so far.
func (l *load) delivered() uint64 {
	var n uint64
	for _, sub := range l.subs {
		n += sub.count.Load()
	}
	return n
}

// serverCPU is the CPU time of pid and more together, in seconds.
func serverCPU(pid int, more []int) (float64, error) {
	total, err := procCPU(pid)
	for _, p := range more {
		v, perr := procCPU(p)
		total += v
		err = errors.Join(err, perr)
	}
	return total, err
}

func (l *load) snapshot() snapshot {
	s := snapshot{at: time.Now(), published: l.published.Load(), delivered: l.delivered()}
	if l.cfg.ServerPID != 0 {
		s.serverCPU, s.serverErr = serverCPU(l.cfg.ServerPID, l.cfg.MorePIDs)
	}
	s.selfCPU, _ = procCPU(os.Getpid())
	return s
}

var dialer = websocket.Dialer{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   16 << 10,
	WriteBufferSize:  4 << 10,
}

// baseDialer is dialer, with certificate verification off when Insecure
// is set. Every connection makes a full TLS handshake: there is no
// session cache.
func (c Config) baseDialer() websocket.Dialer {
	d := dialer
	if c.Insecure {
		d.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return d
}

// subURL is the URL subscriber i connects to.
func (c Config) subURL(i int) string {
	if len(c.SubURLs) > 0 {
		return c.SubURLs[i%len(c.SubURLs)]
	}
	return c.URL
}

// dialSubscribers connects every subscriber and waits until each one's
// subscription is in place.
func (l *load) dialSubscribers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if l.cfg.Readers == readersEpoll {
		ep, err := startEpollReaders(l)
		if err != nil {
			return err
		}
		l.ep = ep
	}
	l.subs = make([]*subscriber, l.cfg.Subs)
	for i := range l.subs {
		l.subs[i] = &subscriber{l: l, i: i, sample: i < l.cfg.LatencySubs, ready: make(chan struct{}), ended: make(chan struct{})}
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for range min(l.cfg.DialConcurrency, l.cfg.Subs) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(l.subs) || ctx.Err() != nil {
					return
				}
				if err := l.dialSubscriber(ctx, l.subs[i]); err != nil {
					emu.Lock()
					errs = append(errs, fmt.Errorf("subscriber %d: %w", i, err))
					emu.Unlock()
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, s := range l.subs {
		select {
		case <-s.ready:
		case <-s.ended:
			return fmt.Errorf("subscriber %d: %w", s.i, s.endErr)
		case <-ctx.Done():
			return fmt.Errorf("subscriber %d not ready: %w", s.i, ctx.Err())
		}
	}
	return nil
}

func (l *load) dialSubscriber(ctx context.Context, s *subscriber) error {
	u := l.cfg.subURL(s.i)
	d := dialerFrom(l.cfg.baseDialer(), u, s.i)
	var tc *teeConn
	if l.ep != nil {
		// Keep a copy of what the handshake reads: gorilla's buffer may
		// hold frames past the HTTP response, which the epoll reader must
		// see first.
		dial := d.NetDialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: d.HandshakeTimeout}).DialContext
		}
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc = &teeConn{Conn: c, on: true}
			return tc, nil
		}
	}
	c, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %w (HTTP %s)", u, err, resp.Status)
		}
		return fmt.Errorf("dial %s: %w", u, err)
	}
	c.SetReadLimit(16 << 20)
	s.c = c
	var rest []byte
	if tc != nil {
		if rest, err = tc.handshakeRest(); err != nil {
			c.Close()
			s.c = nil
			return err
		}
	}
	if err := l.proto.subscribe(s); err != nil {
		c.Close()
		s.c = nil
		return err
	}
	if l.ep != nil {
		l.ep.add(s, tc, rest)
		return nil
	}
	l.readers.Go(func() { l.readSubscriber(s) })
	return nil
}

// teeConn keeps a copy of what is read through it while on is set (the
// dial goroutine's, during gorilla's handshake).
type teeConn struct {
	net.Conn
	on  bool
	tee []byte
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.on {
		c.tee = append(c.tee, p[:n]...)
	}
	return n, err
}

// handshakeRest stops the copy and returns what was read past the end of
// the HTTP response: gorilla reads the response through its bufio.Reader
// (http.ReadResponse, which stops right after the blank line that ends
// the header, a 101 having no body), so those bytes are exactly what
// sits unread in gorilla's buffer, the start of the server's frames.
// Nothing reads through gorilla after this.
func (c *teeConn) handshakeRest() ([]byte, error) {
	c.on = false
	tee := c.tee
	c.tee = nil
	i := bytes.Index(tee, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, errors.New("readers epoll: no end of the HTTP response in what the handshake read")
	}
	return tee[i+4:], nil
}

// endSubscriber ends subscriber s's reading: err is why (nil: the run is
// closing).
func (l *load) endSubscriber(s *subscriber, err error) {
	if err != nil && !l.closing.Load() {
		s.endErr = err
		s.c.Close()
	}
	s.done.Store(true)
	close(s.ended)
}

// readSubscriber is the read loop of one subscriber.
func (l *load) readSubscriber(s *subscriber) {
	defer func() {
		s.done.Store(true)
		close(s.ended)
	}()
	var buf []byte
	for {
		typ, r, err := s.c.NextReader()
		if err == nil {
			buf, err = readAll(r, buf[:0])
		}
		if err == nil {
			switch typ {
			case websocket.BinaryMessage:
				err = l.proto.handle(s, buf)
			case websocket.TextMessage:
				err = l.proto.handleText(s, buf)
			}
		}
		if err != nil {
			if !l.closing.Load() {
				s.endErr = err
				s.c.Close()
			}
			return
		}
		// A big batch grew buf; do not keep it for every connection.
		if cap(buf) > 256<<10 {
			buf = nil
		}
	}
}

// readAll appends what r holds to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func (l *load) dialPublisher(ctx context.Context) error {
	if a, ok := l.proto.(apiPublisher); ok {
		if err := a.startAPI(ctx); err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		l.pub = &publisher{l: l}
		return nil
	}
	d := l.cfg.baseDialer()
	c, _, err := d.DialContext(ctx, l.cfg.PubURL, nil)
	if err != nil {
		return fmt.Errorf("publisher: dial %s: %w", l.cfg.PubURL, err)
	}
	c.SetReadLimit(16 << 20)
	p := &publisher{l: l, c: c}
	if err := l.proto.connectPublisher(p); err != nil {
		c.Close()
		return fmt.Errorf("publisher: %w", err)
	}
	l.pub = p
	l.readers.Go(func() {
		var buf []byte
		for {
			typ, r, err := c.NextReader()
			if err == nil {
				buf, err = readAll(r, buf[:0])
			}
			if err == nil && typ == websocket.BinaryMessage {
				err = l.proto.handlePublisher(p, buf)
			}
			if err != nil {
				if !l.closing.Load() {
					l.fail("publisher connection: %v", err)
					c.Close()
				}
				return
			}
		}
	})
	return nil
}

// pollInterval is how often a publisher held back by the window looks
// again. Deliveries of one publication to all subscribers take far longer
// at the loads of interest, so polling costs little and adds no stall.
const pollInterval = 200 * time.Microsecond

// publishLoop publishes until stop is closed, at cfg.Rate or as fast as the
// window allows.
func (l *load) publishLoop(stop <-chan struct{}) error {
	payload := make([]byte, l.cfg.Payload)
	for i := payloadHeader; i < len(payload); i++ {
		payload[i] = byte(i)
	}
	window := uint64(l.cfg.Window)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	sleep := func(d time.Duration) bool {
		t.Reset(d)
		select {
		case <-stop:
			return false
		case <-t.C:
			return true
		}
	}
	start := time.Now()
	var interval time.Duration
	if l.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	for n := uint64(1); ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(n-1) * interval)); d > 0 && !sleep(d) {
				return nil
			}
		}
		for window > 0 && !l.room(n, window) {
			if !sleep(pollInterval) {
				return nil
			}
		}
		slot := &l.slots[n%uint64(len(l.slots))]
		slot.got.Store(0)
		slot.arrival.Store(0)
		slot.seq.Store(n)
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(payload[8:], n)
		if err := l.proto.publish(l.pub, payload); err != nil {
			return err
		}
		l.published.Store(n)
	}
}

// room reports whether publication n fits in the window: the slowest live
// subscriber is less than window publications behind, and fewer than
// window publishes await their ack.
func (l *load) room(n, window uint64) bool {
	if l.proto.acks() && n-1-l.acked.Load() >= window {
		return false
	}
	for _, s := range l.subs {
		if !s.done.Load() && n-1-s.count.Load() >= window {
			return false
		}
	}
	return true
}

// drain waits until every live subscriber has all total publications, or
// cfg.Drain has passed.
func (l *load) drain(ctx context.Context, total uint64) {
	deadline := time.Now().Add(l.cfg.Drain)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		behind := 0
		for _, s := range l.subs {
			if !s.done.Load() && s.count.Load() < total {
				behind++
			}
		}
		if behind == 0 && (!l.proto.acks() || l.acked.Load()+l.errs.Load() >= total) {
			return
		}
		if time.Now().After(deadline) {
			l.cfg.Logf("drain: %d subscribers still behind after %v", behind, l.cfg.Drain)
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// shutdown closes every connection and waits for the read loops. It is
// safe to call more than once.
func (l *load) shutdown() {
	if l.closing.Swap(true) {
		return
	}
	deadline := time.Now().Add(time.Second)
	closeMsg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	var wg sync.WaitGroup
	closeConn := func(c *websocket.Conn) {
		_ = c.WriteControl(websocket.CloseMessage, closeMsg, deadline)
		c.Close()
	}
	if a, ok := l.proto.(apiPublisher); ok {
		a.stopAPI()
	}
	if l.pub != nil && l.pub.c != nil {
		wg.Go(func() { closeConn(l.pub.c) })
	}
	for chunk := range slices.Chunk(l.subs, 64) {
		wg.Go(func() {
			for _, s := range chunk {
				if s.c != nil {
					closeConn(s.c)
				}
			}
		})
	}
	wg.Wait()
	if l.ep != nil {
		l.ep.stop()
	}
	l.readers.Wait()
}
