package signaling_test

import (
	"context"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/signaling"
)

// TestAuthorizeJoin: a join whose token the node refuses for the room is
// closed with 3502 and a reason; an allowed one joins.
func TestAuthorizeJoin(t *testing.T) {
	n := startServer(t, signaling.Config{
		Authorize: func(_ context.Context, token, room string) error {
			if token != "good" || room != "call:1" {
				return errors.New("no signal permission on this room")
			}
			return nil
		},
	})
	for _, tc := range []struct{ token, room string }{{"", "call:1"}, {"forged", "call:1"}, {"good", "call:2"}} {
		c := dial(t, n.url)
		c.sendJSON(map[string]any{"type": "join", "room": tc.room, "token": tc.token, "id": 1})
		e := c.next("error")
		if e["code"] != "unauthorized" {
			t.Fatalf("join %s with %q: %v", tc.room, tc.token, e)
		}
		if code, reason := c.closed(); code != 3502 || reason == "" {
			t.Fatalf("closed %d %q, want 3502", code, reason)
		}
	}
	c := dial(t, n.url)
	c.sendJSON(map[string]any{"type": "join", "room": "call:1", "token": "good"})
	c.next("joined")
}
