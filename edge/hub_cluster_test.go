package edge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// fakeCluster is a hand-written Cluster for the hub's unit tests; the mesh
// itself is tested on real sockets in package mesh and end to end.
type fakeCluster struct {
	mu         sync.Mutex
	owned      map[string]bool
	registered []string
	unreg      []string
	forwarded  []Position
	publishErr error
}

func (f *fakeCluster) IsOwner(ch string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.owned[ch] }
func (f *fakeCluster) PublishAsync(ch, key string, data []byte, done func(string, uint64, bool, error)) {
	if f.publishErr != nil {
		done("", 0, false, f.publishErr)
		return
	}
	done("remote", 42, false, nil)
}
func (f *fakeCluster) Register(ch string) {
	f.mu.Lock()
	f.registered = append(f.registered, ch)
	f.mu.Unlock()
}
func (f *fakeCluster) Unregister(ch string) {
	f.mu.Lock()
	f.unreg = append(f.unreg, ch)
	f.mu.Unlock()
}
func (f *fakeCluster) Forward(ch, epoch string, offset uint64, frame []byte) {
	f.mu.Lock()
	f.forwarded = append(f.forwarded, Position{epoch, offset})
	f.mu.Unlock()
}

func (f *fakeCluster) PublishVolatile(string, []byte) {}

func (f *fakeCluster) History(context.Context, string) (string, uint64, []protocols.Publication, error) {
	return "", 0, nil, errors.New("no history in this fake")
}

func (f *fakeCluster) ForwardVolatile(ch string, seq uint64, frame []byte) {
	f.Forward(ch, "", seq, frame)
}

// frameKinds is frameLog without positions: "subscribed@EPOCH",
// "message@EPOCH", "error".
func frameKinds(t *testing.T, s *fakeSession) []string {
	t.Helper()
	var out []string
	for _, line := range frameLog(t, s) {
		kind, rest, _ := strings.Cut(line, " ")
		epoch, _, _ := strings.Cut(rest, ":")
		switch kind {
		case "subscribed", "message":
			out = append(out, kind+"@"+epoch)
		case "error":
			out = append(out, "error")
		}
	}
	return out
}

func TestHubWaitsForTheOwnersRegistration(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{}}
	h := NewHub(HubConfig{Cluster: fc})
	s := &fakeSession{id: "s", keep: true}
	if !h.Subscribe("remote", s, 1, nil, subscribedReply, []byte("x")) {
		t.Fatal("subscribe refused")
	}
	if len(fc.registered) != 1 {
		t.Fatalf("registrations %v", fc.registered)
	}
	// A delivery before the owner's answer reaches nobody: it precedes the
	// subscription's position.
	h.Deliver("remote", "e1", 3, protocols.EncodeMessage("remote", "e1", 3, nil))
	if got := frameKinds(t, s); len(got) != 0 {
		t.Fatalf("frames before registration: %v", got)
	}
	h.Registered("remote", "e1", 3, nil)
	h.Deliver("remote", "e1", 4, protocols.EncodeMessage("remote", "e1", 4, nil))
	if got := frameKinds(t, s); len(got) != 2 || got[0] != "subscribed@e1" || got[1] != "message@e1" {
		t.Fatalf("frames %v, want subscribed then message", got)
	}
	// A second subscriber joins at once, at the delivered position.
	s2 := &fakeSession{id: "s2", keep: true}
	h.Subscribe("remote", s2, 1, nil, subscribedReply, nil)
	if got := frameKinds(t, s2); len(got) != 1 || got[0] != "subscribed@e1" {
		t.Fatalf("second subscriber got %v", got)
	}
	// The last one out withdraws the interest.
	h.Unsubscribe("remote", s, nil)
	h.Unsubscribe("remote", s2, nil)
	if len(fc.unreg) != 1 {
		t.Fatalf("unregistrations %v", fc.unreg)
	}
}

func TestHubFailsSubscriptionsWhenTheOwnerIsSilent(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{}}
	h := NewHub(HubConfig{Cluster: fc, RegisterTimeout: 20 * time.Millisecond})
	s := &fakeSession{id: "s", keep: true}
	fail := protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Error{Error: &protocols.Error{Code: 108}}})
	h.Subscribe("remote", s, 1, nil, subscribedReply, fail)
	deadline := time.Now().Add(5 * time.Second)
	for len(frameKinds(t, s)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failure after the register timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := frameKinds(t, s); got[0] != "error" {
		t.Fatalf("got %v", got)
	}
	// A late answer admits nobody; a new subscribe asks again.
	h.Registered("remote", "e", 1, nil)
	h.Subscribe("remote", s, 1, nil, subscribedReply, fail)
	fc.mu.Lock()
	n := len(fc.registered)
	fc.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d registrations, want 2", n)
	}
}

func TestHubOwnerForwardsAndNewOwnerStartsNewEpoch(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{"c": true}}
	h := NewHub(HubConfig{Cluster: fc})
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("c", s, 1, nil, subscribedReply, nil)
	p1, _, _ := h.Publish(context.Background(), "c", "", []byte("a"))
	if len(fc.forwarded) != 1 || fc.forwarded[0] != p1 {
		t.Fatalf("forwarded %v, want %v", fc.forwarded, p1)
	}
	// Ownership moves away: publications go to the owner...
	fc.mu.Lock()
	fc.owned["c"] = false
	fc.mu.Unlock()
	if p, _, err := h.Publish(context.Background(), "c", "", []byte("b")); err != nil || p.Epoch != "remote" {
		t.Fatalf("remote publish %v %v", p, err)
	}
	fc.publishErr = errors.New("owner gone")
	if _, _, err := h.Publish(context.Background(), "c", "", []byte("b")); err == nil {
		t.Fatal("owner failure not reported")
	}
	h.Deliver("c", "theirs", 9, protocols.EncodeMessage("c", "theirs", 9, nil))
	// ...and back: this node starts a new epoch rather than reuse theirs.
	fc.mu.Lock()
	fc.owned["c"] = true
	fc.mu.Unlock()
	p3, _, _ := h.Publish(context.Background(), "c", "", []byte("c"))
	if p3.Epoch == p1.Epoch || p3.Epoch == "theirs" || p3.Offset != 1 {
		t.Fatalf("new owner published at %+v (before: %+v)", p3, p1)
	}
}

func TestHubHoldGivesTheNextEpoch(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{"c": true}}
	h := NewHub(HubConfig{Cluster: fc})
	var held Position
	h.Hold("c", func(e string, o uint64, _ []protocols.Publication) { held = Position{e, o} })
	p := h.Sequence("c", []byte("x"))
	if p.Epoch != held.Epoch || p.Offset != held.Offset+1 {
		t.Fatalf("held %+v, then published %+v", held, p)
	}
}

// A gap (publications lost on the way here) ends the subscriptions of the
// channel on this node, one by one, with Unsubscribed code 3005: the
// sessions stay up and subscribe again to recover.
func TestHubEndsSubscriptionsOnAGap(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{}}
	h := NewHub(HubConfig{Cluster: fc})
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("c", s, 1, nil, subscribedReply, nil)
	h.Registered("c", "e", 5, nil)
	h.Deliver("c", "e", 6, protocols.EncodeMessage("c", "e", 6, nil))
	h.Deliver("c", "e", 6, protocols.EncodeMessage("c", "e", 6, nil)) // a duplicate is dropped
	if got := frameLog(t, s); !reflect.DeepEqual(got, []string{"subscribed e:5", "message e:6"}) {
		t.Fatalf("frames %v, want subscribed and one message", got)
	}
	h.Deliver("c", "e", 8, protocols.EncodeMessage("c", "e", 8, nil)) // 7 was lost
	if got := frameLog(t, s); got[len(got)-1] != "unsubscribed 3005" || len(got) != 3 {
		t.Fatalf("after a gap: %v, want the subscription ended with 3005 and message 8 not delivered", got)
	}
	if s.closed != nil || h.IsMember("c", s) {
		t.Fatalf("session closed (%v) or still subscribed", s.closed)
	}
	if !reflect.DeepEqual(fc.unreg, []string{"c"}) {
		t.Fatalf("unregistered %v: with nobody left the interest goes, to register afresh", fc.unreg)
	}
	// A new epoch (no copy of the channel was left, or the copies
	// disagreed) ends the subscriptions too: the client resubscribes with
	// its position and is told it could not recover.
	s2 := &fakeSession{id: "s2", keep: true}
	h.Subscribe("c", s2, 1, nil, subscribedReply, nil)
	h.Registered("c", "e", 8, nil)
	h.Deliver("c", "f", 1, protocols.EncodeMessage("c", "f", 1, nil))
	if got := frameLog(t, s2); !reflect.DeepEqual(got, []string{"subscribed e:8", "unsubscribed 3005"}) {
		t.Fatalf("new epoch: %v", got)
	}
	// A re-registration with the same owner that starts further on, with
	// no history to fill the gap, ends the subscription too; so does one
	// in another epoch.
	for i, reg := range []Position{{"f", 4}, {"g", 1}} {
		s3 := &fakeSession{id: fmt.Sprint("s3-", i), keep: true}
		h.Subscribe("c", s3, 1, nil, subscribedReply, nil)
		h.Registered("c", "f", 1, nil)
		h.Registered("c", reg.Epoch, reg.Offset, nil)
		if got := frameLog(t, s3); got[len(got)-1] != "unsubscribed 3005" {
			t.Fatalf("re-registration at %v after f:1: %v", reg, got)
		}
	}
}
