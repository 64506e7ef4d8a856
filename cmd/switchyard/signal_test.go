package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/signaling"
)

// The dev node serves /signal on both TCP listeners, hands out its embedded
// TURN server with credentials, and applies its Origin allowlist.
func TestDevNodeSignals(t *testing.T) {
	b := startBinary(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0", "--turn-secret", "s3")
	if b["Signaling"] == "" || b["Signaling plain"] == "" || !strings.HasPrefix(b["TURN"], "turn:127.0.0.1:") {
		t.Fatalf("banner: %v", b)
	}
	dial := func(url string, h http.Header) *websocket.Conn {
		t.Helper()
		ws, _, err := websocket.DefaultDialer.Dial(url, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		return ws
	}
	join := func(ws *websocket.Conn) map[string]any {
		t.Helper()
		if err := ws.WriteJSON(map[string]any{"type": "join", "room": "lobby"}); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil || m["type"] != "joined" {
			t.Fatalf("join: %v %v", m, err)
		}
		return m
	}
	page, err := url.Parse(b["Demo chat"])
	if err != nil {
		t.Fatal(err)
	}
	origin := http.Header{"Origin": {"http://" + page.Host}} // the node's own page
	a := dial(b["Signaling plain"], origin)
	ja := join(a)
	ice := ja["iceServers"].([]any)[0].(map[string]any)
	if ice["urls"].([]any)[0] != b["TURN"] {
		t.Fatalf("iceServers %v", ja["iceServers"])
	}
	if err := signaling.CheckTURNCredentials("s3", ice["username"].(string), ice["credential"].(string), time.Now()); err != nil {
		t.Fatal(err)
	}
	c := dial(b["Signaling plain"], nil)
	jc := join(c)
	c.WriteJSON(map[string]any{"type": "message", "to": ja["peer"], "data": "hi"})
	var m map[string]any
	for m["type"] != "message" {
		if err := a.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
	}
	if m["from"] != jc["peer"] || m["data"] != "hi" {
		t.Fatalf("a got %v", m)
	}

	evil := dial(b["Signaling plain"], http.Header{"Origin": {"https://evil.example"}})
	_, _, err = evil.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 3503 {
		t.Fatalf("foreign origin: %v", err)
	}
}
