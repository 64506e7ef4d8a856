package edge

import (
	"fmt"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// frameLog describes what s was sent: "subscribed EPOCH:OFFSET
// [recovered]", "message EPOCH:OFFSET", "unsubscribed CODE", "error".
func frameLog(t *testing.T, s *fakeSession) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.frames {
		protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if err != nil {
				t.Fatal(err)
			}
			switch k := f.Kind.(type) {
			case *protocols.Frame_Subscribed:
				line := fmt.Sprintf("subscribed %s:%d", k.Subscribed.Epoch, k.Subscribed.Offset)
				if k.Subscribed.Recovered {
					line += " recovered"
				}
				out = append(out, line)
			case *protocols.Frame_Message:
				out = append(out, fmt.Sprintf("message %s:%d", k.Message.Epoch, k.Message.Offset))
			case *protocols.Frame_Unsubscribed:
				out = append(out, fmt.Sprintf("unsubscribed %d", k.Unsubscribed.Code))
			case *protocols.Frame_Error:
				out = append(out, "error")
			}
			return nil
		})
	}
	return out
}

func recoverReply(p Position, recovered bool) []byte {
	return protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{
		Epoch: p.Epoch, Offset: p.Offset, Recovered: recovered,
	}}})
}

func historyHub(size int, ttl time.Duration) *Hub {
	return NewHub(HubConfig{History: historyPolicy([]HistoryRule{{Channels: "chat:*", Size: size, TTL: ttl}})})
}

// Subscribing with a position gets what the history holds after it, then
// the live publications; or, when the history cannot cover it, the current
// position and recovered false.
func TestHubRecoversFromHistory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		since func(epoch string) *Position
		want  func(e func(uint64) string) []string
	}{
		{"within the history", func(ep string) *Position { return &Position{ep, 2} },
			func(e func(uint64) string) []string {
				return []string{"subscribed " + e(2) + " recovered", "message " + e(3), "message " + e(4), "message " + e(5)}
			}},
		{"at the end", func(ep string) *Position { return &Position{ep, 5} },
			func(e func(uint64) string) []string { return []string{"subscribed " + e(5) + " recovered"} }},
		{"before the history", func(ep string) *Position { return &Position{ep, 1} },
			func(e func(uint64) string) []string { return []string{"subscribed " + e(5)} }},
		{"another epoch", func(string) *Position { return &Position{"old", 4} },
			func(e func(uint64) string) []string { return []string{"subscribed " + e(5)} }},
		{"ahead", func(ep string) *Position { return &Position{ep, 9} },
			func(e func(uint64) string) []string { return []string{"subscribed " + e(5)} }},
		{"no position", func(string) *Position { return nil },
			func(e func(uint64) string) []string { return []string{"subscribed " + e(5)} }},
		{"the whole history (a newcomer)", func(string) *Position { return &Position{} },
			func(e func(uint64) string) []string {
				return []string{"subscribed " + e(2), "message " + e(3), "message " + e(4), "message " + e(5)}
			}},
	} {
		h := historyHub(3, time.Minute)
		var epoch string
		for i := range 5 {
			epoch = h.Sequence("chat:1", []byte{byte(i)}).Epoch
		}
		e := func(o uint64) string { return fmt.Sprintf("%s:%d", epoch, o) }
		s := &fakeSession{id: tc.name, keep: true}
		h.Subscribe("chat:1", s, 1, tc.since(epoch), recoverReply, nil)
		h.Sequence("chat:1", []byte("live"))
		want := append(tc.want(e), "message "+e(6))
		if got := frameLog(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", tc.name, got, want)
		}
	}
}

func TestHubHistoryTTLAndAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // a fake clock: the TTL passes at once
		h := historyHub(10, 50*time.Millisecond)
		var pos Position
		for i := range 4 {
			pos = h.Sequence("chat:ttl", []byte{byte(i)})
		}
		if _, pubs, complete := h.History("chat:ttl", nil, 0); len(pubs) != 4 || !complete {
			t.Fatalf("history %d entries, complete %v", len(pubs), complete)
		}
		if _, pubs, _ := h.History("chat:ttl", nil, 2); len(pubs) != 2 || pubs[0].Offset != 3 || pubs[1].Offset != 4 {
			t.Fatalf("limit 2: %+v", pubs)
		}
		if _, pubs, complete := h.History("chat:ttl", &Position{pos.Epoch, 2}, 0); len(pubs) != 2 || !complete {
			t.Fatalf("since 2: %d, %v", len(pubs), complete)
		}
		time.Sleep(80 * time.Millisecond)
		if _, pubs, complete := h.History("chat:ttl", &Position{pos.Epoch, 2}, 0); len(pubs) != 0 || complete {
			t.Fatalf("after the TTL: %d entries, complete %v", len(pubs), complete)
		}
		// Channels without a rule keep nothing.
		h.Sequence("news", []byte("x"))
		if _, pubs, _ := h.History("news", nil, 0); len(pubs) != 0 {
			t.Fatal("history kept for a channel without a rule")
		}
	})
}

// On a node that does not own the channel, the owner's history comes with
// the registration: a subscriber here recovers from it, and a gap after a
// link reset is filled from the next registration's history, with no
// subscription ended.
func TestHubHistoryFromRegistration(t *testing.T) {
	fc := &fakeCluster{owned: map[string]bool{}}
	h := NewHub(HubConfig{Cluster: fc, History: historyPolicy([]HistoryRule{{Channels: "*", Size: 5}})})
	msg := func(o uint64) protocols.Publication {
		return protocols.Publication{Offset: o, Frame: protocols.EncodeMessage("c", "e", o, nil)}
	}
	hist := func(from, to uint64) (out []protocols.Publication) {
		for o := from; o <= to; o++ {
			out = append(out, msg(o))
		}
		return out
	}
	s := &fakeSession{id: "s", keep: true}
	h.Subscribe("c", s, 1, &Position{"e", 3}, recoverReply, nil)
	h.Registered("c", "e", 5, hist(2, 5))
	if got := frameLog(t, s); !reflect.DeepEqual(got, []string{"subscribed e:3 recovered", "message e:4", "message e:5"}) {
		t.Fatalf("recovery through the registration: %v", got)
	}
	h.Deliver("c", "e", 6, msg(6).Frame)
	// The link resets; 7 and 8 are lost; the owner's next answer holds them.
	h.Registered("c", "e", 8, hist(4, 8))
	got := frameLog(t, s)
	if want := []string{"message e:6", "message e:7", "message e:8"}; !reflect.DeepEqual(got[3:], want) {
		t.Fatalf("gap filled: %v, want ... %v", got, want)
	}
	// A late subscriber recovers from the ring the registration refreshed.
	s2 := &fakeSession{id: "s2", keep: true}
	h.Subscribe("c", s2, 1, &Position{"e", 6}, recoverReply, nil)
	if got := frameLog(t, s2); !reflect.DeepEqual(got, []string{"subscribed e:6 recovered", "message e:7", "message e:8"}) {
		t.Fatalf("late recovery: %v", got)
	}
	// A gap the history cannot fill ends both subscriptions.
	h.Registered("c", "e", 20, hist(16, 20))
	for _, x := range []*fakeSession{s, s2} {
		if got := frameLog(t, x); got[len(got)-1] != "unsubscribed 3005" {
			t.Fatalf("%s: %v", x.id, got)
		}
	}
}

func TestHistoryRing(t *testing.T) {
	now := time.Now()
	r := newHistory(3, time.Minute)
	for o := uint64(1); o <= 5; o++ {
		r.add(o, []byte{byte(o)}, now)
	}
	if es, ok := r.after(2, 5, now); !ok || len(es) != 3 || es[0].offset != 3 {
		t.Fatalf("after 2: %v %v", es, ok)
	}
	if _, ok := r.after(1, 5, now); ok {
		t.Fatal("after 1 claimed complete with 3..5 kept")
	}
	r.add(9, []byte{9}, now) // a gap: the ring starts anew
	if es := r.latest(0, now); len(es) != 1 || es[0].offset != 9 {
		t.Fatalf("after a gap: %v", es)
	}
	if _, ok := r.after(8, 9, now.Add(2*time.Minute)); ok {
		t.Fatal("expired entries recovered")
	}
}

// A publish with an idempotency key is applied once within the window;
// after it, or in a new epoch, the key is new again.
func TestHubIdempotentPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(HubConfig{IdempotencyWindow: time.Minute})
		s := &fakeSession{id: "s", keep: true}
		h.Subscribe("c", s, 1, nil, subscribedReply, nil)
		p1, dup := h.SequenceKeyed("c", "k1", []byte("a"))
		if dup {
			t.Fatal("first publish taken for a duplicate")
		}
		p2, dup := h.SequenceKeyed("c", "k1", []byte("a"))
		if !dup || p2 != p1 {
			t.Fatalf("retry: %+v dup %v, want %+v dup", p2, dup, p1)
		}
		if p3, dup := h.SequenceKeyed("c", "k2", []byte("b")); dup || p3.Offset != p1.Offset+1 {
			t.Fatalf("another key: %+v %v", p3, dup)
		}
		if p4, dup := h.SequenceKeyed("c", "", []byte("c")); dup || p4.Offset != p1.Offset+2 {
			t.Fatalf("no key: %+v %v", p4, dup)
		}
		if got := frameLog(t, s); len(got) != 4 { // subscribed + a, b, c: the retry is not delivered
			t.Fatalf("delivered %v", got)
		}
		time.Sleep(2 * time.Minute) // fake clock
		if _, dup := h.SequenceKeyed("c", "k1", []byte("a")); dup {
			t.Fatal("a key remembered past the window")
		}
	})
}

// BenchmarkSequence compares a publication's cost without history, with a
// history of 100, and with an idempotency key (one subscriber, so that
// the frame is encoded either way).
func BenchmarkSequence(b *testing.B) {
	for _, bc := range []struct {
		name    string
		history int
		keyed   bool
	}{{"no-history", 0, false}, {"history-100", 100, false}, {"history-100-keyed", 100, true}} {
		b.Run(bc.name, func(b *testing.B) {
			h := historyHub(bc.history, time.Minute)
			h.Subscribe("chat:b", &fakeSession{id: "s"}, 1, nil, subscribedReply, nil)
			data := make([]byte, 64)
			var keys []string
			if bc.keyed {
				keys = make([]string, 1<<21) // distinct keys, made before the clock starts
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := ""
				if bc.keyed {
					key = keys[i%len(keys)]
				}
				h.SequenceKeyed("chat:b", key, data)
			}
		})
	}
}

// BenchmarkRecover measures a subscribe that recovers N missed
// publications from the history (Subscribed plus N frames queued).
func BenchmarkRecover(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := historyHub(n, time.Hour)
			var pos Position
			data := make([]byte, 64)
			for range n + 1 {
				pos = h.Sequence("chat:r", data)
			}
			since := &Position{Epoch: pos.Epoch, Offset: pos.Offset - uint64(n)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s := &fakeSession{id: fmt.Sprint(i)}
				h.Subscribe("chat:r", s, 1, since, recoverReply, nil)
				if s.n != n+1 {
					b.Fatalf("recovered %d frames, want %d", s.n-1, n)
				}
				h.Unsubscribe("chat:r", s, nil)
			}
		})
	}
}

func TestSelectHistory(t *testing.T) {
	hist := []protocols.Publication{{Offset: 3}, {Offset: 4}, {Offset: 5}}
	pos := Position{"e", 5}
	offsets := func(ps []protocols.Publication) (out []uint64) {
		for _, p := range ps {
			out = append(out, p.Offset)
		}
		return out
	}
	for _, tc := range []struct {
		since    *Position
		limit    int
		want     []uint64
		complete bool
	}{
		{nil, 0, []uint64{3, 4, 5}, true},
		{nil, 2, []uint64{4, 5}, true},
		{&Position{"e", 3}, 0, []uint64{4, 5}, true},
		{&Position{"e", 5}, 0, nil, true},
		{&Position{"e", 1}, 0, []uint64{3, 4, 5}, false},
		{&Position{"x", 4}, 0, []uint64{3, 4, 5}, false},
		{&Position{"e", 3}, 1, []uint64{4}, false}, // a page: the oldest after since, more remain
		{&Position{"e", 3}, 2, []uint64{4, 5}, true},
	} {
		got, complete := selectHistory(pos, hist, tc.since, tc.limit)
		if !reflect.DeepEqual(offsets(got), tc.want) || complete != tc.complete {
			t.Errorf("since %v limit %d: %v %v, want %v %v", tc.since, tc.limit, offsets(got), complete, tc.want, tc.complete)
		}
	}
}
