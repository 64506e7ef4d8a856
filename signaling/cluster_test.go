package signaling_test

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/signaling"
)

// These tests run real mesh nodes (memberlist and TLS links on loopback),
// each with a signaling server, in one process.

// noChannels is the mesh.Local of a node that serves signaling only: the
// tests here publish nothing on channels.
type noChannels struct{}

func (noChannels) Sequence(string, string, []byte) (string, uint64, bool, error) {
	return "", 0, false, fmt.Errorf("no channels on this test node")
}
func (noChannels) Deliver(string, string, uint64, []byte)                          {}
func (noChannels) Hold(_ string, fn func(string, uint64, []protocols.Publication)) { fn("", 0, nil) }
func (noChannels) Registered(string, string, uint64, []protocols.Publication)      {}
func (noChannels) Channels() []string                                              { return nil }

type meshNode struct {
	name string
	cl   *mesh.Cluster
	*node
	killOnce sync.Once
}

var (
	caOnce sync.Once
	testCA *certs.CA
	caErr  error
)

func startMesh(t testing.TB, n int, cfg signaling.Config) []*meshNode {
	t.Helper()
	caOnce.Do(func() { testCA, caErr = certs.NewCA("signaling test CA", 0) })
	if caErr != nil {
		t.Fatal(caErr)
	}
	var nodes []*meshNode
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		certPEM, keyPEM, err := testCA.Issue(name, []string{"127.0.0.1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg, err := certs.MeshTLS(testCA.CertPEM(), certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{nodes[0].cl.Addr()}
		}
		cl, err := mesh.New(mesh.Config{
			Name: name, Region: "r1", Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0", Join: join, TLS: tlsCfg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, noChannels{})
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Cluster = cl
		mn := &meshNode{name: name, cl: cl, node: startServer(t, c)}
		cl.SetSignals(mn.srv)
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mn.kill(t) })
		nodes = append(nodes, mn)
	}
	waitFor(t, 20*time.Second, "mesh converged", func() bool {
		for _, mn := range nodes {
			if len(mn.cl.Members()) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// kill stops a node as a crash would look to the others: no leave.
func (mn *meshNode) kill(t testing.TB) {
	mn.killOnce.Do(func() {
		mn.cl.Kill()
		mn.stop(t)
	})
}

// roomOwnedBy finds a room name that owner owns.
func roomOwnedBy(t testing.TB, cl *mesh.Cluster, owner string) string {
	for i := range 10000 {
		room := fmt.Sprintf("room-%d", i)
		if cl.Owner("signal/"+room) == owner {
			return room
		}
	}
	t.Fatalf("no room owned by %s", owner)
	return ""
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestMeshRoom(t *testing.T) {
	nodes := startMesh(t, 3, signaling.Config{MaxRoomSize: 3})
	room := roomOwnedBy(t, nodes[0].cl, "n2") // owned by a node with no peer of it
	a := joinRoom(t, nodes[0].url, room)
	b := dial(t, nodes[1].url)
	jb := b.join(room)
	if !reflect.DeepEqual(peers(jb), []string{a.peer}) {
		t.Fatalf("b's peers %v", peers(jb))
	}
	if m := a.next("peer-joined"); m["peer"] != b.peer {
		t.Fatalf("a got %v", m)
	}
	c := dial(t, nodes[2].url)
	if got := peers(c.join(room)); !reflect.DeepEqual(got, []string{a.peer, b.peer}) {
		t.Fatalf("c's peers %v, want [a b] in join order", got)
	}
	a.next("peer-joined")
	b.next("peer-joined")

	// Across nodes, in order per pair.
	for i := range 150 {
		a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": i})
		c.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": -i})
	}
	wantA, wantC := 0, 0
	for range 300 {
		m := b.next("message")
		switch m["from"] {
		case a.peer:
			if m["data"] != float64(wantA) {
				t.Fatalf("from a: %v, want %d", m["data"], wantA)
			}
			wantA++
		case c.peer:
			if m["data"] != float64(-wantC) {
				t.Fatalf("from c: %v, want %d", m["data"], -wantC)
			}
			wantC++
		}
	}
	b.sendJSON(map[string]any{"type": "offer", "to": c.peer, "sdp": "v=0\r\n"})
	if m := c.next("offer"); m["from"] != b.peer {
		t.Fatalf("c got %v", m)
	}

	// The room size holds over the mesh.
	d := dial(t, nodes[0].url)
	d.sendJSON(map[string]any{"type": "join", "room": room})
	if m := d.next("error"); m["code"] != "room_full" {
		t.Fatalf("4th peer: %v", m)
	}

	// A leave on one node reaches the others.
	c.sendJSON(map[string]any{"type": "leave"})
	for _, p := range []*client{a, b} {
		if m := p.next("peer-left"); m["peer"] != c.peer {
			t.Fatalf("got %v", m)
		}
	}
	a.sendJSON(map[string]any{"type": "message", "to": c.peer, "data": 1, "id": 9})
	if m := a.next("error"); m["code"] != "unknown_peer" || m["id"] != float64(9) {
		t.Fatalf("a got %v", m)
	}
}

// A peer whose node dies is reported as left to the others; the room
// outlives its owner, which is rebuilt from the other nodes' peers.
func TestMeshNodeDies(t *testing.T) {
	nodes := startMesh(t, 3, signaling.Config{})
	room := roomOwnedBy(t, nodes[0].cl, "n2")
	a := joinRoom(t, nodes[0].url, room)
	b := joinRoom(t, nodes[1].url, room)
	c := joinRoom(t, nodes[2].url, room)
	for _, p := range []*client{a, b} {
		p.next("peer-joined", "peer-joined")
	}
	a.next("peer-joined")

	nodes[2].kill(t) // the owner, and c's node
	for _, p := range []*client{a, b} {
		if m := p.next("peer-left"); m["peer"] != c.peer {
			t.Fatalf("got %v", m)
		}
	}
	waitFor(t, 10*time.Second, "owner moved", func() bool {
		return nodes[0].cl.Owner("signal/"+room) != "n2" && nodes[1].cl.Owner("signal/"+room) != "n2"
	})
	// A newcomer sees both survivors, through the new owner.
	var e *client
	waitFor(t, 10*time.Second, "newcomer sees both", func() bool {
		if e != nil {
			e.ws.Close()
		}
		e = dial(t, nodes[1].url)
		j := e.join(room)
		return reflect.DeepEqual(sorted(peers(j)), sorted([]string{a.peer, b.peer}))
	})
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "after"})
	if m := b.next("message", "peer-joined", "peer-left"); m["data"] != "after" {
		t.Fatalf("b got %v", m)
	}
	b.sendJSON(map[string]any{"type": "leave"})
	if m := a.next("peer-left", "peer-joined"); m["peer"] != b.peer {
		t.Fatalf("a got %v", m)
	}
}

// A peer resumes on another node: same id, its messages follow it, and the
// others see no leave.
func TestMeshResumeElsewhere(t *testing.T) {
	nodes := startMesh(t, 3, signaling.Config{Grace: 5 * time.Second})
	room := roomOwnedBy(t, nodes[0].cl, "n1")
	a := joinRoom(t, nodes[0].url, room)
	b := joinRoom(t, nodes[2].url, room)
	a.next("peer-joined")
	b.ws.UnderlyingConn().Close()
	waitFor(t, 5*time.Second, "b away", func() bool { return nodes[2].srv.Stats().Away == 1 })
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "held"})

	b2 := dial(t, nodes[0].url)
	j := b2.join(room, "peer", b.peer, "resume", b.resume)
	if j["resumed"] != true || j["peer"] != b.peer || !reflect.DeepEqual(peers(j), []string{a.peer}) {
		t.Fatalf("resume elsewhere: %v", j)
	}
	if m := b2.next("message"); m["data"] != "held" {
		t.Fatalf("held message: %v", m)
	}
	waitFor(t, 5*time.Second, "old node let go", func() bool { return nodes[2].srv.Stats().Peers == 0 })
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "new home"})
	if m := b2.next("message"); m["data"] != "new home" {
		t.Fatalf("b2 got %v", m)
	}
	a.quiet(300 * time.Millisecond)
}
