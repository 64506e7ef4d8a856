// Command pubsub connects to a Switchyard node with the Go SDK, subscribes
// to a channel, publishes a few messages and prints what comes back.
//
// Start a node (go run ./cmd/switchyard) and then:
//
//	go run ./examples/pubsub                       # auto: WebTransport, WebSocket fallback
//	go run ./examples/pubsub -transport websocket
//	go run ./examples/pubsub -n 0                  # only listen, until Ctrl-C
//
// The dev node's certificate is self-signed; the example fetches its hash
// from http://127.0.0.1:8080/certhash and pins it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/switchyard/switchyard/client"
)

func main() {
	url := flag.String("url", "https://127.0.0.1:4433", "node URL (https:// for WebTransport with WebSocket fallback, ws:// for WebSocket only)")
	certhash := flag.String("certhash", "http://127.0.0.1:8080/certhash", "where to fetch the node's dev certificate hash: its plain-HTTP /certhash (empty: trust the system roots; not needed for ws:// URLs)")
	transport := flag.String("transport", "auto", "auto, webtransport or websocket")
	channel := flag.String("channel", "news", "channel to use")
	count := flag.Int("n", 3, "messages to publish (0: only print what arrives, until interrupted)")
	flag.Parse()
	if err := run(*url, *certhash, *transport, *channel, *count); err != nil {
		log.Fatal(err)
	}
}

func run(url, certhash, transport, channel string, count int) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if count > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, 30*time.Second)
		defer stop()
	}

	opts := client.Options{Transport: transport}
	if certhash != "" && !strings.HasPrefix(url, "ws://") {
		hash, err := fetchHash(ctx, certhash)
		if err != nil {
			return fmt.Errorf("fetch cert hash (is a dev node running?): %w", err)
		}
		opts.CertHash = hash
	}
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("connected over %s, session %s; channel %q\n", c.Transport(), c.SessionID(), channel)

	sub, err := c.Subscribe(ctx, channel)
	if err != nil {
		return err
	}
	for i := range count {
		pos, err := c.Publish(ctx, channel, []byte(fmt.Sprintf("hello #%d from %s", i+1, hostname())))
		if err != nil {
			return err
		}
		fmt.Printf("published at offset %d\n", pos.Offset)
	}
	for i := 0; count == 0 || i < count; i++ {
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				return fmt.Errorf("connection ended: %v (this example does not reconnect)", c.Err())
			}
			fmt.Printf("received %q (epoch %s, offset %d)\n", m.Data, m.Epoch, m.Offset)
		case <-c.Done():
			return fmt.Errorf("connection ended: %v", c.Err())
		case <-ctx.Done():
			if count == 0 {
				return nil // interrupted
			}
			return ctx.Err()
		}
	}
	return nil
}

func fetchHash(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct{ Value string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", err
	}
	return h.Value, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
