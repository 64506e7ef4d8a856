package p2p

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

func TestTerminalClose(t *testing.T) {
	for code, want := range map[int]bool{
		1000: true, 1001: false, 1006: false, 1011: false,
		3000: false, 3001: false, 3003: false, 3004: false, 3499: false,
		3500: true, 3501: true, 3502: true, 3503: true, 3505: true, 3999: true,
		4000: false, 4001: false, 4499: false, 4500: true, 4999: true, 1009: false,
	} {
		if got := terminalClose(code); got != want {
			t.Errorf("terminalClose(%d) = %t", code, got)
		}
	}
}

func TestErrors(t *testing.T) {
	pe := &Error{Code: CodeFlood, Message: "500 messages in a row over the rate limit"}
	var err error = &CloseError{Code: 3505, Reason: "flood: ...", Err: pe}
	var got *Error
	if !errors.As(err, &got) || got != pe {
		t.Errorf("errors.As(CloseError) = %v", got)
	}
	if s := err.Error(); !strings.Contains(s, "3505") || !strings.Contains(s, "flood") {
		t.Errorf("message %q", s)
	}
	err = &CloseError{Code: 4500, Reason: "replaced"}
	if errors.As(err, &got) {
		t.Error("errors.As found an *Error in a CloseError without one")
	}
	if errors.Unwrap(err) != nil {
		t.Error("Unwrap of a CloseError without Err is not nil")
	}
	if s := (&Error{Code: CodeUnknownPeer, Message: "no such peer", To: "x"}).Error(); !strings.Contains(s, "unknown_peer") || !strings.Contains(s, "to x") {
		t.Errorf("message %q", s)
	}
	if ce := closeError(&websocket.CloseError{Code: 1006}, nil); ce != nil {
		t.Errorf("1006 gave %v", ce)
	}
	if ce := closeError(fmt.Errorf("read: %w", &websocket.CloseError{Code: 3000, Text: "bye"}), nil); ce == nil || ce.Code != 3000 || ce.Reason != "bye" {
		t.Errorf("3000 gave %v", ce)
	}
}

func TestCandidateJSON(t *testing.T) {
	for raw, wantEnd := range map[string]bool{
		``:                              true,
		`null`:                          true,
		`{"candidate":""}`:              true,
		`{"candidate":"","sdpMid":"0"}`: true,
		`{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}`: false,
	} {
		init, end, err := decodeCandidate(json.RawMessage(raw))
		if err != nil || end != wantEnd {
			t.Errorf("%s: end %t, err %v", raw, end, err)
		}
		if !end && (init.UsernameFragment == nil || *init.UsernameFragment != "abc" || *init.SDPMid != "0") {
			t.Errorf("%s: %+v", raw, init)
		}
	}
	if _, _, err := decodeCandidate(json.RawMessage(`"x"`)); err == nil {
		t.Error("a string candidate: no error")
	}

	c := webrtc.ICECandidate{Foundation: "1", Priority: 1, Address: "127.0.0.1", Protocol: webrtc.ICEProtocolUDP, Port: 5000, Typ: webrtc.ICECandidateTypeHost, Component: 1, SDPMid: "0"}
	var out map[string]any
	if err := json.Unmarshal(encodeCandidate(&c, "uf"), &out); err != nil {
		t.Fatal(err)
	}
	if out["usernameFragment"] != "uf" || out["sdpMid"] != "0" || out["sdpMLineIndex"] != float64(0) ||
		!strings.HasPrefix(out["candidate"].(string), "candidate:1 1 udp 1 127.0.0.1 5000 typ host") {
		t.Errorf("encoded %v", out)
	}
	if err := json.Unmarshal(encodeCandidate(&c, ""), &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(outMsg{Type: typeCandidate, To: "p", Candidate: nullJSON}); string(b) != `{"type":"candidate","to":"p","candidate":null}` {
		t.Errorf("end of candidates: %s", b)
	}
	if b, _ := json.Marshal(outMsg{Type: typeJoin, Room: "r"}); string(b) != `{"type":"join","room":"r"}` {
		t.Errorf("join: %s", b)
	}
}

func TestICEServers(t *testing.T) {
	raw := []json.RawMessage{
		json.RawMessage(`{"urls":["stun:stun.example.com:3478"]}`),
		json.RawMessage(`{"urls":"turn:turn.example.com:3478","username":"1764655200:hV3xq0T8mB2kP9aZ","credential":"c2VjcmV0"}`),
		json.RawMessage(`{"nothing":1}`),
		json.RawMessage(`42`),
	}
	got, skipped := decodeICEServers(raw)
	if skipped != 2 || len(got) != 2 {
		t.Fatalf("got %v, skipped %d", got, skipped)
	}
	if got[1].URLs[0] != "turn:turn.example.com:3478" || got[1].Username != "1764655200:hV3xq0T8mB2kP9aZ" || got[1].Credential != "c2VjcmV0" {
		t.Errorf("turn: %+v", got[1])
	}
}

func TestSDPHelpers(t *testing.T) {
	a := "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=ice-ufrag:one\r\n"
	b := "v=0\r\na=fingerprint:sha-256 aa:bb\r\na=ice-ufrag:two\r\n"
	c := "v=0\r\na=fingerprint:sha-256 CC:DD\r\n"
	if !sameFingerprints(a, b) || sameFingerprints(a, c) || !sameFingerprints(a, "v=0\r\n") {
		t.Error("sameFingerprints")
	}
	if ufrag(a) != "one" || ufrag(c) != "" {
		t.Error("ufrag")
	}
}

func TestDispatcherOrder(t *testing.T) {
	d := newDispatcher()
	go d.run()
	var got []int
	for i := range 100 {
		d.post(func() { got = append(got, i) })
	}
	d.close()
	<-d.done
	if d.post(func() {}) {
		t.Error("post after close")
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("order: %v", got)
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d of 100 run", len(got))
	}
}

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBucket(Limits{Rate: 10, Burst: 3}, now) // paced at 9/s, bursts of 2.7
	for i := range 2 {
		if d := b.take(now); d != 0 {
			t.Fatalf("take %d: wait %v", i, d)
		}
	}
	d := b.take(now)
	if d <= 0 || d > time.Second/9 {
		t.Fatalf("third take: wait %v", d)
	}
	if d := b.take(now.Add(d)); d != 0 {
		t.Fatalf("after the wait: %v", d)
	}
	if d := newBucket(Limits{}, now).take(now); d != 0 {
		t.Fatalf("no limits told: wait %v", d)
	}
}

func TestSignalEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/signal":    "ws://127.0.0.1:8080/signal",
		"ws://127.0.0.1:8080":           "ws://127.0.0.1:8080/signal",
		"http://127.0.0.1:8080/":        "ws://127.0.0.1:8080/signal",
		"https://rt.example.com":        "wss://rt.example.com/signal",
		"wss://rt.example.com/x/signal": "wss://rt.example.com/x/signal",
	} {
		if got, err := signalEndpoint(in); err != nil || got != want {
			t.Errorf("signalEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := signalEndpoint("ftp://x"); err == nil {
		t.Error("ftp:// accepted")
	}
}
