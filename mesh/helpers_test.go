package mesh

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/protocols"
)

// TestMain is goleak.VerifyTestMain with a longer grace period: after
// Memberlist.Shutdown returns, its probe goroutine may still wait out one
// probe (up to ProbeInterval × the awareness multiplier, a few seconds),
// longer than VerifyTestMain's ~1 s of retries.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // grace for memberlist's goroutines
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// holds checks that cond holds for the whole of window (negative checks).
func holds(t testing.TB, window time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- certificates ----

var (
	caOnce sync.Once
	testCA *certs.CA
	caErr  error
)

func meshTLS(t testing.TB, ca *certs.CA, name string) *tls.Config {
	t.Helper()
	if ca == nil {
		caOnce.Do(func() { testCA, caErr = certs.NewCA("mesh test CA", 0) })
		if caErr != nil {
			t.Fatal(caErr)
		}
		ca = testCA
	}
	certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := certs.MeshTLS(ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ---- fake Local: a tiny sequencer ----

type rec struct {
	epoch  string
	offset uint64
	data   string
}

type regCall struct {
	epoch  string
	offset uint64
}

type fakeLocal struct {
	name string
	c    atomic.Pointer[Cluster]

	mu       sync.Mutex
	epochs   map[string]string // channel → epoch this node sequences in
	offsets  map[string]uint64
	got      map[string][]rec     // channel → what local subscribers saw
	regs     map[string][]regCall // channel → Registered calls
	channels []string             // what Channels returns
	badFrame int                  // deliveries whose frame did not match

	// hooks, set before the node starts
	onDeliver  func(channel string, offset uint64)
	seqBlock   map[string]chan struct{} // Sequence waits on these
	seqEntered chan string
}

func newFakeLocal(name string) *fakeLocal {
	return &fakeLocal{
		name:    name,
		epochs:  make(map[string]string),
		offsets: make(map[string]uint64),
		got:     make(map[string][]rec),
		regs:    make(map[string][]regCall),
	}
}

func (f *fakeLocal) Sequence(channel, _ string, data []byte) (string, uint64, bool, error) {
	f.mu.Lock()
	block, entered := f.seqBlock[channel], f.seqEntered
	f.mu.Unlock()
	if block != nil {
		if entered != nil {
			entered <- channel
		}
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	epoch, ok := f.epochs[channel]
	if !ok {
		epoch = fmt.Sprintf("%s/%d", f.name, time.Now().UnixNano())
		f.epochs[channel] = epoch
	}
	f.offsets[channel]++
	off := f.offsets[channel]
	frame := protocols.EncodeMessage(channel, epoch, off, data)
	f.got[channel] = append(f.got[channel], rec{epoch, off, string(data)})
	if c := f.c.Load(); c != nil {
		c.Forward(channel, epoch, off, frame)
	}
	return epoch, off, false, nil
}

func (f *fakeLocal) Deliver(channel, epoch string, offset uint64, frame []byte) {
	data, ok := checkFrame(frame, channel, epoch, offset)
	f.mu.Lock()
	if !ok {
		f.badFrame++
	}
	f.got[channel] = append(f.got[channel], rec{epoch, offset, data})
	hook := f.onDeliver
	f.mu.Unlock()
	if hook != nil {
		hook(channel, offset)
	}
}

// checkFrame decodes a Message frame and checks it carries the position.
func checkFrame(frame []byte, channel, epoch string, offset uint64) (string, bool) {
	body, rest, err := protocols.NextFrame(frame, protocols.DefaultMaxFrameSize)
	if err != nil || len(rest) != 0 {
		return "", false
	}
	fr, err := protocols.DecodeFrame(body)
	if err != nil {
		return "", false
	}
	m := fr.GetMessage()
	ok := m != nil && m.GetChannel() == channel && m.GetEpoch() == epoch && m.GetOffset() == offset
	return string(m.GetData()), ok
}

func (f *fakeLocal) Hold(channel string, fn func(epoch string, offset uint64, history []protocols.Publication)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.epochs[channel], f.offsets[channel], nil)
}

func (f *fakeLocal) Registered(channel, epoch string, offset uint64, _ []protocols.Publication) {
	f.mu.Lock()
	f.regs[channel] = append(f.regs[channel], regCall{epoch, offset})
	f.mu.Unlock()
}

func (f *fakeLocal) Channels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.channels)
}

func (f *fakeLocal) received(channel string) []rec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got[channel])
}

func (f *fakeLocal) count(channel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got[channel])
}

func (f *fakeLocal) registeredCount(channel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.regs[channel])
}

// ---- a network of test transports: partitions, delay, byte counts ----

type testNet struct {
	mu          sync.Mutex
	names       map[string]string // memberlist or forward address → node name
	group       map[string]int    // node name → partition group
	region      map[string]string // node name → region
	partitioned bool
	wanDelay    time.Duration // one-way delay between regions
}

func newTestNet() *testNet {
	return &testNet{names: map[string]string{}, group: map[string]int{}, region: map[string]string{}}
}

func (tn *testNet) add(name, region string, addrs ...string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	for _, a := range addrs {
		tn.names[a] = name
	}
	tn.region[name] = region
}

// split puts each node in the group of its index in groups; nil heals.
func (tn *testNet) split(groups ...[]string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.partitioned = groups != nil
	for i, g := range groups {
		for _, name := range g {
			tn.group[name] = i
		}
	}
}

func (tn *testNet) blocked(from, toAddr string) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	to, ok := tn.names[toAddr]
	return ok && tn.partitioned && tn.group[from] != tn.group[to]
}

// crossRegion reports whether toAddr belongs to a node of another region.
func (tn *testNet) crossRegion(from, toAddr string) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	to, ok := tn.names[toAddr]
	return ok && tn.region[from] != tn.region[to]
}

func (tn *testNet) delay(from, toAddr string) time.Duration {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	to, ok := tn.names[toAddr]
	if !ok || tn.region[from] == tn.region[to] {
		return 0
	}
	return tn.wanDelay
}

// testTransport wraps memberlist's NetTransport: it drops traffic across
// a partition (or all of it while cut), delays traffic between regions and
// counts bytes sent.
type testTransport struct {
	*memberlist.NetTransport
	tn      *testNet
	name    string
	cut     atomic.Bool  // drop every packet and refuse every dial
	cross   atomic.Int64 // packets and dials to other regions
	sent    atomic.Int64
	packets atomic.Int64
	plain   []byte      // if set, count packets that contain it
	sawText atomic.Bool // a packet contained plain

	streams chan net.Conn
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*testTransport)(nil)

func newTestTransport(t testing.TB, tn *testNet, name string) *testTransport {
	t.Helper()
	// Port 0 takes a free TCP port and then binds UDP on the same number,
	// which another test's socket may hold: try again, as memberlist's own
	// default transport does.
	var nt *memberlist.NetTransport
	var err error
	for range 10 {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			BindPort:  0,
			Logger:    nil,
		})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	tt := &testTransport{NetTransport: nt, tn: tn, name: name, streams: make(chan net.Conn), quit: make(chan struct{})}
	tt.wg.Add(1)
	go tt.forwardStreams()
	return tt
}

func (tt *testTransport) addr() string {
	return fmt.Sprintf("127.0.0.1:%d", tt.GetAutoBindPort())
}

func (tt *testTransport) forwardStreams() {
	defer tt.wg.Done()
	in := tt.NetTransport.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case tt.streams <- &countConn{Conn: c, n: &tt.sent}:
			case <-tt.quit:
				c.Close()
				return
			}
		case <-tt.quit:
			return
		}
	}
}

func (tt *testTransport) StreamCh() <-chan net.Conn { return tt.streams }

func (tt *testTransport) Shutdown() error {
	err := tt.NetTransport.Shutdown()
	tt.once.Do(func() { close(tt.quit) })
	tt.wg.Wait()
	return err
}

func (tt *testTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return tt.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (tt *testTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if tt.tn.blocked(tt.name, a.Addr) || tt.cut.Load() {
		return time.Now(), nil
	}
	if tt.tn.crossRegion(tt.name, a.Addr) {
		tt.cross.Add(1)
	}
	tt.sent.Add(int64(len(b)))
	tt.packets.Add(1)
	if tt.plain != nil && bytes.Contains(b, tt.plain) {
		tt.sawText.Store(true)
	}
	if d := tt.tn.delay(tt.name, a.Addr); d > 0 {
		buf := bytes.Clone(b)
		time.AfterFunc(d, func() { _, _ = tt.NetTransport.WriteToAddress(buf, a) })
		return time.Now(), nil
	}
	return tt.NetTransport.WriteToAddress(b, a)
}

func (tt *testTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return tt.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (tt *testTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if tt.tn.blocked(tt.name, a.Addr) || tt.cut.Load() {
		return nil, fmt.Errorf("test partition: %s cannot reach %s", tt.name, a.Addr)
	}
	if tt.tn.crossRegion(tt.name, a.Addr) {
		tt.cross.Add(1)
	}
	c, err := tt.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: c, n: &tt.sent, delay: tt.tn.delay(tt.name, a.Addr)}, nil
}

// countConn counts bytes written and delays each write (stream traffic).
type countConn struct {
	net.Conn
	n     *atomic.Int64
	delay time.Duration
}

func (c *countConn) Write(b []byte) (int, error) {
	if c.delay > 0 {
		time.Sleep(c.delay) // simulated latency, not a wait
	}
	c.n.Add(int64(len(b)))
	return c.Conn.Write(b)
}

// ---- nodes ----

type nodeOpts struct {
	region   string
	profile  string
	key      []byte
	seeds    []string
	tls      *tls.Config // zero: a certificate from the test CA
	queue    int
	timeout  time.Duration
	rejoin   time.Duration
	channels []string
	urls     map[string]string
	noStart  bool
	setup    func(*testNode) // before Start
}

type testNode struct {
	t     testing.TB
	name  string
	c     *Cluster
	l     *fakeLocal
	tr    *testTransport
	lanTr *testTransport // the LAN pool's (Profile "wan"); nil if none
	tn    *testNet
	logs  *logBuffer
	delay *delayDialer
}

func startNode(t testing.TB, tn *testNet, name string, o nodeOpts) *testNode {
	t.Helper()
	if o.region == "" {
		o.region = "r1"
	}
	tr := newTestTransport(t, tn, name)
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, logs.tail(150))
		}
	})
	tlsCfg := o.tls
	if tlsCfg == nil {
		tlsCfg = meshTLS(t, nil, name)
	}
	l := newFakeLocal(name)
	l.channels = o.channels
	var lanTr *testTransport
	var lanTransport memberlist.Transport
	if o.profile == ProfileWAN {
		lanTr = newTestTransport(t, tn, name)
		lanTransport = lanTr
	}
	cfg := Config{
		Name:           name,
		Region:         o.region,
		Join:           o.seeds,
		Key:            o.key,
		Profile:        o.profile,
		ForwardBind:    "127.0.0.1:0",
		TLS:            tlsCfg,
		PublicURLs:     o.urls,
		RejoinInterval: o.rejoin,
		LinkQueue:      o.queue,
		RequestTimeout: o.timeout,
		Transport:      tr,
		LANTransport:   lanTransport,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: logLevel()})),
	}
	c, err := New(cfg, l)
	if err != nil {
		tr.Shutdown()
		if lanTr != nil {
			lanTr.Shutdown()
		}
		t.Fatal(err)
	}
	l.c.Store(c)
	n := &testNode{t: t, name: name, c: c, l: l, tr: tr, lanTr: lanTr, tn: tn, logs: logs}
	tn.add(name, o.region, tr.addr())
	if lanTr != nil {
		tn.add(name, o.region, lanTr.addr())
	}
	dd := &delayDialer{tn: tn, from: name}
	n.delay = dd
	c.dial = dd.dial
	if o.setup != nil {
		o.setup(n)
	}
	t.Cleanup(func() {
		c.Kill()
		tr.Shutdown() // memberlist shut it down; this is for a node that never started
		if lanTr != nil {
			lanTr.Shutdown()
		}
		dd.wait()
	})
	if !o.noStart {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		tn.add(name, o.region, c.ForwardAddr())
	}
	return n
}

func logLevel() slog.Level {
	if os.Getenv("MESH_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// startCluster starts n nodes named n1..nN, all joining through n1, and
// waits until every node sees all of them.
func startCluster(t testing.TB, tn *testNet, n int, o nodeOpts) []*testNode {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	return startNamed(t, tn, names, o)
}

// startNamed starts a node per name, all joining through the first.
func startNamed(t testing.TB, tn *testNet, names []string, o nodeOpts) []*testNode {
	t.Helper()
	nodes := make([]*testNode, 0, len(names))
	for i, name := range names {
		oi := o
		if i > 0 {
			oi.seeds = append(slices.Clone(o.seeds), nodes[0].c.Addr())
		}
		nodes = append(nodes, startNode(t, tn, name, oi))
	}
	waitConverged(t, nodes, 10*time.Second)
	return nodes
}

// waitConverged waits until every node sees exactly the given nodes.
func waitConverged(t testing.TB, nodes []*testNode, timeout time.Duration) time.Duration {
	t.Helper()
	want := make([]string, len(nodes))
	for i, n := range nodes {
		want[i] = n.name
	}
	slices.Sort(want)
	return waitFor(t, timeout, fmt.Sprintf("members %v everywhere", want), func() bool {
		for _, n := range nodes {
			if !slices.Equal(memberNames(n.c), want) {
				return false
			}
		}
		return true
	})
}

func memberNames(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.Name)
	}
	return out
}

// channelOwnedBy finds a channel name with prefix that owner owns.
func channelOwnedBy(t testing.TB, c *Cluster, owner, prefix string) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		ch := fmt.Sprintf("%s-%d", prefix, i)
		if c.Owner(ch) == owner {
			return ch
		}
	}
	t.Fatalf("no channel owned by %s", owner)
	return ""
}

// register registers channel on n and waits for Registered.
func (n *testNode) register(channel string) {
	n.t.Helper()
	before := n.l.registeredCount(channel)
	n.c.Register(channel)
	waitFor(n.t, 10*time.Second, n.name+" registered "+channel, func() bool {
		return n.l.registeredCount(channel) > before
	})
}

// ---- logs ----

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.b.Len() > 4<<20 {
		return len(p), nil
	}
	return lb.b.Write(p)
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.String()
}

func (lb *logBuffer) tail(n int) string {
	lines := strings.Split(lb.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- delayed links ----

// delayDialer dials link connections, delayed by the test net's WAN delay
// between regions (a one-way delay on what the dialler writes: links only
// carry data in that direction).
type delayDialer struct {
	tn   *testNet
	from string
	wg   sync.WaitGroup
}

func (d *delayDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.tn.blocked(d.from, addr) {
		return nil, fmt.Errorf("test partition: %s cannot reach %s", d.from, addr)
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	d.tn.mu.Lock()
	wan := d.tn.wanDelay > 0
	d.tn.mu.Unlock()
	if !wan {
		return c, nil
	}
	// The delay is looked up at each write: a node's forward address is
	// known to the test net only once its Start returned, and peers dial
	// it during Start.
	dc := &delayConn{Conn: c, delay: func() time.Duration { return d.tn.delay(d.from, addr) }, q: make(chan delayed, 4096), quit: make(chan struct{})}
	d.wg.Add(1)
	go dc.pump(&d.wg)
	return dc, nil
}

func (d *delayDialer) wait() { d.wg.Wait() }

type delayed struct {
	due time.Time
	b   []byte
}

// delayConn writes each chunk delay after it was written, in order.
type delayConn struct {
	net.Conn
	delay func() time.Duration
	q     chan delayed
	quit  chan struct{}
	once  sync.Once
	err   atomic.Value
}

func (c *delayConn) Write(b []byte) (int, error) {
	if err, _ := c.err.Load().(error); err != nil {
		return 0, err
	}
	select {
	case c.q <- delayed{time.Now().Add(c.delay()), bytes.Clone(b)}:
		return len(b), nil
	case <-c.quit:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.quit) })
	return c.Conn.Close()
}

func (c *delayConn) pump(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case d := <-c.q:
			if w := time.Until(d.due); w > 0 {
				t := time.NewTimer(w)
				select {
				case <-t.C:
				case <-c.quit:
					t.Stop()
					return
				}
			}
			if _, err := c.Conn.Write(d.b); err != nil {
				c.err.Store(err)
				c.Conn.Close()
				return
			}
		case <-c.quit:
			return
		}
	}
}
