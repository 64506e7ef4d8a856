package edge

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// fakeReplicator is a Cluster that replicates, for the hub's unit tests:
// it records what the hub sends and lets the test answer. The real thing
// is tested end to end in cmd/switchyard (TestOwnerKillKeepsTheEpoch,
// TestJoinAndLeaveKeepEpochs, TestSoak).
type fakeReplicator struct {
	fakeCluster
	self       string
	order      []string // rendezvous order of the test channel: owner first
	live       map[string]bool
	replicated []string // "to:offset" and "to:seed@offset"
	handOff    func(from string) (protocols.ChannelState, bool, error)
	via        []string
}

func newFakeReplicator(self string, order ...string) *fakeReplicator {
	f := &fakeReplicator{fakeCluster: fakeCluster{owned: map[string]bool{}}, self: self, order: order, live: map[string]bool{}}
	for _, n := range order {
		f.live[n] = true
	}
	f.owned["c"] = order[0] == self
	return f
}

func (f *fakeReplicator) Name() string { return f.self }
func (f *fakeReplicator) Owner(string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.order[0]
}
func (f *fakeReplicator) Successor(string) string {
	if s := f.Successors(""); len(s) > 0 {
		return s[0]
	}
	return ""
}
func (f *fakeReplicator) Successors(string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.order[1:]...)
}
func (f *fakeReplicator) Peers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, live := range f.live {
		if live && n != f.self {
			out = append(out, n)
		}
	}
	return out
}
func (f *fakeReplicator) Isolated() bool     { return false }
func (f *fakeReplicator) Live(n string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.live[n] }
func (f *fakeReplicator) Replicate(to, _, _ string, offset uint64, _ string, _ []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replicated = append(f.replicated, to+":"+itoa(offset))
	return true
}
func (f *fakeReplicator) Seed(to, _ string, st protocols.ChannelState) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replicated = append(f.replicated, to+":seed@"+itoa(st.Offset))
	return true
}
func (f *fakeReplicator) HandTo(to, ch string, st protocols.ChannelState) bool { return true }
func (f *fakeReplicator) Forget(string, string) bool                           { return true }
func (f *fakeReplicator) HandOff(_ context.Context, from, _ string) (protocols.ChannelState, bool, error) {
	if f.handOff == nil {
		return protocols.ChannelState{}, false, nil
	}
	return f.handOff(from)
}
func (f *fakeReplicator) PublishVia(via, _, _ string, _ []byte, done func(string, uint64, bool, error)) {
	f.mu.Lock()
	f.via = append(f.via, via)
	f.mu.Unlock()
	done("there", 7, false, nil)
}

// waitSent waits until n messages were sent, and returns them.
func (f *fakeReplicator) waitSent(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		got := len(f.replicated)
		f.mu.Unlock()
		if got >= n {
			return f.sent()
		}
	}
	t.Fatalf("%d messages sent, want %d", len(f.replicated), n)
	return nil
}

func (f *fakeReplicator) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.replicated
	f.replicated = nil
	return out
}

func itoa(n uint64) string { return Position{Offset: n}.String() }

// String is a Position as "EPOCH:OFFSET" (":OFFSET" without an epoch).
func (p Position) String() string {
	const digits = "0123456789"
	if p.Offset == 0 {
		return p.Epoch + "0"
	}
	var b []byte
	for n := p.Offset; n > 0; n /= 10 {
		b = append([]byte{digits[n%10]}, b...)
	}
	if p.Epoch == "" {
		return string(b)
	}
	return p.Epoch + ":" + string(b)
}

type pubResult struct {
	pos Position
	dup bool
	err error
}

func publishAsync(h *Hub, key, data string) chan pubResult {
	r := make(chan pubResult, 1)
	h.SequenceAsync("c", key, []byte(data), func(p Position, dup bool, err error) { r <- pubResult{p, dup, err} })
	return r
}

func pending(t *testing.T, r chan pubResult) {
	t.Helper()
	select {
	case got := <-r:
		t.Fatalf("answered before the successor held it: %+v", got)
	default:
	}
}

func answered(t *testing.T, r chan pubResult) pubResult {
	t.Helper()
	select {
	case got := <-r:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	return pubResult{}
}

// A publication goes out (to local subscribers and other nodes) and is
// acknowledged only once the successor holds it, in order; the first one
// seeds the successor with the whole state; a nack sends the state again;
// a retried key waiting for its copy is answered with it.
func TestHubReplicatesBeforeRelease(t *testing.T) {
	fr := newFakeReplicator("a", "a", "b", "c")
	h := NewHub(HubConfig{Cluster: fr, History: historyPolicy([]HistoryRule{{Channels: "*", Size: 10}})})
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("c", s, 1, nil, subscribedReply, nil)
	h.Hold("c", func(e string, o uint64, _ []protocols.Publication) {}) // the self-registration: takes the channel over
	h.Registered("c", "", 0, nil)
	r1 := publishAsync(h, "k1", "one")
	r2 := publishAsync(h, "", "two")
	r3 := publishAsync(h, "k1", "one again")
	pending(t, r1)
	pending(t, r2)
	if got := fr.waitSent(t, 2); !reflect.DeepEqual(got, []string{"b:seed@1", "b:2"}) {
		t.Fatalf("sent %v, want a seed then the second publication", got)
	}
	if got := frameLog(t, s); len(got) != 1 {
		t.Fatalf("delivered before the copy: %v", got)
	}
	epoch := h.lookupEpoch("c")
	h.ReplicaAcked("c", "c", epoch, 2, true) // not the successor: ignored
	pending(t, r1)
	h.ReplicaAcked("b", "c", epoch, 1, true)
	if got := answered(t, r1); got.pos.Offset != 1 || got.dup {
		t.Fatalf("first: %+v", got)
	}
	pending(t, r2)
	h.ReplicaAcked("b", "c", epoch, 2, true)
	if got := answered(t, r2); got.pos.Offset != 2 {
		t.Fatalf("second: %+v", got)
	}
	if got := answered(t, r3); got.pos.Offset != 1 || !got.dup {
		t.Fatalf("the retried key: %+v, want offset 1, duplicate", got)
	}
	if got := frameLog(t, s); !reflect.DeepEqual(got[1:], []string{"message " + epoch + ":1", "message " + epoch + ":2"}) {
		t.Fatalf("delivered %v", got)
	}
	r4 := publishAsync(h, "", "three")
	fr.sent()
	h.ReplicaAcked("b", "c", "", 0, false) // the successor lost track
	if got := fr.sent(); !reflect.DeepEqual(got, []string{"b:seed@3"}) {
		t.Fatalf("after a nack: %v", got)
	}
	h.ReplicaAcked("b", "c", epoch, 3, true)
	if got := answered(t, r4); got.pos.Offset != 3 {
		t.Fatalf("third: %+v", got)
	}
}

// lookupEpoch returns the channel's epoch (for tests).
func (h *Hub) lookupEpoch(name string) string {
	ch := h.lookup(name)
	if ch == nil {
		return ""
	}
	defer ch.mu.Unlock()
	return ch.epoch
}

// A successor that does not answer in time: the copy goes to the next
// node; when none answers, the publications are taken back (errNoCopy)
// and the channel's position with them, and the next publication seeds
// the successor again.
func TestHubSuccessorOverdue(t *testing.T) {
	fr := newFakeReplicator("a", "a", "b", "c")
	h := NewHub(HubConfig{Cluster: fr, ReplicaTimeout: 50 * time.Millisecond, History: historyPolicy([]HistoryRule{{Channels: "*", Size: 10}})})
	r1 := publishAsync(h, "k", "one")
	fr.waitSent(t, 1)
	epoch := h.lookupEpoch("c")
	h.ReplicaAcked("b", "c", epoch, 1, true)
	if got := answered(t, r1); got.err != nil {
		t.Fatal(got.err)
	}
	r2 := publishAsync(h, "k2", "two")
	// b is overdue: c gets the whole state.
	if got := fr.waitSent(t, 2); len(got) != 2 || got[0] != "b:2" || got[1] != "c:seed@2" {
		t.Fatalf("sent %v, want b:2 then c:seed@2", got)
	}
	h.ReplicaAcked("c", "c", epoch, 2, true)
	if got := answered(t, r2); got.err != nil || got.pos.Offset != 2 {
		t.Fatalf("%+v", got)
	}
	// Neither answers: taken back.
	r3 := publishAsync(h, "k3", "three")
	if got := answered(t, r3); !errors.Is(got.err, errNoCopy) {
		t.Fatalf("%+v, want errNoCopy", got)
	}
	fr.sent()
	pos, pubs, _ := h.History("c", nil, 0)
	if pos.Offset != 2 || len(pubs) != 2 {
		t.Fatalf("after taking back: position %v, %d kept", pos, len(pubs))
	}
	// The key of a publication taken back is free again.
	r4 := publishAsync(h, "k3", "three")
	fr.waitSent(t, 1)
	h.ReplicaAcked("c", "c", epoch, 3, true)
	h.ReplicaAcked("b", "c", epoch, 3, true)
	if got := answered(t, r4); got.err != nil || got.dup || got.pos.Offset != 3 {
		t.Fatalf("retry after taking back: %+v", got)
	}
}

// The successor of a dead owner takes the channel over from its copy: same
// epoch and offsets, the history and the keys; its local subscribers get
// what the dead owner sent nowhere. A node registering ahead of the new
// owner in the same epoch makes it start a new epoch, and its own
// subscribers are told (3005).
func TestReplicaDisagreement(t *testing.T) {
	fr := newFakeReplicator("b", "a", "b", "c") // a owns, b is its successor
	h := NewHub(HubConfig{Cluster: fr, History: historyPolicy([]HistoryRule{{Channels: "*", Size: 10}})})
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("c", s, 1, nil, subscribedReply, nil)
	h.Registered("c", "E", 2, nil) // delivered up to 2 here
	h.Seed("a", "c", protocols.ChannelState{Epoch: "E", Offset: 2, Keys: []protocols.AppliedKey{{Key: "k", Offset: 2}}}, false)
	for off := uint64(3); off <= 4; off++ {
		if _, _, ok := h.Replicate("a", "c", "E", off, "", protocols.EncodeMessage("c", "E", off, nil)); !ok {
			t.Fatalf("replicate %d refused", off)
		}
	}
	if _, _, ok := h.Replicate("a", "c", "E", 6, "", nil); ok {
		t.Fatal("a publication after a gap was accepted")
	}
	// a dies: b owns the channel.
	fr.mu.Lock()
	fr.order, fr.live["a"], fr.owned["c"] = []string{"b", "c"}, false, true
	fr.mu.Unlock()
	r := publishAsync(h, "k", "retry")
	if got := answered(t, r); !got.dup || got.pos != (Position{"E", 2}) {
		t.Fatalf("a retried key after the takeover: %+v", got)
	}
	if got := frameLog(t, s); !reflect.DeepEqual(got, []string{"subscribed E:2", "message E:3", "message E:4"}) {
		t.Fatalf("local subscriber after the takeover: %v", got)
	}
	// A node registers that saw E:6: the copies disagree.
	held := make(chan Position, 1)
	h.HoldFor("c", "E", 6, func(e string, o uint64, _ []protocols.Publication) { held <- Position{e, o} })
	if p := <-held; p.Epoch == "E" || p.Offset != 0 {
		t.Fatalf("registration ahead answered with %v, want a new epoch", p)
	}
	if got := frameLog(t, s); got[len(got)-1] != "unsubscribed 3005" {
		t.Fatalf("the local subscriber was not told: %v", got)
	}
}

// A node that held a channel hands it to the new owner, stops sequencing
// it and passes publishes on.
func TestHubHandOff(t *testing.T) {
	fr := newFakeReplicator("a", "a")
	h := NewHub(HubConfig{Cluster: fr, History: historyPolicy([]HistoryRule{{Channels: "*", Size: 10}})})
	p := h.Sequence("c", []byte("x")) // alone: no copy to wait for
	st, ok := h.HandOff("c", "d")
	if !ok || st.Epoch != p.Epoch || st.Offset != 1 || len(st.History) != 1 {
		t.Fatalf("handed %+v %v", st, ok)
	}
	fr.mu.Lock()
	fr.live["d"] = true
	fr.mu.Unlock()
	if got := answered(t, publishAsync(h, "", "y")); got.pos != (Position{"there", 7}) {
		t.Fatalf("after the hand-off: %+v, want it passed on", got)
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if !reflect.DeepEqual(fr.via, []string{"d"}) {
		t.Fatalf("passed via %v", fr.via)
	}
}
