// Package mesh joins Switchyard nodes into a cluster without a central
// broker.
//
//   - Membership and failure detection: hashicorp/memberlist with LAN and
//     WAN presets (presets.go), gossip encryption (Config.Key), node
//     metadata (region, public URLs, forward address, draining), join by
//     seed list and a periodic re-join of seeds that are not members, so
//     that a healed partition merges again (rejoin.go).
//   - Interest gossip (interest.go): every node gossips the channels it has
//     local subscribers for, as versioned deltas by broadcast and full state
//     by push/pull, and keeps a routing table channel → interested nodes.
//   - Ownership (owner.go): each channel has one owner, chosen by rendezvous
//     hashing over the live members. The owner sequences every publication
//     of the channel (Local.Sequence assigns epoch and offset) and forwards
//     the encoded frame to the interested nodes, so all subscribers on all
//     nodes see one order.
//   - Forwarding links (link.go): one TLS-over-TCP connection per ordered
//     pair of nodes, mutually authenticated by the mesh CA, carrying
//     deliveries, requests and replies; a registration with the owner
//     travels on the same ordered streams as the deliveries, so a subscriber
//     misses nothing published after its registration was answered, however
//     far gossip has converged (register.go).
//
// The edge reaches the mesh through an interface of its own that *Cluster
// satisfies, and the mesh reaches the edge through Local; mesh never imports
// edge.
//
// Guarantees and limits. With stable membership, every node interested in a
// channel receives its publications in the owner's order, and a node whose
// Register was answered (Local.Registered) receives every publication the
// owner sequenced after that answer. When membership changes, ownership
// moves; a new owner starts a new epoch (the edge's job in Sequence), every
// node registers again with it and Local.Registered reports the new
// position; until all nodes see the same members, two nodes may each take
// themselves for the owner. A link whose queue overflows is dropped and
// re-dialled: its peer registers again and can tell the gap from the
// positions. Publish waits at most Config.RequestTimeout and fails fast
// when the owner dies.
package mesh
