package signaling

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/signaling/internal/meshpb"
)

// FuzzParse feeds the client message decoder anything: it must not panic,
// an accepted message must satisfy the limits and re-encode as valid JSON,
// and a refused one must carry a known code.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","room":"lobby"}`,
		`{"type":"join","room":"r","peer":"AAAAAAAAAAAAAAAA","resume":"x","token":"t"}`,
		`{"type":"offer","to":"p","sdp":"v=0\r\n","id":1}`,
		`{"type":"answer","to":"p","sdp":"v=0"}`,
		`{"type":"candidate","to":"p","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"candidate","to":"p","candidate":null}`,
		`{"type":"message","to":"p","data":{"a":[1,2,"x"]},"id":"q"}`,
		`{"type":"leave"}`, `{"type":"ping"}`, `{"type":`, `[]`, `null`, `{"type":"offer","to":"p","sdp":5}`,
		"{\"type\":\"offer\",\"to\":\"p\",\"sdp\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	lim := limits{sdp: 64, candidate: 96, data: 32}
	codes := map[string]bool{errBadMessage: true, errTooLarge: true, errUnknownPeer: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, e := parse(b, lim)
		if m == nil {
			t.Fatal("nil message")
		}
		if m.ID != nil && !validID(m.ID) {
			t.Fatalf("invalid id %q kept", m.ID)
		}
		if e != nil {
			if !codes[e.code] || e.msg == "" {
				t.Fatalf("refusal %q %q", e.code, e.msg)
			}
			return
		}
		switch m.Type {
		case typeOffer, typeAnswer:
			if m.sdp == "" || len(m.sdp) > lim.sdp || m.To == "" {
				t.Fatalf("accepted %+v", m)
			}
		case typeCandidate:
			if len(m.Candidate) > lim.candidate || m.To == "" {
				t.Fatalf("accepted %+v", m)
			}
		case typeMessage:
			if len(m.Data) > lim.data || m.To == "" {
				t.Fatalf("accepted %+v", m)
			}
		case typeJoin, typeLeave, typePing:
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
		if m.Type != typeJoin && m.Type != typeLeave && m.Type != typePing {
			if out := relayPayload(m, "from"); !json.Valid(out) {
				t.Fatalf("relay payload is not JSON: %s", out)
			}
		}
	})
}

// FuzzHandleSignal feeds a node's signaling any message "from another
// node": it must not panic, whatever the bytes or the state they name.
func FuzzHandleSignal(f *testing.F) {
	env := func(e *meshpb.Envelope) []byte {
		b, err := proto.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_Join{Join: &meshpb.Join{Request: 1, Room: "r", NewId: "AAAAAAAAAAAAAAAA", NewHash: make([]byte, 32)}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_JoinReply{JoinReply: &meshpb.JoinReply{Request: 1, Room: "r", Peer: "p", Peers: []*meshpb.Peer{{Id: "q", Node: "n1"}}}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_Leave{Leave: &meshpb.Leave{Room: "r", Peer: "p"}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_Event{Event: &meshpb.Event{Room: "r", Kind: meshpb.Event_MOVED, Peer: "p", Node: "self"}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_Sync{Sync: &meshpb.Sync{Room: "r", Peers: []*meshpb.Peer{{Id: "p"}}}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_SyncReply{SyncReply: &meshpb.SyncReply{Room: "r"}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_Relay{Relay: &meshpb.Relay{Room: "r", From: "a", To: "b", Payload: []byte(`{}`), ClientId: []byte(`1`)}}}))
	f.Add(env(&meshpb.Envelope{Kind: &meshpb.Envelope_RelayError{RelayError: &meshpb.RelayError{Room: "r", From: "a", Code: "unknown_peer"}}}))
	f.Add([]byte{0xff, 0x01})
	s, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s.HandleSignal("n1", b)
		s.MembersChanged([]string{"n1"})
	})
}
