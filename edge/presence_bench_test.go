package edge

import (
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/protocols"
)

// BenchmarkPresenceJoinLeave measures presence churn on the node that owns
// the channel: each op is one session joining (subscribe) and leaving
// (unsubscribe) a presence channel that already has 100 members, with
// none or 10 of them watching the join and leave events.
func BenchmarkPresenceJoinLeave(b *testing.B) {
	for _, watchers := range []int{0, 10} {
		b.Run(fmt.Sprintf("watchers-%d", watchers), func(b *testing.B) {
			h := NewHub(HubConfig{Presence: func(string) bool { return true }})
			for i := range 100 {
				s := &fakeSession{id: fmt.Sprint("m", i)}
				h.SubscribeMember("room", s, 1, nil, subscribedReply, nil, &protocols.ClientInfo{Client: s.id, User: fmt.Sprint("u", i%50)}, i < watchers)
			}
			sessions := make([]*fakeSession, 1024)
			infos := make([]*protocols.ClientInfo, len(sessions))
			for i := range sessions {
				sessions[i] = &fakeSession{id: fmt.Sprint("s", i)}
				infos[i] = &protocols.ClientInfo{Client: sessions[i].id, User: fmt.Sprint("user-", i), Info: []byte(`{"color":"teal"}`)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s := sessions[i%len(sessions)]
				h.SubscribeMember("room", s, 1, nil, subscribedReply, nil, infos[i%len(infos)], false)
				h.Unsubscribe("room", s, nil)
			}
			b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "joins+leaves/s")
		})
	}
}
