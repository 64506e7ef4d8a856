package p2p_test

import (
	"context"
	"encoding/json"
	"log"

	"github.com/pion/webrtc/v4"

	"github.com/switchyard/switchyard/client/p2p"
)

// Join a room, answer every peer that opens a data channel with an echo,
// and open one to every peer that was there before.
func Example() {
	ctx := context.Background() // the Room's whole life: Leave ends it
	room, err := p2p.Join(ctx, "ws://127.0.0.1:8080/signal", "lobby", p2p.Options{
		Token: "…",
		OnConnection: func(id string, pc *webrtc.PeerConnection) {
			pc.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.Send(m.Data) })
			})
		},
		OnMessage: func(id string, data json.RawMessage) { log.Printf("%s says %s", id, data) },
		OnError:   func(err error) { log.Print(err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer room.Leave()

	for _, id := range room.Peers() {
		pc, err := room.Peer(id)
		if err != nil {
			log.Fatal(err)
		}
		dc, err := pc.CreateDataChannel("chat", nil) // the Room negotiates
		if err != nil {
			log.Fatal(err)
		}
		dc.OnOpen(func() { _ = dc.SendText("hello from " + room.PeerID()) })
		if err := room.Send(id, map[string]string{"name": "gopher"}); err != nil {
			log.Print(err)
		}
	}
	<-room.Done()
}
