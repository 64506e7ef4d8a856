package protocols

import (
	"errors"
	"fmt"
	"time"
)

// CloseCode ends a session. The same number travels in the WebSocket close
// frame and as the WebTransport session error code, and in the Disconnect
// frame that precedes both. Codes fall in ranges that tell a client what to do:
//
//	3000–3499  reconnect allowed (with backoff)
//	3500–3999  terminal: do not reconnect until something changes
//	4000–4499  application, reconnect allowed
//	4500–4999  application, terminal
//
// Codes below 3000 are the transports' own (1000 normal closure, 1006
// abnormal, ...); a client treats them as reconnect allowed.
type CloseCode uint32

// Reconnect-allowed codes.
const (
	CodeGoingAway        CloseCode = 3000 // the node shuts down or drains
	CodeSlowConsumer     CloseCode = 3001 // the send queue overflowed
	CodeHeartbeatTimeout CloseCode = 3002 // no pong within the pong timeout
	CodeInternalError    CloseCode = 3003 // the node failed; try again
	CodeHandshakeTimeout CloseCode = 3004 // no Connect frame in time
	CodeMissedMessages   CloseCode = 3005 // publications were lost on the way to this node: resubscribe
	CodeTryLater         CloseCode = 3006 // over a connection limit: reconnect after reconnect_after_ms
)

// Terminal codes.
const (
	CodeBadFrame         CloseCode = 3500 // a frame did not decode, or broke the protocol
	CodeFrameTooLarge    CloseCode = 3501 // a frame exceeded max_frame_size
	CodeUnauthorized     CloseCode = 3502 // missing or invalid credentials
	CodeOriginNotAllowed CloseCode = 3503 // the Origin header is not on the allowlist
	CodeBadProtocol      CloseCode = 3504 // the client speaks an unsupported protocol version
	CodePolicyViolation  CloseCode = 3505 // the client broke a usage limit (a ping flood)
)

// Range boundaries.
const (
	codeReconnectMin    CloseCode = 3000
	codeTerminalMin     CloseCode = 3500
	codeAppReconnectMin CloseCode = 4000
	codeAppTerminalMin  CloseCode = 4500
	codeMax             CloseCode = 4999
)

// Reconnect reports whether a client may reconnect after this code.
func (c CloseCode) Reconnect() bool {
	switch {
	case c >= codeTerminalMin && c < codeAppReconnectMin:
		return false
	case c >= codeAppTerminalMin && c <= codeMax:
		return false
	}
	return true
}

// Application reports whether the code is in an application range.
func (c CloseCode) Application() bool { return c >= codeAppReconnectMin && c <= codeMax }

func (c CloseCode) String() string {
	switch c {
	case CodeGoingAway:
		return "going away"
	case CodeSlowConsumer:
		return "slow consumer"
	case CodeHeartbeatTimeout:
		return "heartbeat timeout"
	case CodeInternalError:
		return "internal error"
	case CodeHandshakeTimeout:
		return "handshake timeout"
	case CodeMissedMessages:
		return "missed messages"
	case CodeTryLater:
		return "try later"
	case CodeBadFrame:
		return "bad frame"
	case CodeFrameTooLarge:
		return "frame too large"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeOriginNotAllowed:
		return "origin not allowed"
	case CodeBadProtocol:
		return "bad protocol"
	case CodePolicyViolation:
		return "policy violation"
	}
	return fmt.Sprintf("close code %d", uint32(c))
}

// MaxReasonLen is the longest close reason sent on the wire; longer reasons
// are cut (WebSocket close frames allow 123 bytes).
const MaxReasonLen = 120

// CloseError is how a session ended. It satisfies errors.Is against another
// *CloseError with the same code.
type CloseError struct {
	Code   CloseCode
	Reason string
	// Remote is true when the peer closed the session.
	Remote bool
	// ReconnectURL, when set, names the node the client should reconnect
	// to (a drain's advice), and ReconnectAfter how long to wait first.
	// Both travel in the Disconnect frame.
	ReconnectURL   string
	ReconnectAfter time.Duration
}

// CloseErrorOf reads the close that a Disconnect frame announces.
func CloseErrorOf(d *Disconnect) *CloseError {
	return &CloseError{
		Code:           CloseCode(d.GetCode()),
		Reason:         d.GetReason(),
		Remote:         true,
		ReconnectURL:   d.GetReconnectUrl(),
		ReconnectAfter: time.Duration(d.GetReconnectAfterMs()) * time.Millisecond,
	}
}

// Closef returns a *CloseError with a formatted reason.
func Closef(code CloseCode, format string, args ...any) *CloseError {
	return &CloseError{Code: code, Reason: TrimReason(fmt.Sprintf(format, args...))}
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("session closed: %d %s", uint32(e.Code), e.Code)
	}
	return fmt.Sprintf("session closed: %d %s", uint32(e.Code), e.Reason)
}

// Is matches another *CloseError with the same code.
func (e *CloseError) Is(target error) bool {
	t, ok := target.(*CloseError)
	return ok && t.Code == e.Code
}

// TrimReason cuts a reason to MaxReasonLen bytes without splitting a UTF-8
// sequence.
func TrimReason(s string) string { return trimText(s, MaxReasonLen) }

// MaxErrorMessageLen is the longest message an Error frame or an HTTP
// error body carries; longer ones are cut, so that an error never echoes
// a client's oversized input back at length.
const MaxErrorMessageLen = 200

// TrimMessage cuts an error message to MaxErrorMessageLen bytes without
// splitting a UTF-8 sequence.
func TrimMessage(s string) string { return trimText(s, MaxErrorMessageLen) }

func trimText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}

// ErrorCode is carried by Error frames: a request failed, the session lives on.
type ErrorCode uint32

const (
	ErrCodeBadRequest           ErrorCode = 100 // the request is malformed or misses fields
	ErrCodeUnknownFrame         ErrorCode = 101 // the server does not handle this frame from a client
	ErrCodeInvalidChannel       ErrorCode = 102 // the channel name breaks the naming rules
	ErrCodeTooManySubscriptions ErrorCode = 103 // the session hit its subscription limit
	ErrCodeAlreadySubscribed    ErrorCode = 104
	ErrCodeNotSubscribed        ErrorCode = 105
	ErrCodePayloadTooLarge      ErrorCode = 106 // the publication exceeds the payload limit
	ErrCodePermissionDenied     ErrorCode = 107 // the session's token does not allow the action on the channel
	ErrCodeInternal             ErrorCode = 108
	ErrCodeNotConnected         ErrorCode = 109 // a request came before Connect
	ErrCodeUnauthorized         ErrorCode = 110 // a Refresh token was refused; the old one stays in force
	ErrCodeRateLimited          ErrorCode = 111 // over a rate limit: try again later
)

// RequestError is a failed request, carried in an Error frame.
type RequestError struct {
	Code    ErrorCode
	Message string
}

func (e *RequestError) Error() string { return fmt.Sprintf("error %d: %s", uint32(e.Code), e.Message) }

// Is matches another *RequestError with the same code.
func (e *RequestError) Is(target error) bool {
	t, ok := target.(*RequestError)
	return ok && t.Code == e.Code
}

// Sentinel errors of the codec and the session.
var (
	ErrFrameTooLarge = errors.New("frame too large")
	ErrMalformed     = errors.New("malformed frame")
	ErrUnknownKind   = errors.New("unknown frame kind")
	ErrClosed        = errors.New("session closed")
	ErrQueueFull     = errors.New("send queue full")
)
