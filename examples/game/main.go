// Command game is a tiny multiplayer arena over datagrams: it starts a
// Switchyard node whose "game:*" channels are volatile, serves a page where
// each player moves a dot, starts a few Go bots that circle around, and
// prints the page's URL.
//
//	go run ./examples/game            # then open the printed URL in a few windows
//	go run ./examples/game -bots 10
//
// Positions travel 30 times a second as datagrams on the channel
// game:arena: QUIC datagrams on WebTransport; on WebSocket (add
// &transports=websocket to the URL) the same publications come as
// messages, where a newer one replaces one not yet sent. A position that
// arrives late is worth nothing, so nothing is resent.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/client/js"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/examples/game/web"
)

// arena is the channel every player publishes its position on.
const arena = "game:arena"

// hz is how often a player sends its position.
const hz = 30

// position is what a player publishes: an id, a colour and where it is, in
// arena units (0 to 1 on each axis).
type position struct {
	ID    string  `json:"id"`
	Color string  `json:"c"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:4433", "TLS address (TCP and UDP)")
	plain := flag.String("http", "127.0.0.1:8080", "plain-HTTP address serving the page")
	bots := flag.Int("bots", 3, "how many bots to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *plain, *bots, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, plain string, bots int, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := certs.NewDev(certs.DevConfig{Logger: logger})
	if err != nil {
		return err
	}
	node, err := edge.New(edge.Config{
		Listen:           listen,
		HTTP:             plain,
		Certs:            store,
		VolatileChannels: []string{"game:*"},
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
	for i := range bots {
		wg.Go(func() {
			if err := runBot(ctx, "https://"+a.QUIC.String(), store.Hash().Value, i); err != nil && ctx.Err() == nil {
				logger.Warn("bot stopped", "bot", i, "err", err)
			}
		})
	}
	fmt.Fprintf(out, "game: open http://%s/?url=https://%s in a few browser windows; %d bots are playing (Ctrl-C to stop)\n", a.HTTP, a.QUIC, bots)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return node.Shutdown(sctx)
}

// runBot connects one bot, which circles around the arena's centre and
// publishes its position hz times a second until ctx ends.
func runBot(ctx context.Context, url, certHash string, n int) error {
	c, err := client.Dial(ctx, url, client.Options{CertHash: certHash})
	if err != nil {
		return err
	}
	defer c.Close()
	// Sending needs a subscription (its alias names the channel); a bot
	// ignores what others send.
	sub, err := c.Subscribe(ctx, arena)
	if err != nil {
		return err
	}
	go func() {
		for range sub.Messages() {
		}
	}()
	p := position{ID: fmt.Sprintf("bot-%d", n), Color: botColors[n%len(botColors)]}
	radius := 0.15 + 0.1*float64(n%3)
	phase := float64(n) * 2 * math.Pi / 5
	tick := time.NewTicker(time.Second / hz)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return c.Err()
		case now := <-tick.C:
			angle := phase + now.Sub(start).Seconds()*(0.8+0.2*float64(n%4))
			p.X, p.Y = 0.5+radius*math.Cos(angle), 0.5+radius*math.Sin(angle)
			b, _ := json.Marshal(p)
			if err := c.SendDatagram(arena, b); err != nil {
				return err
			}
		}
	}
}

var botColors = []string{"#e4572e", "#17bebb", "#ffc914", "#76b041", "#8e44ad", "#2e86de"}
