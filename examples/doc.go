// Package examples holds runnable Switchyard apps, one folder each:
//
//   - pubsub: a Go program that connects to a node, subscribes to a
//     channel and publishes to it (go run ./examples/pubsub).
//
// Later issues add a browser chat, a datagram game, a WebRTC peer-to-peer
// demo and a dashboard.
package examples
