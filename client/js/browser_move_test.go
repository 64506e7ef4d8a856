package js_test

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// udpForwarder relays datagrams between clients and one upstream UDP
// address (the node's QUIC port), one upstream socket per client address.
// While blocked it drops every datagram, both ways: to QUIC the path is
// down. The page's WebTransport dials the forwarder; QUIC does not care
// that the address differs from the node's, and the certificate hash pins
// the node's certificate.
type udpForwarder struct {
	// immutable after newUDPForwarder
	pc       net.PacketConn
	upstream *net.UDPAddr

	blocked atomic.Bool
	wg      sync.WaitGroup

	mu    sync.Mutex // guards conns and closed
	conns map[string]*net.UDPConn
	// closed: no more upstream sockets.
	closed bool
}

func newUDPForwarder(t *testing.T, upstream net.Addr) *udpForwarder {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &udpForwarder{pc: pc, upstream: upstream.(*net.UDPAddr), conns: map[string]*net.UDPConn{}}
	f.blocked.Store(true)
	f.wg.Add(1)
	go f.fromClients()
	t.Cleanup(f.close)
	return f
}

// url is the WebTransport URL of the node through the forwarder.
func (f *udpForwarder) url() string { return "https://" + f.pc.LocalAddr().String() }

func (f *udpForwarder) fromClients() {
	defer f.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if f.blocked.Load() {
			continue
		}
		up, err := f.conn(from)
		if err != nil {
			continue // closing, or no socket: the datagram is lost
		}
		up.Write(buf[:n])
	}
}

// conn returns the upstream socket of a client, dialling it the first time.
func (f *udpForwarder) conn(client net.Addr) (*net.UDPConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, net.ErrClosed
	}
	if c := f.conns[client.String()]; c != nil {
		return c, nil
	}
	c, err := net.DialUDP("udp", nil, f.upstream)
	if err != nil {
		return nil, err
	}
	f.conns[client.String()] = c
	f.wg.Add(1)
	go f.toClient(c, client)
	return c, nil
}

func (f *udpForwarder) toClient(up *net.UDPConn, client net.Addr) {
	defer f.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable while the node restarts
		}
		if f.blocked.Load() {
			continue
		}
		f.pc.WriteTo(buf[:n], client)
	}
}

// close stops relaying and waits for the relay goroutines.
func (f *udpForwarder) close() {
	f.mu.Lock()
	f.closed = true
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.pc.Close()
	f.wg.Wait()
}

// A page whose WebTransport cannot get through (UDP blocked) falls back to
// WebSocket, keeps trying WebTransport in the background and moves there
// once UDP passes, while the test publishes through the HTTP API: its
// subscription recovers on the new session, so the page gets every message
// once, in order, and sees no disconnect (but see the node's false
// heartbeat timeout below).
//
// The SDK's background attempts are not configurable: the first comes
// UPGRADE_MIN (5 s) after the WebSocket session began, then the delay
// doubles up to UPGRADE_MAX (60 s) after each failure (switchyard.ts). UDP
// opens well before 5 s here, so the first attempt is the one that moves.
func TestMovesBackToWebTransport(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	fwd := newUDPForwarder(t, n.Addrs().QUIC)
	// "demo" is the channel of nodeConfig's history rule (100
	// publications): recovery needs history, and the move misses far fewer.
	const channel = "demo"

	p := openPage(t, n.http+"/e2e.html")
	tr := connectJS(p, fwd.url(), fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q}`, n.ws), channel)
	if tr != "websocket" {
		t.Fatalf("page on %s with UDP blocked, want websocket", tr)
	}
	eval[chromedp.Void](p, `(() => { window.moves = []; c.on("transport", (e) => moves.push(e)); })()`)
	n.waitSubscribers(t, channel, 1)

	// Publish numbered messages, 25 ms apart, through the HTTP API (no
	// session of its own): 40 with UDP blocked, then on until 60 after the
	// page is on WebTransport, so that messages go by before, during and
	// after the move. Publishing from the test goroutine lets it watch the
	// page's transport between publications.
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var opened time.Time
	total := -1
	for i := 0; i != total; i++ {
		n.apiPublish(t, channel, strconv.Itoa(i))
		switch {
		case i == 39:
			fwd.blocked.Store(false)
			opened = time.Now()
		case total < 0 && i > 39 && eval[string](p, "c.transport") == "webtransport":
			total = i + 61
			t.Logf("on WebTransport %.1f s after UDP opened, %d published by then", time.Since(opened).Seconds(), i+1)
		case total < 0 && i > 39 && time.Since(opened) > 30*time.Second:
			t.Fatalf("still on %s 30 s after UDP opened; transport events %v, others %v",
				eval[string](p, "c.transport"), eval[[]map[string]any](p, "moves"), eval[[]map[string]any](p, "events"))
		}
		<-tick.C
	}

	got := p.waitMessages(total)
	if len(got) != total {
		t.Errorf("page got %d messages, %d published", len(got), total)
	}
	for i, m := range got {
		if m.Data != strconv.Itoa(i) || m.Offset != got[0].Offset+uint64(i) || m.Epoch != got[0].Epoch {
			t.Fatalf("message %d is %+v after %+v (first %+v): lost, doubled or out of order", i, m, got[max(i-1, 0)], got[0])
		}
	}
	if tr := eval[string](p, "c.transport"); tr != "webtransport" {
		t.Fatalf("page on %s at the end, want webtransport", tr)
	}
	moves := eval[[]map[string]any](p, "moves")
	if len(moves) != 1 || moves[0]["from"] != "websocket" || moves[0]["to"] != "webtransport" {
		t.Fatalf(`"transport" events %v, want one from websocket to webtransport`, moves)
	}
	// A move is not a reconnect: no disconnect (a false heartbeat timeout
	// of the node, 3002 with ping interval = pong timeout, was one before
	// protocols/conn.go's writeLoop judged the pong deadline first).
	for _, e := range eval[[]map[string]any](p, "events") {
		if e["ev"] == "disconnected" {
			t.Fatalf("the page disconnected: %v", e)
		}
	}
	// The WebSocket session left behind closes: only the page's WebTransport one remains.
	deadline := time.Now().Add(10 * time.Second)
	for n.Sessions() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions on the node, want 1 (the page's WebTransport)", n.Sessions())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
