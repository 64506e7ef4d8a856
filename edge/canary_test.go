package edge_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
)

// canary is a well-behaved subscriber on a node under attack: check proves
// that a publication still reaches it promptly.
type canary struct {
	n   *testNode
	c   *client.Client
	sub *client.Subscription
	ch  string
	seq int
}

// newCanary connects a subscriber over transport to a channel of its own.
func newCanary(t *testing.T, n *testNode, transport string) *canary {
	t.Helper()
	return newCanaryOn(t, n, n.dial(t, transport), transport)
}

// newCanaryOn is newCanary with a client of the caller's (a token's).
func newCanaryOn(t *testing.T, n *testNode, c *client.Client, transport string) *canary {
	t.Helper()
	ch := fmt.Sprintf("canary-%s-%d", transport, time.Now().UnixNano())
	sub, err := c.Subscribe(ctxT(t), ch)
	if err != nil {
		t.Fatal(err)
	}
	return &canary{n: n, c: c, sub: sub, ch: ch}
}

// canaryWithin is how long a publication may take to reach the canary. It
// is a liveness bound on a shared, race-instrumented machine, not a speed
// target: a healthy node delivers in milliseconds.
const canaryWithin = 5 * time.Second

// check publishes through the HTTP API and fails unless the canary
// receives exactly that publication within canaryWithin.
func (c *canary) check(t *testing.T) {
	t.Helper()
	c.seq++
	want := fmt.Sprintf("canary-%d", c.seq)
	if code, body := c.n.apiPublish(t, testAPIKey, `{"channel":"`+c.ch+`","data":"`+want+`"}`); code != 200 {
		t.Fatalf("canary: api publish: %d %v", code, body)
	}
	select {
	case m, ok := <-c.sub.Messages():
		if !ok {
			t.Fatalf("canary: subscription ended: %v", c.c.Err())
		}
		if string(m.Data) != want {
			t.Fatalf("canary: got %q, want %q", m.Data, want)
		}
	case <-time.After(canaryWithin):
		t.Fatalf("canary: %q not received within %v", want, canaryWithin)
	}
}

// liveHeap is the test process's live heap after a collection; the node
// under test runs in this process.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
