package edge

import "net/netip"

// HTTPConns is how many connections from ip count against
// MaxHTTPConnsPerIP now; for tests.
func (n *Node) HTTPConns(ip string) int {
	if n.conns == nil {
		return 0
	}
	return n.conns.count(netip.MustParseAddr(ip))
}
