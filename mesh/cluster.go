package mesh

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/switchyard/switchyard/protocols"
)

// Local is what the mesh needs from its node (edge.Node satisfies it).
// The mesh never calls it while holding a lock of its own, so Local may
// call back into the Cluster. Deliver, Registered, and Sequence and Hold
// for requests from other nodes run on the reader goroutine of the link
// from that node: they must not block for long (it stalls that link) and
// must not wait for a Publish (its answer comes on the same link).
type Local interface {
	// Sequence publishes data on channel as its owner: the node assigns the
	// next position, delivers to its local subscribers, calls
	// Cluster.Forward with the encoded frame (in sequence order, under its
	// channel lock), and returns the position. The mesh calls it for
	// publish requests from other nodes.
	// A non-empty key makes the publish idempotent: a publish of channel
	// with a key seen within the node's window is not applied again and
	// returns the original position with dup true.
	Sequence(channel, key string, data []byte) (epoch string, offset uint64, dup bool, err error)
	// Deliver hands a Message frame sequenced by the owner (the exact bytes
	// from protocols.EncodeMessage, length prefix included) to local
	// subscribers.
	Deliver(channel, epoch string, offset uint64, frame []byte)
	// Hold runs fn while no publication of channel can be sequenced on this
	// node, passing the channel's current position and its history (the
	// latest publications, oldest first, ending at that position; nil when
	// the channel keeps none).
	Hold(channel string, fn func(epoch string, offset uint64, history []protocols.Publication))
	// Registered tells the node that the owner now forwards channel to it,
	// from the given position on, with the owner's history up to it.
	Registered(channel, epoch string, offset uint64, history []protocols.Publication)
	// Channels lists the channels with local subscribers.
	Channels() []string
}

// maxHistoryReply bounds the history a registration reply carries: the
// newest publications that fit.
const maxHistoryReply = 4 << 20

// Cluster is one node's membership in the mesh: memberlist membership,
// interest gossip, channel ownership and forwarding links.
//
// Lock order. Never call Local or memberlist while holding any of these;
// memberlist calls the event handlers with its own node lock held, and its
// broadcast queue calls numMembers (memberMu) with the queue's lock held.
// The handlers of both pools take eventMu, so that the membership changes
// they decide and carry out (links, interest, requests) never interleave.
//
//	regMu → linkMu → outLink.mu → {pendMu, resetMu}
//	memberlist's locks → eventMu → {memberMu, interest.mu, linkMu, ...}
//	memberMu, interest.mu, lifeMu: taken alone (lifeMu around the others)
type Cluster struct {
	// immutable after New
	cfg       Config
	name      string
	local     Local
	keeper    Keeper // local, when it keeps replicas; else nil
	log       *slog.Logger
	serverTLS *tls.Config
	interest  *interest
	bcast     *memberlist.TransmitLimitedQueue
	mlConfig  *memberlist.Config
	lanConfig *memberlist.Config // nil: no LAN pool (Config.runsLAN)
	lanJoins  chan string        // LAN pool addresses to join; for the LAN loop
	kick      chan struct{}      // wakes the worker; cap 1
	syncs     chan string        // memberlist addresses to push/pull with; for the rejoin loop
	done      chan struct{}      // closed when shutdown starts
	ctx       context.Context
	cancel    context.CancelFunc // cancels ctx when shutdown starts
	rate      protocols.LogLimiter

	// set by Start before any goroutine or event handler runs
	ml      *memberlist.Memberlist // the cluster-wide (WAN) pool
	lanML   *memberlist.Memberlist // the LAN pool of our region; nil if none
	ln      net.Listener
	fwdAddr string
	addr    string

	// dial opens the TCP connection of an outbound link (a test hook).
	dial func(ctx context.Context, addr string) (net.Conn, error)

	lifeMu sync.Mutex // serialises Start and stop
	state  int        // guarded by lifeMu: stateNew, stateRunning, stateStopped

	view    atomic.Pointer[ownerView]
	running atomic.Bool // Start succeeded and stop has not begun

	eventMu sync.Mutex // serialises the membership handlers of both pools

	memberMu   sync.RWMutex
	members    map[string]Member    // live members, self included: wan minus lanDown
	wan        map[string]Member    // members of the cluster-wide pool, self included
	lanMembers map[string]struct{}  // members of the LAN pool, self excluded
	lanDown    map[string]time.Time // nodes the LAN pool declared dead, until it sees them alive
	lanAddr    string               // our LAN pool address; "" if none
	meta       nodeMeta             // our own metadata

	linkMu  sync.RWMutex
	closing bool                  // no new links or goroutines
	out     map[string]*outLink   // by peer
	in      map[string]*inLink    // by peer, the current inbound reader
	conns   map[net.Conn]struct{} // every accepted connection

	pendMu sync.Mutex
	calls  map[uint64]*call

	regMu    sync.Mutex
	regs     map[string]*regState // our local interest and its registration
	dirty    map[string]struct{}  // channels whose registration is not confirmed
	lastView *ownerView           // the owner view the worker last reconciled

	resetMu sync.Mutex
	resets  map[string]struct{} // peers whose links were reset, for the worker

	dg dgState // volatile publications between nodes (datagram.go)

	signals atomic.Pointer[Signals] // the node's WebRTC signaling; nil: none (signal.go)

	nextID atomic.Uint64
	wg     sync.WaitGroup

	stats struct {
		linkDrops    atomic.Uint64 // outbound links dropped on queue overflow
		linkErrors   atomic.Uint64 // outbound links dropped on write errors
		rejected     atomic.Uint64 // inbound links rejected
		deltasIn     atomic.Uint64 // gossip deltas that were news
		reregistered atomic.Uint64 // registrations sent
	}
	metrics meshStats // more counters, for Stats (metrics.go)
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New validates cfg and builds a Cluster; it starts nothing.
func New(cfg Config, local Local) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if local == nil {
		return nil, invalid("local is nil")
	}
	keeper, _ := local.(Keeper)
	srv := cfg.TLS.Clone()
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	if srv.MinVersion < tls.VersionTLS13 {
		srv.MinVersion = tls.VersionTLS13
	}
	mc := memberlistConfig(cfg.Profile)
	c := &Cluster{
		cfg:        cfg,
		name:       cfg.Name,
		local:      local,
		keeper:     keeper,
		log:        cfg.Logger.With("component", "mesh", "node", cfg.Name),
		serverTLS:  srv,
		interest:   newInterest(cfg.Name, time.Now()),
		mlConfig:   mc,
		kick:       make(chan struct{}, 1),
		syncs:      make(chan string, 16),
		lanJoins:   make(chan string, 16),
		done:       make(chan struct{}),
		members:    make(map[string]Member),
		wan:        make(map[string]Member),
		lanMembers: make(map[string]struct{}),
		lanDown:    make(map[string]time.Time),
		meta:       nodeMeta{Region: cfg.Region, URLs: cfg.PublicURLs},
		out:        make(map[string]*outLink),
		in:         make(map[string]*inLink),
		conns:      make(map[net.Conn]struct{}),
		calls:      make(map[uint64]*call),
		regs:       make(map[string]*regState),
		dirty:      make(map[string]struct{}),
		resets:     make(map[string]struct{}),
	}
	c.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.runsLAN() {
		c.lanConfig = memberlistConfig(ProfileLAN)
	}
	c.bcast = newBroadcastQueue(c.numMembers, deltaRetransmitMult*mc.RetransmitMult)
	c.members[c.name] = c.meta.member(c.name, "")
	c.wan[c.name] = c.members[c.name]
	c.view.Store(newOwnerView(c.members))
	if len(cfg.Key) == 0 {
		c.log.Warn("gossip encryption is off (Config.Key is empty): use only in tests")
	}
	return c, nil
}

// Start opens the link listener, creates the LAN pool (with Profile "wan")
// and the cluster-wide memberlist and joins the seeds. A failed join is
// logged, not returned: seeds may come later and the rejoin loop retries.
// The LAN pool is joined through the same-region members the cluster-wide
// pool reports. Start then registers the channels Local.Channels lists.
func (c *Cluster) Start() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	switch c.state {
	case stateRunning:
		return ErrStarted
	case stateStopped:
		return ErrClosed
	}
	ln, err := net.Listen("tcp", c.cfg.ForwardBind)
	if err != nil {
		return fmt.Errorf("mesh: listen for links on %s: %w", c.cfg.ForwardBind, err)
	}
	c.ln = ln
	fwd := ln.Addr().(*net.TCPAddr)
	unspecified := fwd.IP.IsUnspecified()
	c.setForwardAddr(net.JoinHostPort(fwd.IP.String(), strconv.Itoa(fwd.Port)))
	if err := c.startDatagrams(fwd.IP.String(), fwd.Port); err != nil {
		ln.Close()
		return err
	}
	if c.lanConfig != nil {
		// First, so that the first metadata we advertise carries its address.
		if err := c.startLAN(); err != nil {
			ln.Close()
			c.dgStop()
			return err
		}
	}

	mc := c.mlConfig
	mc.Name = c.name
	mc.Delegate = &delegate{c: c}
	mc.Events = &events{c: c}
	mc.Ping = pinger{c: c}
	mc.Logger = log.New(&memberlistLog{log: c.log}, "", 0)
	mc.SecretKey = c.cfg.Key
	if c.cfg.Transport != nil {
		mc.Transport = c.cfg.Transport
	} else {
		host, port, _ := splitHostPort(c.cfg.Bind)
		mc.BindAddr, mc.BindPort = host, port
		mc.AdvertisePort = port
	}
	if c.cfg.Advertise != "" {
		host, port, _ := splitHostPort(c.cfg.Advertise)
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		ln.Close()
		c.dgStop()
		if c.lanML != nil {
			c.lanML.Shutdown()
		}
		return fmt.Errorf("mesh: create memberlist: %w", err)
	}
	c.ml = ml
	self := ml.LocalNode()
	c.memberMu.Lock()
	c.addr = self.Address()
	c.memberMu.Unlock()
	if unspecified {
		c.setForwardAddr(net.JoinHostPort(self.Addr.String(), strconv.Itoa(fwd.Port)))
		_, dgPort, _ := net.SplitHostPort(c.datagramAddr())
		c.memberMu.Lock()
		c.meta.Datagram = net.JoinHostPort(self.Addr.String(), dgPort)
		c.memberMu.Unlock()
		if err := ml.UpdateNode(time.Second); err != nil {
			c.log.Warn("advertise forward address", "err", err)
		}
	}
	c.memberUp(self)

	c.state = stateRunning
	c.running.Store(true)
	c.wg.Add(4)
	go c.acceptLoop()
	go c.dgAcceptLoop()
	go c.worker()
	go c.rejoinLoop()
	if c.lanML != nil {
		c.wg.Add(1)
		go c.lanLoop()
	}

	if seeds := c.seedsToJoin(c.cfg.Join, false); len(seeds) > 0 {
		if n, err := ml.Join(seeds); err != nil {
			c.log.Warn("join seeds failed; will retry", "seeds", seeds, "err", err)
		} else {
			c.log.Info("joined cluster", "contacted", n, "members", ml.NumMembers())
		}
	}
	for _, ch := range c.local.Channels() {
		c.Register(ch)
	}
	c.log.Info("mesh started", "addr", c.Addr(), "lan", c.LANAddr(), "forward", c.ForwardAddr(), "region", c.cfg.Region, "profile", c.cfg.Profile)
	return nil
}

func (c *Cluster) setForwardAddr(addr string) {
	c.memberMu.Lock()
	c.fwdAddr = addr
	c.meta.Forward = addr
	c.memberMu.Unlock()
}

// leaveTimeout bounds the wait for the leave broadcast in Shutdown.
const leaveTimeout = 2 * time.Second

// Shutdown leaves the cluster gracefully: it broadcasts a leave in each
// pool (bounded, both at once),
// shuts memberlist down, flushes and closes the links and waits for every
// goroutine. It is idempotent. If ctx ends first, it closes everything at
// once and returns ctx.Err() without waiting for callbacks into Local that
// are still running.
func (c *Cluster) Shutdown(ctx context.Context) error { return c.stop(ctx, true) }

// Kill stops the node as a crash would, for tests: both memberlist pools
// shut down without a leave, so peers must detect the failure, and links
// are dropped unflushed.
func (c *Cluster) Kill() { _ = c.stop(context.Background(), false) }

func (c *Cluster) stop(ctx context.Context, graceful bool) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	prev := c.state
	c.state = stateStopped
	if prev != stateRunning {
		return nil
	}
	c.running.Store(false)
	close(c.done)
	c.cancel()
	if graceful {
		timeout := leaveTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl)/2)
		}
		if timeout > 0 {
			var wg sync.WaitGroup
			if c.lanML != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := c.lanML.Leave(timeout); err != nil {
						c.log.Warn("leave the LAN pool", "err", err)
					}
				}()
			}
			if err := c.ml.Leave(timeout); err != nil {
				c.log.Warn("leave", "err", err)
			}
			wg.Wait()
		}
	}
	if err := c.ml.Shutdown(); err != nil {
		c.log.Warn("memberlist shutdown", "err", err)
	}
	if c.lanML != nil {
		if err := c.lanML.Shutdown(); err != nil {
			c.log.Warn("LAN pool shutdown", "err", err)
		}
	}

	c.linkMu.Lock()
	c.closing = true
	c.ln.Close()
	outs := make([]*outLink, 0, len(c.out))
	for _, l := range c.out {
		outs = append(outs, l)
	}
	for conn := range c.conns {
		conn.Close()
	}
	c.linkMu.Unlock()
	for _, l := range outs {
		l.close(graceful)
	}
	c.dgStop()
	c.failAll(ErrClosed)

	waited := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		c.log.Info("mesh stopped", "graceful", graceful)
		return nil
	case <-ctx.Done():
		for _, l := range outs {
			l.close(false)
		}
		return ctx.Err()
	}
}

// Name returns the node's name.
func (c *Cluster) Name() string { return c.name }

// Addr returns the memberlist address ("host:port", a seed for others);
// empty before Start.
func (c *Cluster) Addr() string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	return c.addr
}

// LANAddr returns the LAN pool's address ("host:port"); empty before
// Start and when the node runs no LAN pool (Profile "lan").
func (c *Cluster) LANAddr() string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	return c.lanAddr
}

// ForwardAddr returns the link listener's advertised address; empty
// before Start.
func (c *Cluster) ForwardAddr() string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	return c.fwdAddr
}

// Members lists the live members (alive or suspect), this node included,
// sorted by name: the members of the cluster-wide pool, less the nodes of
// our region that the LAN pool declared dead (see doc.go). Group them by
// Region to list the cluster's public URLs by region.
func (c *Cluster) Members() []Member {
	c.memberMu.RLock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	c.memberMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetDraining marks this node as draining (or not) in its metadata: a
// draining node owns no channel while a non-draining member exists. It
// waits (at most a second) for the update to go out by gossip.
func (c *Cluster) SetDraining(draining bool) {
	c.memberMu.Lock()
	c.meta.Drain = draining
	self := c.members[c.name]
	self.Draining = draining
	c.members[c.name] = self
	c.wan[c.name] = self
	c.view.Store(newOwnerView(c.members))
	c.memberMu.Unlock()
	if c.running.Load() {
		if err := c.ml.UpdateNode(time.Second); err != nil {
			c.log.Warn("update metadata", "draining", draining, "err", err)
		}
	}
	c.kickWorker()
}

// IsOwner reports whether this node owns channel: rendezvous hashing over
// the live members, draining members excluded while others exist.
func (c *Cluster) IsOwner(channel string) bool { return c.Owner(channel) == c.name }

// Owner returns the name of the node that owns channel.
func (c *Cluster) Owner(channel string) string {
	if o := c.view.Load().owner(channel); o != "" {
		return o
	}
	return c.name
}

// memberUp records a node that joined the cluster-wide pool or changed its
// metadata. It is live unless the LAN pool declared it dead.
func (c *Cluster) memberUp(n *memberlist.Node) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		if c.rate.Allow("meta:"+n.Name, time.Minute) {
			c.log.Warn("ignoring member with bad metadata", "member", n.Name, "err", err)
		}
		return
	}
	m := meta.member(n.Name, n.Address())
	c.eventMu.Lock()
	defer c.eventMu.Unlock()
	c.memberMu.Lock()
	if n.Name == c.name {
		m.Draining = c.meta.Drain // ours is the truth
	}
	_, known := c.wan[n.Name]
	c.wan[n.Name] = m
	lan := c.inOurLAN(m)
	if !lan {
		delete(c.lanDown, n.Name) // it runs no LAN pool with us (any more)
	}
	_, down := c.lanDown[n.Name]
	old, wasLive := c.members[n.Name]
	changed := false
	if !down {
		c.members[n.Name] = m
		changed = !wasLive || old.Draining != m.Draining
		if changed {
			c.view.Store(newOwnerView(c.members))
		}
	}
	lanJoin := ""
	if _, ok := c.lanMembers[n.Name]; lan && !ok && n.Name != c.name {
		lanJoin = m.LANAddr
	}
	c.memberMu.Unlock()
	if n.Name == c.name {
		return
	}
	if !known {
		c.log.Info("member joined", "member", n.Name, "region", m.Region, "addr", m.Addr, "lan", m.LANAddr, "live", !down)
	}
	if lanJoin != "" {
		c.queueLANJoin(lanJoin)
	}
	if !down {
		c.liveUp(n.Name, m, changed)
	}
}

// memberDown forgets a node that died or left the cluster-wide pool.
func (c *Cluster) memberDown(name string) {
	if name == c.name {
		return
	}
	c.eventMu.Lock()
	defer c.eventMu.Unlock()
	c.memberMu.Lock()
	delete(c.wan, name)
	_, wasLive := c.members[name]
	delete(c.members, name)
	c.view.Store(newOwnerView(c.members))
	c.memberMu.Unlock()
	if wasLive {
		c.log.Info("member left or failed", "member", name)
	}
	c.liveDown(name)
}

// liveUp starts using a node that became live (or changed): its link, and
// its interest if we had dropped it. Called with eventMu.
func (c *Cluster) liveUp(name string, m Member, changed bool) {
	if c.interest.joined(name) {
		// Back from the dead (a healed partition, a restart): we dropped its
		// interest and ignored what others said of it since, so fetch its
		// state from itself.
		c.requestSync(name)
	}
	c.ensureLink(name, m.ForwardAddr)
	if changed {
		c.kickWorker()
	}
}

// liveDown stops using a node that is no longer live: ownership moves (the
// caller swapped the view), its links close, its interest is dropped and
// requests to it fail. Called with eventMu.
func (c *Cluster) liveDown(name string) {
	c.interest.dropNode(name, time.Now())
	c.dropLinks(name)
	c.dgDrop(name)
	c.failPeer(name, ErrPeerGone)
	c.kickWorker()
}

func (c *Cluster) isMember(name string) bool {
	c.memberMu.RLock()
	_, ok := c.members[name]
	c.memberMu.RUnlock()
	return ok
}

// numMembers is the size of the cluster-wide pool (interest gossip's).
func (c *Cluster) numMembers() int {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	return len(c.wan)
}

// memberAddrs returns the memberlist addresses of the members of the
// cluster-wide pool.
func (c *Cluster) memberAddrs() []string {
	c.memberMu.RLock()
	defer c.memberMu.RUnlock()
	out := make([]string, 0, len(c.wan))
	for _, m := range c.wan {
		out = append(out, m.Addr)
	}
	return out
}

func (c *Cluster) kickWorker() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// interested lists the nodes (this one included) that the routing table
// holds for channel: gossiped interest and registrations received.
func (c *Cluster) interested(channel string) []string {
	return c.interest.interested(channel)
}
