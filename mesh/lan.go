package mesh

import (
	"fmt"
	"log"
	"time"

	"github.com/hashicorp/memberlist"
)

// The LAN pool (Profile "wan" only; see "Two pools" in doc.go).
//
// Besides the cluster-wide (WAN) pool, a node of a multi-region cluster runs
// a second memberlist with the LAN preset whose members are the nodes of
// its region. It carries no interest gossip and no metadata beyond the
// region: its only job is to declare a same-region node dead at LAN speed.
// Its packets carry the memberlist label lanLabel(region) (authenticated
// data under gossip encryption), so a LAN pool never merges with another
// region's LAN pool or with the cluster-wide pool, whatever address it is
// pointed at.
//
// Joining: the cluster-wide pool's metadata carries each node's LAN pool
// address; when it reports a member of our region that the LAN pool does
// not list (join, metadata update), the LAN loop joins that address. The
// LAN loop also re-joins, every lanRejoinInterval, such members (a LAN
// partition that healed, a restarted node whose old self the LAN pool still
// remembers as dead), and prunes old death records.

// lanLabel is the memberlist label of the LAN pool of region.
func lanLabel(region string) string { return "switchyard-lan/" + region }

// lanRejoinInterval bounds how often the LAN loop re-joins the members of
// our region that the LAN pool does not list. While the LAN pool declared
// such a node dead and the cluster-wide pool still lists it, our region and
// the others disagree on whether it is live: retry quickly. A LAN join to a
// dead node costs a refused connection, or a TCP timeout (2 s) when its
// host is gone.
const lanRejoinInterval = time.Second

// startLAN creates the LAN pool; it joins nobody yet.
func (c *Cluster) startLAN() error {
	mc := c.lanConfig
	mc.Name = c.name
	mc.Delegate = &lanDelegate{meta: nodeMeta{Region: c.cfg.Region}.encode()}
	mc.Events = &lanEvents{c: c}
	mc.Logger = log.New(&memberlistLog{log: c.log.With("pool", "lan")}, "", 0)
	mc.SecretKey = c.cfg.Key
	mc.Label = lanLabel(c.cfg.Region)
	if c.cfg.LANTransport != nil {
		mc.Transport = c.cfg.LANTransport
	} else {
		host, port, _ := splitHostPort(c.cfg.LANBind)
		mc.BindAddr, mc.BindPort = host, port
		mc.AdvertisePort = port
	}
	if c.cfg.LANAdvertise != "" {
		host, port, _ := splitHostPort(c.cfg.LANAdvertise)
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("mesh: create the LAN pool: %w", err)
	}
	c.lanML = ml
	addr := ml.LocalNode().Address()
	c.memberMu.Lock()
	c.lanAddr = addr
	c.meta.LAN = addr
	c.memberMu.Unlock()
	return nil
}

// inOurLAN reports whether m runs a LAN pool of our region (so its LAN
// pool's verdict counts). Called with memberMu.
func (c *Cluster) inOurLAN(m Member) bool {
	return c.lanConfig != nil && m.Region == c.cfg.Region && m.LANAddr != ""
}

// queueLANJoin asks the LAN loop to join addr; never blocks (the loop's
// periodic pass catches what does not fit).
func (c *Cluster) queueLANJoin(addr string) {
	select {
	case c.lanJoins <- addr:
	default:
	}
}

// lanUp records a node the LAN pool reports alive. A node it had declared
// dead becomes live again if the cluster-wide pool lists it.
func (c *Cluster) lanUp(n *memberlist.Node) {
	if n.Name == c.name {
		return
	}
	meta, err := decodeMeta(n.Meta)
	if err != nil || meta.Region != c.cfg.Region {
		if c.rate.Allow("lanmeta:"+n.Name, time.Minute) {
			c.log.Warn("ignoring LAN pool member of another region or with bad metadata", "member", n.Name, "region", meta.Region, "err", err)
		}
		return
	}
	c.eventMu.Lock()
	defer c.eventMu.Unlock()
	c.memberMu.Lock()
	c.lanMembers[n.Name] = struct{}{}
	_, wasDown := c.lanDown[n.Name]
	delete(c.lanDown, n.Name)
	m, inWAN := c.wan[n.Name]
	back := wasDown && inWAN
	if back {
		c.members[n.Name] = m
		c.view.Store(newOwnerView(c.members))
	}
	c.memberMu.Unlock()
	if back {
		c.log.Info("member alive again in both pools", "member", n.Name)
		c.liveUp(n.Name, m, true)
	}
}

// lanLeave records a node the LAN pool declared dead (or that left it): it
// is no longer live, even while the cluster-wide pool still lists it, until
// the LAN pool sees it alive again.
func (c *Cluster) lanLeave(n *memberlist.Node) {
	if n.Name == c.name {
		return
	}
	c.eventMu.Lock()
	defer c.eventMu.Unlock()
	c.memberMu.Lock()
	_, was := c.lanMembers[n.Name]
	if !was { // a member lanUp ignored
		c.memberMu.Unlock()
		return
	}
	delete(c.lanMembers, n.Name)
	c.lanDown[n.Name] = time.Now()
	_, wasLive := c.members[n.Name]
	if wasLive {
		delete(c.members, n.Name)
		c.view.Store(newOwnerView(c.members))
	}
	c.memberMu.Unlock()
	if wasLive {
		c.log.Info("member failed or left (LAN pool)", "member", n.Name)
		c.liveDown(n.Name)
	}
}

// lanLoop joins the LAN pool addresses it is asked to and, every
// lanRejoinInterval, those of the members of our region that the LAN pool
// does not list.
func (c *Cluster) lanLoop() {
	defer c.wg.Done()
	t := time.NewTicker(min(c.cfg.RejoinInterval, lanRejoinInterval))
	defer t.Stop()
	for {
		var addrs []string
		select {
		case <-c.done:
			return
		case addr := <-c.lanJoins:
			addrs = c.lanMissing(addr)
		case <-t.C:
			c.pruneLANDown(time.Now())
			addrs = c.lanMissing("")
		}
		for _, addr := range addrs {
			if c.isStopped() {
				return
			}
			if _, err := c.lanML.Join([]string{addr}); err != nil {
				if c.rate.Allow("lanjoin:"+addr, time.Minute) {
					c.log.Info("joining the LAN pool failed; will retry", "addr", addr, "err", err)
				}
			}
		}
	}
}

// lanMissing returns the LAN pool addresses of the members of our region
// (cluster-wide pool) that the LAN pool does not list; only addr if addr
// is not "" (and still missing).
func (c *Cluster) lanMissing(addr string) []string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	var out []string
	for name, m := range c.wan {
		if _, ok := c.lanMembers[name]; ok || name == c.name || !c.inOurLAN(m) {
			continue
		}
		if addr == "" || m.LANAddr == addr {
			out = append(out, m.LANAddr)
		}
	}
	return out
}

// pruneLANDown forgets the death records of nodes that also left the
// cluster-wide pool long ago. Records of members are kept: they stay not
// live until the LAN pool sees them.
func (c *Cluster) pruneLANDown(now time.Time) {
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	for name, at := range c.lanDown {
		if _, ok := c.wan[name]; !ok && now.Sub(at) > staleTTL {
			delete(c.lanDown, name)
		}
	}
}

// lanDelegate serves the LAN pool: metadata (our region) and nothing else.
type lanDelegate struct{ meta []byte }

var _ memberlist.Delegate = (*lanDelegate)(nil)

func (d *lanDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}
func (d *lanDelegate) NotifyMsg([]byte)                           {}
func (d *lanDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *lanDelegate) LocalState(join bool) []byte                { return nil }
func (d *lanDelegate) MergeRemoteState(buf []byte, join bool)     {}

// lanEvents tracks the LAN pool's membership.
type lanEvents struct{ c *Cluster }

var _ memberlist.EventDelegate = (*lanEvents)(nil)

func (e *lanEvents) NotifyJoin(n *memberlist.Node)   { e.c.lanUp(n) }
func (e *lanEvents) NotifyUpdate(n *memberlist.Node) { e.c.lanUp(n) }
func (e *lanEvents) NotifyLeave(n *memberlist.Node)  { e.c.lanLeave(n) }
