package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Subscribers of a loopback target come from several source addresses.
func TestDialerFromSpreadsSources(t *testing.T) {
	seen := make(chan string, 4)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
		if c, err := up.Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	url := "ws" + srv.URL[len("http"):]
	for i, want := range map[int]string{0: "127.0.0.2", 3: "127.0.0.5", sourceAddrs: "127.0.0.2"} {
		c, _, err := dialerFrom(dialer, url, i).DialContext(context.Background(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if got := <-seen; got != want {
			t.Fatalf("subscriber %d came from %s, want %s", i, got, want)
		}
	}
	if busy, err := cpuBusy(100 * time.Millisecond); err != nil || busy < 0 || busy > 1 {
		t.Fatalf("cpuBusy: %v, %v", busy, err)
	}
}
