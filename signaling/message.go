package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode"
	"unicode/utf8"
)

// Client → server message types (docs/signaling.md §2).
const (
	typeJoin      = "join"
	typeOffer     = "offer"
	typeAnswer    = "answer"
	typeCandidate = "candidate"
	typeMessage   = "message"
	typeLeave     = "leave"
	typePing      = "ping"
)

// Error codes (docs/signaling.md §4).
const (
	errBadMessage      = "bad_message"
	errTooLarge        = "too_large"
	errUnknownPeer     = "unknown_peer"
	errPeerUnavailable = "peer_unavailable"
	errNotJoined       = "not_joined"
	errAlreadyJoined   = "already_joined"
	errRateLimited     = "rate_limited"
	errBadRoom         = "bad_room"
	errRoomFull        = "room_full"
	errFlood           = "flood"
	errUnavailable     = "unavailable"
	errUnauthorized    = "unauthorized"
)

const (
	maxRoomLen = 128
	maxIDLen   = 64 // a client's "id" member, as JSON
	peerIDLen  = 16 // base64url of 12 random bytes
	maxToken   = 8 << 10
)

// inbound is a decoded client message. Raw members keep their JSON; a
// member that is absent is nil, one that is null is "null".
type inbound struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id"`
	Room      string          `json:"room"`
	Token     string          `json:"token"`
	Peer      string          `json:"peer"`
	Resume    string          `json:"resume"`
	To        string          `json:"to"`
	SDP       json.RawMessage `json:"sdp"`
	Candidate json.RawMessage `json:"candidate"`
	Data      json.RawMessage `json:"data"`

	sdp string // SDP decoded
}

// msgError is a refusal of one message: an error code for the client.
type msgError struct {
	code string
	msg  string
}

func (e *msgError) Error() string { return e.code + ": " + e.msg }

func refuse(code, format string, args ...any) *msgError {
	return &msgError{code: code, msg: fmt.Sprintf(format, args...)}
}

// limits are the sizes parse checks.
type limits struct {
	sdp, candidate, data int
}

// parse decodes and checks one client message. On error, the returned
// inbound still carries the id when it could be read, for the error reply.
func parse(b []byte, lim limits) (*inbound, *msgError) {
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		// Try for the id alone, so that the error can name the message.
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(b, &idOnly) == nil && validID(idOnly.ID) {
			m.ID = idOnly.ID
		} else {
			m.ID = nil
		}
		return &m, refuse(errBadMessage, "not a JSON object of this protocol: %s", jsonProblem(err))
	}
	if m.ID != nil && !validID(m.ID) {
		m.ID = nil
		return &m, refuse(errBadMessage, `"id" must be a number or a string of at most %d bytes`, maxIDLen)
	}
	switch m.Type {
	case typeJoin:
		if len(m.Token) > maxToken {
			return &m, refuse(errTooLarge, `"token" is over %d bytes`, maxToken)
		}
	case typeOffer, typeAnswer:
		if e := checkTo(&m); e != nil {
			return &m, e
		}
		if m.SDP == nil || bytes.Equal(m.SDP, []byte("null")) {
			return &m, refuse(errBadMessage, `%s needs "sdp"`, m.Type)
		}
		if len(m.SDP) > lim.sdp+lim.sdp/8+2 { // JSON escapes (\r\n) make it longer than the text
			return &m, refuse(errTooLarge, `"sdp" is over %d bytes`, lim.sdp)
		}
		if err := json.Unmarshal(m.SDP, &m.sdp); err != nil {
			return &m, refuse(errBadMessage, `"sdp" must be a string`)
		}
		if m.sdp == "" {
			return &m, refuse(errBadMessage, `"sdp" is empty`)
		}
		if len(m.sdp) > lim.sdp {
			return &m, refuse(errTooLarge, `"sdp" is %d bytes, over %d`, len(m.sdp), lim.sdp)
		}
	case typeCandidate:
		if e := checkTo(&m); e != nil {
			return &m, e
		}
		if m.Candidate == nil {
			return &m, refuse(errBadMessage, `candidate needs "candidate" (null for end-of-candidates)`)
		}
		if len(m.Candidate) > lim.candidate {
			return &m, refuse(errTooLarge, `"candidate" is %d bytes of JSON, over %d`, len(m.Candidate), lim.candidate)
		}
		if !bytes.Equal(m.Candidate, []byte("null")) {
			var c struct {
				Candidate *string `json:"candidate"`
			}
			if json.Unmarshal(m.Candidate, &c) != nil || c.Candidate == nil {
				return &m, refuse(errBadMessage, `"candidate" must be null or an object with a string "candidate"`)
			}
		}
		m.Candidate = compact(m.Candidate)
	case typeMessage:
		if e := checkTo(&m); e != nil {
			return &m, e
		}
		if m.Data == nil {
			return &m, refuse(errBadMessage, `message needs "data"`)
		}
		m.Data = compact(m.Data)
		if len(m.Data) > lim.data {
			return &m, refuse(errTooLarge, `"data" is %d bytes of JSON, over %d`, len(m.Data), lim.data)
		}
	case typeLeave, typePing:
	case "":
		return &m, refuse(errBadMessage, `no "type"`)
	default:
		return &m, refuse(errBadMessage, "unknown type %.32q", m.Type)
	}
	return &m, nil
}

func checkTo(m *inbound) *msgError {
	if m.To == "" {
		return refuse(errBadMessage, `%s needs "to", a peer id`, m.Type)
	}
	if len(m.To) > maxRoomLen {
		return refuse(errUnknownPeer, "no such peer")
	}
	return nil
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// compact removes insignificant space from valid JSON.
func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			want := "a string"
			if te.Type != nil && te.Type.Kind() != reflect.String {
				want = "JSON" // a raw member: any JSON value fits, so this is not reached
			}
			return fmt.Sprintf("%q must be %s, not a JSON %s", te.Field, want, te.Value)
		}
		return "a JSON object is expected, got " + te.Value
	}
	return "invalid JSON"
}

// checkRoom reports what is wrong with a room name, or "".
func checkRoom(name string) string {
	switch {
	case name == "":
		return `"room" is missing or empty`
	case len(name) > maxRoomLen:
		return fmt.Sprintf("room name is %d bytes, over %d", len(name), maxRoomLen)
	case !utf8.ValidString(name):
		return "room name is not valid UTF-8"
	}
	for i, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Sprintf("room name has a space or control character at byte %d", i)
		}
	}
	return ""
}

// Server → client messages.

type relayOut struct {
	Type      string          `json:"type"`
	From      string          `json:"from"`
	SDP       string          `json:"sdp,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

type errorOut struct {
	Type    string          `json:"type"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	ID      json.RawMessage `json:"id,omitempty"`
	To      string          `json:"to,omitempty"`
}

type peerOut struct {
	Type string `json:"type"`
	Peer string `json:"peer"`
}

type limitsOut struct {
	MaxMessageSize   int     `json:"maxMessageSize"`
	MaxSDPSize       int     `json:"maxSdpSize"`
	MaxCandidateSize int     `json:"maxCandidateSize"`
	MaxDataSize      int     `json:"maxDataSize"`
	MaxRoomSize      int     `json:"maxRoomSize"`
	Rate             float64 `json:"rate"`
	Burst            int     `json:"burst"`
}

type joinedOut struct {
	Type       string      `json:"type"`
	Room       string      `json:"room"`
	Peer       string      `json:"peer"`
	Resume     string      `json:"resume"`
	Resumed    bool        `json:"resumed"`
	Peers      []string    `json:"peers"`
	ICEServers []ICEServer `json:"iceServers"`
	Grace      float64     `json:"grace"`
	Limits     limitsOut   `json:"limits"`
}

// encode marshals a server message; they are all plain structs.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("signaling: encode %T: %v", v, err)) // a bug: every type marshals
	}
	return b
}

func relayPayload(m *inbound, from string) []byte {
	return encode(relayOut{Type: m.Type, From: from, SDP: m.sdp, Candidate: m.Candidate, Data: m.Data})
}

func errorPayload(code, msg string, id json.RawMessage, to string) []byte {
	return encode(errorOut{Type: "error", Code: code, Message: msg, ID: id, To: to})
}

var (
	pongPayload = []byte(`{"type":"pong"}`)
	leftPayload = []byte(`{"type":"left"}`)
)

func peerPayload(typ, peer string) []byte { return encode(peerOut{Type: typ, Peer: peer}) }
