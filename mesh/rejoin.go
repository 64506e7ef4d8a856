package mesh

import (
	"context"
	"net"
	"slices"
	"time"
)

// staleTTL is how long views of strangers (heard of, never members) and
// records of departed nodes are kept.
const staleTTL = time.Minute

// rejoinLoop joins, every RejoinInterval, the seeds that are not members.
// Memberlist never contacts a node again once it declared it dead, so
// after a partition heals the two sides stay apart until someone joins
// across; any node whose seed list reaches the other side does it here.
func (c *Cluster) rejoinLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case addr := <-c.syncs:
			if _, err := c.ml.Join([]string{addr}); err != nil {
				c.log.Debug("sync with peer failed", "addr", addr, "err", err)
			}
			continue
		case <-t.C:
		}
		c.interest.prune(time.Now(), staleTTL, c.isMember)
		seeds := c.seedsToJoin(c.cfg.Join, true)
		if len(seeds) == 0 {
			continue
		}
		n, err := c.ml.Join(seeds)
		if err != nil {
			if c.rate.Allow("rejoin", time.Minute) {
				c.log.Info("rejoin seeds failed; will retry", "seeds", seeds, "err", err)
			}
			continue
		}
		c.log.Info("rejoined seeds", "seeds", seeds, "contacted", n)
	}
}

// seedsToJoin returns the seeds that are not this node and, if
// missingOnly, not a live member either. Seeds named by DNS are resolved
// to compare; one that does not resolve is kept (Join reports it).
func (c *Cluster) seedsToJoin(seeds []string, missingOnly bool) []string {
	self := c.Addr()
	var members []string
	if missingOnly {
		members = c.memberAddrs()
	}
	var out []string
	for _, s := range seeds {
		addrs := c.resolveSeed(s)
		if slices.Contains(addrs, self) {
			continue
		}
		if missingOnly && slices.ContainsFunc(addrs, func(a string) bool { return slices.Contains(members, a) }) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// resolveSeed returns the "ip:port" addresses of seed.
func (c *Cluster) resolveSeed(seed string) []string {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return []string{net.JoinHostPort(ip.String(), port)}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.IP.String(), port))
	}
	return out
}

// requestSync asks the rejoin loop to push/pull with peer, whose view of
// the membership disagrees with ours (it refused our link because we are
// not a member in its view). Memberlist alone would fix this only at the
// next periodic push/pull between the two, 15 s or more later.
//
// A peer of our region that the LAN pool does not list is joined in the LAN
// pool as well: it may be refusing us because its LAN pool declared us
// dead.
func (c *Cluster) requestSync(peer string) {
	c.memberMu.RLock()
	m, ok := c.wan[peer]
	_, inLAN := c.lanMembers[peer]
	lan := ok && !inLAN && c.inOurLAN(m)
	c.memberMu.RUnlock()
	if !ok || m.Addr == "" {
		return
	}
	select {
	case c.syncs <- m.Addr:
	default:
	}
	if lan {
		c.queueLANJoin(m.LANAddr)
	}
}
