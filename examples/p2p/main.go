// Command p2p is a peer-to-peer chat over WebRTC data channels, with
// Switchyard's signaling: it starts two nodes of one mesh, each serving
// the chat page and /signal, and a Go peer (pion/webrtc) in the room that
// echoes what it is told, then prints the pages' URLs.
//
//	go run ./examples/p2p             # then open both printed URLs
//	go run ./examples/p2p -bot=false -http 127.0.0.1:8080
//
// Two tabs on the two URLs join the same room through different nodes:
// their offers, answers and ICE candidates cross the mesh, and then their
// messages go straight from one browser to the other. Each page shows the
// connection state and the selected candidate pair of each peer.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client/js"
	"github.com/switchyard/switchyard/client/p2p"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/examples/p2p/web"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/signaling"
)

func main() {
	addrs := flag.String("http", "127.0.0.1:8080,127.0.0.1:8081", "comma-separated plain-HTTP `addresses`, one node each (one mesh)")
	room := flag.String("room", "demo", "the `room` the bot joins and the printed URLs open")
	bot := flag.Bool("bot", true, "run a Go peer (pion) in the room that echoes messages")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(*addrs, ","), *room, *bot, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// node is one Switchyard node of the example.
type node struct {
	edge *edge.Node
	mesh *mesh.Cluster
	sig  *signaling.Server
}

// proxy hands the mesh's calls to the node, built after the mesh.
type proxy struct{ n *edge.Node }

func (p *proxy) Sequence(ch, key string, data []byte) (string, uint64, bool, error) {
	return p.n.Sequence(ch, key, data)
}
func (p *proxy) Deliver(ch, epoch string, offset uint64, frame []byte) {
	p.n.Deliver(ch, epoch, offset, frame)
}
func (p *proxy) Hold(ch string, fn func(string, uint64, []protocols.Publication)) { p.n.Hold(ch, fn) }
func (p *proxy) Registered(ch, epoch string, offset uint64, h []protocols.Publication) {
	p.n.Registered(ch, epoch, offset, h)
}
func (p *proxy) Channels() []string { return p.n.Channels() }

func run(ctx context.Context, addrs []string, room string, bot bool, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ca, err := certs.NewCA("switchyard p2p example", 0)
	if err != nil {
		return err
	}
	key := make([]byte, 32) // gossip encryption, shared by this process's nodes
	if _, err := rand.Read(key); err != nil {
		return err
	}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.edge.Shutdown(sctx)
			_ = n.mesh.Shutdown(sctx)
			cancel()
		}
	}()
	for i, addr := range addrs {
		n, err := startNode(fmt.Sprintf("node-%d", i+1), addr, ca, key, nodes, logger)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	var pages []string
	for _, n := range nodes {
		pages = append(pages, fmt.Sprintf("http://%s/?room=%s", n.edge.Addrs().HTTP, room))
	}
	fmt.Fprintf(out, "p2p: open %s (each page signals through its own node of one mesh)\n", strings.Join(pages, " and "))

	var wg sync.WaitGroup
	defer wg.Wait()
	if bot {
		signalURL := fmt.Sprintf("ws://%s/signal", nodes[0].edge.Addrs().HTTP)
		wg.Go(func() {
			if err := runBot(ctx, signalURL, room, out); err != nil && ctx.Err() == nil {
				logger.Warn("bot stopped", "err", err)
			}
		})
	}
	<-ctx.Done()
	return nil
}

func startNode(name, addr string, ca *certs.CA, key []byte, others []*node, logger *slog.Logger) (*node, error) {
	certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := certs.MeshTLS(ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	var join []string
	if len(others) > 0 {
		join = []string{others[0].mesh.Addr()}
	}
	px := &proxy{}
	cl, err := mesh.New(mesh.Config{
		Name: name, Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0", Join: join, TLS: tlsCfg, Key: key, Logger: logger,
	}, px)
	if err != nil {
		return nil, err
	}
	n := &node{mesh: cl}
	n.sig, err = signaling.New(signaling.Config{
		Cluster:     cl,
		CheckOrigin: func(r *http.Request) bool { return n.edge.OriginAllowed(r) },
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	cl.SetSignals(n.sig)
	n.edge, err = edge.New(edge.Config{
		Name:    name,
		HTTP:    addr,
		Cluster: cl,
		Signal:  n.sig,
		Extra: map[string]http.Handler{
			"/":                  web.Handler(),
			"/switchyard.js":     js.Handler(),
			"/switchyard.js.map": js.Handler(),
		},
		Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	px.n = n.edge
	if err := n.edge.Start(); err != nil {
		return nil, err
	}
	if err := cl.Start(); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.edge.Shutdown(sctx)
		return nil, err
	}
	return n, nil
}

// runBot is a Go peer in the room: every page that connects to it gets its
// messages back, prefixed with "echo: ".
func runBot(ctx context.Context, signalURL, room string, out io.Writer) error {
	r, err := p2p.Join(ctx, signalURL, room, p2p.Options{
		OnConnection: func(id string, pc *webrtc.PeerConnection) {
			pc.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(m webrtc.DataChannelMessage) {
					_ = dc.SendText("echo: " + string(m.Data))
				})
			})
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "p2p: bot %s is in room %q and echoes\n", r.PeerID(), room)
	select {
	case <-ctx.Done():
		return r.Leave()
	case <-r.Done():
		return r.Err()
	}
}
