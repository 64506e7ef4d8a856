// Package signaling relays WebRTC signaling between the peers of rooms: SDP
// offers and answers, ICE candidates and custom messages, as JSON over a
// WebSocket at /signal (docs/signaling.md is the protocol).
//
// A Server is an http.Handler. Alone it serves one node's rooms; given a
// Cluster (mesh.Cluster satisfies it) its rooms span the mesh:
//
//   - Each room has an owner node (Cluster.Owner, rendezvous hashing over
//     the live members), which keeps the room's membership (owner.go): a
//     join goes to it, it enforces the room size, and it tells every other
//     node with peers in the room of each join, leave and move.
//   - Every node keeps a view of the rooms it has peers in (room.go) and
//     relays a peer's messages straight to the target's node, one hop over
//     the ordered mesh link between the two: messages from one peer to
//     another arrive in the order sent.
//   - When members change, every node drops the peers of nodes that are no
//     longer live (peer-left to its own peers) and sends its peers of each
//     room whose owner changed to the new owner (Sync), which rebuilds the
//     membership from them.
//   - A peer whose connection is lost (not closed normally) stays in its
//     room for Config.Grace; a join with its id and resume secret, on any
//     node, takes it back (the owner moves it to the new node).
//
// Nodes talk to each other in the protobuf messages of
// signaling/proto/signaling.proto, one per mesh link message.
//
// Locking: one mutex (Server.mu) guards every room, the owned rooms and the
// pending joins. Nothing is sent under it: handlers collect what to send in
// an outbox and send it after unlocking; a message to this node itself is
// handled then, as if it had come over a link.
package signaling
