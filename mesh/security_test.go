package mesh

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/certs"
)

// TestGossipEncryption: with a key, gossip is encrypted (no node name in
// clear on the wire) and a node with another key cannot join.
func TestGossipEncryption(t *testing.T) {
	// Pings name their source and target in msgpack; long names cannot
	// turn up in ciphertext by chance.
	names := []string{"gossip-secret-node-1", "gossip-secret-node-2", "gossip-secret-node-3"}
	marker := []byte(names[0])
	tn := newTestNet()
	nodes := startNamed(t, tn, names, nodeOpts{key: testKey, setup: func(n *testNode) { n.tr.plain = marker }})
	nodes[0].c.Register("secret-room")
	waitFor(t, 5*time.Second, "interest everywhere", interestedEverywhere(nodes, "secret-room", names[0], true))
	for _, n := range nodes {
		if n.tr.packets.Load() == 0 {
			t.Fatalf("%s sent no packets", n.name)
		}
		if n.tr.sawText.Load() {
			t.Fatalf("%s sent a packet with a node name in clear", n.name)
		}
	}

	wrong := []byte("fedcba9876543210fedcba9876543210")
	intruder := startNode(t, tn, "intruder", nodeOpts{key: wrong, seeds: []string{nodes[0].c.Addr()}})
	holds(t, 1500*time.Millisecond, "the intruder stays out", func() bool {
		if len(intruder.c.Members()) != 1 {
			return false
		}
		for _, n := range nodes {
			if slices.Contains(memberNames(n.c), "intruder") {
				return false
			}
		}
		return true
	})
	if !strings.Contains(intruder.logs.String(), "join seeds failed") {
		t.Fatalf("the intruder did not log its failed join:\n%s", intruder.logs.tail(20))
	}

	// Without a key, gossip is in clear (the check above means something).
	plainNet := newTestNet()
	plain := startNamed(t, plainNet, names[:2], nodeOpts{setup: func(n *testNode) { n.tr.plain = marker }})
	waitFor(t, 5*time.Second, "a clear-text packet", func() bool { return plain[1].tr.sawText.Load() })
}

// TestLinkForeignCA: a node whose certificate comes from another CA joins
// memberlist (same gossip key) but can open no link, either way.
func TestLinkForeignCA(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 2, nodeOpts{key: testKey, timeout: time.Second})
	otherCA, err := certs.NewCA("other CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	x := startNode(t, tn, "x", nodeOpts{key: testKey, timeout: time.Second, seeds: []string{nodes[0].c.Addr()}, tls: meshTLS(t, otherCA, "x")})
	waitConverged(t, append(slices.Clone(nodes), x), 5*time.Second)

	ch := channelOwnedBy(t, x.c, "n1", "foreign")
	_, _, err = x.c.Publish(context.Background(), ch, []byte("x"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("publish from the foreign node: %v, want ErrTimeout", err)
	}
	waitFor(t, 5*time.Second, "both sides reject the foreign links", func() bool {
		return nodes[0].c.stats.rejected.Load() > 0 && x.c.stats.rejected.Load() > 0
	})
	if !strings.Contains(nodes[0].logs.String(), "rejected inbound link") {
		t.Fatal("n1 did not log the rejection")
	}
	// Forward never reaches x, even with interest.
	x.c.Register(ch)
	waitFor(t, 5*time.Second, "x's interest reaches n1", func() bool { return slices.Contains(nodes[0].c.interested(ch), "x") })
	nodes[0].c.Publish(context.Background(), ch, []byte("y"))
	holds(t, 500*time.Millisecond, "x receives nothing", func() bool { return x.l.count(ch) == 0 })
}

// TestLinkNameChecks: the acceptor checks the hello against the client
// certificate and the member list.
func TestLinkNameChecks(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 2, nodeOpts{})
	target := nodes[0].c.ForwardAddr()

	try := func(certName, helloName string) (byte, error) {
		cfg := meshTLS(t, nil, certName)
		cfg.ServerName = "n1"
		d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 2 * time.Second}}
		conn, err := d.DialContext(context.Background(), "tcp", target)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(helloMsg(helloName).hdr); err != nil {
			return 0, err
		}
		var b [1]byte
		_, err = io.ReadFull(bufio.NewReader(conn), b[:])
		return b[0], err
	}
	if ack, err := try("n2", "n2"); err != nil || ack != helloAck {
		t.Fatalf("a member with its own certificate: ack %#x, %v", ack, err)
	}
	if ack, err := try("mallory", "mallory"); err != nil || ack != helloNotMember {
		t.Fatalf("a stranger with a valid certificate: ack %#x, %v; want a not-member refusal", ack, err)
	}
	if _, err := try("mallory", "n2"); err == nil {
		t.Fatal("a certificate for mallory passed as n2")
	}
	if _, err := try("n2", "n1"); err == nil {
		t.Fatal("a peer passed as the acceptor itself")
	}
	if !strings.Contains(nodes[0].logs.String(), "is not named by its certificate") {
		t.Fatal("the name mismatch was not logged")
	}
}
