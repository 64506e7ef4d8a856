package main

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/edge"
)

// TestExampleAgainstANode runs the example against a real node on loopback,
// over each transport and auto.
func TestExampleAgainstANode(t *testing.T) {
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := edge.New(edge.Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Certs: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}()
	a := n.Addrs()
	for _, tr := range []string{"auto", "webtransport", "websocket"} {
		if err := run("https://"+a.QUIC.String(), "http://"+a.HTTP.String()+"/certhash", tr, "example", 3); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
	}
}
