// Command chat is a browser chat on a Switchyard node: it starts a node
// with the chat page at "/" and the browser SDK at /switchyard.js, the
// same wiring the switchyard binary uses, and prints the page's URL.
//
//	go run ./examples/chat
//	open http://127.0.0.1:8080/ in two browser windows
//
// Each page shows which transport it is on (WebTransport, or WebSocket
// when QUIC is blocked) and who is online in its room (presence, kept on
// "chat" and "chat:*" as on the dev node). Query parameters: room, name,
// transports ("websocket" forces WebSocket), url, ws.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client/js"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/examples/chat/web"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4433", "TLS address (TCP and UDP)")
	plain := flag.String("http", "127.0.0.1:8080", "plain-HTTP address serving the page")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *plain, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, plain string, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := certs.NewDev(certs.DevConfig{Logger: logger})
	if err != nil {
		return err
	}
	node, err := edge.New(edge.Config{
		Listen: listen,
		HTTP:   plain,
		Certs:  store,
		// The page's "Online" list: rooms "chat" and "chat:*" keep presence.
		PresenceChannels: []string{"chat", "chat:*"},
		Extra: map[string]http.Handler{
			"/":                  web.Handler(),
			"/switchyard.js":     js.Handler(),
			"/switchyard.js.map": js.Handler(),
		},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = store.Run(ctx) })
	a := node.Addrs()
	fmt.Fprintf(out, "chat: open http://%s/?url=https://%s in two browser windows (Ctrl-C to stop)\n", a.HTTP, a.QUIC)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return node.Shutdown(sctx)
}
