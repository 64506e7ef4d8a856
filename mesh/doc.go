// Package mesh joins Switchyard nodes into a cluster without a central
// broker.
//
//   - Membership and failure detection: hashicorp/memberlist with LAN and
//     WAN presets (presets.go), gossip encryption (Config.Key), node
//     metadata (region, public URLs, forward, LAN pool and datagram
//     addresses, draining; member.go), join by seed list and a periodic
//     re-join of seeds that are not members, so that a healed partition
//     merges again (rejoin.go). A cluster that spans regions runs two pools
//     (below, and lan.go).
//   - Interest gossip (interest.go): every node gossips the channels it has
//     local subscribers for, as versioned deltas by broadcast and full state
//     by push/pull, and keeps a routing table channel → interested nodes.
//     The deltas, the state and the metadata are protobuf messages
//     (mesh/proto/gossip.proto).
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
//     far gossip has converged (register.go). Each message is a type byte
//     and a length-prefixed protobuf message of mesh/proto/link.proto
//     (signals carry the signaling's own); a delivery is a small header in
//     front of the owner's frame bytes, shared by all peers, never copied.
//   - Datagrams (datagram.go): volatile publications (datagram channels)
//     travel between nodes as QUIC datagrams, one mutually authenticated
//     QUIC connection per ordered pair, never queued behind the links and
//     never resent; one too large for a datagram takes the link.
//
// Two pools. With Profile "lan" (the default: one region) a node runs one
// memberlist pool with LAN timings. With Profile "wan" (a cluster that
// spans regions; every node must use it) a node runs, as Consul does, two:
//
//   - the WAN pool: the cluster-wide pool of every node of every region,
//     with WAN timings (a crashed node is declared dead in ≈ 4–6 s). It
//     carries the metadata and the interest gossip, and its members are
//     the cluster's: Members, ownership, routing and links start from it.
//   - the LAN pool: a second memberlist with LAN timings (≈ 2 s) whose
//     members are the nodes of the node's own region only (Config.LANBind;
//     its packets are labelled with the region, so pools of different
//     regions never merge). Nodes find it through the WAN pool: each
//     advertises its LAN pool address in its WAN metadata, and a node joins
//     the LAN pool addresses of the same-region members the WAN pool
//     reports, at once and again every second while one is missing (a
//     healed LAN partition, a restart).
//
// Liveness, for Members, Owner/IsOwner, routing and links, is the WAN
// pool's, except that a node of our region that the LAN pool declared dead
// is dead at once, even while the WAN pool still lists it; it is live again
// once both pools see it alive. Same-region failures are thus detected at
// LAN speed and other regions' at WAN speed. Between the two verdicts (≈ 2
// to 4 s after a crash) the crashed node's region and the other regions
// disagree on the members, as any two nodes may while membership changes;
// once both pools converge, every node has the same members and owners.
// A LAN-only fault (the LAN pool of a region cut while the WAN pool still
// connects its nodes) makes the region drop a node the other regions keep
// until the LAN pool heals. Interest gossip stays on the WAN pool: a
// subscriber's registration with the owner is synchronous, so gossip speed
// is off the critical path.
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
