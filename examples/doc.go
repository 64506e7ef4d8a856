// Package examples holds runnable Switchyard apps, one folder each:
//
//   - pubsub: a Go program that connects to a node, subscribes to a
//     channel and publishes to it (go run ./examples/pubsub).
//   - chat: a browser chat, also the binary's demo page (go run
//     ./examples/chat).
//   - game: players move dots at 30 Hz over datagrams, with Go bots (go
//     run ./examples/game).
//
// Later issues add a WebRTC peer-to-peer demo and a dashboard.
package examples
