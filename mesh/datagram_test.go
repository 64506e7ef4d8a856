package mesh

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/protocols"
)

// Volatile publications cross nodes as QUIC datagrams: the owner's
// forwards reach the interested nodes, another node's publications reach
// the owner, and a publication too large for a datagram takes the link.
func TestVolatileDatagrams(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 3, nodeOpts{})
	owner := nodes[0]
	for _, n := range nodes {
		if m := n.c.Members(); len(m) != 3 || m[0].DatagramAddr == "" {
			t.Fatalf("%s: members %+v", n.name, m)
		}
	}
	ch := channelOwnedBy(t, owner.c, owner.name, "game")
	nodes[1].register(ch)
	nodes[2].register(ch)

	const N = 100
	for i := 1; i <= N; i++ {
		owner.c.ForwardVolatile(ch, uint64(i), protocols.EncodeMessage(ch, "", uint64(i), []byte(fmt.Sprint(i))))
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // a 20 kHz sender, not one burst
		}
	}
	for _, n := range nodes[1:] {
		waitFor(t, 5*time.Second, n.name+" got the datagrams", func() bool { return n.l.count(ch) == N })
		if n.l.badFrame != 0 {
			t.Fatalf("%s: %d frames that do not match their sequence numbers", n.name, n.l.badFrame)
		}
	}
	if dropped, onLink := owner.c.dgStats(); dropped != 0 || onLink != 0 {
		t.Fatalf("dropped %d, %d on the link; want all as datagrams", dropped, onLink)
	}

	// Another node asks the owner to sequence, fire and forget.
	before := owner.l.count(ch)
	nodes[2].c.PublishVolatile(ch, []byte("from n3"))
	waitFor(t, 5*time.Second, "the owner sequenced n3's publication", func() bool { return owner.l.count(ch) == before+1 })
	if got := owner.l.received(ch); got[len(got)-1].data != "from n3" {
		t.Fatalf("owner sequenced %+v", got[len(got)-1])
	}

	// Too large for a datagram: on the link, and still delivered.
	big := strings.Repeat("x", 2000)
	owner.c.ForwardVolatile(ch, N+1, protocols.EncodeMessage(ch, "", N+1, []byte(big)))
	for _, n := range nodes[1:] {
		waitFor(t, 5*time.Second, n.name+" got the large one", func() bool { return n.l.count(ch) >= N+1 })
	}
	if _, onLink := owner.c.dgStats(); onLink != 2 {
		t.Fatalf("%d publications on the link, want the large one to both nodes", onLink)
	}
}

// The datagram socket takes only mesh members with a certificate of the
// mesh CA.
func TestDatagramSocketRefusesStrangers(t *testing.T) {
	tn := newTestNet()
	nodes := startCluster(t, tn, 2, nodeOpts{})
	addr := nodes[0].c.datagramAddr()
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("another CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]func() *quicTLS{
		"foreign CA": func() *quicTLS { return &quicTLS{meshTLS(t, other, "n2"), "n1"} },
		"no member":  func() *quicTLS { return &quicTLS{meshTLS(t, nil, "n9"), "n1"} },
	} {
		t.Run(name, func(t *testing.T) {
			q := cfg()
			tc := q.cfg.Clone()
			tc.ServerName, tc.NextProtos = q.server, []string{dgALPN}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, udp.String(), tc, &quic.Config{EnableDatagrams: true})
			if err != nil {
				return // refused in the handshake
			}
			defer conn.CloseWithError(0, "")
			// Accepted by TLS (a real mesh certificate) but not a member:
			// closed at once, and what it sends is never delivered.
			_ = conn.SendDatagram([]byte{dgDeliver, 1, 'x', 1, 0})
			select {
			case <-conn.Context().Done():
			case <-ctx.Done():
				t.Fatal("connection of a non-member left open")
			}
		})
	}
	if nodes[0].l.count("x") != 0 {
		t.Fatal("a stranger's datagram was delivered")
	}
}

type quicTLS struct {
	cfg    *tls.Config
	server string
}
