//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/bench/internal/naive"
	"github.com/switchyard/switchyard/protocols"
	wsadapter "github.com/switchyard/switchyard/protocols/websocket"
)

// naivePayload is publication seq as the naive server delivers it.
func naivePayload(seq uint64, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(p[8:], seq)
	return p
}

// readClientFrame reads one frame a client sent and checks that it was
// masked, as a client must.
func readClientFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 == 0 {
		return 0, nil, errors.New("unmasked frame from the client")
	}
	n := int(h[1] & 0x7f)
	if n > 125 {
		return 0, nil, errors.New("long client frame")
	}
	buf := make([]byte, 4+n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return 0, nil, err
	}
	p := buf[4:]
	for i := range p {
		p[i] ^= buf[i%4]
	}
	return h[0] & 0x0f, p, nil
}

// TestEpollConn drives one -readers epoll subscriber (naive protocol) from
// a hand-written server: frames in the same segment as the HTTP 101
// (left in gorilla's buffer by the handshake), a ping that must come back
// as a masked pong, a fragmented message written a few bytes at a time,
// a 64-bit length, and a close that ends the subscriber and is answered.
func TestEpollConn(t *testing.T) {
	type report struct {
		pong, closeReply []byte
		err              error
	}
	reports := make(chan report, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		var rep report
		defer func() { reports <- rep }()
		// The 101 and two frames in one write.
		first := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
		first = append(first, serverFrame(true, opText, []byte(naive.Ready), 0)...)
		first = append(first, serverFrame(true, opBinary, naivePayload(1, 64), 0)...)
		if _, rep.err = conn.Write(first); rep.err != nil {
			return
		}
		if _, rep.err = conn.Write(serverFrame(true, opPing, []byte("abc"), 0)); rep.err != nil {
			return
		}
		var op byte
		if op, rep.pong, rep.err = readClientFrame(brw.Reader); rep.err != nil {
			return
		}
		if op != opPong {
			rep.err = errors.New("the answer to a ping is not a pong")
			return
		}
		p2 := naivePayload(2, 300)
		var rest []byte
		rest = append(rest, serverFrame(false, opBinary, p2[:100], 0)...)
		rest = append(rest, serverFrame(true, opPing, nil, 0)...)
		rest = append(rest, serverFrame(true, opContinuation, p2[100:], 0)...)
		rest = append(rest, serverFrame(true, opBinary, naivePayload(3, 70000), 0)...)
		rest = append(rest, serverFrame(true, opClose, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), 0)...)
		for len(rest) > 0 {
			n := min(len(rest), 7)
			if _, rep.err = conn.Write(rest[:n]); rep.err != nil {
				return
			}
			rest = rest[n:]
			if len(rest) > 69000 { // a few pieces a millisecond apart, then the rest
				time.Sleep(time.Millisecond)
			}
		}
		for { // the pong of the second ping, then the close
			if op, rep.closeReply, rep.err = readClientFrame(brw.Reader); rep.err != nil || op == opClose {
				return
			}
		}
	}))

	s := runOneEpollSubscriber(t, addr, "at the server's close")
	rep := <-reports
	if rep.err != nil {
		t.Fatalf("server: %v", rep.err)
	}
	if string(rep.pong) != "abc" {
		t.Errorf("pong %q, want abc", rep.pong)
	}
	if code, _, _ := closeFrame(rep.closeReply); code != websocket.CloseGoingAway {
		t.Errorf("close reply %x, want code 1001", rep.closeReply)
	}
	if n := s.count.Load(); n != 3 || s.bad != 0 {
		t.Errorf("%d deliveries (%d out of order), want 3 in order", n, s.bad)
	}
	var ce *websocket.CloseError
	if !errors.As(s.endErr, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "bye" {
		t.Errorf("subscriber ended with %v, want the server's close 1001 bye", s.endErr)
	}
}

// TestRunEpoll runs the fan-out with -readers epoll against the naive
// server, the switchyard.v1 session code (pings every 50 ms, answered
// by handle through gorilla's writer) and the fake Centrifugo.
func TestRunEpoll(t *testing.T) {
	const subs = 50
	check := func(t *testing.T, r *Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if r.Readers != readersEpoll {
			t.Errorf("result readers %q", r.Readers)
		}
		checkResult(t, r, subs)
		if r.LastSamples == 0 {
			t.Error("no last-subscriber samples")
		}
		checkArrival(t, r)
	}
	t.Run("naive", func(t *testing.T) {
		srv := naive.New()
		addr := serve(t, srv)
		t.Cleanup(srv.Close)
		r, err := Run(context.Background(), Config{Target: targetNaive, URL: "ws://" + addr + "/ws", Subs: subs, Readers: readersEpoll,
			Duration: 500 * time.Millisecond, ServerPID: os.Getpid(), Drain: 3 * time.Second})
		check(t, r, err)
		waitFor(t, 3*time.Second, "naive subscribers to leave", func() bool { return srv.Subscribers() == 0 })
	})
	t.Run("switchyard", func(t *testing.T) {
		node := &fakeNode{subs: make(map[protocols.Session]bool)}
		ws := wsadapter.NewServer(node, wsadapter.Config{Session: protocols.SessionConfig{
			PingInterval: 50 * time.Millisecond,
			PongTimeout:  time.Second,
		}})
		addr := serve(t, ws)
		t.Cleanup(func() {
			waitFor(t, 5*time.Second, "sessions to end", func() bool { return node.sessions() == 0 })
		})
		r, err := Run(context.Background(), Config{Target: targetSwitchyard, URL: "ws://" + addr + "/ws", Subs: subs, Readers: readersEpoll,
			Settle: 200 * time.Millisecond, Duration: 500 * time.Millisecond, Rate: 500, Drain: 3 * time.Second})
		check(t, r, err)
	})
	t.Run("centrifugo", func(t *testing.T) {
		// The fake closes a connection whose ping is not answered
		// before the next: 200 ms leaves room for a busy machine
		// (-race), where one reader goroutine handles 25 sockets.
		f := &fakeCentrifugo{key: "test-key", pingInterval: 200 * time.Millisecond, subs: map[*fakeCfConn]bool{}}
		addr := serve(t, f)
		t.Cleanup(f.conns.Wait)
		r, err := Run(context.Background(), Config{Target: targetCentrifugo, URL: "ws://" + addr + "/connection/websocket", APIKey: f.key,
			Subs: subs, Readers: readersEpoll, Settle: 450 * time.Millisecond, Duration: 500 * time.Millisecond, Drain: 3 * time.Second})
		check(t, r, err)
		if f.pongs.Load() == 0 {
			t.Error("no pongs: the test did not exercise them")
		}
	})
}

// checkArrival checks the arrival latency of an epoll run: every timed
// delivery has one, and no arrival comes after its read.
func checkArrival(t *testing.T, r *Result) {
	t.Helper()
	t.Logf("arrival p50 %.3f ms p99 %.3f ms (read %.3f / %.3f); last arrival p50 %.3f ms (read %.3f)",
		r.ArrivalP50Ms, r.ArrivalP99Ms, r.LatencyP50Ms, r.LatencyP99Ms, r.LastArrivalP50Ms, r.LastP50Ms)
	if r.ArrivalSamples == 0 || r.ArrivalSamples != r.LatencySamples || r.LastArrivalSamples != r.LastSamples {
		t.Errorf("%d arrival samples of %d deliveries timed, %d last-arrival samples of %d publications: want all",
			r.ArrivalSamples, r.LatencySamples, r.LastArrivalSamples, r.LastSamples)
	}
	if r.ArrivalP50Ms < 0 || r.ArrivalP99Ms < r.ArrivalP50Ms || r.ArrivalMaxMs < r.ArrivalP99Ms || r.LastArrivalP50Ms < 0 {
		t.Errorf("arrival p50 %v ms, p99 %v ms, max %v ms, last p50 %v ms: want 0 ≤ p50 ≤ p99 ≤ max", r.ArrivalP50Ms, r.ArrivalP99Ms, r.ArrivalMaxMs, r.LastArrivalP50Ms)
	}
	// Each arrival is at or before its read, so every quantile is too.
	if r.ArrivalP50Ms > r.LatencyP50Ms || r.ArrivalP99Ms > r.LatencyP99Ms || r.ArrivalMaxMs > r.LatencyMaxMs {
		t.Errorf("arrival p50 / p99 / max %v / %v / %v ms after the read's %v / %v / %v ms",
			r.ArrivalP50Ms, r.ArrivalP99Ms, r.ArrivalMaxMs, r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	}
	if r.LastArrivalP50Ms > r.LastP50Ms || r.LastArrivalMaxMs > r.LastMaxMs {
		t.Errorf("last arrival p50 / max %v / %v ms after the last read's %v / %v ms", r.LastArrivalP50Ms, r.LastArrivalMaxMs, r.LastP50Ms, r.LastMaxMs)
	}
}

// TestRxTimestamp reads a loopback TCP socket the way the epoll readers
// do: the kernel's receive timestamp comes with the data, on the clock of
// time.Now, and two writes read together carry the later one's time.
func TestRxTimestamp(t *testing.T) {
	client, server := tcpPair(t)
	rc, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := enableRxTimestamps(rc); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 64), make([]byte, epollOOB)
	recv := func() (int, int64) {
		t.Helper()
		var n int
		var arrival int64
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, arrival, rerr = recvStamped(int(fd), buf, oob)
			return rerr != syscall.EAGAIN
		}); err != nil {
			t.Fatal(err)
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
		return n, arrival
	}
	write := func(p string) {
		t.Helper()
		if _, err := server.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}

	// The first socket on the machine to ask for timestamps has the
	// kernel turn stamping on from a work queue: a packet right after may
	// come without one. Wait for a stamped one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := time.Now().UnixNano()
		write("x")
		n, arrival := recv()
		after := time.Now().UnixNano()
		if n != 1 {
			t.Fatalf("read %d bytes, want 1", n)
		}
		if arrival != 0 {
			if arrival < before || arrival > after {
				t.Errorf("arrival %d outside write %d .. read %d", arrival, before, after)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no receive timestamp on loopback TCP in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	write("a")
	time.Sleep(20 * time.Millisecond)
	between := time.Now().UnixNano()
	write("b")
	time.Sleep(20 * time.Millisecond) // both queued before the read
	n, arrival := recv()
	if n != 2 {
		t.Fatalf("read %d bytes, want both writes", n)
	}
	if arrival < between {
		t.Errorf("arrival %d before the second write (%d): want the last segment's time", arrival, between)
	}

	// The end of the stream carries no timestamp.
	server.Close()
	if n, arrival := recv(); n != 0 || arrival != 0 {
		t.Errorf("at the end: %d bytes, arrival %d; want 0, 0", n, arrival)
	}
}

// tcpPair is a connected loopback TCP pair, closed when the test ends.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { sc.Close() })
	return c.(*net.TCPConn), sc.(*net.TCPConn)
}

// TestRxTimestampControlMessages: no timestamp among other control
// messages is none, and a malformed message is an error, not a panic.
func TestRxTimestampControlMessages(t *testing.T) {
	cmsg := func(typ int32, data []byte, hdrLen int) []byte {
		b := make([]byte, syscall.CmsgSpace(len(data)))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = syscall.SOL_SOCKET, typ
		h.SetLen(hdrLen)
		copy(b[syscall.CmsgLen(0):], data)
		return b
	}
	var ts syscall.Timespec
	ts.Sec, ts.Nsec = 1700000000, 123456789
	tsBytes := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
	for _, tc := range []struct {
		name string
		oob  []byte
		want int64
		err  bool
	}{
		{"none", nil, 0, false},
		{"other", cmsg(syscall.SCM_RIGHTS, make([]byte, 4), syscall.CmsgLen(4)), 0, false},
		{"stamp", cmsg(syscall.SCM_TIMESTAMPNS, tsBytes, syscall.CmsgLen(len(tsBytes))), 1700000000123456789, false},
		{"after another", append(cmsg(syscall.SCM_RIGHTS, make([]byte, 4), syscall.CmsgLen(4)), cmsg(syscall.SCM_TIMESTAMPNS, tsBytes, syscall.CmsgLen(len(tsBytes)))...), 1700000000123456789, false},
		{"short stamp", cmsg(syscall.SCM_TIMESTAMPNS, make([]byte, 4), syscall.CmsgLen(4)), 0, true},
		{"length past the end", cmsg(syscall.SCM_TIMESTAMPNS, tsBytes, 1000), 0, true},
		{"length under the header", cmsg(syscall.SCM_TIMESTAMPNS, tsBytes, 3), 0, true},
	} {
		got, err := rxTimestamp(tc.oob)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%s: %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestReadersConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Target: targetNaive, URL: "ws://127.0.0.1:1/ws", Readers: "threads"},
		{Target: targetNaive, URL: "wss://127.0.0.1:1/ws", Readers: readersEpoll},
		{Target: targetNaive, URL: "ws://127.0.0.1:1/ws", SubURLs: []string{"wss://127.0.0.1:1/ws"}, Readers: readersEpoll},
	} {
		if err := cfg.withDefaults().validate(); err == nil {
			t.Errorf("%+v: accepted", cfg)
		}
	}
	if err := (Config{Target: targetNaive, URL: "ws://127.0.0.1:1/ws", Readers: readersEpoll}).withDefaults().validate(); err != nil {
		t.Error(err)
	}
	if got := (Config{}).withDefaults().Readers; got != readersGoroutine {
		t.Errorf("default readers %q", got)
	}
}

// TestEpollConnEOF: a server that sends its last message and closes the
// TCP connection without a close frame ends the subscriber with an error
// once the message is counted (the edge that reports the shutdown may
// come with the data).
func TestEpollConnEOF(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		msg := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
		msg = append(msg, serverFrame(true, opText, []byte(naive.Ready), 0)...)
		if _, err := conn.Write(msg); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(50 * time.Millisecond) // subscribed and in the epoll set
		if _, err := conn.Write(serverFrame(true, opBinary, naivePayload(1, 64), 0)); err != nil {
			t.Error(err)
		}
	}))
	s := runOneEpollSubscriber(t, addr, "when the server closed the connection")
	if n := s.count.Load(); n != 1 || s.endErr == nil {
		t.Errorf("%d deliveries, ended with %v; want 1 and an error", n, s.endErr)
	}
}

// runOneEpollSubscriber dials one naive-target subscriber with epoll
// reads at addr, waits (up to 5 s) for it to end, and shuts the load down.
func runOneEpollSubscriber(t *testing.T, addr, when string) *subscriber {
	t.Helper()
	l := newLoad(Config{Target: targetNaive, URL: "ws://" + addr + "/ws", Subs: 1, Readers: readersEpoll}.withDefaults())
	l.slots[1].seq.Store(1)
	if err := l.dialSubscribers(context.Background()); err != nil {
		l.shutdown()
		t.Fatal(err)
	}
	s := l.subs[0]
	select {
	case <-s.ended:
	case <-time.After(5 * time.Second):
		t.Error("the subscriber did not end " + when)
	}
	l.shutdown()
	return s
}
