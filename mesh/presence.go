package mesh

// Presence: who is in a channel, across the mesh. The channel's owner
// keeps the members of every node; each node sends it the members that
// join and leave there (PresenceUpdate), and all of them again after the
// owner changed (sync). The owner passes join and leave events on to the
// nodes with subscribers, and answers queries (PresenceQuery) from any
// node. The node (edge) keeps the state; the mesh carries the messages.

const (
	msgPresenceUpdate = 15
	msgPresenceEvent  = 16
	msgPresenceQuery  = 17
	msgPresenceReply  = 18
)

// handlePresence runs a presence message from peer on its reader.
func (c *Cluster) handlePresence(peer string, m message) {}
