package p2p_test

// These tests run the real signaling server (package signaling) on an
// httptest server on 127.0.0.1 and real pion PeerConnections restricted to
// the loopback interface: no packet leaves the machine.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/client/p2p"
	"github.com/switchyard/switchyard/signaling"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long a test waits for one thing before failing.
const wait = 10 * time.Second

// startServer runs a signaling server and returns its /signal URL.
func startServer(t *testing.T, cfg signaling.Config) string {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := signaling.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("signaling server close: %v", err)
		}
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/signal"
}

// loopbackAPI is a pion API whose ICE agents use 127.0.0.1 only.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

type connEvent struct {
	id string
	pc *webrtc.PeerConnection
}

type msgEvent struct {
	id   string
	data json.RawMessage
}

// tpeer is a joined Room with its events on channels.
type tpeer struct {
	t     *testing.T
	name  string
	room  *p2p.Room
	joins chan string
	left  chan string
	conns chan connEvent
	msgs  chan msgEvent
	errs  chan error
	dcs   chan *webrtc.DataChannel // remote data channels, of any pc
}

func push[T any](t *testing.T, ch chan T, v T) {
	select {
	case ch <- v:
	default:
		t.Errorf("event channel full, dropped %v", v)
	}
}

// join joins room as a loopback-only peer; it leaves at the end of the
// test. change may adjust the options.
func join(t *testing.T, url, room, name string, change ...func(*p2p.Options)) *tpeer {
	t.Helper()
	p := &tpeer{
		t: t, name: name,
		joins: make(chan string, 64), left: make(chan string, 64), conns: make(chan connEvent, 64),
		msgs: make(chan msgEvent, 64), errs: make(chan error, 64), dcs: make(chan *webrtc.DataChannel, 64),
	}
	opts := p2p.Options{
		API:          loopbackAPI(),
		ICEServers:   []webrtc.ICEServer{}, // none: host candidates only
		OnJoin:       func(id string) { push(t, p.joins, id) },
		OnLeave:      func(id string) { push(t, p.left, id) },
		OnMessage:    func(id string, data json.RawMessage) { push(t, p.msgs, msgEvent{id, data}) },
		OnError:      func(err error) { push(t, p.errs, err) },
		OnConnection: func(id string, pc *webrtc.PeerConnection) { p.watch(pc); push(t, p.conns, connEvent{id, pc}) },
	}
	if os.Getenv("P2P_DEBUG") != "" { // the negotiation, step by step
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("peer", name)
	}
	for _, f := range change {
		f(&opts)
	}
	// Join's ctx is the Room's life: Background, and Leave at the end.
	r, err := p2p.Join(context.Background(), url, room, opts)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	p.room = r
	t.Cleanup(func() { p.leave() })
	return p
}

// leave leaves and waits for every goroutine of the Room.
func (p *tpeer) leave() {
	p.t.Helper()
	if err := p.room.Leave(); err != nil && !errors.Is(err, p2p.ErrLeft) {
		p.t.Logf("%s: leave: %v", p.name, err)
	}
	select {
	case <-p.room.Done():
	case <-time.After(wait):
		p.t.Errorf("%s: Done not closed after Leave", p.name)
	}
}

// watch sets OnDataChannel on pc: remote data channels go to p.dcs.
func (p *tpeer) watch(pc *webrtc.PeerConnection) {
	pc.OnDataChannel(func(dc *webrtc.DataChannel) { push(p.t, p.dcs, dc) })
}

// peer is p.room.Peer(id) with OnDataChannel set.
func (p *tpeer) peer(id string) *webrtc.PeerConnection {
	p.t.Helper()
	pc, err := p.room.Peer(id)
	if err != nil {
		p.t.Fatalf("%s: Peer(%s): %v", p.name, id, err)
	}
	p.watch(pc)
	return pc
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// none fails if ch has (or gets, within a short while) an event. It is a
// check that nothing spurious happened, not a wait for something.
func none[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("unexpected %s: %v", what, v)
	default:
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // a poll interval, not a wait for an event
	}
}

// channel is a data channel with its messages on a channel.
type channel struct {
	dc   *webrtc.DataChannel
	open chan struct{}
	msgs chan string
}

func wrap(t *testing.T, dc *webrtc.DataChannel) *channel {
	c := &channel{dc: dc, open: make(chan struct{}), msgs: make(chan string, 64)}
	var once sync.Once
	dc.OnOpen(func() { once.Do(func() { close(c.open) }) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { push(t, c.msgs, string(m.Data)) })
	if dc.ReadyState() == webrtc.DataChannelStateOpen {
		once.Do(func() { close(c.open) })
	}
	return c
}

func (c *channel) waitOpen(t *testing.T) {
	t.Helper()
	recvClosed(t, c.open, "data channel "+c.dc.Label()+" open")
}

func recvClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// exchange sends a message each way over a pair of data channels.
func exchange(t *testing.T, a, b *channel, tag string) {
	t.Helper()
	if err := a.dc.SendText("a→b " + tag); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b.msgs, "message a→b"); got != "a→b "+tag {
		t.Fatalf("b got %q", got)
	}
	if err := b.dc.SendText("b→a " + tag); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a.msgs, "message b→a"); got != "b→a "+tag {
		t.Fatalf("a got %q", got)
	}
}

// connectPair joins a and b to one room and opens a data channel from a
// to b; it returns both ends.
func connectPair(t *testing.T, url string) (a, b *tpeer, ca, cb *channel) {
	t.Helper()
	a = join(t, url, "room-"+t.Name(), "a")
	b = join(t, url, "room-"+t.Name(), "b")
	if got := recv(t, a.joins, "a: OnJoin(b)"); got != b.room.PeerID() {
		t.Fatalf("a: OnJoin(%s), want %s", got, b.room.PeerID())
	}
	pc := a.peer(b.room.PeerID())
	dc, err := pc.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	ca = wrap(t, dc)
	conn := recv(t, b.conns, "b: OnConnection")
	if conn.id != a.room.PeerID() {
		t.Fatalf("b: OnConnection(%s), want %s", conn.id, a.room.PeerID())
	}
	cb = wrap(t, recv(t, b.dcs, "b: OnDataChannel"))
	ca.waitOpen(t)
	cb.waitOpen(t)
	return a, b, ca, cb
}

func TestDataChannel(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, ca, cb := connectPair(t, url)

	if got, want := a.room.Peers(), []string{b.room.PeerID()}; !slices.Equal(got, want) {
		t.Errorf("a.Peers() = %v, want %v", got, want)
	}
	if got, want := b.room.Peers(), []string{a.room.PeerID()}; !slices.Equal(got, want) {
		t.Errorf("b.Peers() = %v, want %v", got, want)
	}
	if cb.dc.Label() != "chat" {
		t.Errorf("label %q", cb.dc.Label())
	}
	for i := range 3 {
		exchange(t, ca, cb, fmt.Sprint(i))
	}
	// b's Peer(a) is the PeerConnection OnConnection gave.
	pc, err := b.room.Peer(a.room.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Errorf("b's pc is %s", pc.ConnectionState())
	}

	// A second channel, opened by b this time, on the same pc (with the SCTP
	// association up, pion needs no renegotiation for it).
	dc2, err := pc.CreateDataChannel("second", nil)
	if err != nil {
		t.Fatal(err)
	}
	c2b := wrap(t, dc2)
	c2a := wrap(t, recv(t, a.dcs, "a: OnDataChannel(second)"))
	c2b.waitOpen(t)
	c2a.waitOpen(t)
	exchange(t, c2a, c2b, "second")
	none(t, a.conns, "a: OnConnection") // a made its pc itself
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
	if limits := a.room.Limits(); limits.MaxDataSize <= 0 || limits.MaxRoomSize <= 0 {
		t.Errorf("limits %+v", limits)
	}
	if len(a.room.ICEServers()) != 0 {
		t.Errorf("ICEServers %v, want the override (none)", a.room.ICEServers())
	}
}

// TestGlare: both peers create a data channel at once, and their offers
// cross for sure: the writers are held until both have made theirs.
func TestGlare(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "glare", "a")
	b := join(t, url, "glare", "b")
	recv(t, a.joins, "a: OnJoin(b)")
	ida, idb := a.room.PeerID(), b.room.PeerID()

	releaseA, releaseB := a.room.HoldWrites(), b.room.HoldWrites()
	start := make(chan struct{})
	var wg sync.WaitGroup
	chans := make([]*channel, 2)
	pcs := make([]*webrtc.PeerConnection, 2)
	for i, side := range []struct {
		p     *tpeer
		other string
	}{{a, idb}, {b, ida}} {
		wg.Go(func() {
			<-start
			pc, err := side.p.room.Peer(side.other)
			if err != nil {
				t.Error(err)
				return
			}
			side.p.watch(pc)
			dc, err := pc.CreateDataChannel("from-"+side.p.name, nil)
			if err != nil {
				t.Error(err)
				return
			}
			pcs[i], chans[i] = pc, wrap(t, dc)
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Both have an offer out (queued behind the held writers).
	for i, pc := range pcs {
		eventually(t, fmt.Sprintf("pc %d in have-local-offer", i), func() bool {
			return pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer
		})
	}
	releaseA()
	releaseB()

	polite, impolite := 0, 1 // indexes into sides: the smaller id is polite
	if idb < ida {
		polite, impolite = 1, 0
	}
	peers := []*tpeer{a, b}
	ids := []string{ida, idb}
	P, I := peers[polite], peers[impolite]

	// The impolite side's offer wins: its channel reaches the polite side.
	fromI := wrap(t, recv(t, P.dcs, "polite: OnDataChannel(from impolite)"))
	if want := "from-" + I.name; fromI.dc.Label() != want {
		t.Fatalf("polite got channel %q, want %q", fromI.dc.Label(), want)
	}
	chans[impolite].waitOpen(t)
	fromI.waitOpen(t)
	exchange(t, chans[impolite], fromI, "impolite's channel")

	rb, rp, ig := P.room.Glare(ids[impolite])
	if _, _, ig := I.room.Glare(ids[polite]); ig != 1 {
		t.Errorf("impolite: %d offers ignored, want 1", ig)
	}
	switch {
	case rb == 1 && rp == 0 && ig == 0:
		// pion rolled the polite offer back: the polite side's own channel
		// lives on, on the same connection.
		fromP := wrap(t, recv(t, I.dcs, "impolite: OnDataChannel(from polite)"))
		fromP.waitOpen(t)
		chans[polite].waitOpen(t)
		exchange(t, chans[polite], fromP, "polite's channel")
	case rb == 0 && rp == 1 && ig == 0:
		// pion cannot roll back: the polite side's PeerConnection was
		// replaced (OnConnection gave the new one) and its channel closed
		// with the old one; a channel on the new one needs no negotiation.
		c := recv(t, P.conns, "polite: OnConnection(replacement)")
		if c.id != ids[impolite] || c.pc == pcs[polite] {
			t.Fatalf("polite: OnConnection(%s, same pc %t)", c.id, c.pc == pcs[polite])
		}
		if cur, _ := P.room.Peer(ids[impolite]); cur != c.pc {
			t.Error("polite: Peer() is not the replacement")
		}
		eventually(t, "the polite side's first pc closed", func() bool {
			return pcs[polite].SignalingState() == webrtc.SignalingStateClosed
		})
		dc, err := c.pc.CreateDataChannel("again-"+P.name, nil)
		if err != nil {
			t.Fatal(err)
		}
		again := wrap(t, dc)
		fromP := wrap(t, recv(t, I.dcs, "impolite: OnDataChannel(again)"))
		again.waitOpen(t)
		fromP.waitOpen(t)
		exchange(t, again, fromP, "polite's new channel")
		pcs[polite] = c.pc
	default:
		t.Fatalf("polite: %d rollbacks, %d replacements, %d ignored offers", rb, rp, ig)
	}
	for i, pc := range pcs {
		if s := pc.SignalingState(); s != webrtc.SignalingStateStable {
			t.Errorf("pc %d: %s", i, s)
		}
		if s := pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
			t.Errorf("pc %d: %s", i, s)
		}
	}
	none(t, I.conns, "impolite: OnConnection")
	none(t, P.conns, "polite: second OnConnection")
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
}

func TestMessages(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "msgs", "a")
	b := join(t, url, "msgs", "b")
	recv(t, a.joins, "a: OnJoin(b)")
	ida, idb := a.room.PeerID(), b.room.PeerID()

	type hello struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	if err := a.room.Send(idb, hello{"alice", 1}); err != nil {
		t.Fatal(err)
	}
	m := recv(t, b.msgs, "b: OnMessage")
	var h hello
	if err := json.Unmarshal(m.data, &h); err != nil || m.id != ida || h != (hello{"alice", 1}) {
		t.Fatalf("b got %s from %s (%v)", m.data, m.id, err)
	}
	if err := b.room.Send(ida, json.RawMessage(`{"raw": [1, 2, 3]}`)); err != nil {
		t.Fatal(err)
	}
	m = recv(t, a.msgs, "a: OnMessage")
	if m.id != idb || string(m.data) != `{"raw":[1,2,3]}` {
		t.Fatalf("a got %s from %s", m.data, m.id)
	}
	// Order is kept.
	for i := range 20 {
		if err := a.room.Send(idb, i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if m := recv(t, b.msgs, "b: OnMessage"); string(m.data) != fmt.Sprint(i) {
			t.Fatalf("message %d: %s", i, m.data)
		}
	}
	// Custom messages need no PeerConnection.
	if _, _, ig := a.room.Glare(idb); ig != -1 {
		t.Errorf("a has a pc for b")
	}
	if err := a.room.Send(idb, make(chan int)); err == nil {
		t.Error("Send of a channel: no error")
	}
	big := strings.Repeat("x", a.room.Limits().MaxDataSize)
	var pe *p2p.Error
	if err := a.room.Send(idb, big); !errors.As(err, &pe) || pe.Code != p2p.CodeTooLarge {
		t.Errorf("Send over maxDataSize: %v", err)
	}
}

func TestUnknownPeer(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "unknown", "a")
	const ghost = "AAAAAAAAAAAAAAAA"
	if err := a.room.Send(ghost, "anyone?"); err != nil {
		t.Fatal(err)
	}
	err := recv(t, a.errs, "a: OnError")
	var pe *p2p.Error
	if !errors.As(err, &pe) || pe.Code != p2p.CodeUnknownPeer || pe.To != ghost {
		t.Fatalf("OnError(%v), want unknown_peer to %s", err, ghost)
	}
	if _, err := a.room.Peer(ghost); !errors.Is(err, p2p.ErrUnknownPeer) {
		t.Errorf("Peer(ghost): %v", err)
	}
	if _, err := a.room.Peer(a.room.PeerID()); err == nil {
		t.Error("Peer(self): no error")
	}
}

func TestLeave(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, _, _ := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()
	pcA, err := a.room.Peer(idb)
	if err != nil {
		t.Fatal(err)
	}
	pcB, err := b.room.Peer(ida)
	if err != nil {
		t.Fatal(err)
	}

	if err := b.room.Send(ida, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := b.room.Leave(); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := b.room.Leave(); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if s := pcB.SignalingState(); s != webrtc.SignalingStateClosed {
		t.Errorf("b's pc after Leave: %s", s)
	}
	recvClosed(t, b.room.Done(), "b: Done")
	if !errors.Is(b.room.Err(), p2p.ErrLeft) {
		t.Errorf("b: Err = %v, want ErrLeft", b.room.Err())
	}
	if err := b.room.Send(ida, "late"); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Send after Leave: %v", err)
	}
	if _, err := b.room.Peer(ida); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Peer after Leave: %v", err)
	}

	// The message queued before the leave went out first.
	if m := recv(t, a.msgs, "a: OnMessage(bye)"); string(m.data) != `"bye"` {
		t.Errorf("a got %s", m.data)
	}
	if got := recv(t, a.left, "a: OnLeave"); got != idb {
		t.Fatalf("a: OnLeave(%s), want %s", got, idb)
	}
	if len(a.room.Peers()) != 0 {
		t.Errorf("a.Peers() = %v", a.room.Peers())
	}
	eventually(t, "a's pc to b closed", func() bool { return pcA.SignalingState() == webrtc.SignalingStateClosed })
	if _, err := a.room.Peer(idb); !errors.Is(err, p2p.ErrUnknownPeer) {
		t.Errorf("Peer(departed): %v", err)
	}
}

// TestContext: the Room's context ends it, as Leave does.
func TestContext(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "ctx", "a")
	ctx, cancel := context.WithCancel(context.Background())
	b, err := p2p.Join(ctx, url, "ctx", p2p.Options{API: loopbackAPI(), ICEServers: []webrtc.ICEServer{}})
	if err != nil {
		t.Fatal(err)
	}
	idb := recv(t, a.joins, "a: OnJoin(b)")
	cancel()
	recvClosed(t, b.Done(), "b: Done")
	if !errors.Is(b.Err(), context.Canceled) {
		t.Errorf("Err = %v", b.Err())
	}
	if err := b.Leave(); err != nil {
		t.Errorf("Leave after ctx's end: %v", err)
	}
	if got := recv(t, a.left, "a: OnLeave(b)"); got != idb {
		t.Errorf("OnLeave(%s)", got)
	}
}

// TestResume: the socket drops (no close frame); the Room redials and
// resumes: same id, same PeerConnection, nothing seen by the other side.
func TestResume(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, ca, cb := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()
	pcA, _ := a.room.Peer(idb)

	if !a.room.DropConn() {
		t.Fatal("no socket to drop")
	}
	// Queued while the socket is down (or written on the dead one, and
	// written again on the next).
	if err := a.room.Send(idb, "during the gap"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's redial", func() bool { return a.room.Rejoins() == 1 })
	if a.room.PeerID() != ida {
		t.Fatalf("PeerID %s after resume, want %s", a.room.PeerID(), ida)
	}
	if m := recv(t, b.msgs, "b: OnMessage"); string(m.data) != `"during the gap"` || m.id != ida {
		t.Errorf("b got %s from %s", m.data, m.id)
	}
	if err := b.room.Send(ida, "after"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.msgs, "a: OnMessage"); string(m.data) != `"after"` {
		t.Errorf("a got %s", m.data)
	}
	if pc, _ := a.room.Peer(idb); pc != pcA {
		t.Error("a has a new pc after the resume")
	}
	exchange(t, ca, cb, "after resume")

	// Negotiation still goes through the new socket.
	dc, err := pcA.CreateDataChannel("after-resume", nil)
	if err != nil {
		t.Fatal(err)
	}
	c2a := wrap(t, dc)
	c2b := wrap(t, recv(t, b.dcs, "b: OnDataChannel(after-resume)"))
	c2a.waitOpen(t)
	exchange(t, c2a, c2b, "new channel")

	none(t, a.left, "a: OnLeave")
	none(t, b.left, "b: OnLeave")
	none(t, b.joins, "b: OnJoin")
	none(t, a.joins, "a: OnJoin")
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
}

// TestResumeRefused: a resume the server does not honour (here, a wrong
// secret) is a new join: the Room closes its PeerConnections, tells of
// the old peers' leaving and the new list's joining, under a new id.
func TestResumeRefused(t *testing.T) {
	url := startServer(t, signaling.Config{Grace: time.Second})
	a, b, _, _ := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()
	pcA, _ := a.room.Peer(idb)

	a.room.SetResumeSecret("not-the-secret")
	a.room.DropConn()
	eventually(t, "a's redial", func() bool { return a.room.Rejoins() == 1 })
	newA := a.room.PeerID()
	if newA == ida {
		t.Fatal("same id after a refused resume")
	}
	if got := recv(t, a.left, "a: OnLeave(b)"); got != idb {
		t.Errorf("a: OnLeave(%s)", got)
	}
	if got := recv(t, a.joins, "a: OnJoin(b)"); got != idb {
		t.Errorf("a: OnJoin(%s)", got)
	}
	eventually(t, "a's old pc closed", func() bool { return pcA.SignalingState() == webrtc.SignalingStateClosed })
	// a's old id is in the room for the grace period: a does not list it.
	if got := a.room.Peers(); !slices.Equal(got, []string{idb}) {
		t.Errorf("a.Peers() = %v, want [%s]", got, idb)
	}
	if got := recv(t, b.joins, "b: OnJoin(new a)"); got != newA {
		t.Errorf("b: OnJoin(%s), want %s", got, newA)
	}
	if got := recv(t, b.left, "b: OnLeave(old a)"); got != ida {
		t.Errorf("b: OnLeave(%s), want %s", got, ida)
	}

	// The new a connects to b afresh.
	dc, err := a.peer(idb).CreateDataChannel("again", nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := wrap(t, dc)
	if c := recv(t, b.conns, "b: OnConnection(new a)"); c.id != newA {
		t.Errorf("OnConnection(%s)", c.id)
	}
	cb := wrap(t, recv(t, b.dcs, "b: OnDataChannel(again)"))
	ca.waitOpen(t)
	exchange(t, ca, cb, "new session")
}

// TestReplaced: a resume of the same peer id on another connection
// replaces this one (close 4500): the Room ends, it does not redial.
func TestReplaced(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "replaced", "a")

	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"type": "join", "room": "replaced", "peer": a.room.PeerID(), "resume": a.room.ResumeSecret()}); err != nil {
		t.Fatal(err)
	}
	var joined struct {
		Type    string `json:"type"`
		Peer    string `json:"peer"`
		Resumed bool   `json:"resumed"`
	}
	if err := ws.ReadJSON(&joined); err != nil {
		t.Fatal(err)
	}
	if joined.Type != "joined" || !joined.Resumed || joined.Peer != a.room.PeerID() {
		t.Fatalf("raw join: %+v", joined)
	}
	recvClosed(t, a.room.Done(), "a: Done")
	var ce *p2p.CloseError
	if !errors.As(a.room.Err(), &ce) || ce.Code != p2p.CloseReplaced {
		t.Fatalf("Err = %v, want close 4500", a.room.Err())
	}
	if a.room.Rejoins() != 0 {
		t.Errorf("%d redials", a.room.Rejoins())
	}
	if err := a.room.Leave(); !errors.As(err, &ce) {
		t.Errorf("Leave after the end: %v", err)
	}
}

func TestJoinErrors(t *testing.T) {
	url := startServer(t, signaling.Config{MaxRoomSize: 1})
	opts := p2p.Options{API: loopbackAPI(), ICEServers: []webrtc.ICEServer{}}
	ctx := context.Background()

	_, err := p2p.Join(ctx, url, "bad room", opts)
	var pe *p2p.Error
	if !errors.As(err, &pe) || pe.Code != p2p.CodeBadRoom {
		t.Errorf("bad room: %v", err)
	}

	join(t, url, "full", "a")
	_, err = p2p.Join(ctx, url, "full", opts)
	if !errors.As(err, &pe) || pe.Code != p2p.CodeRoomFull {
		t.Errorf("full room: %v", err)
	}

	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := p2p.Join(ctx, "ws://"+addr+"/signal", "x", opts); err == nil {
		t.Error("dial to a closed port: no error")
	}

	// The context bounds the join.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p2p.Join(cctx, url, "x", opts); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled join: %v", err)
	}
}

// TestServerShutdown: a node that shuts down closes with 3000; the Room
// redials (and fails to: the only node is down) until it is left.
func TestServerShutdown(t *testing.T) {
	srv, err := signaling.New(signaling.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/signal"
	a := join(t, url, "shutdown", "a")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the socket closed", func() bool { return !a.room.Connected() })
	select {
	case <-a.room.Done():
		t.Fatalf("Room ended on 3000: %v", a.room.Err())
	default:
	}
	if err := a.room.Leave(); err != nil {
		t.Errorf("Leave while redialling: %v", err)
	}
	recvClosed(t, a.room.Done(), "Done")
}

// TestPeerAgain: the application closes its PeerConnection and asks for
// another; the remote side sees a new certificate in the offer and
// replaces its own (OnConnection again).
func TestPeerAgain(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, _, _ := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()
	old, _ := a.room.Peer(idb)
	oldB, _ := b.room.Peer(ida)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	pc := a.peer(idb)
	if pc == old {
		t.Fatal("Peer returned the closed pc")
	}
	dc, err := pc.CreateDataChannel("second life", nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := wrap(t, dc)
	c := recv(t, b.conns, "b: OnConnection(replacement)")
	if c.id != ida || c.pc == oldB {
		t.Fatalf("b: OnConnection(%s, same pc %t)", c.id, c.pc == oldB)
	}
	cb2 := wrap(t, recv(t, b.dcs, "b: OnDataChannel(second life)"))
	ca.waitOpen(t)
	exchange(t, ca, cb2, "second life")
	eventually(t, "b's old pc closed", func() bool { return oldB.SignalingState() == webrtc.SignalingStateClosed })
	if cur, _ := b.room.Peer(ida); cur != c.pc {
		t.Error("b: Peer() is not the replacement")
	}
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
}

// TestRestartICE: new ICE credentials, same connection.
func TestRestartICE(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, ca, cb := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()
	pcB, _ := b.room.Peer(ida)
	before := pcB.RemoteDescription().SDP
	if err := a.room.RestartICE(idb); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b has a's new credentials", func() bool {
		d := pcB.RemoteDescription()
		return d != nil && ufragOf(d.SDP) != ufragOf(before) && pcB.SignalingState() == webrtc.SignalingStateStable
	})
	exchange(t, ca, cb, "after the restart")
	if err := a.room.RestartICE("nobody"); !errors.Is(err, p2p.ErrUnknownPeer) {
		t.Errorf("RestartICE(nobody): %v", err)
	}
	none(t, b.conns, "b: second OnConnection")
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
}

func ufragOf(sdp string) string {
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// TestDisableReconnect: without reconnects, a lost socket ends the Room.
func TestDisableReconnect(t *testing.T) {
	url := startServer(t, signaling.Config{Grace: -1})
	a := join(t, url, "noreconnect", "a")
	b := join(t, url, "noreconnect", "b", func(o *p2p.Options) { o.DisableReconnect = true })
	recv(t, a.joins, "a: OnJoin(b)")
	b.room.DropConn()
	recvClosed(t, b.room.Done(), "b: Done")
	if err := b.room.Err(); err == nil || errors.Is(err, p2p.ErrLeft) {
		t.Errorf("Err = %v", err)
	}
	// No grace: the server drops b at once.
	if got := recv(t, a.left, "a: OnLeave(b)"); got != b.room.PeerID() {
		t.Errorf("OnLeave(%s)", got)
	}
}

// TestLeaveFromCallback: a callback may call Leave.
func TestLeaveFromCallback(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "cbleave", "a")
	left := make(chan error, 1)
	b := join(t, url, "cbleave", "b")
	b.room.OnMessage(func(id string, data json.RawMessage) { left <- b.room.Leave() })
	recv(t, a.joins, "a: OnJoin(b)")
	if err := a.room.Send(b.room.PeerID(), "please leave"); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, left, "Leave in OnMessage"); err != nil {
		t.Errorf("Leave: %v", err)
	}
	recvClosed(t, b.room.Done(), "b: Done")
	recv(t, a.left, "a: OnLeave(b)")
}

// TestICEServersFromServer: without an override, the Room takes the
// server's list, TURN credentials included. (No PeerConnection is made:
// these servers are not there.)
func TestICEServersFromServer(t *testing.T) {
	url := startServer(t, signaling.Config{
		ICEServers: []signaling.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}, {URLs: []string{"turn:127.0.0.1:3478"}}},
		TURNSecret: "secret",
	})
	a := join(t, url, "ice", "a", func(o *p2p.Options) { o.ICEServers = nil })
	got := a.room.ICEServers()
	if len(got) != 2 || got[0].URLs[0] != "stun:127.0.0.1:3478" || got[1].URLs[0] != "turn:127.0.0.1:3478" {
		t.Fatalf("ICEServers() = %+v", got)
	}
	if !strings.HasSuffix(got[1].Username, ":"+a.room.PeerID()) || got[1].Credential == "" {
		t.Errorf("TURN credentials %q %q", got[1].Username, got[1].Credential)
	}
	if a.room.Grace() != 10*time.Second {
		t.Errorf("Grace() = %v", a.room.Grace())
	}
}

// TestRawPeer speaks the protocol by hand from a bare WebSocket, with its
// own pion PeerConnection, as a browser would: it sends its candidates
// before its offer (which the Room must keep for the offer), and reads
// the Room's answer and candidates.
func TestRawPeer(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a := join(t, url, "raw", "a")

	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	type msg struct {
		Type      string          `json:"type"`
		Room      string          `json:"room,omitempty"`
		Peer      string          `json:"peer,omitempty"`
		To        string          `json:"to,omitempty"`
		From      string          `json:"from,omitempty"`
		SDP       string          `json:"sdp,omitempty"`
		Candidate json.RawMessage `json:"candidate,omitempty"`
		Code      string          `json:"code,omitempty"`
	}
	if err := ws.WriteJSON(msg{Type: "join", Room: "raw"}); err != nil {
		t.Fatal(err)
	}
	var joined msg
	if err := ws.ReadJSON(&joined); err != nil || joined.Type != "joined" {
		t.Fatalf("joined: %+v %v", joined, err)
	}
	rawID, ida := joined.Peer, a.room.PeerID()
	recv(t, a.joins, "a: OnJoin(raw)")

	pc, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.GracefulClose()
	dc, err := pc.CreateDataChannel("raw", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := wrap(t, dc)
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	// Candidates first (from the complete local description), then the offer
	// without them, then the end of candidates.
	n := 0
	for line := range strings.Lines(pc.LocalDescription().SDP) {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a=candidate:"); ok {
			b, _ := json.Marshal(map[string]any{"candidate": "candidate:" + c, "sdpMid": "0", "sdpMLineIndex": 0})
			if err := ws.WriteJSON(msg{Type: "candidate", To: ida, Candidate: b}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no local candidate")
	}
	if err := ws.WriteJSON(msg{Type: "offer", To: ida, SDP: offer.SDP}); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteJSON(msg{Type: "candidate", To: ida, Candidate: json.RawMessage("null")}); err != nil {
		t.Fatal(err)
	}

	if c := recv(t, a.conns, "a: OnConnection(raw)"); c.id != rawID {
		t.Fatalf("OnConnection(%s)", c.id)
	}
	// Read a's answer and candidates until the data channel is open.
	readErr := make(chan error, 1)
	go func() {
		for {
			var m msg
			if err := ws.ReadJSON(&m); err != nil {
				readErr <- nil
				return
			}
			switch m.Type {
			case "answer":
				if m.From != ida {
					readErr <- fmt.Errorf("answer from %s", m.From)
					return
				}
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					readErr <- err
					return
				}
			case "candidate":
				if string(m.Candidate) == "null" {
					continue
				}
				var init webrtc.ICECandidateInit
				if err := json.Unmarshal(m.Candidate, &init); err != nil {
					readErr <- err
					return
				}
				if init.SDPMid == nil || init.UsernameFragment == nil || *init.UsernameFragment == "" {
					readErr <- fmt.Errorf("candidate without sdpMid or usernameFragment: %s", m.Candidate)
					return
				}
				if err := pc.AddICECandidate(init); err != nil {
					readErr <- err
					return
				}
			case "error":
				readErr <- fmt.Errorf("server error %s", m.Code)
				return
			}
		}
	}()
	fromRaw := wrap(t, recv(t, a.dcs, "a: OnDataChannel(raw)"))
	raw.waitOpen(t)
	exchange(t, raw, fromRaw, "raw")
	ws.Close()
	if err := recv(t, readErr, "raw reader's end"); err != nil {
		t.Fatal(err)
	}
	none(t, a.errs, "a: error")
}

// TestPacing: the Room keeps within the server's rate limit (here 20 per
// second, bursts of 10): a burst of messages waits instead of being
// refused as rate_limited.
func TestPacing(t *testing.T) {
	url := startServer(t, signaling.Config{Rate: 20, Burst: 10})
	a := join(t, url, "pacing", "a")
	b := join(t, url, "pacing", "b")
	recv(t, a.joins, "a: OnJoin(b)")
	const n = 30
	for i := range n {
		if err := a.room.Send(b.room.PeerID(), i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if m := recv(t, b.msgs, "b: OnMessage"); string(m.data) != fmt.Sprint(i) {
			t.Fatalf("message %d: %s", i, m.data)
		}
	}
	none(t, a.errs, "a: error")
}
