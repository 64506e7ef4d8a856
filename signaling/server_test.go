package signaling_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/signaling"
)

func TestJoinRelayLeave(t *testing.T) {
	n := startServer(t, signaling.Config{})
	a := joinRoom(t, n.url, "lobby")
	b := dial(t, n.url)
	jb := b.join("lobby")
	if got := peers(jb); !reflect.DeepEqual(got, []string{a.peer}) {
		t.Fatalf("b's peers = %v, want [%s]", got, a.peer)
	}
	if len(a.peer) != 16 || a.peer == b.peer {
		t.Fatalf("peer ids %q %q", a.peer, b.peer)
	}
	if j := a.next("peer-joined"); j["peer"] != b.peer {
		t.Fatalf("a got %v", j)
	}
	if jb["grace"].(float64) != 10 || jb["limits"].(map[string]any)["maxRoomSize"].(float64) != 50 {
		t.Fatalf("joined = %v", jb)
	}

	sdp := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"
	a.sendJSON(map[string]any{"type": "offer", "to": b.peer, "sdp": sdp, "id": 1})
	if m := b.next("offer"); m["from"] != a.peer || m["sdp"] != sdp || m["to"] != nil || m["id"] != nil {
		t.Fatalf("b got %v", m)
	}
	b.sendJSON(map[string]any{"type": "answer", "to": a.peer, "sdp": sdp})
	if m := a.next("answer"); m["from"] != b.peer || m["sdp"] != sdp {
		t.Fatalf("a got %v", m)
	}
	cand := map[string]any{"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": float64(0)}
	a.sendJSON(map[string]any{"type": "candidate", "to": b.peer, "candidate": cand})
	a.sendJSON(map[string]any{"type": "candidate", "to": b.peer, "candidate": nil})
	if m := b.next("candidate"); !reflect.DeepEqual(m["candidate"], cand) {
		t.Fatalf("b got %v", m)
	}
	if m := b.next("candidate"); m["candidate"] != nil {
		t.Fatalf("end-of-candidates arrived as %v", m)
	} else if _, present := m["candidate"]; !present {
		t.Fatalf("end-of-candidates lost its null: %v", m)
	}
	b.sendJSON(map[string]any{"type": "message", "to": a.peer, "data": map[string]any{"hello": []any{1.0, "x"}}})
	if m := a.next("message"); !reflect.DeepEqual(m["data"], map[string]any{"hello": []any{1.0, "x"}}) {
		t.Fatalf("a got %v", m)
	}

	// In order, many at once.
	for i := range 100 {
		a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": i})
	}
	for i := range 100 {
		if m := b.next("message"); m["data"] != float64(i) {
			t.Fatalf("message %d arrived as %v", i, m["data"])
		}
	}

	b.sendJSON(map[string]any{"type": "leave"})
	b.next("left")
	if code, _ := b.closed(); code != websocket.CloseNormalClosure {
		t.Fatalf("leave closed with %d", code)
	}
	if m := a.next("peer-left"); m["peer"] != b.peer {
		t.Fatalf("a got %v", m)
	}
	a.sendJSON(map[string]any{"type": "offer", "to": b.peer, "sdp": sdp, "id": "x7"})
	if m := a.next("error"); m["code"] != "unknown_peer" || m["to"] != b.peer || m["id"] != "x7" {
		t.Fatalf("a got %v", m)
	}
	if st := n.srv.Stats(); st.Peers != 1 || st.Rooms != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPing(t *testing.T) {
	n := startServer(t, signaling.Config{})
	c := dial(t, n.url)
	c.sendJSON(map[string]any{"type": "ping"})
	c.next("pong")
}

// Every bad input gets its error, and the peers around are unaffected.
func TestBadInput(t *testing.T) {
	n := startServer(t, signaling.Config{MaxRoomSize: 3})
	a := joinRoom(t, n.url, "r")
	b := joinRoom(t, n.url, "r")
	a.next("peer-joined")

	errCases := []struct {
		name string
		send string
		code string
	}{
		{"not JSON", `{"type":`, "bad_message"},
		{"not an object", `[1,2]`, "bad_message"},
		{"no type", `{"to":"x"}`, "bad_message"},
		{"unknown type", `{"type":"teleport"}`, "bad_message"},
		{"offer without to", `{"type":"offer","sdp":"v=0"}`, "bad_message"},
		{"offer without sdp", fmt.Sprintf(`{"type":"offer","to":%q}`, b.peer), "bad_message"},
		{"sdp not a string", fmt.Sprintf(`{"type":"offer","to":%q,"sdp":5}`, b.peer), "bad_message"},
		{"oversized sdp", fmt.Sprintf(`{"type":"offer","to":%q,"sdp":%q}`, b.peer, strings.Repeat("a", 33<<10)), "too_large"},
		{"candidate missing", fmt.Sprintf(`{"type":"candidate","to":%q}`, b.peer), "bad_message"},
		{"candidate not an object", fmt.Sprintf(`{"type":"candidate","to":%q,"candidate":"x"}`, b.peer), "bad_message"},
		{"oversized candidate", fmt.Sprintf(`{"type":"candidate","to":%q,"candidate":{"candidate":%q}}`, b.peer, strings.Repeat("c", 3000)), "too_large"},
		{"message without data", fmt.Sprintf(`{"type":"message","to":%q}`, b.peer), "bad_message"},
		{"oversized data", fmt.Sprintf(`{"type":"message","to":%q,"data":%q}`, b.peer, strings.Repeat("d", 17<<10)), "too_large"},
		{"oversized message", fmt.Sprintf(`{"type":"ping","pad":%q}`, strings.Repeat("p", 70<<10)), "too_large"},
		{"unknown peer", `{"type":"message","to":"nobody","data":1}`, "unknown_peer"},
		{"to self", fmt.Sprintf(`{"type":"message","to":%q,"data":1}`, a.peer), "unknown_peer"},
		{"second join", `{"type":"join","room":"other"}`, "already_joined"},
		{"bad id", `{"type":"teleport","id":{"a":1}}`, "bad_message"},
	}
	for _, tc := range errCases {
		a.sendRaw([]byte(tc.send))
		m := a.next("error")
		if m["code"] != tc.code || m["message"] == "" {
			t.Errorf("%s: got %v, want code %s", tc.name, m, tc.code)
		}
	}
	a.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	if m := a.next("error"); m["code"] != "bad_message" {
		t.Errorf("binary: got %v", m)
	}
	a.sendRaw([]byte(`{"type":"teleport","id":42}`))
	if m := a.next("error"); m["id"] != float64(42) {
		t.Errorf("error does not carry the id: %v", m)
	}

	// Still fine, both ways.
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "ok"})
	if m := b.next("message"); m["data"] != "ok" {
		t.Fatalf("b got %v", m)
	}

	// Before join.
	c := dial(t, n.url)
	c.sendJSON(map[string]any{"type": "offer", "to": a.peer, "sdp": "v=0"})
	if m := c.next("error"); m["code"] != "not_joined" {
		t.Fatalf("got %v", m)
	}
	// Fatal ones.
	for _, room := range []string{"", "has space", strings.Repeat("r", 129), "ctl\x01"} {
		c := dial(t, n.url)
		c.sendJSON(map[string]any{"type": "join", "room": room})
		if m := c.next("error"); m["code"] != "bad_room" {
			t.Fatalf("room %q: got %v", room, m)
		}
		if code, _ := c.closed(); code != 3500 {
			t.Fatalf("room %q: closed with %d", room, code)
		}
	}
	joinRoom(t, n.url, "r")
	full := dial(t, n.url)
	full.sendJSON(map[string]any{"type": "join", "room": "r"})
	if m := full.next("error"); m["code"] != "room_full" {
		t.Fatalf("got %v", m)
	}
	if code, reason := full.closed(); code != 3505 || !strings.Contains(reason, "room_full") {
		t.Fatalf("room full closed with %d %q", code, reason)
	}
	huge := dial(t, n.url)
	huge.sendRaw([]byte(strings.Repeat(" ", 1<<20+1)))
	if code, _ := huge.closed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("over 1 MiB closed with %d", code)
	}
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "still"})
	if m := b.next("message", "peer-joined"); m["data"] != "still" {
		t.Fatalf("b got %v", m)
	}
}

func TestFlood(t *testing.T) {
	n := startServer(t, signaling.Config{Rate: 10, Burst: 20})
	a := joinRoom(t, n.url, "r")
	b := joinRoom(t, n.url, "r")
	a.next("peer-joined")
	msg := []byte(fmt.Sprintf(`{"type":"message","to":%q,"data":1}`, b.peer))
	for range 30 {
		a.sendRaw(msg)
	}
	got := 0
	for got < 19 { // the burst, less the join
		b.next("message")
		got++
	}
	if m := a.next("error"); m["code"] != "rate_limited" {
		t.Fatalf("got %v", m)
	}
	for range 600 {
		if a.ws.WriteMessage(websocket.TextMessage, msg) != nil {
			break
		}
	}
	if m := a.next("error", "error"); m["code"] != "flood" && m["code"] != "rate_limited" {
		t.Fatalf("got %v", m)
	}
	if code, reason := a.closed(); code != 3505 || !strings.Contains(reason, "flood") {
		t.Fatalf("flood closed with %d %q", code, reason)
	}
	if m := b.next("peer-left", "message"); m["peer"] != a.peer {
		t.Fatalf("b got %v", m)
	}
}

func TestJoinTimeoutAndOrigin(t *testing.T) {
	n := startServer(t, signaling.Config{
		JoinTimeout: 200 * time.Millisecond,
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") != "https://evil.example" },
	})
	c := dial(t, n.url)
	if code, _ := c.closed(); code != 3004 {
		t.Fatalf("join timeout closed with %d", code)
	}
	ws, _, err := websocket.DefaultDialer.Dial(n.url, http.Header{"Origin": {"https://evil.example"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, _, err = ws.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 3503 {
		t.Fatalf("foreign origin: %v", err)
	}
}

// A lost connection keeps its peer for the grace period; a resume takes it
// back with the messages sent meanwhile, and the others see no leave.
func TestResume(t *testing.T) {
	n := startServer(t, signaling.Config{Grace: 2 * time.Second})
	a := joinRoom(t, n.url, "r")
	b := joinRoom(t, n.url, "r")
	a.next("peer-joined")
	b.ws.UnderlyingConn().Close() // a network failure: no close frame
	waitFor(t, 5*time.Second, "b's loss noticed", func() bool { return n.srv.Stats().Away == 1 })
	a.sendJSON(map[string]any{"type": "message", "to": b.peer, "data": "while away"})

	b2 := dial(t, n.url)
	j := b2.join("r", "peer", b.peer, "resume", b.resume)
	if j["peer"] != b.peer || j["resumed"] != true || j["resume"] != b.resume {
		t.Fatalf("resume: %v", j)
	}
	if m := b2.next("message"); m["data"] != "while away" || m["from"] != a.peer {
		t.Fatalf("held message: %v", m)
	}
	a.quiet(200 * time.Millisecond) // no peer-left, no peer-joined

	// A second connection resuming the same peer replaces the first.
	b3 := dial(t, n.url)
	b3.join("r", "peer", b.peer, "resume", b.resume)
	if code, _ := b2.closed(); code != 4500 {
		t.Fatalf("replaced connection closed with %d", code)
	}
	// A wrong secret is a fresh join.
	c := dial(t, n.url)
	if j := c.join("r", "peer", b.peer, "resume", "wrong"); j["resumed"] != false || j["peer"] == b.peer {
		t.Fatalf("wrong secret: %v", j)
	}
	a.next("peer-joined")

	// Gone for longer than the grace: the others hear of it.
	b3.ws.UnderlyingConn().Close()
	start := time.Now()
	if m := a.next("peer-left"); m["peer"] != b.peer {
		t.Fatalf("a got %v", m)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("peer-left after %v, before the grace", d)
	}
	late := dial(t, n.url)
	if j := late.join("r", "peer", b.peer, "resume", b.resume); j["resumed"] != false {
		t.Fatalf("late resume: %v", j)
	}
}

func TestNormalCloseLeavesAtOnce(t *testing.T) {
	n := startServer(t, signaling.Config{Grace: time.Minute})
	a := joinRoom(t, n.url, "r")
	b := joinRoom(t, n.url, "r")
	a.next("peer-joined")
	b.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "tab closed"), time.Now().Add(time.Second))
	if m := a.next("peer-left"); m["peer"] != b.peer {
		t.Fatalf("a got %v", m)
	}
}

func TestICEServers(t *testing.T) {
	n := startServer(t, signaling.Config{
		ICEServers: []signaling.ICEServer{
			{URLs: []string{"stun:stun.example.com:3478"}},
			{URLs: []string{"turn:turn.example.com:3478?transport=udp"}},
			{URLs: []string{"turns:static.example.com"}, Username: "u", Credential: "p"},
		},
		TURNSecret: "s3cret",
		TURNTTL:    time.Hour,
	})
	c := dial(t, n.url)
	j := c.join("r")
	ice := j["iceServers"].([]any)
	if len(ice) != 3 {
		t.Fatalf("iceServers = %v", ice)
	}
	if s := ice[0].(map[string]any); s["username"] != nil {
		t.Fatalf("stun got credentials: %v", s)
	}
	turn := ice[1].(map[string]any)
	user, cred := turn["username"].(string), turn["credential"].(string)
	if !strings.HasSuffix(user, ":"+c.peer) {
		t.Fatalf("TURN username %q", user)
	}
	if err := signaling.CheckTURNCredentials("s3cret", user, cred, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := signaling.CheckTURNCredentials("s3cret", user, cred, time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("credentials valid after their TTL")
	}
	if err := signaling.CheckTURNCredentials("other", user, cred, time.Now()); err == nil {
		t.Fatal("credentials valid for another secret")
	}
	if s := ice[2].(map[string]any); s["username"] != "u" || s["credential"] != "p" {
		t.Fatalf("static credentials changed: %v", s)
	}
}

// A known vector: coturn's turnutils and pion/turn compute the same.
func TestTURNCredentialsVector(t *testing.T) {
	user, cred := signaling.TURNCredentials("north", "alice", time.Unix(1700000000, 0))
	if user != "1700000000:alice" {
		t.Fatal(user)
	}
	// printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
	if cred != "Cd/49soE35ICqcJF/bCTn8Z4OyE=" {
		t.Fatalf("credential %s", cred)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []signaling.Config{
		{MaxRoomSize: -1},
		{ICEServers: []signaling.ICEServer{{URLs: []string{"http://x"}}}},
		{ICEServers: []signaling.ICEServer{{}}},
		{PingInterval: time.Minute, IdleTimeout: time.Second},
		{MaxMessageSize: 2 << 20},
		{ICEServers: []signaling.ICEServer{{URLs: []string{"turn:turn.example.com"}}}}, // no credentials, no secret
	} {
		if _, err := signaling.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
