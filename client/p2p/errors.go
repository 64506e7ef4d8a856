package p2p

import (
	"errors"
	"fmt"

	"github.com/gorilla/websocket"
)

var (
	// ErrLeft is the Err of a Room that Leave ended.
	ErrLeft = errors.New("p2p: left the room")
	// ErrClosed is returned by the methods of a Room that has ended.
	ErrClosed = errors.New("p2p: room closed")
	// ErrQueueFull is returned by Send (and given to OnError for the
	// negotiation's own messages) when the outgoing queue is full: the
	// server is not reading, or the socket is down and being redialled.
	ErrQueueFull = errors.New("p2p: outgoing queue full")
	// ErrUnknownPeer is returned by Peer for an id that is not in the room.
	ErrUnknownPeer = errors.New("p2p: unknown peer")
)

// Error codes the server sends (docs/signaling.md §4).
const (
	CodeBadMessage      = "bad_message"
	CodeTooLarge        = "too_large"
	CodeUnknownPeer     = "unknown_peer"
	CodePeerUnavailable = "peer_unavailable"
	CodeNotJoined       = "not_joined"
	CodeAlreadyJoined   = "already_joined"
	CodeRateLimited     = "rate_limited"
	CodeBadRoom         = "bad_room"
	CodeRoomFull        = "room_full"
	CodeUnauthorized    = "unauthorized"
	CodeFlood           = "flood"
	CodeUnavailable     = "unavailable" // the room's node did not answer a join (close 3003): try again
)

// Error is an "error" message from the server: a refused join (returned
// by Join) or a refused message (given to OnError). Use errors.As.
type Error struct {
	Code    string // e.g. CodeUnknownPeer
	Message string // the server's explanation
	To      string // the target of a refused relay, if any
}

func (e *Error) Error() string {
	s := "p2p: server error " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.To != "" {
		s += " (to " + e.To + ")"
	}
	return s
}

// CloseError is the end of a signaling connection by a WebSocket close
// from the server that the Room does not recover from (a code that ends
// the session, see "Connection loss" in the package documentation), or
// one that ended a Join. Err is the "error" message the server
// sent just before, if any, and is what Unwrap returns, so
// errors.As(err, &p2pErr) finds it too.
type CloseError struct {
	Code   int    // WebSocket close code, e.g. 3505
	Reason string // close reason, e.g. "replaced"
	Err    *Error // the server's error message before the close, or nil
}

func (e *CloseError) Error() string {
	s := fmt.Sprintf("p2p: signaling closed by the server: code %d", e.Code)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Code
		if e.Err.Message != "" {
			s += ": " + e.Err.Message
		}
	}
	return s
}

func (e *CloseError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// Close codes of the protocol (docs/signaling.md §4).
const (
	CloseShutdown = 3000 // the node shuts down: the Room redials and resumes
	CloseReplaced = 4500 // the peer id was resumed on another connection (terminal)
)

// terminalClose reports whether a close code from the server ends the
// Room instead of a reconnect: 1000 (the server ended the session),
// 3500–3999 and 4500–4999 (refusals that would only repeat; 4500 is
// "replaced"). Every other code (1001, 1006, 1009, 1011, 3000–3499,
// 4000–4499) is followed by a redial and a resume.
func terminalClose(code int) bool {
	switch {
	case code == websocket.CloseNormalClosure:
		return true
	case code >= 3500 && code <= 3999, code >= 4500 && code <= 4999:
		return true
	}
	return false
}

// fatalCode reports whether an error code comes before a close that ends
// the connection (docs/signaling.md §4, "Fatal").
func fatalCode(code string) bool {
	switch code {
	case CodeBadRoom, CodeRoomFull, CodeUnauthorized, CodeFlood:
		return true
	}
	return false
}
