package edge_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// apiPresence reads GET /api/presence.
func (n *testNode) apiPresence(t *testing.T, query string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.http+"/api/presence?"+query, nil)
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("presence %s: %d %s", query, resp.StatusCode, raw)
	}
	return resp.StatusCode, body
}

func nextEvent(t *testing.T, sub *client.Subscription) client.PresenceEvent {
	t.Helper()
	select {
	case e := <-sub.Presence():
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no presence event")
	}
	return client.PresenceEvent{}
}

// Presence on one node, over both transports: members with their user and
// info, join and leave events to the subscriptions that asked, the
// presence request and GET /api/presence, leave on unsubscribe and on a
// closed session; bad requests get clear errors.
func TestPresence(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.PresenceChannels = []string{"room:*"} })
	ctx := ctxT(t)
	alice := n.dial(t, protocols.WebTransport, func(o *client.Options) { o.User, o.Info = "alice", []byte(`{"color":"red"}`) })
	watch, err := alice.Subscribe(ctx, "room:1", client.WithPresence())
	if err != nil {
		t.Fatal(err)
	}
	bob := n.dial(t, protocols.WebSocket, func(o *client.Options) { o.User = "bob" })
	if _, err := bob.Subscribe(ctx, "room:1"); err != nil {
		t.Fatal(err)
	}
	e := nextEvent(t, watch)
	if !e.Join || e.Member.User != "bob" || e.Member.Client != bob.SessionID() {
		t.Fatalf("event %+v, want bob's join", e)
	}
	p, err := bob.Presence(ctx, "room:1", false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Clients != 2 || p.Users != 2 || len(p.Members) != 2 {
		t.Fatalf("presence %+v", p)
	}
	for _, m := range p.Members {
		if m.Client == alice.SessionID() && (m.User != "alice" || string(m.Info) != `{"color":"red"}`) {
			t.Fatalf("alice is %+v", m)
		}
	}
	// A second session of the same user: two clients, two users still.
	bob2 := n.dial(t, protocols.WebSocket, func(o *client.Options) { o.User = "bob" })
	bob2Sub, err := bob2.Subscribe(ctx, "room:1")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, watch)
	if p, err := alice.Presence(ctx, "room:1", true); err != nil || p.Clients != 3 || p.Users != 2 || len(p.Members) != 0 {
		t.Fatalf("counts %+v %v", p, err)
	}
	code, body := n.apiPresence(t, "channel=room:1")
	if code != 200 || body["clients"] != 3.0 || body["users"] != 2.0 || len(body["members"].([]any)) != 3 {
		t.Fatalf("api: %d %v", code, body)
	}
	// Leaves: an unsubscribe, a closed session.
	bob.Close()
	if e := nextEvent(t, watch); e.Join || e.Member.Client != bob.SessionID() {
		t.Fatalf("event %+v, want bob's leave", e)
	}
	if err := bob2Sub.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, watch); e.Join || e.Member.Client != bob2.SessionID() {
		t.Fatalf("event %+v, want bob2's leave", e)
	}
	if _, body := n.apiPresence(t, "channel=room:1&limit=0"); body["clients"] != 1.0 || len(body["members"].([]any)) != 0 {
		t.Fatalf("after the leaves: %v", body)
	}

	// Bad requests.
	var re *protocols.RequestError
	if _, err := alice.Presence(ctx, "room:9", false); !errors.As(err, &re) || re.Code != protocols.ErrCodeNotSubscribed {
		t.Fatalf("presence without a subscription: %v", err)
	}
	if _, err := alice.Subscribe(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Presence(ctx, "lobby", false); !errors.As(err, &re) || re.Code != protocols.ErrCodeBadRequest {
		t.Fatalf("presence of a channel without: %v", err)
	}
	for query, want := range map[string]string{"channel=lobby": "no_presence", "channel=": "invalid_channel", "channel=room:1&limit=-1": "bad_limit",
		"channel=room:1&limit=x": "bad_limit"} {
		if code, body := n.apiPresence(t, query); code != 400 || body["error"] != want {
			t.Fatalf("%s: %d %v, want 400 %s", query, code, body, want)
		}
	}
	_, err = client.Dial(ctx, n.wsURL, client.Options{User: strings.Repeat("u", edge.MaxPresenceUser+1)})
	if ce := new(protocols.CloseError); !errors.As(err, &ce) || ce.Code != protocols.CodeBadFrame {
		t.Fatalf("a user name over the limit: %v", err)
	}
}

// A channel over the event limit sends no join or leave events, and its
// counts stay right.
func TestPresenceEventLimit(t *testing.T) {
	n := startNode(t, func(c *edge.Config) { c.PresenceChannels = []string{"big"}; c.PresenceEventLimit = 3 })
	ctx := ctxT(t)
	watcher := n.dial(t, protocols.WebSocket)
	watch, err := watcher.Subscribe(ctx, "big", client.WithPresence())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c := n.dial(t, protocols.WebSocket, func(o *client.Options) { o.User = fmt.Sprint("u", i) })
		if _, err := c.Subscribe(ctx, "big"); err != nil {
			t.Fatal(err)
		}
	}
	joins := 0
	for done := false; !done; {
		select {
		case <-watch.Presence():
			joins++
		case <-time.After(300 * time.Millisecond):
			done = true
		}
	}
	if joins != 2 {
		t.Fatalf("%d join events, want 2 (up to 3 members)", joins)
	}
	if p, err := watcher.Presence(ctx, "big", true); err != nil || p.Clients != 6 {
		t.Fatalf("%+v %v", p, err)
	}
}
