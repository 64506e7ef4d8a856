package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/protocols"
)

// scenarioDatagrams names the datagram fan-out scenario (-scenario
// datagrams); scenarioFanout the WebSocket fan-out of Run.
const (
	scenarioFanout    = "fanout"
	scenarioDatagrams = "datagrams"
)

// Targets of issue 8 for the datagram fan-out, reported beside the figures.
const (
	targetDeliveriesPerCoreSec = 100_000
	targetP99Ms                = 5
	targetIdleSessionKiB       = 40
)

// DatagramConfig describes one run of the datagrams scenario: Subs Go SDK
// clients on WebTransport subscribed to a volatile channel, and one more
// that publishes Payload-byte datagrams on it (SendDatagram) at Rate per
// second. Zero values take the defaults given.
type DatagramConfig struct {
	// URL is the node's WebTransport URL (https://host:port or
	// https://host:port/wt).
	URL string
	// CertHash pins the node's certificate (base64 SHA-256, as the node
	// prints it); empty: the system roots verify it.
	CertHash string
	// Channel is a volatile channel on the node. Zero: "game:bench".
	Channel string
	// Subs is the number of subscriber sessions. Zero: 1000.
	Subs int
	// Payload is the datagram payload in bytes; at least 16 (a send
	// timestamp and the publisher's counter lead it). Zero: 64.
	Payload int
	// Rate is datagrams published per second. Zero: 60.
	Rate float64
	// Warmup publishes before the measurement window. Zero: none.
	Warmup time.Duration
	// Duration is the measurement window. Zero: 10 s.
	Duration time.Duration
	// Settle is how long the sessions sit idle before the server's RSS is
	// read, once after connecting and once after subscribing. Zero: 2 s.
	Settle time.Duration
	// Drain is how long to wait after the window for datagrams still on
	// the way. Zero: 500 ms.
	Drain time.Duration
	// ServerPID is the server process whose CPU time and RSS are sampled
	// from /proc. Zero: not sampled.
	ServerPID int
	// DialConcurrency bounds simultaneous handshakes. Zero: 16.
	DialConcurrency int
	// Logf reports progress. Zero: silent.
	Logf func(format string, args ...any)
}

func (c DatagramConfig) withDefaults() DatagramConfig {
	if c.Channel == "" {
		c.Channel = "game:bench"
	}
	if c.Subs == 0 {
		c.Subs = 1000
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	if c.Rate == 0 {
		c.Rate = 60
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 500 * time.Millisecond
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = 16
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

func (c DatagramConfig) validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url is required (the node's https:// WebTransport URL)"))
	}
	if c.Subs < 1 {
		errs = append(errs, fmt.Errorf("subs %d: want at least 1", c.Subs))
	}
	if c.Payload < payloadHeader {
		errs = append(errs, fmt.Errorf("payload %d: want at least %d bytes (timestamp and counter)", c.Payload, payloadHeader))
	}
	if c.Rate < 0 || c.Duration < 0 || c.Warmup < 0 || c.Settle < 0 || c.Drain < 0 {
		errs = append(errs, errors.New("durations and rate must not be negative"))
	}
	return errors.Join(errs...)
}

// DatagramResult is what one datagrams run measured. Deliveries, loss and
// latency count the datagrams published in the measurement window.
type DatagramResult struct {
	Scenario string  `json:"scenario"` // "datagrams"
	Subs     int     `json:"subs"`
	Payload  int     `json:"payload_bytes"`
	Rate     float64 `json:"rate"` // datagrams published per second, asked for
	CPUs     int     `json:"cpus"` // shared by the load generator and the server

	Seconds          float64 `json:"seconds"`
	Publishes        uint64  `json:"publishes"`
	Deliveries       uint64  `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	// LossPct is the share of (publication, subscriber) pairs of the
	// window that never arrived: dropped by the server's queues, QUIC, the
	// kernel or the client. Dropped counts those the SDK dropped because a
	// subscription's Messages channel was full.
	LossPct float64 `json:"loss_pct"`
	Dropped uint64  `json:"client_dropped"`

	// Server figures need ServerPID; they are zero without it.
	ServerCPU            float64 `json:"server_cpu_s"`
	ServerCores          float64 `json:"server_cores"`
	DeliveriesPerCoreSec float64 `json:"deliveries_per_server_core_s"`
	ServerRSSMiB         float64 `json:"server_rss_mib"` // at the end of the window
	LoadgenCPU           float64 `json:"loadgen_cpu_s"`

	// Server RSS before any session, with Subs idle sessions connected,
	// and with them subscribed (before anything is published), and the
	// growth per session.
	BaseRSSMiB           float64 `json:"base_rss_mib"`
	IdleRSSMiB           float64 `json:"idle_rss_mib"`
	SubscribedRSSMiB     float64 `json:"subscribed_rss_mib"`
	IdleSessionKiB       float64 `json:"idle_session_kib"`
	SubscribedSessionKiB float64 `json:"subscribed_session_kib"`

	LatencySamples int     `json:"latency_samples"`
	LatencyP50Ms   float64 `json:"latency_p50_ms"`
	LatencyP99Ms   float64 `json:"latency_p99_ms"`
	LatencyMaxMs   float64 `json:"latency_max_ms"`

	Disconnects int    `json:"disconnects"`
	FirstError  string `json:"first_error,omitempty"`
}

// dgSub is one subscriber session.
type dgSub struct {
	c   *client.Client
	sub *client.Subscription

	// owned by the read goroutine; read after it ends
	inWindow uint64  // deliveries of publications of the window
	lat      []int64 // their latencies, ns
}

// dgRun is the state of one datagrams run.
type dgRun struct {
	cfg  DatagramConfig
	subs []*dgSub
	pub  *client.Client

	// first and last publisher counters of the window; 0 until set
	first, last atomic.Uint64
	readers     sync.WaitGroup
}

// RunDatagrams performs one datagrams run against a live node.
func RunDatagrams(ctx context.Context, cfg DatagramConfig) (*DatagramResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &dgRun{cfg: cfg}
	defer r.close()
	res := &DatagramResult{Scenario: scenarioDatagrams, Subs: cfg.Subs, Payload: cfg.Payload, Rate: cfg.Rate, CPUs: runtime.NumCPU()}

	rss := func() (float64, error) {
		b, err := procRSS(cfg.ServerPID)
		return float64(b) / (1 << 20), err
	}
	var err error
	if res.BaseRSSMiB, err = rss(); err != nil {
		return nil, err
	}
	start := time.Now()
	cfg.Logf("dialing %d WebTransport sessions at %s", cfg.Subs, cfg.URL)
	if err := r.dial(ctx); err != nil {
		return nil, err
	}
	cfg.Logf("%d sessions up in %v; idle for %v", cfg.Subs, time.Since(start).Round(time.Millisecond), cfg.Settle)
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	if res.IdleRSSMiB, err = rss(); err != nil {
		return nil, err
	}
	if err := r.subscribe(ctx); err != nil {
		return nil, err
	}
	cfg.Logf("subscribed to %s; idle for %v", cfg.Channel, cfg.Settle)
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	if res.SubscribedRSSMiB, err = rss(); err != nil {
		return nil, err
	}
	perSession := func(mib float64) float64 { return (mib - res.BaseRSSMiB) * 1024 / float64(cfg.Subs) }
	if cfg.ServerPID != 0 {
		res.IdleSessionKiB, res.SubscribedSessionKiB = perSession(res.IdleRSSMiB), perSession(res.SubscribedRSSMiB)
	}

	if err := r.dialPublisher(ctx); err != nil {
		return nil, err
	}
	for _, s := range r.subs {
		r.readers.Go(func() { r.read(s) })
	}

	// The publisher: Rate datagrams per second on a fixed schedule, each
	// led by its send time and its counter from 1.
	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	var published atomic.Uint64
	go func(stop <-chan struct{}) {
		payload := make([]byte, cfg.Payload)
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		t := time.NewTimer(0)
		defer t.Stop()
		t0 := time.Now()
		for n := uint64(1); ; n++ {
			t.Reset(time.Until(t0.Add(time.Duration(n-1) * interval)))
			select {
			case <-stop:
				pubDone <- nil
				return
			case <-t.C:
			}
			binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint64(payload[8:], n)
			if err := r.pub.SendDatagram(cfg.Channel, payload); err != nil {
				pubDone <- fmt.Errorf("publisher: %w", err)
				return
			}
			published.Store(n)
		}
	}(stop)
	stopPublisher := func() error {
		if stop == nil {
			return nil
		}
		close(stop)
		stop = nil
		return <-pubDone
	}
	defer stopPublisher()
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case err := <-pubDone:
			pubDone <- err
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
	s0 := r.snapshot()
	r.first.Store(published.Load() + 1)
	if err := wait(cfg.Duration); err != nil {
		return nil, err
	}
	r.last.Store(published.Load())
	s1 := r.snapshot()
	endRSS, rssErr := rss()
	if err := wait(cfg.Drain); err != nil {
		return nil, err
	}
	if err := stopPublisher(); err != nil {
		return nil, err
	}
	r.close()

	res.Seconds = s1.at.Sub(s0.at).Seconds()
	res.LoadgenCPU = s1.selfCPU - s0.selfCPU
	if cfg.ServerPID != 0 {
		if err := errors.Join(s0.serverErr, s1.serverErr, rssErr); err != nil {
			return nil, fmt.Errorf("sample server %d: %w", cfg.ServerPID, err)
		}
		res.ServerCPU = s1.serverCPU - s0.serverCPU
		res.ServerCores = res.ServerCPU / res.Seconds
		res.ServerRSSMiB = endRSS
	}
	first, last := r.first.Load(), r.last.Load()
	if last >= first {
		res.Publishes = last - first + 1
	}
	var lat []int64
	for i, s := range r.subs {
		res.Deliveries += s.inWindow
		res.Dropped += s.sub.Dropped()
		lat = append(lat, s.lat...)
		if err := s.c.Err(); err != nil {
			res.Disconnects++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("subscriber %d: %v", i, err)
			}
		}
	}
	res.DeliveriesPerSec = float64(res.Deliveries) / res.Seconds
	if res.ServerCPU > 0 {
		res.DeliveriesPerCoreSec = float64(res.Deliveries) / res.ServerCPU
	}
	if want := res.Publishes * uint64(cfg.Subs); want > 0 {
		res.LossPct = 100 * (1 - float64(res.Deliveries)/float64(want))
	}
	slices.Sort(lat)
	res.LatencySamples = len(lat)
	if len(lat) > 0 {
		pct := func(p float64) float64 {
			i := min(len(lat)-1, int(math.Ceil(p*float64(len(lat))))-1)
			return float64(lat[max(i, 0)]) / 1e6
		}
		res.LatencyP50Ms, res.LatencyP99Ms, res.LatencyMaxMs = pct(0.50), pct(0.99), pct(1)
	}
	return res, nil
}

func (r *dgRun) options() client.Options {
	return client.Options{Transport: protocols.WebTransport, CertHash: r.cfg.CertHash}
}

// dial connects every subscriber session, DialConcurrency at a time.
func (r *dgRun) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	r.subs = make([]*dgSub, r.cfg.Subs)
	return r.each(ctx, func(ctx context.Context, i int) error {
		c, err := client.Dial(ctx, r.cfg.URL, r.options())
		if err != nil {
			return err
		}
		r.subs[i] = &dgSub{c: c}
		return nil
	})
}

// subscribe subscribes every session to the channel.
func (r *dgRun) subscribe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return r.each(ctx, func(ctx context.Context, i int) error {
		s := r.subs[i]
		sub, err := s.c.Subscribe(ctx, r.cfg.Channel)
		if err != nil {
			return err
		}
		if !sub.Volatile() {
			return fmt.Errorf("channel %s is not volatile on the node (start it with --volatile-channels %s)", r.cfg.Channel, r.cfg.Channel)
		}
		s.sub = sub
		return nil
	})
}

// each runs fn for every subscriber index, DialConcurrency at a time, and
// stops at the first error.
func (r *dgRun) each(ctx context.Context, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	for range min(r.cfg.DialConcurrency, r.cfg.Subs) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= r.cfg.Subs || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { ferr = fmt.Errorf("subscriber %d: %w", i, err) })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return ferr
}

// dialPublisher connects the publisher, subscribed to the channel (which
// SendDatagram requires); it drops its own copies.
func (r *dgRun) dialPublisher(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, r.cfg.URL, r.options())
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	r.pub = c
	sub, err := c.Subscribe(ctx, r.cfg.Channel)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	r.readers.Go(func() {
		for range sub.Messages() {
		}
	})
	return nil
}

// read counts and times one subscriber's datagrams of the window.
func (r *dgRun) read(s *dgSub) {
	for m := range s.sub.Messages() {
		now := time.Now().UnixNano()
		if len(m.Data) < payloadHeader {
			continue
		}
		n := binary.BigEndian.Uint64(m.Data[8:])
		first, last := r.first.Load(), r.last.Load()
		if first == 0 || n < first || (last != 0 && n > last) {
			continue
		}
		s.inWindow++
		s.lat = append(s.lat, now-int64(binary.BigEndian.Uint64(m.Data)))
	}
}

// close closes every session, all at once (each close waits for its
// close to be acknowledged), and waits for the readers. It is safe to
// call more than once.
func (r *dgRun) close() {
	var wg sync.WaitGroup
	if r.pub != nil {
		wg.Go(func() { r.pub.Close() })
	}
	for _, s := range r.subs {
		if s != nil {
			wg.Go(func() { s.c.Close() })
		}
	}
	wg.Wait()
	r.readers.Wait()
}

func (r *dgRun) snapshot() snapshot {
	s := snapshot{at: time.Now()}
	if r.cfg.ServerPID != 0 {
		s.serverCPU, s.serverErr = procCPU(r.cfg.ServerPID)
	}
	s.selfCPU, _ = procCPU(os.Getpid())
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
