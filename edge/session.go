package edge

import (
	"fmt"
	"net/http"
	"time"

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
	subs      map[string]struct{}
	secure    bool // came over TLS: reconnect advice names wss:// or WebTransport
}

var _ protocols.Handler = (*client)(nil)

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
	c.timer.Stop()
	c.connected = true
	cfg := c.node.cfg
	return c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
		SessionId:      c.session.ID(),
		PingIntervalMs: uint32(max(cfg.Session.PingInterval, 0) / time.Millisecond),
		PongTimeoutMs:  uint32(cfg.Session.PongTimeout / time.Millisecond),
		MaxFrameSize:   uint32(cfg.Session.MaxFrameSize),
		Node:           cfg.Name,
		Region:         cfg.Region,
		Protocol:       protocols.ProtocolVersion,
	}}}))
}

func (c *client) subscribe(id uint32, sub *protocols.Subscribe) error {
	name := sub.Channel
	if err := c.node.checkChannel(name); err != nil {
		return c.fail(id, protocols.ErrCodeInvalidChannel, err.Error())
	}
	if _, ok := c.subs[name]; ok {
		return c.fail(id, protocols.ErrCodeAlreadySubscribed, "already subscribed to "+name)
	}
	if len(c.subs) >= c.node.cfg.MaxSubscriptions {
		return c.fail(id, protocols.ErrCodeTooManySubscriptions, fmt.Sprintf("at most %d subscriptions per session", c.node.cfg.MaxSubscriptions))
	}
	c.node.hub.Subscribe(name, c.session, func(p Position) []byte {
		return protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{
			Channel: name, Epoch: p.Epoch, Offset: p.Offset,
		}}})
	}, protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Error{Error: &protocols.Error{
		Code: uint32(protocols.ErrCodeInternal), Message: "the channel's owner node did not answer; try again",
	}}}))
	c.subs[name] = struct{}{}
	return nil
}

func (c *client) unsubscribe(id uint32, u *protocols.Unsubscribe) error {
	name := u.Channel
	if _, ok := c.subs[name]; !ok {
		return c.fail(id, protocols.ErrCodeNotSubscribed, fmt.Sprintf("not subscribed to %.64q", name))
	}
	delete(c.subs, name)
	c.node.hub.Unsubscribe(name, c.session, protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Unsubscribed{
		Unsubscribed: &protocols.Unsubscribed{Channel: name},
	}}))
	return nil
}

func (c *client) publish(id uint32, p *protocols.Publish) error {
	if err := c.node.checkChannel(p.Channel); err != nil {
		return c.fail(id, protocols.ErrCodeInvalidChannel, err.Error())
	}
	if limit := c.node.maxPayload(p.Channel); len(p.Data) > limit {
		return c.fail(id, protocols.ErrCodePayloadTooLarge, fmt.Sprintf("payload is %d bytes, limit %d", len(p.Data), limit))
	}
	pos, err := c.node.hub.Publish(c.session.Context(), p.Channel, p.Data)
	if err != nil {
		return c.fail(id, protocols.ErrCodeInternal, "publish failed: "+err.Error())
	}
	return c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_PublishAck{
		PublishAck: &protocols.PublishAck{Epoch: pos.Epoch, Offset: pos.Offset},
	}}))
}

// fail answers request id with an Error frame; the session lives on. The
// message is cut to protocols.MaxErrorMessageLen bytes.
func (c *client) fail(id uint32, code protocols.ErrorCode, msg string) error {
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

func (c *client) Closed(*protocols.CloseError) {
	c.timer.Stop()
	for name := range c.subs {
		c.node.hub.Unsubscribe(name, c.session, nil)
	}
	c.subs = nil
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
	c := &client{node: n, session: s, subs: make(map[string]struct{}), secure: r.TLS != nil || s.Protocol() == protocols.WebTransport}
	c.timer = time.AfterFunc(n.cfg.ConnectTimeout, func() {
		s.Close(protocols.CodeHandshakeTimeout, "no connect frame in time")
	})
	if !n.track(c) {
		c.timer.Stop()
		return nil, protocols.Closef(protocols.CodeGoingAway, "node shutting down")
	}
	return c, nil
}
