package edge_test

import (
	"errors"
	"testing"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// The node's own origins are its listen addresses and its configured
// public URLs, never what a request's Host header claims.
func TestOwnOriginsComeFromConfig(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.AllowedOrigins = nil
		c.PublicURLs = []string{"https://rt.example.com", "ws://plain.example.com:8080"}
	})
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"https://rt.example.com", true},
		{"https://RT.example.com:443", true},
		{"http://plain.example.com:8080", true},
		{n.http, true},
		{"http://rt.example.com", false},
		{"https://rt.example.com:8443", false},
		{"https://evil.example", false},
	} {
		for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
			t.Run(tr+"/"+c.origin, func(t *testing.T) {
				url := n.wtURL
				if tr == protocols.WebSocket {
					url = n.wsURL
				}
				cl, err := client.Dial(ctxT(t), url, client.Options{Transport: tr, CertHash: n.hash, Origin: c.origin})
				if c.ok {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					cl.Close()
					return
				}
				if err == nil {
					cl.Close()
					t.Fatal("accepted")
				}
				var ce *protocols.CloseError
				if !errors.As(err, &ce) || ce.Code != protocols.CodeOriginNotAllowed {
					t.Fatalf("refused with %v, want %d", err, protocols.CodeOriginNotAllowed)
				}
			})
		}
	}
	urls := n.PublicURLs()
	if urls["wt"] != "https://rt.example.com/wt" || urls["wss"] != "wss://rt.example.com/ws" || urls["ws"] != "ws://plain.example.com:8080/ws" {
		t.Fatalf("advertised %v", urls)
	}
}

func TestPublicURLsAreChecked(t *testing.T) {
	for _, u := range []string{"ftp://x.example", "rt.example.com", "https://", "https://rt.example.com/app"} {
		if _, err := edge.New(edge.Config{HTTP: "127.0.0.1:0", PublicURLs: []string{u}}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestVolatilePatternsAreChecked(t *testing.T) {
	for _, p := range []string{"game*x", "**", "bad name*", ""} {
		if _, err := edge.New(edge.Config{HTTP: "127.0.0.1:0", VolatileChannels: []string{p}}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	for _, p := range []string{"*", "game:*", "game:", "fx"} {
		if _, err := edge.New(edge.Config{HTTP: "127.0.0.1:0", VolatileChannels: []string{p}}); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
}
