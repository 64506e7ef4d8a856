package edge

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/protocols"
)

// client is the node's side of one session: the protocols.Handler that
// serves its frames. Its fields are owned by the session's read loop, except
// where marked.
type client struct {
	node    *Node
	session protocols.Session
	timer   *time.Timer // closes the session if Connect does not come in time

	connected bool
	member    *protocols.ClientInfo // this session in channels' presence
	inflight  chan struct{}         // a slot per publish waiting for its owner: at most maxInflight
	subs      map[string]uint32     // channel → alias
	aliases   map[uint32]struct{}   // aliases in use
	secure    bool                  // came over TLS: reconnect advice names wss:// or WebTransport
	token     string                // the WebSocket upgrade's ?token=, until Connect
	ip        string                // the client's address, counted in Limits.SessionsPerIP
	user      *userCounter          // the authenticated user's sessions and publish rate; nil: anonymous
	userName  string                // the token's sub, with user
	grants    auth.Grants           // what the session's token allows (with Config.Auth)
	expiry    *time.Timer           // ends the session when its token expires; nil: none

	// Datagrams arrive on their own goroutine (WebTransport): they look
	// up volatile subscriptions here.
	mu           sync.Mutex
	volatile     map[uint32]string // alias → volatile channel; guarded by mu
	lastDgramErr time.Time         // guarded by mu: datagram errors are told at most once a second
	pubGrants    auth.Grants       // guarded by mu: grants, for datagrams
	pubLimit     *rate.Limiter     // guarded by mu: the session's publish rate, made at its first publish
}

var (
	_ protocols.Handler         = (*client)(nil)
	_ protocols.DatagramHandler = (*client)(nil)
)

func (c *client) HandleFrame(f *protocols.Frame) error {
	if !c.connected {
		cn := f.GetConnect()
		if cn == nil {
			return protocols.Closef(protocols.CodeBadFrame, "first frame must be connect, got %s", frameName(f))
		}
		return c.connect(f.Id, cn)
	}
	switch k := f.Kind.(type) {
	case *protocols.Frame_Subscribe:
		return c.subscribe(f.Id, k.Subscribe)
	case *protocols.Frame_Unsubscribe:
		return c.unsubscribe(f.Id, k.Unsubscribe)
	case *protocols.Frame_Publish:
		return c.publish(f.Id, k.Publish)
	case *protocols.Frame_Datagram:
		c.HandleDatagram(k.Datagram.Alias, k.Datagram.Data)
		return nil
	case *protocols.Frame_Presence:
		return c.presence(f.Id, k.Presence)
	case *protocols.Frame_Refresh:
		return c.refresh(f.Id, k.Refresh)
	case *protocols.Frame_Connect:
		return protocols.Closef(protocols.CodeBadFrame, "connect sent twice")
	case nil:
		return c.fail(f.Id, protocols.ErrCodeUnknownFrame, "unknown frame kind")
	default:
		return c.fail(f.Id, protocols.ErrCodeUnknownFrame, fmt.Sprintf("a client does not send %s", frameName(f)))
	}
}

func (c *client) connect(id uint32, cn *protocols.Connect) error {
	if cn.Protocol != "" && cn.Protocol != protocols.ProtocolVersion {
		return protocols.Closef(protocols.CodeBadProtocol, "unsupported protocol %q, this node speaks %s", cn.Protocol, protocols.ProtocolVersion)
	}
	if len(cn.User) > MaxPresenceUser || len(cn.Info) > MaxPresenceInfo {
		return protocols.Closef(protocols.CodeBadFrame, "connect: user is %d bytes (limit %d), info %d bytes (limit %d)",
			len(cn.User), MaxPresenceUser, len(cn.Info), MaxPresenceInfo)
	}
	token := cn.Token
	if token == "" {
		token = c.token
	}
	c.token = ""
	ident, err := c.node.authenticate(token)
	if err != nil {
		if c.node.logRate.Allow("auth:"+c.ip, 10*time.Second) { // a client that keeps failing cannot flood the log
			c.node.cfg.Logger.Info("session refused: token", "ip", c.ip, "protocol", c.session.Protocol(), "err", err)
		}
		return refused(err)
	}
	if c.node.cfg.Auth != nil && !ident.Anonymous() {
		u, ce := c.node.limits.addUser(ident.User)
		if ce != nil {
			return ce
		}
		c.user, c.userName = u, ident.User
	}
	c.timer.Stop()
	c.connected = true
	c.node.metrics.connected(c.session)
	if c.node.debug {
		c.node.cfg.Logger.Debug("session connected", "session", c.session.ID(), "protocol", c.session.Protocol(), "ip", c.ip, "user", ident.User)
	}
	c.member = &protocols.ClientInfo{Client: c.session.ID(), User: cn.User, Info: cn.Info}
	if c.user != nil {
		c.member.User, c.member.Info = ident.User, ident.Info // the token says who the client is
	}
	expiresIn := c.identify(ident)
	c.mu.Lock()
	c.pubGrants = ident.Grants
	c.mu.Unlock()
	cfg := c.node.cfg
	streams := cn.Streams && c.session.UseStreams()
	return c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
		MaxDatagramSize: uint32(cfg.MaxDatagramSize),
		Streams:         streams,
		SessionId:       c.session.ID(),
		PingIntervalMs:  uint32(max(cfg.Session.PingInterval, 0) / time.Millisecond),
		PongTimeoutMs:   uint32(cfg.Session.PongTimeout / time.Millisecond),
		MaxFrameSize:    uint32(cfg.Session.MaxFrameSize),
		Node:            cfg.Name,
		Region:          cfg.Region,
		Protocol:        protocols.ProtocolVersion,
		ExpiresInS:      expiresIn,
	}}}))
}

func (c *client) subscribe(id uint32, sub *protocols.Subscribe) error {
	name := sub.Channel
	if err := c.node.checkChannel(name); err != nil {
		return c.fail(id, protocols.ErrCodeInvalidChannel, err.Error())
	}
	if !c.can(name, auth.Subscribe) {
		return c.deny(id, name, auth.Subscribe)
	}
	if sub.Presence && !c.can(name, auth.Presence) {
		return c.deny(id, name, auth.Presence)
	}
	if sub.Recover && sub.SinceEpoch == "" && sub.SinceOffset == 0 && !c.can(name, auth.History) {
		return c.deny(id, name, auth.History) // a newcomer asking for the history
	}
	if alias, ok := c.subs[name]; ok {
		if c.node.hub.IsMember(name, c.session) {
			return c.fail(id, protocols.ErrCodeAlreadySubscribed, "already subscribed to "+name)
		}
		c.forget(name, alias) // the hub ended it (Unsubscribed with a code): subscribe anew
	}
	if len(c.subs) >= c.node.cfg.MaxSubscriptions {
		return c.fail(id, protocols.ErrCodeTooManySubscriptions, fmt.Sprintf("at most %d subscriptions per session", c.node.cfg.MaxSubscriptions))
	}
	alias := sub.Alias
	switch {
	case alias > protocols.MaxAlias:
		return c.fail(id, protocols.ErrCodeBadRequest, fmt.Sprintf("alias %d: want 1 to %d (or 0 for the server's pick)", alias, protocols.MaxAlias))
	case alias == 0:
		for alias = 1; c.inUse(alias); alias++ {
		}
	case c.inUse(alias):
		return c.fail(id, protocols.ErrCodeBadRequest, fmt.Sprintf("alias %d is in use by another subscription", alias))
	}
	volatile := c.node.hub.IsVolatile(name)
	var since *Position
	if sub.Recover && !volatile {
		since = &Position{Epoch: sub.SinceEpoch, Offset: sub.SinceOffset}
	}
	c.node.hub.SubscribeMember(name, c.session, alias, since, func(p Position, recovered bool) []byte {
		c.node.metrics.recovery(since, recovered)
		return protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{
			Channel: name, Epoch: p.Epoch, Offset: p.Offset, Alias: alias, Volatile: volatile, Recovered: recovered,
		}}})
	}, protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Error{Error: &protocols.Error{
		Code: uint32(protocols.ErrCodeInternal), Message: "the channel's owner node did not answer; try again",
	}}}), c.member, sub.Presence)
	c.subs[name] = alias
	c.aliases[alias] = struct{}{}
	if volatile {
		c.mu.Lock()
		c.volatile[alias] = name
		c.mu.Unlock()
		c.session.ReceiveDatagrams()
	}
	return nil
}

func (c *client) inUse(alias uint32) bool {
	_, ok := c.aliases[alias]
	return ok
}

func (c *client) unsubscribe(id uint32, u *protocols.Unsubscribe) error {
	name := u.Channel
	alias, ok := c.subs[name]
	if !ok {
		return c.fail(id, protocols.ErrCodeNotSubscribed, fmt.Sprintf("not subscribed to %.64q", name))
	}
	c.forget(name, alias)
	reply := protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Unsubscribed{
		Unsubscribed: &protocols.Unsubscribed{Channel: name},
	}})
	if !c.node.hub.Unsubscribe(name, c.session, reply) {
		_ = c.reply(reply) // the hub had ended it already
	}
	c.session.EndDeliveries(alias)
	return nil
}

// forget drops the session's record of a subscription.
func (c *client) forget(name string, alias uint32) {
	delete(c.subs, name)
	delete(c.aliases, alias)
	c.mu.Lock()
	delete(c.volatile, alias)
	c.mu.Unlock()
}

func (c *client) publish(id uint32, p *protocols.Publish) error {
	if err := c.node.checkChannel(p.Channel); err != nil {
		return c.fail(id, protocols.ErrCodeInvalidChannel, err.Error())
	}
	if !c.can(p.Channel, auth.Publish) {
		return c.deny(id, p.Channel, auth.Publish)
	}
	if why := c.overRate(); why != "" {
		return c.fail(id, protocols.ErrCodeRateLimited, why)
	}
	if !c.node.limits.channelAllows(p.Channel) {
		return c.fail(id, protocols.ErrCodeRateLimited, fmt.Sprintf("over %g publishes a second on %.64q", c.node.cfg.Limits.ChannelPublishRate, p.Channel))
	}
	if limit := c.node.maxPayload(p.Channel); len(p.Data) > limit {
		return c.fail(id, protocols.ErrCodePayloadTooLarge, fmt.Sprintf("payload is %d bytes, limit %d", len(p.Data), limit))
	}
	if len(p.IdempotencyKey) > protocols.MaxIdempotencyKey {
		return c.fail(id, protocols.ErrCodeBadRequest, fmt.Sprintf("idempotency_key is %d bytes, limit %d", len(p.IdempotencyKey), protocols.MaxIdempotencyKey))
	}
	// Publishes are pipelined: the read loop goes on while the owner
	// answers (requests to one owner keep their order on the link), and
	// pauses only while maxInflight wait.
	c.inflight <- struct{}{}
	c.node.hub.PublishAsync(p.Channel, p.IdempotencyKey, p.Data, func(pos Position, dup bool, err error) {
		<-c.inflight
		if err != nil {
			_ = c.fail(id, protocols.ErrCodeInternal, "publish failed: "+err.Error())
			return
		}
		_ = c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_PublishAck{
			PublishAck: &protocols.PublishAck{Epoch: pos.Epoch, Offset: pos.Offset, Duplicate: dup},
		}}))
	})
	return nil
}

// presence answers a presence request for a channel the session is
// subscribed to, without blocking the read loop (the owner may be another
// node).
func (c *client) presence(id uint32, p *protocols.PresenceRequest) error {
	name := p.Channel
	if _, ok := c.subs[name]; !ok {
		return c.fail(id, protocols.ErrCodeNotSubscribed, fmt.Sprintf("presence of %.64q: subscribe to it first", name))
	}
	if !c.can(name, auth.Presence) {
		return c.deny(id, name, auth.Presence)
	}
	if !c.node.hub.presence(name) {
		return c.fail(id, protocols.ErrCodeBadRequest, fmt.Sprintf("%.64q: %v", name, errNoPresence))
	}
	limit := DefaultPresenceLimit
	if p.CountsOnly {
		limit = 0
	}
	c.inflight <- struct{}{}
	go func() {
		defer func() { <-c.inflight }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c.node.hub.QueryPresence(ctx, name, limit)
		if err != nil {
			_ = c.fail(id, protocols.ErrCodeInternal, "presence: "+err.Error())
			return
		}
		_ = c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_PresenceReply{PresenceReply: r}}))
	}()
	return nil
}

// maxInflight is how many publishes of one session may wait for their
// owner's answer before the session's read loop waits too.
const maxInflight = 256

// HandleDatagram publishes a datagram on the volatile channel its alias
// names. It has no reply; a refusal is told as an Error with id 0, at most
// once a second.
func (c *client) HandleDatagram(alias uint32, payload []byte) {
	if alias == 0 {
		c.datagramError(protocols.ErrCodeBadRequest, "malformed datagram: want alias:varint seq:varint payload, alias 1 to 16383")
		return
	}
	c.mu.Lock()
	name, ok := c.volatile[alias]
	allowed := c.node.cfg.Auth == nil || c.pubGrants.Allows(name, auth.Publish)
	c.mu.Unlock()
	if !ok {
		c.datagramError(protocols.ErrCodeNotSubscribed, fmt.Sprintf("datagram for alias %d: no volatile subscription has it", alias))
		return
	}
	if !allowed {
		c.datagramError(protocols.ErrCodePermissionDenied, fmt.Sprintf("datagram for %s: no publish permission", name))
		return
	}
	if why := c.overRate(); why != "" {
		c.datagramError(protocols.ErrCodeRateLimited, "datagram dropped: "+why)
		return
	}
	if limit := c.node.cfg.MaxDatagramSize; len(payload) > limit {
		c.datagramError(protocols.ErrCodePayloadTooLarge, fmt.Sprintf("datagram for %s: payload is %d bytes, limit %d", name, len(payload), limit))
		return
	}
	c.node.hub.PublishDatagram(name, payload)
}

func (c *client) datagramError(code protocols.ErrorCode, msg string) {
	c.mu.Lock()
	now := time.Now()
	quiet := now.Sub(c.lastDgramErr) < time.Second
	if !quiet {
		c.lastDgramErr = now
	}
	c.mu.Unlock()
	if !quiet {
		_ = c.fail(0, code, msg)
	}
}

// fail answers request id with an Error frame; the session lives on. The
// message is cut to protocols.MaxErrorMessageLen bytes.
func (c *client) fail(id uint32, code protocols.ErrorCode, msg string) error {
	c.node.metrics.errorFrame(code)
	return c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Error{
		Error: &protocols.Error{Code: uint32(code), Message: protocols.TrimMessage(msg)},
	}}))
}

// reply queues the answer to a request. A closed session is no error of
// the handler's.
func (c *client) reply(frame []byte) error {
	_ = c.session.Reply(frame)
	return nil
}

// overRate takes a publish from the session's and its user's rates; it
// says why when one of them is spent.
func (c *client) overRate() string {
	if c.node.cfg.Limits.PublishRate > 0 {
		c.mu.Lock()
		if c.pubLimit == nil {
			c.pubLimit = c.node.limits.publishLimiter()
		}
		lim := c.pubLimit
		c.mu.Unlock()
		if !lim.Allow() {
			return fmt.Sprintf("over %g publishes a second for this session", float64(lim.Limit()))
		}
	}
	if c.user != nil && c.user.publish != nil && !c.user.publish.Allow() {
		return fmt.Sprintf("over %g publishes a second for user %.64q", float64(c.user.publish.Limit()), c.userName)
	}
	return ""
}

func (c *client) Closed(ce *protocols.CloseError) {
	c.node.metrics.closed(c.session, c.connected, ce)
	if c.connected && ce != nil && c.node.debug {
		c.node.cfg.Logger.Debug("session closed", "session", c.session.ID(), "user", c.member.GetUser(), "code", uint32(ce.Code), "reason", ce.Reason, "remote", ce.Remote)
	}
	c.timer.Stop()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	for name, alias := range c.subs {
		c.node.hub.Unsubscribe(name, c.session, nil)
		c.forget(name, alias)
	}
	c.node.limits.release(c.ip)
	if c.user != nil {
		c.node.limits.dropUser(c.userName)
	}
	c.node.forget(c)
}

// frameName names a frame's kind for error messages.
func frameName(f *protocols.Frame) string {
	if f.Kind == nil {
		return "a frame of an unknown kind"
	}
	return string(f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("kind")).Name())
}

// accept admits a session after the handshake; see Node.Accept.
func (n *Node) accept(s protocols.Session, r *http.Request) (*client, error) {
	if !n.originAllowed(r) {
		n.cfg.Logger.Debug("origin rejected", "origin", r.Header.Get("Origin"), "protocol", s.Protocol())
		return nil, protocols.Closef(protocols.CodeOriginNotAllowed, "origin %.60q not allowed", r.Header.Get("Origin"))
	}
	ip := clientIP(r)
	if ce := n.limits.admit(ip); ce != nil {
		if n.logRate.Allow("limit:"+ip, 10*time.Second) {
			n.cfg.Logger.Info("session refused: limit", "ip", ip, "reason", ce.Reason)
		}
		return nil, ce
	}
	c := &client{
		node: n, session: s, secure: r.TLS != nil || s.Protocol() == protocols.WebTransport, ip: ip,
		subs: make(map[string]uint32), aliases: make(map[uint32]struct{}), volatile: make(map[uint32]string),
		inflight: make(chan struct{}, maxInflight), // struct{} slots take no memory
		token:    queryToken(r),
	}
	c.timer = time.AfterFunc(n.cfg.ConnectTimeout, func() {
		s.Close(protocols.CodeHandshakeTimeout, "no connect frame in time")
	})
	if !n.track(c) {
		c.timer.Stop()
		n.limits.release(ip)
		return nil, protocols.Closef(protocols.CodeGoingAway, "node shutting down")
	}
	return c, nil
}
