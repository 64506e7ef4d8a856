package p2p

import (
	"encoding/json"

	"github.com/pion/webrtc/v4"
)

// Message types of switchyard-signal.v1 (docs/signaling.md).
const (
	typeJoin       = "join"
	typeJoined     = "joined"
	typeLeave      = "leave"
	typeLeft       = "left"
	typeOffer      = "offer"
	typeAnswer     = "answer"
	typeCandidate  = "candidate"
	typeMessage    = "message"
	typeError      = "error"
	typePeerJoined = "peer-joined"
	typePeerLeft   = "peer-left"
	typePong       = "pong"
)

// Limits are the server's limits, as told in "joined" (docs/signaling.md §8).
// A zero field means the server did not say.
type Limits struct {
	MaxMessageSize   int     `json:"maxMessageSize"`   // one WebSocket message, bytes
	MaxSDPSize       int     `json:"maxSdpSize"`       // "sdp", bytes
	MaxCandidateSize int     `json:"maxCandidateSize"` // a candidate
	MaxDataSize      int     `json:"maxDataSize"`      // "data" of a custom message, as JSON
	MaxRoomSize      int     `json:"maxRoomSize"`      // peers in a room
	Rate             float64 `json:"rate"`             // messages per second per connection
	Burst            float64 `json:"burst"`            // token-bucket burst
}

// inMsg is any server message; the members a type does not have stay zero.
type inMsg struct {
	Type string `json:"type"`

	// joined
	Room       string            `json:"room"`
	Peer       string            `json:"peer"` // also peer-joined, peer-left
	Resume     string            `json:"resume"`
	Resumed    bool              `json:"resumed"`
	Peers      []string          `json:"peers"`
	ICEServers []json.RawMessage `json:"iceServers"`
	Grace      float64           `json:"grace"`
	Limits     Limits            `json:"limits"`

	// relayed offer, answer, candidate, message
	From      string          `json:"from"`
	SDP       string          `json:"sdp"`
	Candidate json.RawMessage `json:"candidate"`
	Data      json.RawMessage `json:"data"`

	// error
	Code    string `json:"code"`
	Message string `json:"message"`
	To      string `json:"to"`
}

// outMsg is any client message. Candidate and Data are raw JSON so that
// null can be sent ("candidate": null is end-of-candidates); a nil
// RawMessage is left out.
type outMsg struct {
	Type      string          `json:"type"`
	Room      string          `json:"room,omitempty"`
	Token     string          `json:"token,omitempty"`
	Peer      string          `json:"peer,omitempty"`
	Resume    string          `json:"resume,omitempty"`
	To        string          `json:"to,omitempty"`
	SDP       string          `json:"sdp,omitempty"`
	Candidate json.RawMessage `json:"candidate,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// candidateJSON is RTCIceCandidate.toJSON() as browsers write it, without
// the null members pion's ICECandidateInit would marshal.
type candidateJSON struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

var nullJSON = json.RawMessage("null")

// encodeCandidate is the "candidate" member for a local candidate: its
// toJSON(), with the ICE username fragment of the description it belongs
// to (pion leaves it out; browsers use it to drop stale candidates).
func encodeCandidate(c *webrtc.ICECandidate, ufrag string) json.RawMessage {
	init := c.ToJSON()
	if init.UsernameFragment == nil && ufrag != "" {
		init.UsernameFragment = &ufrag
	}
	b, err := json.Marshal(candidateJSON{
		Candidate:        init.Candidate,
		SDPMid:           init.SDPMid,
		SDPMLineIndex:    init.SDPMLineIndex,
		UsernameFragment: init.UsernameFragment,
	})
	if err != nil { // cannot happen: strings and numbers
		return nullJSON
	}
	return b
}

// decodeCandidate reads a relayed "candidate" member. end reports null
// (end-of-candidates) or an empty candidate string, which some browsers
// send for the same purpose.
func decodeCandidate(raw json.RawMessage) (init webrtc.ICECandidateInit, end bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return init, true, nil
	}
	if err := json.Unmarshal(raw, &init); err != nil {
		return init, false, err
	}
	return init, init.Candidate == "", nil
}

// decodeICEServers keeps the entries of "iceServers" that parse, in the
// browsers' format ("urls" a string or an array, "credential" a string);
// skipped counts the others.
func decodeICEServers(raw []json.RawMessage) (servers []webrtc.ICEServer, skipped int) {
	servers = make([]webrtc.ICEServer, 0, len(raw))
	for _, r := range raw {
		var e struct {
			URLs       json.RawMessage `json:"urls"`
			Username   string          `json:"username"`
			Credential *string         `json:"credential"`
		}
		if json.Unmarshal(r, &e) != nil {
			skipped++
			continue
		}
		var urls []string
		if json.Unmarshal(e.URLs, &urls) != nil {
			var one string
			if json.Unmarshal(e.URLs, &one) != nil || one == "" {
				skipped++
				continue
			}
			urls = []string{one}
		}
		if len(urls) == 0 {
			skipped++
			continue
		}
		s := webrtc.ICEServer{URLs: urls, Username: e.Username}
		if e.Credential != nil {
			s.Credential = *e.Credential
		}
		servers = append(servers, s)
	}
	return servers, skipped
}
