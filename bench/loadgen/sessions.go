package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/bench/internal/naive"
	"github.com/switchyard/switchyard/protocols"
)

// Scenarios about sessions rather than deliveries (see README.md): idle
// (server and kernel memory of idle subscribed sessions), connect
// (session handshakes per server core-second, ws:// or wss://) and churn
// (connect/disconnect cycles, then memory and goroutines against the
// baseline).
const (
	scenarioIdle    = "idle"
	scenarioConnect = "connect"
	scenarioChurn   = "churn"
)

// IdleResult is what the idle scenario measured: Sessions subscribers
// connected, subscribed and idle for Settle.
type IdleResult struct {
	Scenario string  `json:"scenario"`
	Target   string  `json:"target"`
	Sessions int     `json:"subs"`
	CPUs     int     `json:"cpus"`
	SettleS  float64 `json:"settle_s"`
	ConnectS float64 `json:"connect_s"`

	// Server RSS before the first session and with all of them idle, and
	// the growth per session.
	BaseRSSMiB     float64 `json:"base_rss_mib"`
	IdleRSSMiB     float64 `json:"idle_rss_mib"`
	IdleSessionKiB float64 `json:"idle_session_kib"`
	ServerThreads  int     `json:"server_threads"`

	// The kernel's side, outside any process's RSS, per server socket:
	// the socket's structures (the object sizes of the slab caches every
	// accepted TCP socket takes one object of, from /proc/slabinfo:
	// StructCaches) and its buffers (ss -tm: r + f + w + o + bl of the
	// server's own sockets, averaged). SlabGrowthKiBPerSocket is the
	// machine's whole slab growth over the idle phase ÷ the sockets made
	// (both ends: 2 × sessions), a cross-check that anything else running
	// on the machine skews; SlabTop names the caches that grew most, per
	// socket.
	ServerSockets          int     `json:"server_sockets"`
	StructKiBPerSocket     float64 `json:"struct_kib_per_socket"`
	StructCaches           string  `json:"struct_caches,omitempty"`
	BufKiBPerSocket        float64 `json:"buf_kib_per_socket"`
	KernelKiBPerSocket     float64 `json:"kernel_kib_per_socket"`
	SlabSource             string  `json:"slab_source"`
	SlabGrowthKiBPerSocket float64 `json:"slab_growth_kib_per_socket"`
	SlabTop                string  `json:"slab_top,omitempty"`
}

// RunIdle connects cfg.Subs subscribers (connect and subscribe, as in a
// fan-out run), lets them sit idle for cfg.Settle and reads the server's
// RSS and the kernel's socket memory before and after.
func RunIdle(ctx context.Context, cfg Config) (*IdleResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.ServerPID == 0 {
		return nil, errors.New("idle: -server-pid is required")
	}
	r := &IdleResult{Scenario: scenarioIdle, Target: cfg.Target, Sessions: cfg.Subs, CPUs: runtime.NumCPU(), SettleS: cfg.Settle.Seconds()}
	base, err := procRSS(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	k0 := readKernelMem()
	l := newLoad(cfg)
	defer l.shutdown()
	start := time.Now()
	cfg.Logf("dialing %d subscribers at %s", cfg.Subs, cfg.URL)
	if err := l.dialSubscribers(ctx); err != nil {
		return nil, err
	}
	r.ConnectS = time.Since(start).Seconds()
	cfg.Logf("%d subscribers ready in %v; idle for %v", cfg.Subs, time.Since(start).Round(time.Millisecond), cfg.Settle)
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	idle, err := procRSS(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	k1 := readKernelMem()
	th, _ := procStatus(cfg.ServerPID, "Threads")
	r.ServerThreads = int(th)
	r.BaseRSSMiB = float64(base) / (1 << 20)
	r.IdleRSSMiB = float64(idle) / (1 << 20)
	r.IdleSessionKiB = float64(idle-base) / 1024 / float64(cfg.Subs)
	r.setKernel(k0, k1, 2*cfg.Subs)
	if n, buf, err := ssSocketMem(cfg.ServerPID); err == nil && n > 0 {
		r.ServerSockets = n
		r.BufKiBPerSocket = float64(buf) / 1024 / float64(n)
	} else if err != nil {
		cfg.Logf("ss: %v (no buffer figure)", err)
	}
	r.KernelKiBPerSocket = r.StructKiBPerSocket + r.BufKiBPerSocket
	for _, s := range l.subs {
		if s.done.Load() && s.endErr != nil {
			return r, fmt.Errorf("subscriber %d ended while idle: %v", s.i, s.endErr)
		}
	}
	return r, nil
}

func (r *IdleResult) setKernel(k0, k1 kernelMem, sockets int) {
	r.SlabSource = k1.SlabSource
	if sockets > 0 {
		r.SlabGrowthKiBPerSocket = (k1.SlabKiB - k0.SlabKiB) / float64(sockets)
		r.SlabTop = slabGrowth(k0.Caches, k1.Caches, float64(sockets), 4)
	}
	r.StructKiBPerSocket, r.StructCaches = socketStructs(k1.Caches)
}

// socketCaches are the slab caches an accepted TCP socket over IPv4 takes
// one object of each: the tcp_sock, the socket inode, its dentry, its
// open file, and the epoll entry of a Go server's netpoller.
var socketCaches = []string{"TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi"}

// socketStructs is the KiB of one object of each of socketCaches, and
// how they add up ("TCP 2368 + …" bytes).
func socketStructs(caches map[string]slabCache) (float64, string) {
	var total float64
	var parts []string
	for _, name := range socketCaches {
		c, ok := caches[name]
		if !ok {
			continue
		}
		total += c.size
		parts = append(parts, fmt.Sprintf("%s %.0f", name, c.size))
	}
	return total / 1024, strings.Join(parts, " + ")
}

// kernelMem is the machine's slab memory at one moment.
type kernelMem struct {
	SlabSource string
	SlabKiB    float64
	Caches     map[string]slabCache // from slabinfo
}

// slabCache is one cache of /proc/slabinfo.
type slabCache struct {
	active float64 // objects in use
	size   float64 // bytes per object
}

func (c slabCache) kib() float64 { return c.active * c.size / 1024 }

func readKernelMem() kernelMem {
	var k kernelMem
	if f, err := os.Open("/proc/slabinfo"); err == nil {
		k.Caches, err = parseSlabinfo(f)
		f.Close()
		if err == nil {
			k.SlabSource = "slabinfo"
			for _, c := range k.Caches {
				k.SlabKiB += c.kib()
			}
			return k
		}
	}
	k.SlabSource = "meminfo"
	k.SlabKiB = meminfoMiB("Slab") * 1024
	return k
}

// parseSlabinfo reads /proc/slabinfo (version 2.x): every cache's
// active objects and object size.
func parseSlabinfo(r io.Reader) (map[string]slabCache, error) {
	sc := bufio.NewScanner(r)
	caches := map[string]slabCache{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "slabinfo") || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("slabinfo: line %q", line)
		}
		active, err1 := strconv.ParseFloat(f[1], 64)
		size, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("slabinfo: line %q", line)
		}
		caches[f[0]] = slabCache{active: active, size: size}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(caches) == 0 {
		return nil, errors.New("slabinfo: no caches")
	}
	return caches, nil
}

// ssSocketMem runs ss -tmnp and sums the buffer memory of the TCP
// sockets process pid holds (established ones: its sessions).
func ssSocketMem(pid int) (sockets int, bytes int64, err error) {
	out, err := exec.Command("ss", "-tmnpH", "state", "established").Output()
	if err != nil {
		return 0, 0, err
	}
	n, b := parseSS(string(out), pid)
	return n, b, nil
}

// parseSS sums, over the sockets of pid in ss -tmnp output, the memory
// their skmem reports in use: r (receive queue) + f (forward-allocated) +
// w (send queue) + o (options) + bl (backlog). rb and tb are limits, t is
// within w.
func parseSS(out string, pid int) (sockets int, bytes int64) {
	mine := false
	tag := fmt.Sprintf("pid=%d,", pid)
	for line := range strings.Lines(out) {
		i := strings.Index(line, "skmem:(")
		if i < 0 {
			mine = strings.Contains(line, tag)
			continue
		}
		// skmem is on the line after the socket's, or on the same one.
		if !mine && !strings.Contains(line[:i], tag) {
			continue
		}
		mine = false
		rest := line[i+len("skmem:("):]
		if j := strings.IndexByte(rest, ')'); j >= 0 {
			rest = rest[:j]
		}
		sockets++
		for _, f := range strings.Split(rest, ",") {
			k := strings.TrimRight(f, "0123456789")
			v, err := strconv.ParseInt(f[len(k):], 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "r", "f", "w", "o", "bl":
				bytes += v
			}
		}
	}
	return sockets, bytes
}

// slabGrowth names the n caches that grew most between a and b, with
// their growth per socket in KiB ("TCP 2.31, sock_inode_cache 0.81").
func slabGrowth(a, b map[string]slabCache, sockets float64, n int) string {
	type g struct {
		name string
		kib  float64
	}
	var gs []g
	for name, v := range b {
		if d := v.kib() - a[name].kib(); d > 0 {
			gs = append(gs, g{name, d / sockets})
		}
	}
	slices.SortFunc(gs, func(x, y g) int {
		if x.kib != y.kib {
			if x.kib > y.kib {
				return -1
			}
			return 1
		}
		return strings.Compare(x.name, y.name)
	})
	var parts []string
	for _, x := range gs[:min(n, len(gs))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.name, x.kib))
	}
	return strings.Join(parts, ", ")
}

// ConnectResult is what the connect scenario measured: Sessions session
// handshakes (TCP, TLS with -url wss://, the WebSocket upgrade, and the
// protocol's connect: Connect → Connected on switchyard, connect → its
// reply on centrifugo, the ready message on naive), Concurrency at a time,
// the sessions kept open until the last is up.
type ConnectResult struct {
	Scenario    string `json:"scenario"`
	Target      string `json:"target"`
	TLS         bool   `json:"tls"`
	Sessions    int    `json:"subs"`
	Concurrency int    `json:"concurrency"`
	CPUs        int    `json:"cpus"`

	Seconds            float64 `json:"seconds"`
	ConnectsPerSec     float64 `json:"connects_per_s"`
	ServerCPU          float64 `json:"server_cpu_s"`
	ConnectsPerCoreSec float64 `json:"connects_per_server_core_s"`
	LoadgenCPU         float64 `json:"loadgen_cpu_s"`
	// Dial → session up, per connection.
	HandshakeP50Ms float64 `json:"handshake_p50_ms"`
	HandshakeP99Ms float64 `json:"handshake_p99_ms"`
	ServerRSSMiB   float64 `json:"server_rss_mib"`
}

// RunConnect opens cfg.Subs sessions, cfg.DialConcurrency at a time, and
// measures the server's CPU time from before the first to after the last.
func RunConnect(ctx context.Context, cfg Config) (*ConnectResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &ConnectResult{Scenario: scenarioConnect, Target: cfg.Target, TLS: strings.HasPrefix(cfg.URL, "wss:"),
		Sessions: cfg.Subs, Concurrency: cfg.DialConcurrency, CPUs: runtime.NumCPU()}
	conns := make([]*websocket.Conn, cfg.Subs)
	durs := make([]int64, cfg.Subs)
	defer closeAll(conns)
	dctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	self0, _ := procCPU(os.Getpid())
	cpu0, err := serverCPU(cfg.ServerPID, cfg.MorePIDs)
	if cfg.ServerPID != 0 && err != nil {
		return nil, err
	}
	start := time.Now()
	cfg.Logf("opening %d sessions at %s, %d at a time", cfg.Subs, cfg.URL, cfg.DialConcurrency)
	err = forEach(dctx, cfg.Subs, cfg.DialConcurrency, func(i int) error {
		t0 := time.Now()
		c, err := dialSession(dctx, cfg, i)
		if err != nil {
			return err
		}
		conns[i] = c
		durs[i] = int64(time.Since(t0))
		return nil
	})
	secs := time.Since(start).Seconds()
	cpu1, _ := serverCPU(cfg.ServerPID, cfg.MorePIDs)
	self1, _ := procCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	r.Seconds = secs
	r.ConnectsPerSec = float64(cfg.Subs) / secs
	r.LoadgenCPU = self1 - self0
	if cfg.ServerPID != 0 {
		r.ServerCPU = cpu1 - cpu0
		if r.ServerCPU > 0 {
			r.ConnectsPerCoreSec = float64(cfg.Subs) / r.ServerCPU
		}
		rss, _ := procRSS(cfg.ServerPID)
		r.ServerRSSMiB = float64(rss) / (1 << 20)
	}
	slices.Sort(durs)
	r.HandshakeP50Ms, r.HandshakeP99Ms = percentileMs(durs, 0.5), percentileMs(durs, 0.99)
	return r, nil
}

// forEach calls fn(i) for i in [0, n), conc at a time, and stops at the
// first error.
func forEach(ctx context.Context, n, conc int, fn func(i int) error) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		once sync.Once
		err  error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, min(conc, n)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if e := fn(i); e != nil {
					once.Do(func() { err = fmt.Errorf("session %d: %w", i, e); cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// closeAll closes the connections with the closing handshake's first
// half (close 1000), as a leaving client does, without waiting.
func closeAll(conns []*websocket.Conn) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(conns, 64) {
		wg.Go(func() {
			for _, c := range chunk {
				if c != nil {
					_ = c.WriteControl(websocket.CloseMessage, msg, deadline)
					c.Close()
				}
			}
		})
	}
	wg.Wait()
}

// dialSession opens session i and waits until the server has taken it:
// the WebSocket upgrade and the protocol's connect, no subscription.
func dialSession(ctx context.Context, cfg Config, i int) (*websocket.Conn, error) {
	u := cfg.subURL(i)
	c, resp, err := dialerFrom(cfg.baseDialer(), u, i).DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %s)", u, err, resp.Status)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	if err := hello(c, cfg.Target); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var (
	syConnect = protocols.MustEncode(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{
		Client: "switchyard-loadgen", Protocol: protocols.ProtocolVersion,
	}}})
	syPong = protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Pong{Pong: &protocols.Pong{}}})
)

// hello is the protocol's connect on a fresh connection: it returns once
// the server has the session.
func hello(c *websocket.Conn, target string) error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	switch target {
	case targetSwitchyard:
		if err := c.WriteMessage(websocket.BinaryMessage, syConnect); err != nil {
			return err
		}
	case targetCentrifugo:
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{}}`)); err != nil {
			return err
		}
	}
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for the session: %w", err)
		}
		done, err := helloDone(c, target, typ, msg)
		if err != nil || done {
			return err
		}
	}
}

// helloDone handles one message of the connect: whether it completes it.
func helloDone(c *websocket.Conn, target string, typ int, msg []byte) (bool, error) {
	switch target {
	case targetNaive, targetFloor:
		return typ == websocket.TextMessage && string(msg) == naive.Ready, nil
	case targetCentrifugo:
		done := false
		err := eachCentrifugo(msg, func(m cfMessage) error {
			switch m.Kind {
			case cfReply:
				done = done || m.ID == 1
			case cfPing:
				return c.WriteMessage(websocket.TextMessage, []byte("{}"))
			case cfError, cfDisconnect:
				return fmt.Errorf("centrifugo: %d %s", m.Code, m.Message)
			}
			return nil
		})
		return done, err
	}
	done := false
	err := protocols.SplitFrames(msg, 16<<20, func(body []byte) error {
		kind, _, err := frameKind(body)
		switch {
		case err != nil:
			return err
		case kind == fieldFrameConnected:
			done = true
		case kind == fieldFramePing:
			return c.WriteMessage(websocket.BinaryMessage, syPong)
		case kind == fieldFrameError || kind == fieldFrameDisconnect:
			return fmt.Errorf("switchyard: %s", describe(body))
		}
		return nil
	})
	return done, err
}

// ChurnResult is what the churn scenario measured: Cycles sessions
// connected, subscribed and closed again, Open at a time (a wave of Open
// sessions comes up, then all of them close), and the server's memory,
// goroutines and open files before, at their peak and after Settle.
type ChurnResult struct {
	Scenario string  `json:"scenario"`
	Target   string  `json:"target"`
	Cycles   int     `json:"cycles"`
	Open     int     `json:"subs"` // sessions open at once
	CPUs     int     `json:"cpus"`
	SettleS  float64 `json:"settle_s"`
	Seconds  float64 `json:"seconds"`

	CyclesPerSec     float64 `json:"cycles_per_s"`
	ServerCPU        float64 `json:"server_cpu_s"`
	CyclesPerCoreSec float64 `json:"cycles_per_server_core_s"`

	BaseRSSMiB  float64 `json:"base_rss_mib"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	AfterRSSMiB float64 `json:"after_rss_mib"`
	// Goroutines and the Go heap in use, from the server's /metrics
	// (go_goroutines, go_memstats_heap_inuse_bytes); -1 without it.
	BaseGoroutines  int     `json:"base_goroutines"`
	PeakGoroutines  int     `json:"peak_goroutines"`
	AfterGoroutines int     `json:"after_goroutines"`
	BaseHeapMiB     float64 `json:"base_heap_mib"`
	PeakHeapMiB     float64 `json:"peak_heap_mib"`
	AfterHeapMiB    float64 `json:"after_heap_mib"`
	GC              bool    `json:"gc"` // the readings before and after followed a forced collection
	BaseFDs         int     `json:"base_fds"`
	PeakFDs         int     `json:"peak_fds"`
	AfterFDs        int     `json:"after_fds"`
}

// serverState is one reading of the server during churn.
type serverState struct {
	rss        int64
	goroutines int
	heap       float64 // bytes
	fds        int
}

func readServerState(pid int, metricsURL string) serverState {
	var s serverState
	s.rss, _ = procRSS(pid)
	s.goroutines, s.heap = -1, -1
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	if metricsURL != "" {
		if m, err := scrapeMetrics(metricsURL); err == nil {
			if v, ok := m["go_goroutines"]; ok {
				s.goroutines = int(v)
			}
			if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
				s.heap = v
			}
		}
	}
	return s
}

// metricsClient keeps no connection open between readings: an idle one
// would count among the server's open files.
var metricsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// forceGC asks the server for a heap profile after a collection.
func forceGC(ctx context.Context, url, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// scrapeMetrics reads the unlabelled samples of a Prometheus text page.
func scrapeMetrics(url string) (map[string]float64, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the samples without labels of Prometheus text
// exposition: "name value" lines.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[f[0]] = v
		}
	}
	return m, sc.Err()
}

// RunChurn connects and closes cycles sessions, open at a time, with
// subscribers as a fan-out run dials them (connect and subscribe), and
// compares the server before, at its peak and settle after the last.
//
// With gcURL (a server's /debug/pprof/heap?gc=1, which runs a garbage
// collection before it writes the profile; X-API-Key gcKey when set), the
// before and after readings follow a collection: otherwise the heap of an
// idle server holds the garbage of the cycles until its next collection,
// up to two minutes later.
func RunChurn(ctx context.Context, cfg Config, cycles int, metricsURL, gcURL, gcKey string) (*ChurnResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.ServerPID == 0 {
		return nil, errors.New("churn: -server-pid is required")
	}
	open := min(cfg.Subs, cycles)
	r := &ChurnResult{Scenario: scenarioChurn, Target: cfg.Target, Cycles: cycles, Open: open, CPUs: runtime.NumCPU(), SettleS: cfg.Settle.Seconds()}
	collected := 0
	collect := func() {
		if gcURL == "" {
			return
		}
		// Twice: the first collection moves sync.Pool's contents to its
		// victim cache, the second frees them.
		for range 2 {
			if err := forceGC(ctx, gcURL, gcKey); err != nil {
				cfg.Logf("garbage collection at %s: %v", gcURL, err)
				return
			}
		}
		collected++
	}
	collect()
	base := readServerState(cfg.ServerPID, metricsURL)
	peak := base
	var pmu sync.Mutex
	sample := func() {
		s := readServerState(cfg.ServerPID, metricsURL)
		pmu.Lock()
		peak.rss, peak.goroutines, peak.heap, peak.fds = max(peak.rss, s.rss), max(peak.goroutines, s.goroutines), max(peak.heap, s.heap), max(peak.fds, s.fds)
		pmu.Unlock()
	}
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				sample()
			}
		}
	})
	cpu0, _ := procCPU(cfg.ServerPID)
	start := time.Now()
	var err error
	for done := 0; done < cycles && err == nil; done += open {
		wc := cfg
		wc.Subs = min(open, cycles-done)
		wc.LatencySubs = 0
		l := newLoad(wc)
		err = l.dialSubscribers(ctx)
		if err == nil {
			sample() // every wave at its fullest
		}
		l.shutdown()
		if done/open%5 == 4 {
			cfg.Logf("%d cycles", done+wc.Subs)
		}
	}
	secs := time.Since(start).Seconds()
	cpu1, _ := procCPU(cfg.ServerPID)
	close(stopSampling)
	sampler.Wait()
	if err != nil {
		return nil, err
	}
	cfg.Logf("%d cycles in %.1f s; settling for %v", cycles, secs, cfg.Settle)
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	collect()
	r.GC = collected == 2
	after := readServerState(cfg.ServerPID, metricsURL)
	r.Seconds = secs
	r.CyclesPerSec = float64(cycles) / secs
	r.ServerCPU = cpu1 - cpu0
	if r.ServerCPU > 0 {
		r.CyclesPerCoreSec = float64(cycles) / r.ServerCPU
	}
	mib := func(b float64) float64 {
		if b < 0 {
			return -1
		}
		return b / (1 << 20)
	}
	r.BaseRSSMiB, r.PeakRSSMiB, r.AfterRSSMiB = mib(float64(base.rss)), mib(float64(peak.rss)), mib(float64(after.rss))
	r.BaseGoroutines, r.PeakGoroutines, r.AfterGoroutines = base.goroutines, peak.goroutines, after.goroutines
	r.BaseHeapMiB, r.PeakHeapMiB, r.AfterHeapMiB = mib(base.heap), mib(peak.heap), mib(after.heap)
	r.BaseFDs, r.PeakFDs, r.AfterFDs = base.fds, peak.fds, after.fds
	return r, nil
}
