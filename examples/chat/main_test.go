package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

// TestRunServesTheChat starts the example as `go run ./examples/chat`
// would (on free ports), fetches the page and the SDK it imports, and
// checks that the page's room keeps presence (its "Online" list). The page
// itself is driven in Chromium by client/js's browser tests.
func TestRunServesTheChat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", "127.0.0.1:0", pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`open (http://\S+?)/\?url=`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no URL in %q", line)
	}
	for path, want := range map[string]string{"/": "Switchyard chat", "/switchyard.js": "export"} {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d, no %q", path, resp.StatusCode, want)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := client.Dial(dctx, "ws"+strings.TrimPrefix(m[1], "http")+"/ws", client.Options{User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(dctx, "chat"); err != nil {
		t.Fatal(err)
	}
	p, err := c.Presence(dctx, "chat", false)
	if err != nil || p.Clients != 1 || len(p.Members) != 1 || p.Members[0].User != "ada" {
		t.Fatalf("presence of chat: %+v, %v", p, err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}
