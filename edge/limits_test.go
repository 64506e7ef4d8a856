package edge_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// disconnectOf connects r and returns the Disconnect the node answers
// with (nil if it answers Connected).
func disconnectOf(t *testing.T, r *rawWS, token string) *protocols.Disconnect {
	t.Helper()
	r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion, Token: token}}})
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			t.Fatalf("no answer to Connect: %v", err)
		}
		var d *protocols.Disconnect
		connected := false
		_ = protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if err != nil {
				return err
			}
			if f.GetDisconnect() != nil {
				d = f.GetDisconnect()
			}
			if f.GetConnected() != nil {
				connected = true
			}
			return nil
		})
		if d != nil {
			return d
		}
		if connected {
			return nil
		}
	}
}

// TestConnectRatePacesAStorm: over the connect rate, sessions are told to
// come back later (3006), each at its own slot, so that they spread out;
// the node serves those it admitted.
func TestConnectRatePacesAStorm(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Limits = edge.Limits{ConnectRate: 20, ConnectBurst: 5} })
	var waits []time.Duration
	admitted := 0
	for range 25 {
		d := disconnectOf(t, n.rawWS(t, ""), "")
		if d == nil {
			admitted++
			continue
		}
		if d.Code != uint32(protocols.CodeTryLater) || !d.Reconnect || d.ReconnectAfterMs == 0 {
			t.Fatalf("refused with %+v, want 3006 with a retry-after", d)
		}
		waits = append(waits, time.Duration(d.ReconnectAfterMs)*time.Millisecond)
	}
	if admitted < 5 || len(waits) < 10 {
		t.Fatalf("%d admitted, %d refused; want the burst admitted and most of the rest refused", admitted, len(waits))
	}
	// Each refused one gets a later slot: 1/20 s apart, plus jitter.
	last := waits[len(waits)-1]
	if last < time.Duration(len(waits)-2)*50*time.Millisecond || last > 5*time.Second {
		t.Fatalf("retry-afters %v: the last should be about %d × 50 ms", waits, len(waits))
	}
	// A Go Conn told to wait comes back by itself.
	time.Sleep(2 * time.Second) // the slots above pass
	conn, err := client.Connect(ctxT(t), []string{n.wsURL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
}

// TestSessionsPerIPAndUser: the caps refuse one more with 3006 and a
// retry-after; closing one makes room.
func TestSessionsPerIPAndUser(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Limits = edge.Limits{SessionsPerIP: 3} })
	var open []*rawWS
	for range 3 {
		r := n.rawWS(t, "")
		if d := disconnectOf(t, r, ""); d != nil {
			t.Fatalf("refused: %+v", d)
		}
		open = append(open, r)
	}
	d := disconnectOf(t, n.rawWS(t, ""), "")
	if d == nil || d.Code != uint32(protocols.CodeTryLater) || d.ReconnectAfterMs < 5000 {
		t.Fatalf("the 4th session from one IP: %+v", d)
	}
	open[0].c.Close()
	waitFor(t, 5*time.Second, "room for one more", func() bool { return n.Sessions() == 2 })
	if d := disconnectOf(t, n.rawWS(t, ""), ""); d != nil {
		t.Fatalf("refused after one left: %+v", d)
	}

	v, err := auth.New(auth.Config{HMACSecrets: [][]byte{authSecret}, Audience: authAud, Issuer: authIss})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	un := startNode(t, func(c *edge.Config) { c.Auth = v; c.Limits = edge.Limits{SessionsPerUser: 2} })
	tok := mint(t, nil)
	for range 2 {
		if d := disconnectOf(t, un.rawWS(t, ""), tok); d != nil {
			t.Fatalf("refused: %+v", d)
		}
	}
	d = disconnectOf(t, un.rawWS(t, ""), tok)
	if d == nil || d.Code != uint32(protocols.CodeTryLater) {
		t.Fatalf("ada's 3rd session: %+v", d)
	}
	if d := disconnectOf(t, un.rawWS(t, ""), mint(t, jwt.MapClaims{"sub": "bob"})); d != nil {
		t.Fatalf("bob refused: %+v", d)
	}
}

// TestPublishRate: over its rate a session's publish gets error 111 and
// the session goes on; its rate refills.
func TestPublishRate(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Limits = edge.Limits{PublishRate: 5, PublishBurst: 5} })
	c := n.dial(t, protocols.WebSocket)
	other := n.dial(t, protocols.WebTransport)
	ctx := ctxT(t)
	limited := 0
	for range 20 {
		if _, err := c.Publish(ctx, "flood", []byte("x")); isRequestError(err, protocols.ErrCodeRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 publishes limited, want most of those over the burst of 5", limited)
	}
	// Others are not limited by this session's flood.
	for range 5 {
		if _, err := other.Publish(ctx, "flood", []byte("y")); err != nil {
			t.Fatalf("another session: %v", err)
		}
	}
	time.Sleep(400 * time.Millisecond) // two tokens back
	if _, err := c.Publish(ctx, "flood", []byte("z")); err != nil {
		t.Fatalf("after a pause: %v", err)
	}
	checkAlive(t, n, c)
}

// TestChannelPublishRate: a channel's rate holds for all its publishers
// together, sessions and API; another channel is not affected.
func TestChannelPublishRate(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.Limits = edge.Limits{ChannelPublishRate: 2, ChannelPublishBurst: 4} })
	a := n.dial(t, protocols.WebSocket)
	b := n.dial(t, protocols.WebTransport)
	ctx := ctxT(t)
	limited := 0
	for i := range 10 {
		c := []*client.Client{a, b}[i%2]
		if _, err := c.Publish(ctx, "hot", []byte("x")); isRequestError(err, protocols.ErrCodeRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 5 {
		t.Fatalf("%d of 10 publishes on one channel limited, want those over its burst of 4", limited)
	}
	if code, body := n.apiPublish(t, testAPIKey, `{"channel":"hot","data":"y"}`); code != 429 || body["error"] != "rate_limited" {
		t.Fatalf("API publish over the channel's rate: %d %v", code, body)
	}
	if _, err := a.Publish(ctx, "cold", []byte("z")); err != nil {
		t.Fatalf("another channel: %v", err)
	}
}
