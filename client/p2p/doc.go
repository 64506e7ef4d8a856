// Package p2p lets a Go program with pion/webrtc peers join a Switchyard
// signaling room (docs/signaling.md, the /signal WebSocket of every node)
// and open data channels (or send media) with browsers, which use the
// JavaScript helper, or with other Go programs.
//
//	room, err := p2p.Join(ctx, "wss://edge.example.com/signal", "lobby", p2p.Options{
//		OnConnection: func(id string, pc *webrtc.PeerConnection) {
//			// a peer started a connection: take its data channels
//			pc.OnDataChannel(func(dc *webrtc.DataChannel) { ... })
//		},
//		OnJoin: func(id string) { ... },
//	})
//	if err != nil { ... }
//	defer room.Leave()
//	for _, id := range room.Peers() {
//		pc, err := room.Peer(id)                     // created on first use
//		dc, err := pc.CreateDataChannel("chat", nil) // negotiated by the Room
//		...
//	}
//
// On a machine where the peers should talk over loopback only (tests), give
// Options.API a webrtc.API whose SettingEngine keeps pion there:
// SetIncludeLoopbackCandidate(true), SetIPFilter(ip.IsLoopback),
// SetInterfaceFilter(name == "lo"), UDP4, and mDNS off
// (ice.MulticastDNSModeDisabled). Otherwise pion gathers candidates on every
// interface, as a browser does.
//
// # Negotiation
//
// The Room relays offers, answers and ICE candidates (trickled, the end of
// candidates included) through the server, and negotiates each
// PeerConnection with the "perfect negotiation" pattern, as the browser
// helper does: whenever pion fires negotiationneeded (a data channel or a
// track added), the Room offers; when both sides offer at once (glare),
// the peer whose id is lexically smaller is polite and gives way, the
// other ignores the colliding offer. Remote candidates that come before
// the remote description wait for it; candidates of an abandoned offer are
// dropped by their ICE username fragment.
//
// pion (up to v4.2.26 at least) cannot roll back an offer, which is how a
// polite peer gives way. The Room tries, and when pion refuses it replaces
// the polite side's PeerConnection: the new one answers the remote offer
// and is given to OnConnection, and the old one is closed, with the data
// channels or tracks the application had put on it.
// Only the polite side of a glare is concerned, so a program that avoids
// glare (for instance: only the newcomer, or only one side, opens the
// first data channel) never sees it. Later data channels on a connected
// PeerConnection need no negotiation in pion, so cannot collide.
//
// # Callbacks
//
// Callbacks (Options.OnJoin and the others, or the Room methods of the same
// names) run one at a time on a goroutine of the Room, in the order of the
// events, never with a lock held; they may call any Room method, Leave
// included, but must not wait for Done. Set them in Options to see the
// events that come right after the join. pion's own callbacks (on the
// PeerConnections and data channels) are pion's business.
//
// # Connection loss
//
// When the WebSocket drops (network failure, timeout, close 3000 of a node
// that shuts down), the Room redials with backoff and joins with its peer
// id and resume secret. If the server resumes it, the PeerConnections stay
// and the messages queued meanwhile go out; the peer list of "joined" is
// compared with the one the Room had, for OnJoin and OnLeave. If not (the
// grace period had passed), the Room drops what was queued, closes every
// PeerConnection, fires OnLeave for every former peer, takes its new id
// and fires OnJoin for every peer of the room. The close codes that end a
// session (1000, 3500–3999 and 4500–4999; 4500 is "replaced") end the Room
// instead: Done is closed and Err tells why (a *CloseError).
//
// A PeerConnection whose ICE connection fails restarts ICE, from the
// impolite side only (restarts from both sides would collide, which costs
// the polite pion side its PeerConnection); RestartICE restarts it on
// demand, after a network change say. The Room
// sets OnNegotiationNeeded, OnICECandidate and OnICEConnectionStateChange
// on the PeerConnections it makes: do not replace them (pion keeps one
// handler per event; OnConnectionStateChange is free).
//
// # Errors
//
// A join the server refuses returns an *Error (Code is CodeBadRoom,
// CodeRoomFull, ...); a refused message later (a Send to a peer that has
// left: CodeUnknownPeer) comes to OnError as an *Error; a negotiation step
// that fails comes to OnError too. Use errors.As.
//
// # Goroutines
//
// A Room runs a supervisor (which serves the socket's read loop and
// redials), one writer per socket (the only writer of data messages on it;
// the outgoing queue is bounded: ErrQueueFull), one worker per
// PeerConnection (which serializes its negotiation) and one goroutine for
// the callbacks. All end after Leave, or when Join's ctx is done; Done is
// closed then (after pion's goroutines of the Room's PeerConnections have
// ended too).
package p2p
