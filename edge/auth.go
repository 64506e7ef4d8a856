package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/protocols"
)

// Authenticator checks a session's token: the Connect frame's, or for
// WebSocket the "token" query parameter of the upgrade. *auth.Verifier
// satisfies it. An empty token asks for anonymous access, which the
// Authenticator grants or refuses.
type Authenticator interface {
	Verify(ctx context.Context, token string) (auth.Identity, error)
}

// verifyTimeout bounds a token check (a JWKS fetch for a new key id).
const verifyTimeout = 5 * time.Second

// authenticate checks token for a new session or a refresh. Without an
// Authenticator every session is anonymous and may do anything.
func (n *Node) authenticate(token string) (auth.Identity, error) {
	if n.cfg.Auth == nil {
		return auth.Identity{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	return n.cfg.Auth.Verify(ctx, token)
}

// refused is the close reason for a token that failed: the auth reason
// ("expired", "bad_signature", …) and its message, never the token.
func refused(err error) *protocols.CloseError {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return protocols.Closef(protocols.CodeUnauthorized, "%s: %s", ae.Reason, ae.Message)
	}
	return protocols.Closef(protocols.CodeUnauthorized, "token refused")
}

// can reports whether the session may do a on channel: always without an
// Authenticator, else as its token's capabilities say. Owned by the read
// loop (datagrams use their own copy, see volatileAlias).
func (c *client) can(channel string, a auth.Action) bool {
	return c.node.cfg.Auth == nil || c.grants.Allows(channel, a)
}

// deny answers a request the token does not allow.
func (c *client) deny(id uint32, channel string, a auth.Action) error {
	c.node.cfg.Logger.Debug("permission denied", "session", c.session.ID(), "user", c.member.GetUser(), "channel", channel, "action", string(a))
	return c.fail(id, protocols.ErrCodePermissionDenied, fmt.Sprintf("no %s permission on %.64q", a, channel))
}

// identify applies a verified identity to the session: its user and info
// in presence (a token's win over what the client says), its grants, and
// the timer that ends the session when the token expires. It returns the
// seconds left (0: no expiry).
func (c *client) identify(id auth.Identity) uint32 {
	c.grants = id.Grants
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	if id.Expires.IsZero() {
		return 0
	}
	left := time.Until(id.Expires)
	s := c.session
	c.expiry = time.AfterFunc(left, func() {
		s.Close(protocols.CodeUnauthorized, "token expired: refresh it before expires_in_s")
	})
	return uint32(min(max(left/time.Second, 1), 1<<31)) // rounded down: the client refreshes early, never late
}

// refresh takes a new token for the live session.
func (c *client) refresh(id uint32, r *protocols.Refresh) error {
	ident, err := c.node.authenticate(r.Token)
	if err != nil {
		msg := refused(err).Reason
		return c.fail(id, protocols.ErrCodeUnauthorized, "refresh refused: "+msg)
	}
	if ident.User != c.member.GetUser() && c.node.cfg.Auth != nil {
		return c.fail(id, protocols.ErrCodeUnauthorized, "refresh refused: the token is for another user")
	}
	left := c.identify(ident)
	c.mu.Lock()
	c.pubGrants = ident.Grants
	c.mu.Unlock()
	return c.reply(protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Refreshed{Refreshed: &protocols.Refreshed{ExpiresInS: left}}}))
}

// queryToken is the "token" query parameter of a WebSocket upgrade, for
// clients that cannot put it in Connect before they know the node (most
// send it in Connect).
func queryToken(r *http.Request) string {
	if r == nil || r.URL == nil {
		return ""
	}
	return r.URL.Query().Get("token")
}

// SignalAuthorizer turns a node's Authenticator into the check of
// signaling joins (signaling.Config.Authorize): the token must allow
// "signal" on the room.
func SignalAuthorizer(a Authenticator) func(ctx context.Context, token, room string) error {
	return func(ctx context.Context, token, room string) error {
		id, err := a.Verify(ctx, token)
		if err != nil {
			var ae *auth.Error
			if errors.As(err, &ae) {
				return fmt.Errorf("%s: %s", ae.Reason, ae.Message)
			}
			return errors.New("token refused")
		}
		if !id.Grants.Allows(room, auth.Signal) {
			return fmt.Errorf("no signal permission on room %.64q", room)
		}
		return nil
	}
}
