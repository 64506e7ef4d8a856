// Command switchyard runs a Switchyard edge node. With no flags it starts a
// development node on loopback: TLS on 127.0.0.1:4433 (WebSocket and the
// API over TCP, WebTransport over UDP) with a generated, rotating
// certificate, and plain HTTP on 127.0.0.1:8080.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client/js"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/examples/chat/web"
	"github.com/switchyard/switchyard/metrics"
	"github.com/switchyard/switchyard/protocols"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchyard:", err)
		os.Exit(1)
	}
}

// run starts a node and blocks until ctx ends, then shuts it down; or runs
// a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "certs" {
		return runCerts(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "config" {
		return runConfigCmd(args[1:], stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.logLevel))
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if o.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	logger := slog.New(handler)
	verifier, err := newVerifier(o, logger)
	if err != nil {
		return err
	}
	if verifier != nil {
		defer verifier.Close()
	}
	apiKeys, err := newAPIKeys(o.apiKeys)
	if err != nil {
		return err
	}

	if o.apiKey == "" {
		o.apiKeyDefault = true
		o.apiKey = devAPIKey
		if !o.loopback() {
			var b [16]byte
			_, _ = rand.Read(b[:])
			o.apiKey = hex.EncodeToString(b[:])
		}
	}

	var store *certs.Store
	var acmeCerts *autocert.Manager
	if o.listen != "" && len(o.acmeDomains) > 0 {
		acmeCerts = acmeManager(o)
	} else if o.listen != "" {
		if o.cert != "" {
			store, err = certs.LoadFiles(o.cert, o.key, logger)
		} else {
			store, err = certs.NewDev(certs.DevConfig{Logger: logger})
		}
		if err != nil {
			return err
		}
	}

	if o.meshBind != "" && o.node == "" {
		o.node, _ = os.Hostname()
	}
	if o.region == "" {
		o.region = "local"
	}
	cluster, local, err := newCluster(o, logger)
	if err != nil {
		return err
	}
	var node *edge.Node
	drainAsked := make(chan struct{})
	var drainOnce sync.Once
	drain := func() { drainOnce.Do(func() { close(drainAsked) }) } // POST /api/drain: as SIGTERM
	var signalAuth func(context.Context, string, string) error
	if verifier != nil {
		signalAuth = edge.SignalAuthorizer(verifier)
	}
	sig, turnServer, err := newSignaling(o, cluster, func(r *http.Request) bool { return node.OriginAllowed(r) }, signalAuth, logger)
	if err != nil {
		return err
	}
	if turnServer != nil {
		defer turnServer.Close()
	}
	httpCap := o.httpConnsPerIP
	if httpCap == 0 {
		httpCap = -1 // 0 in the config: no cap (0 in edge.Config: its default)
	}
	cfg := edge.Config{
		Signal:            sig,
		Name:              o.node,
		Region:            o.region,
		Listen:            o.listen,
		HTTP:              o.http,
		APIKey:            o.apiKey,
		APIKeys:           apiKeys,
		Limits:            limitsOf(o),
		MaxSubscriptions:  o.maxSubscriptions,
		MaxHTTPConnsPerIP: httpCap,
		MetricsKey:        o.metricsKey,
		DrainWindow:       o.drainWindow,
		OnDrain:           drain,
		AllowedOrigins:    o.allowedOrigins,
		PublicURLs:        o.publicURLs,
		VolatileChannels:  o.volatile,
		PresenceChannels:  o.presence,
		History:           o.history,
		Replicas:          o.replicas,
		BatchUDPWrites:    o.batchUDP,
		Session: protocols.SessionConfig{
			MaxFrameSize: o.maxFrameSize,
			PingInterval: o.pingInterval,
			PongTimeout:  o.pongTimeout,
			Logger:       logger,
		},
		// The demo page is the chat example; the browser SDK is embedded.
		Extra:  map[string]http.Handler{"/": web.Handler(), "/switchyard.js": js.Handler(), "/switchyard.js.map": js.Handler(), "/switchyard.d.ts": js.Handler()},
		Logger: logger,
	}
	if store != nil {
		cfg.Certs = store
	}
	if acmeCerts != nil {
		cfg.Certs = acmeCerts
		cfg.ALPN = []string{acme.ALPNProto} // TLS-ALPN-01 challenges on the TLS listener
	}
	if verifier != nil {
		cfg.Auth = verifier
	}
	if cluster != nil {
		cfg.Cluster = cluster
		cfg.Nodes = nodesOf(cluster)
		cfg.MetricsCollectors = []prometheus.Collector{metrics.Mesh(cluster)}
	}
	node, err = edge.New(cfg)
	if err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		return err
	}
	if cluster != nil {
		local.node = node
		err := cluster.SetPublicURLs(node.PublicURLs())
		if err == nil {
			err = cluster.Start()
		}
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = node.Shutdown(sctx)
			return fmt.Errorf("mesh: %w", err)
		}
	}

	var bg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	if store != nil {
		bg.Go(func() { _ = store.Run(runCtx) })
	}
	turnURL := ""
	if turnServer != nil {
		turnURL = turnServer.URL()
	}
	printBanner(stdout, node, store, o, turnURL)
	if cluster != nil {
		fmt.Fprintf(stdout, "  mesh          node %s (region %s), gossip %s, links %s\n", cluster.Name(), o.region, cluster.Addr(), cluster.ForwardAddr())
	}

	select {
	case <-ctx.Done():
	case <-drainAsked:
		logger.Info("drain asked over the API")
	}
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	if cluster != nil {
		// Tell the cluster first, so channels move to other owners while
		// the clients reconnect elsewhere; leave once they are gone.
		cluster.SetDraining(true)
	}
	err = node.Shutdown(sctx)
	if cluster != nil {
		if cerr := cluster.Shutdown(sctx); err == nil {
			err = cerr
		}
	}
	scancel()
	cancel()
	bg.Wait()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func printBanner(w io.Writer, node *edge.Node, store *certs.Store, o options, turnURL string) {
	a := node.Addrs()
	fmt.Fprintln(w, "switchyard: node is up")
	if a.TLS != nil {
		fmt.Fprintf(w, "  WebSocket     wss://%s/ws\n", a.TLS)
		fmt.Fprintf(w, "  WebTransport  https://%s/wt\n", a.QUIC)
		fmt.Fprintf(w, "  Signaling     wss://%s/signal (WebRTC rooms)\n", a.TLS)
		fmt.Fprintf(w, "  API           https://%s/api/publish\n", a.TLS)
	}
	if a.HTTP != nil {
		fmt.Fprintf(w, "  WebSocket     ws://%s/ws (plain HTTP, for local browsers)\n", a.HTTP)
		if a.QUIC != nil {
			fmt.Fprintf(w, "  Demo chat     http://%s/?url=https://%s\n", a.HTTP, a.QUIC)
		} else {
			fmt.Fprintf(w, "  Demo chat     http://%s/?transports=websocket\n", a.HTTP)
		}
		fmt.Fprintf(w, "  Browser SDK   http://%s/switchyard.js\n", a.HTTP)
		fmt.Fprintf(w, "  Signaling     ws://%s/signal (WebRTC rooms)\n", a.HTTP)
		fmt.Fprintf(w, "  API           http://%s/api/publish\n", a.HTTP)
		fmt.Fprintf(w, "  Dashboard     http://%s/admin (the API key; metrics at /metrics)\n", a.HTTP)
		if a.TLS != nil {
			fmt.Fprintf(w, "  Cert hash     http://%s/certhash\n", a.HTTP)
		}
	}
	if len(o.volatile) > 0 {
		fmt.Fprintf(w, "  Volatile      %s (datagram channels; --volatile-channels)\n", strings.Join(o.volatile, ", "))
	}
	if len(o.presence) > 0 {
		fmt.Fprintf(w, "  Presence      %s (/api/presence, join/leave events; --presence-channels)\n", strings.Join(o.presence, ", "))
	}
	if len(o.history) > 0 {
		rules := make([]string, len(o.history))
		for i, r := range o.history {
			rules[i] = fmt.Sprintf("%s=%d", r.Channels, r.Size)
			if r.TTL > 0 {
				rules[i] += "/" + strings.TrimSuffix(strings.TrimSuffix(r.TTL.String(), "0s"), "0m")
			}
		}
		fmt.Fprintf(w, "  History       %s (recovery and /api/history; --history)\n", strings.Join(rules, ", "))
	}
	if turnURL != "" {
		fmt.Fprintf(w, "  TURN          %s (embedded; peers get credentials from /signal)\n", turnURL)
	}
	if store != nil {
		h := store.Hash()
		fmt.Fprintf(w, "  cert sha-256  %s (valid until %s)\n", h.Value, h.NotAfter.Format(time.RFC3339))
	}
	if o.apiKeyDefault {
		fmt.Fprintf(w, "  API key       %s (default; set --api-key)\n", o.apiKey)
	}
	if a.HTTP != nil {
		key := "$API_KEY" // a key the operator chose is not echoed
		if o.apiKeyDefault {
			key = o.apiKey
		}
		fmt.Fprintf(w, "try: curl -s -H 'X-API-Key: %s' -d '{\"channel\":\"news\",\"data\":\"hello\"}' http://%s/api/publish\n", key, a.HTTP)
	}
}
