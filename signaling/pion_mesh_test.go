package signaling_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchyard/switchyard/client/p2p"
	"github.com/switchyard/switchyard/signaling"
)

// pionPeer is a Go peer (client/p2p) on loopback, with what it saw.
type pionPeer struct {
	room   *p2p.Room
	msgs   chan string // data channel messages
	left   chan string // OnLeave
	errs   chan error  // OnError
	conns  chan string // OnConnection
	chans  chan *webrtc.DataChannel
	cancel context.CancelFunc
}

func joinPion(t *testing.T, url, room string) *pionPeer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &pionPeer{msgs: make(chan string, 64), left: make(chan string, 8), errs: make(chan error, 8),
		conns: make(chan string, 8), chans: make(chan *webrtc.DataChannel, 8), cancel: cancel}
	take := func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { p.msgs <- string(m.Data) })
		p.chans <- dc
	}
	r, err := p2p.Join(ctx, url, room, p2p.Options{
		API:        loopbackAPI(),
		ICEServers: []webrtc.ICEServer{},
		OnConnection: func(id string, pc *webrtc.PeerConnection) {
			p.conns <- id
			pc.OnDataChannel(take)
		},
		OnLeave: func(id string) { p.left <- id },
		OnError: func(err error) { p.errs <- err },
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p.room = r
	t.Cleanup(func() {
		_ = r.Leave()
		cancel()
		<-r.Done()
	})
	return p
}

// open makes a data channel to id whose messages land in p.msgs.
func (p *pionPeer) open(t *testing.T, id, label string) *webrtc.DataChannel {
	t.Helper()
	waitFor(t, 10*time.Second, "peer "+id+" known", func() bool { return slices.Contains(p.room.Peers(), id) })
	pc, err := p.room.Peer(id)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := pc.CreateDataChannel(label, nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnMessage(func(m webrtc.DataChannelMessage) { p.msgs <- string(m.Data) })
	return dc
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20 s", what)
		var zero T
		return zero
	}
}

func sendWhenOpen(t *testing.T, dc *webrtc.DataChannel, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for dc.ReadyState() != webrtc.DataChannelStateOpen {
		if time.Now().After(deadline) {
			t.Fatalf("channel %s not open within 20 s (%s)", dc.Label(), dc.ReadyState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := dc.SendText(text); err != nil {
		t.Fatal(err)
	}
}

// Two pion peers, each signaling through a different node of a 2-node
// mesh, open a data channel and talk; both offering at once resolves; a
// message to an unknown peer gets its error; when one peer's node is
// killed, the other hears that it left.
func TestPionPeersAcrossMesh(t *testing.T) {
	nodes := startMesh(t, 2, signaling.Config{})
	room := roomOwnedBy(t, nodes[0].cl, "n1")
	a := joinPion(t, nodes[0].url, room)
	b := joinPion(t, nodes[1].url, room)
	idA, idB := a.room.PeerID(), b.room.PeerID()

	dc := a.open(t, idB, "chat")
	if got := recv(t, b.conns, "connection at b"); got != idA {
		t.Fatalf("b's connection from %q, want %q", got, idA)
	}
	sendWhenOpen(t, dc, "hello from a")
	if m := recv(t, b.msgs, "message at b"); m != "hello from a" {
		t.Fatal(m)
	}
	back := recv(t, b.chans, "data channel at b")
	sendWhenOpen(t, back, "hello from b")
	if m := recv(t, a.msgs, "message at a"); m != "hello from b" {
		t.Fatal(m)
	}

	// Unknown target.
	if err := a.room.Send("nobody-is-here", 1); err != nil {
		t.Fatal(err)
	}
	var pe *p2p.Error
	if err := recv(t, a.errs, "error at a"); !errors.As(err, &pe) || pe.Code != "unknown_peer" {
		t.Fatalf("a got %v", err)
	}

	// Glare: two more peers, one on each node, offer to each other at once.
	c := joinPion(t, nodes[0].url, room)
	d := joinPion(t, nodes[1].url, room)
	idC, idD := c.room.PeerID(), d.room.PeerID()
	waitFor(t, 10*time.Second, "c and d know each other", func() bool {
		return slices.Contains(c.room.Peers(), idD) && slices.Contains(d.room.Peers(), idC)
	})
	dcC, dcD := c.open(t, idD, "from-c"), d.open(t, idC, "from-d")
	// The polite side's connection may be replaced (pion cannot roll back):
	// then its own channel is gone and the other side's channel carries both
	// ways. Either way, each side reaches the other.
	polite, politeDC, impolite, impoliteDC := c, dcC, d, dcD
	if idD < idC {
		polite, politeDC, impolite, impoliteDC = d, dcD, c, dcC
	}
	sendWhenOpen(t, impoliteDC, "from the impolite side")
	if m := recv(t, polite.msgs, "message at the polite side"); m != "from the impolite side" {
		t.Fatal(m)
	}
	reply := politeDC
	if politeDC.ReadyState() != webrtc.DataChannelStateOpen {
		reply = recv(t, polite.chans, "the impolite side's channel at the polite side")
	}
	sendWhenOpen(t, reply, "from the polite side")
	if m := recv(t, impolite.msgs, "message at the impolite side"); m != "from the polite side" {
		t.Fatal(m)
	}

	// b's node dies: a hears that b left.
	nodes[1].kill(t)
	for {
		if id := recv(t, a.left, "b's leave at a"); id == idB {
			break
		}
	}
}
