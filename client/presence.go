package client

import (
	"context"

	"github.com/switchyard/switchyard/protocols"
)

// Member is a client in a channel's presence: its session id, and the user
// and info it gave in Options.
type Member struct {
	Client string
	User   string
	Info   []byte
}

// PresenceEvent is a member joining (Join) or leaving a channel.
type PresenceEvent struct {
	Join   bool
	Member Member
}

// PresenceInfo is who is in a channel over the whole cluster.
type PresenceInfo struct {
	Clients, Users int      // counts
	Members        []Member // sorted by client id, at most 1,000
	Truncated      bool     // there are more members than listed
}

// presenceBuffer is how many presence events wait for the application
// before newer ones are dropped.
const presenceBuffer = 256

// WithPresence asks for the channel's join and leave events, on
// Subscription.Presence (channels that keep presence, while they have at
// most the server's event limit of members, 1,000 by default).
func WithPresence() SubscribeOption {
	return func(s *protocols.Subscribe) { s.Presence = true }
}

// Presence delivers the channel's join and leave events when the
// subscription asked for them (WithPresence); nil otherwise. Events that
// the application does not read in time are dropped, not queued without
// bound: Presence asks for the authoritative list.
func (s *Subscription) Presence() <-chan PresenceEvent { return s.events }

// Presence asks who is in channel, over the whole cluster; the client must
// be subscribed to it. countsOnly leaves the member list out.
func (c *Client) Presence(ctx context.Context, channel string, countsOnly bool) (PresenceInfo, error) {
	f, err := c.roundTrip(ctx, &protocols.Frame{Kind: &protocols.Frame_Presence{Presence: &protocols.PresenceRequest{
		Channel: channel, CountsOnly: countsOnly,
	}}})
	if err != nil {
		return PresenceInfo{}, err
	}
	r := f.GetPresenceReply()
	if r == nil {
		return PresenceInfo{}, unexpectedReply("Presence", f)
	}
	info := PresenceInfo{Clients: int(r.GetClients()), Users: int(r.GetUsers()), Truncated: r.GetTruncated()}
	for _, m := range r.GetMembers() {
		info.Members = append(info.Members, memberOf(m))
	}
	return info, nil
}

func memberOf(m *protocols.ClientInfo) Member {
	return Member{Client: m.GetClient(), User: m.GetUser(), Info: m.GetInfo()}
}

// presenceEvent hands a join or leave to the channel's subscription, if it
// asked for them; never blocking the read loop.
func (c *Client) presenceEvent(channel string, e PresenceEvent) {
	c.mu.Lock()
	s := c.subs[channel]
	c.mu.Unlock()
	if s == nil || s.events == nil {
		return
	}
	select {
	case s.events <- e:
	default:
	}
}

// Presence delivers the channel's join and leave events across sessions
// when the subscription asked for them (WithPresence); nil otherwise.
func (s *Sub) Presence() <-chan PresenceEvent { return s.events }

// Presence asks who is in channel over the current session (see
// Client.Presence).
func (c *Conn) Presence(ctx context.Context, channel string, countsOnly bool) (PresenceInfo, error) {
	cl, err := c.session(ctx)
	if err != nil {
		return PresenceInfo{}, err
	}
	return cl.Presence(ctx, channel, countsOnly)
}

// forwardPresence passes one session's presence events on to the Sub
// until that subscription ends.
func (s *Sub) forwardPresence(inner *Subscription) {
	if s.events == nil || inner.events == nil {
		return
	}
	for {
		select {
		case e := <-inner.events:
			select {
			case s.events <- e:
			default:
			}
		case <-inner.quit:
			return
		case <-s.conn.ctx.Done():
			return
		}
	}
}
