// Package mesh will join Switchyard nodes into a cluster without a central
// broker: hashicorp/memberlist for membership and failure detection (LAN and
// WAN presets, gossip encryption, periodic re-join of seeds), gossip of
// which channels each node has local subscribers for, and persistent,
// mutually authenticated forwarding links that carry publications only to
// nodes with interest. The edge reaches it through a small interface of its
// own; edge never imports mesh.
//
// Nothing lives here yet: see the mesh issue.
package mesh
