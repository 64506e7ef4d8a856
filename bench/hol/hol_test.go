package hol

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	lossPct    = flag.Int("hol.loss", 3, "`percent` of packets dropped on input, TCP and UDP (the issue asks for 2-5)")
	duration   = flag.Duration("hol.duration", 5*time.Second, "time measured per mode (each turn has a 200 ms warmup besides)")
	bulkSize   = flag.Int("hol.bulk", 64<<10, "`bytes` of each bulk message")
	bulkRate   = flag.Float64("hol.rate", 32, "bulk `MiB/s` published (0: as fast as -hol.window allows)")
	bulkWindow = flag.Int("hol.window", 16, "at most this many bulk `messages` published but not yet received")
	chatEvery  = flag.Duration("hol.chat", 5*time.Millisecond, "interval between chat messages")
	rounds     = flag.Int("hol.rounds", 5, "the modes take turns this many times, each for -hol.duration/-hol.rounds")
)

// envInside marks the re-executed test binary that runs inside the new
// network namespace.
const envInside = "SWITCHYARD_HOL_NETNS"

// nftTable is the nftables table the test adds in its namespace (which
// goes away with the process, and the table with it).
const nftTable = "switchyard_hol"

// TestHeadOfLine (issue 8): while a bulk channel streams 64 KiB messages
// (32 MiB/s), the p99 publish→receive latency of a small-message channel
// (32 bytes every 5 ms) on the same client is lower over WebTransport with
// per-subscription streams than over one WebTransport stream and over
// WebSocket, with packets dropped at random on loopback. The test runs
// itself again in a network namespace of its own, where an nftables rule
// drops -hol.loss percent of TCP and UDP packets on input. Only the
// ordering is asserted, within one run; it is retried once before failing
// (the machine is shared and noisy). The node and the clients share this
// process, so both ends of a latency read one clock.
func TestHeadOfLine(t *testing.T) {
	if os.Getenv(envInside) == "" {
		runInNamespace(t)
		return
	}
	dropRule(t)
	n := startNode(t)
	var last []*modeResult
	for attempt := 1; attempt <= 2; attempt++ {
		rs, err := compare(t, n, attempt)
		if err != nil {
			t.Fatal(err)
		}
		last = rs
		t.Logf("attempt %d, %d %% loss, %v per mode:\n%s", attempt, *lossPct, *duration, table(rs))
		if d := dropped(t); d == 0 && *lossPct > 0 {
			t.Fatal("the nftables rule dropped no packet: the comparison ran without loss")
		} else {
			t.Logf("nftables has dropped %d packets so far", d)
		}
		streams, single, ws := rs[0], rs[1], rs[2]
		if streams.p99 < single.p99 && streams.p99 < ws.p99 {
			t.Logf("p99 ratios: single stream ÷ streams %.1f×, WebSocket ÷ streams %.1f×",
				float64(single.p99)/float64(streams.p99), float64(ws.p99)/float64(streams.p99))
			return
		}
		t.Logf("attempt %d: streams p99 %v is not below single stream %v and WebSocket %v", attempt, streams.p99, single.p99, ws.p99)
	}
	t.Errorf("in both attempts the chat p99 over per-subscription streams was not the lowest:\n%s", table(last))
}

// runInNamespace runs this test again as a child process in a new network
// namespace and reports its outcome.
func runInNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: about 20 s of traffic under packet loss")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates a network namespace and an nftables rule in it (run as root, e.g. sudo go test ./bench/hol/)")
	}
	for _, tool := range []struct{ cmd, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			t.Skipf("%s not found: install it (Debian: apt-get install %s)", tool.cmd, tool.pkg)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"-test.run=^TestHeadOfLine$", "-test.v", "-test.count=1"}
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "hol.") {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envInside+"=1")
	// unshare -n: the child gets a network namespace of its own, with
	// only a loopback interface, which it brings up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a new network namespace (CLONE_NEWNET): %v", err)
	}
	err := cmd.Wait()
	t.Logf("in a new network namespace:\n%s", out.Bytes())
	if m := regexp.MustCompile(`(?m)^\s+hol_test\.go:\d+: (skip: .*)$`).FindSubmatch(out.Bytes()); m != nil && bytes.Contains(out.Bytes(), []byte("--- SKIP: TestHeadOfLine")) {
		t.Skip(string(m[1]))
	}
	if err != nil {
		t.Fatalf("the test in the namespace failed: %v", err)
	}
	if !bytes.Contains(out.Bytes(), []byte("--- PASS: TestHeadOfLine")) {
		t.Fatal("the test in the namespace did not pass")
	}
}

// dropRule brings the namespace's loopback up and drops lossPct percent of
// its TCP and UDP packets on input (on output the sender would get EPERM).
func dropRule(t *testing.T) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Skipf("skip: ip link set lo up: %v: %s", err, bytes.TrimSpace(out))
	}
	ruleset := fmt.Sprintf(`table inet %s {
	chain input {
		type filter hook input priority 0; policy accept;
		meta l4proto { tcp, udp } numgen random mod 100 < %d counter drop
	}
}
`, nftTable, *lossPct)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("skip: nft cannot add the drop rule (nf_tables missing from the kernel?): %v: %s", err, bytes.TrimSpace(out))
	}
}

// dropped returns how many packets the drop rule has dropped.
func dropped(t *testing.T) int {
	out, err := exec.Command("nft", "list", "table", "inet", nftTable).Output()
	if err != nil {
		t.Fatalf("nft list table: %v", err)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

type node struct {
	*edge.Node
	hash string
}

func startNode(t *testing.T) *node {
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := edge.New(edge.Config{Name: "hol", Listen: "127.0.0.1:0", Certs: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &node{Node: n, hash: store.Hash().Value}
}

// mode is one way for the client to connect.
type mode struct {
	name      string
	transport string
	single    bool // Options.SingleStream
}

var modes = []mode{
	{"WebTransport, per-subscription streams", protocols.WebTransport, false},
	{"WebTransport, single stream", protocols.WebTransport, true},
	{"WebSocket (TLS)", protocols.WebSocket, false},
}

type modeResult struct {
	mode          mode
	samples       int
	p50, p95, p99 time.Duration
	max           time.Duration
	bulkBytesPerS float64
}

// compare measures every mode under the same load. Each mode has its own
// client, connected throughout; the modes take turns in rounds of
// slotWarmup + duration/rounds each, so that a noisy moment of the
// machine does not fall on one mode alone.
func compare(t *testing.T, n *node, attempt int) ([]*modeResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var subjects []*subject
	defer func() {
		for _, s := range subjects {
			s.close()
		}
	}()
	for i, m := range modes {
		s, err := dialSubject(ctx, n, m, fmt.Sprintf("%d-%d", attempt, i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		subjects = append(subjects, s)
	}
	slot := *duration / time.Duration(*rounds)
	for range *rounds {
		for _, s := range subjects {
			if err := s.run(ctx, n, slot); err != nil {
				return nil, fmt.Errorf("%s: %w", s.mode.name, err)
			}
		}
	}
	var rs []*modeResult
	for _, s := range subjects {
		s.close()
		r, err := s.result()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.mode.name, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// slotWarmup is how long each slot runs the load before chat messages are
// timed (TCP restarts slow start after an idle spell).
const slotWarmup = 200 * time.Millisecond

// subject is one mode's client, subscribed to a bulk channel and a chat
// channel of its own.
type subject struct {
	// immutable after dialSubject
	mode           mode
	c              *client.Client
	bulkCh, chatCh string
	tokens         chan struct{} // one per bulk message that may be sent: returned on receipt
	readers        sync.WaitGroup

	measuring atomic.Bool  // count bulk bytes
	received  atomic.Int64 // timed chat messages received
	sent      int64        // timed chat messages sent; owned by run

	// owned by the readers; read after close
	lat       []time.Duration
	bulkBytes int
	measured  time.Duration // owned by run
}

// chatTimed marks a chat message sent in a slot's measured part.
const chatTimed = 1

func dialSubject(ctx context.Context, n *node, m mode, suffix string) (*subject, error) {
	url := "https://" + n.Addrs().QUIC.String()
	if m.transport == protocols.WebSocket {
		url = "wss://" + n.Addrs().TLS.String() + "/ws"
	}
	c, err := client.Dial(ctx, url, client.Options{Transport: m.transport, CertHash: n.hash, SingleStream: m.single})
	if err != nil {
		return nil, err
	}
	s := &subject{mode: m, c: c, bulkCh: "bulk-" + suffix, chatCh: "chat-" + suffix, tokens: make(chan struct{}, *bulkWindow)}
	if want := m.transport == protocols.WebTransport && !m.single; c.Connected().GetStreams() != want {
		c.Close()
		return nil, fmt.Errorf("connected.streams = %v, want %v", c.Connected().GetStreams(), want)
	}
	bulk, err := c.Subscribe(ctx, s.bulkCh)
	if err != nil {
		c.Close()
		return nil, err
	}
	chat, err := c.Subscribe(ctx, s.chatCh)
	if err != nil {
		c.Close()
		return nil, err
	}
	for range *bulkWindow {
		s.tokens <- struct{}{}
	}
	s.readers.Go(func() {
		for msg := range bulk.Messages() {
			if s.measuring.Load() {
				s.bulkBytes += len(msg.Data)
			}
			s.tokens <- struct{}{}
		}
	})
	s.readers.Go(func() {
		for msg := range chat.Messages() {
			if msg.Data[8] == chatTimed {
				at := time.Unix(0, int64(binary.BigEndian.Uint64(msg.Data)))
				s.lat = append(s.lat, time.Since(at))
				s.received.Add(1)
			}
		}
	})
	return s, nil
}

// close closes the client and waits for its readers. It is safe to call
// more than once.
func (s *subject) close() {
	s.c.Close()
	s.readers.Wait()
}

// run runs the load for slotWarmup + d: bulk messages at bulkRate (at most
// bulkWindow in flight) and a chat message every chatEvery, each carrying
// its send time. Chat messages sent after the warmup are timed from
// publication (Hub.Publish, in this process) to receipt; run returns once
// all have arrived, with the bulk still flowing meanwhile.
func (s *subject) run(ctx context.Context, n *node, d time.Duration) error {
	start := time.Now()
	from, to := start.Add(slotWarmup), start.Add(slotWarmup+d)
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	errs := make(chan error, 2)

	big := bytes.Repeat([]byte("b"), *bulkSize)
	var every time.Duration // between bulk messages
	if *bulkRate > 0 {
		every = time.Duration(float64(*bulkSize) / (*bulkRate * (1 << 20)) * float64(time.Second))
	}
	pubs.Go(func() {
		t := time.NewTimer(0)
		defer t.Stop()
		for i := 0; ; i++ {
			if every > 0 {
				t.Reset(time.Until(start.Add(time.Duration(i) * every)))
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
			select {
			case <-stop:
				return
			case <-s.tokens:
			}
			if _, _, err := n.Hub().Publish(ctx, s.bulkCh, "", big); err != nil {
				errs <- err
				return
			}
		}
	})

	sent0, recv0 := s.sent, s.received.Load()
	chatDone := make(chan struct{})
	pubs.Go(func() {
		defer close(chatDone)
		tick := time.NewTicker(*chatEvery)
		defer tick.Stop()
		payload := make([]byte, 32)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			now := time.Now()
			if !now.Before(to) {
				return
			}
			binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
			payload[8] = 0
			if !now.Before(from) {
				payload[8] = chatTimed
				s.measuring.Store(true)
			}
			if _, _, err := n.Hub().Publish(ctx, s.chatCh, "", payload); err != nil {
				errs <- err
				return
			}
			if payload[8] == chatTimed {
				s.sent++ // read by run after chatDone
			}
		}
	})
	defer func() {
		close(stop)
		pubs.Wait()
	}()

	select {
	case <-chatDone:
	case err := <-errs:
		return err
	case <-s.c.Done():
		return fmt.Errorf("client ended: %w", s.c.Err())
	}
	s.measuring.Store(false)
	s.measured += to.Sub(from)
	// Wait for the last timed chat messages, the slow ones being the
	// point, with the bulk still flowing.
	deadline := time.Now().Add(5 * time.Second)
	for s.received.Load()-recv0 < s.sent-sent0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d chat messages not received 5 s after the slot", s.sent-sent0-(s.received.Load()-recv0), s.sent-sent0)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (s *subject) result() (*modeResult, error) {
	lat := slices.Clone(s.lat)
	if len(lat) == 0 {
		return nil, errors.New("no chat message timed")
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return &modeResult{
		mode: s.mode, samples: len(lat),
		p50: pct(0.50), p95: pct(0.95), p99: pct(0.99), max: lat[len(lat)-1],
		bulkBytesPerS: float64(s.bulkBytes) / s.measured.Seconds(),
	}, nil
}

func table(rs []*modeResult) string {
	var b strings.Builder
	fmt.Fprintln(&b, "| mode | chat p50 ms | p95 ms | p99 ms | max ms | chat samples | bulk MiB/s |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|")
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %.1f |\n", r.mode.name, ms(r.p50), ms(r.p95), ms(r.p99), ms(r.max),
			r.samples, r.bulkBytesPerS/(1<<20))
	}
	return b.String()
}
