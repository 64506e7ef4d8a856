package edge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

var (
	authSecret  = []byte("a-test-secret-of-at-least-32-bytes!!")
	otherSecret = []byte("another-secret-of-at-least-32-bytes!")
)

const (
	authAud = "switchyard-test"
	authIss = "https://issuer.test"
)

// mint signs claims (with sensible defaults for what is not given) with
// HS256 and authSecret.
func mint(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return mintWith(t, jwt.SigningMethodHS256, authSecret, claims)
}

func mintWith(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	full := jwt.MapClaims{"sub": "ada", "aud": authAud, "iss": authIss, "exp": time.Now().Add(time.Hour).Unix(),
		"caps": []any{map[string]any{"channels": []string{"chat:*"}, "allow": []string{"subscribe", "presence"}}}}
	for k, v := range claims {
		if v == nil {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	s, err := jwt.NewWithClaims(m, full).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func caps(pairs ...string) []any {
	var out []any
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, map[string]any{"channels": strings.Split(pairs[i], ","), "allow": strings.Split(pairs[i+1], ",")})
	}
	return out
}

func startAuthNode(t *testing.T) *testNode {
	t.Helper()
	v, err := auth.New(auth.Config{HMACSecrets: [][]byte{authSecret}, Audience: authAud, Issuer: authIss, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return startNode(t, func(c *edge.Config) {
		c.Auth = v
		c.VolatileChannels = []string{"game:*"}
		c.History = []edge.HistoryRule{{Channels: "chat:*", Size: 10}}
		c.PresenceChannels = []string{"chat:*", "room"}
	})
}

// TestTokensAtConnect: every bad token closes its session with 3502 and a
// reason naming what was wrong; other sessions go on.
func TestTokensAtConnect(t *testing.T) {
	n := startAuthNode(t)
	good := n.dial(t, protocols.WebSocket, func(o *client.Options) { o.Token = mint(t, nil) })
	if u := good.Connected().GetExpiresInS(); u < 3500 || u > 3600 {
		t.Fatalf("expires_in_s %d, want about an hour", u)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// A subscriber with a good token checks, after each case, that the
	// others did not hurt it.
	canarySub, err := good.Subscribe(ctxT(t), "chat:canary")
	if err != nil {
		t.Fatal(err)
	}
	seq := 0
	canary := func(t *testing.T) {
		t.Helper()
		seq++
		want := fmt.Sprint("still here ", seq)
		if code, body := n.apiPublish(t, testAPIKey, `{"channel":"chat:canary","data":"`+want+`"}`); code != 200 {
			t.Fatalf("api publish: %d %v", code, body)
		}
		if m := receive(t, canarySub, 1); string(m[0].Data) != want {
			t.Fatalf("canary got %q, want %q", m[0].Data, want)
		}
	}
	valid := mint(t, nil)
	parts := strings.Split(valid, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"root","aud":"`+authAud+`","iss":"`+authIss+`","exp":9999999999,"caps":[{"channels":["*"],"allow":["publish"]}]}`)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	cases := []struct {
		name, token, reason string
	}{
		{"no token, anonymous refused", "", "missing"},
		{"garbage", "not-a-jwt", "malformed"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
		{"bad base64", parts[0] + ".!!!." + parts[2], "malformed"},
		{"expired", mint(t, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), "expired"},
		{"not yet valid", mint(t, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}), "not_yet_valid"},
		{"wrong audience", mint(t, jwt.MapClaims{"aud": "someone-else"}), "wrong_audience"},
		{"wrong issuer", mint(t, jwt.MapClaims{"iss": "https://evil.test"}), "wrong_issuer"},
		{"wrong key", mintWith(t, jwt.SigningMethodHS256, otherSecret, nil), "bad_signature"},
		{"forged claims", forged, "bad_signature"},
		{"alg none", none, "bad_algorithm"},
		{"ES256 without an ES256 key", mintWith(t, jwt.SigningMethodES256, ec, nil), "bad_algorithm"},
		{"HS384", mintWith(t, jwt.SigningMethodHS384, authSecret, nil), "bad_algorithm"},
		{"no exp", mint(t, jwt.MapClaims{"exp": nil}), "bad_claims"},
		{"unknown capability", mint(t, jwt.MapClaims{"caps": caps("chat:*", "subscribe,root")}), "bad_claims"},
		{"oversized token", valid + strings.Repeat("A", 9000), "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := n.rawWS(t, "")
			r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion, Token: tc.token}}})
			code, reason, _ := r.closeCode()
			if code != int(protocols.CodeUnauthorized) || !strings.HasPrefix(reason, tc.reason+":") {
				t.Fatalf("closed %d %q, want 3502 %q", code, reason, tc.reason)
			}
			if strings.Contains(reason, tc.token) && tc.token != "" {
				t.Fatal("the reason repeats the token")
			}
			canary(t)
		})
	}
	// Over WebTransport too, and the query parameter for WebSocket.
	if _, err := client.Dial(ctxT(t), n.wtURL, client.Options{Transport: protocols.WebTransport, CertHash: n.hash, Token: cases[4].token}); !isClose(err, protocols.CodeUnauthorized) {
		t.Fatalf("WebTransport with an expired token: %v", err)
	}
	h := http.Header{}
	c, _, err := websocket.DefaultDialer.Dial(n.wsURL+"?token="+valid, h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := protocols.AppendFrame(nil, &protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion}}})
	c.WriteMessage(websocket.BinaryMessage, b)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), "test-node") {
		t.Fatalf("?token=: %q, %v", msg, err)
	}
	// Someone with a good token still works.
	ok := n.dial(t, protocols.WebTransport, func(o *client.Options) { o.Token = mint(t, nil) })
	if _, err := ok.Subscribe(ctxT(t), "chat:alive"); err != nil {
		t.Fatal(err)
	}
}

func isClose(err error, code protocols.CloseCode) bool {
	var ce *protocols.CloseError
	return errors.As(err, &ce) && ce.Code == code
}

func isRequestError(err error, code protocols.ErrorCode) bool {
	var re *protocols.RequestError
	return errors.As(err, &re) && re.Code == code
}

// TestCapabilities: each frame is checked against the token's
// capabilities, patterns match exactly, and a refusal keeps the session.
func TestCapabilities(t *testing.T) {
	n := startAuthNode(t)
	tok := mint(t, jwt.MapClaims{"caps": caps("chat:*", "subscribe", "news:*", "subscribe,publish", "game:*", "subscribe", "room", "subscribe,presence,history")})
	for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
		t.Run(tr, func(t *testing.T) {
			c := n.dial(t, tr, func(o *client.Options) { o.Token = tok })
			ctx := ctxT(t)
			if _, err := c.Subscribe(ctx, "chat:1"); err != nil {
				t.Fatalf("allowed subscribe: %v", err)
			}
			denied := map[string]func() error{
				"publish where only subscribe":    func() error { _, err := c.Publish(ctx, "chat:1", []byte("x")); return err },
				"near miss chatx":                 func() error { _, err := c.Subscribe(ctx, "chatx"); return err },
				"near miss chat (pattern chat:*)": func() error { _, err := c.Subscribe(ctx, "chat"); return err },
				"prefix of a name (roo)":          func() error { _, err := c.Subscribe(ctx, "roo"); return err },
				"longer than a name (room2)":      func() error { _, err := c.Subscribe(ctx, "room2"); return err },
				"presence without the capability": func() error { _, err := c.Presence(ctx, "chat:1", false); return err },
				"presence events without it":      func() error { _, err := c.Subscribe(ctx, "chat:2", client.WithPresence()); return err },
				"history without it":              func() error { _, err := c.Subscribe(ctx, "chat:3", client.Since(client.Position{})); return err },
				"unlisted channel":                func() error { _, err := c.Subscribe(ctx, "admin"); return err },
			}
			for name, try := range denied {
				if err := try(); !isRequestError(err, protocols.ErrCodePermissionDenied) {
					t.Errorf("%s: %v, want error 107", name, err)
				}
			}
			// What is allowed works.
			sub, err := c.Subscribe(ctx, "news:1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "news:1", []byte("hello")); err != nil {
				t.Fatalf("allowed publish: %v", err)
			}
			receive(t, sub, 1)
			if _, err := c.Subscribe(ctx, "room", client.WithPresence(), client.Since(client.Position{})); err != nil {
				t.Fatalf("room: %v", err)
			}
			if _, err := c.Presence(ctx, "room", false); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A datagram on a volatile channel it may only read: an Error (107,
	// id 0), and nothing reaches the other subscriber.
	reader := n.dial(t, protocols.WebTransport, func(o *client.Options) { o.Token = tok })
	rsub, err := reader.Subscribe(ctxT(t), "game:1")
	if err != nil {
		t.Fatal(err)
	}
	r := n.rawWS(t, "")
	r.send(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion, Token: tok}}},
		&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:1", Alias: 5}}},
		&protocols.Frame{Kind: &protocols.Frame_Datagram{Datagram: &protocols.Datagram{Alias: 5, Seq: 1, Data: []byte("move")}}})
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for denied := false; !denied; {
		_, b, err := r.c.ReadMessage()
		if err != nil {
			t.Fatalf("no error for the datagram: %v", err)
		}
		_ = protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if e := f.GetError(); err == nil && e != nil {
				if f.Id != 0 || e.Code != uint32(protocols.ErrCodePermissionDenied) {
					t.Fatalf("error %d %q for frame %d", e.Code, e.Message, f.Id)
				}
				denied = true
			}
			return nil
		})
	}
	expectNoMessage(t, rsub, 300*time.Millisecond)
}

// TestRefresh: a new token for the same user replaces the capabilities
// and the expiry; another user's or a bad one is refused (110) and the
// session goes on; an unrefreshed token ends the session with 3502.
func TestRefresh(t *testing.T) {
	n := startAuthNode(t)
	c := n.dial(t, protocols.WebSocket, func(o *client.Options) {
		o.Token = mint(t, jwt.MapClaims{"exp": time.Now().Add(3 * time.Second).Unix()})
	})
	ctx := ctxT(t)
	if _, err := c.Publish(ctx, "chat:1", []byte("x")); !isRequestError(err, protocols.ErrCodePermissionDenied) {
		t.Fatalf("publish before: %v", err)
	}
	for name, tok := range map[string]string{
		"another user": mint(t, jwt.MapClaims{"sub": "bob"}),
		"expired":      mint(t, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}),
		"wrong key":    mintWith(t, jwt.SigningMethodHS256, otherSecret, nil),
	} {
		if _, err := c.Refresh(ctx, tok); !isRequestError(err, protocols.ErrCodeUnauthorized) {
			t.Errorf("refresh with %s: %v, want error 110", name, err)
		}
	}
	until, err := c.Refresh(ctx, mint(t, jwt.MapClaims{"caps": caps("chat:*", "subscribe,publish")}))
	if err != nil || time.Until(until) < 50*time.Minute {
		t.Fatalf("refresh: %v, until %v", err, until)
	}
	if _, err := c.Publish(ctx, "chat:1", []byte("x")); err != nil {
		t.Fatalf("publish after the refresh: %v", err)
	}

	// One that does not refresh is closed when its token expires.
	short := n.dial(t, protocols.WebTransport, func(o *client.Options) {
		o.Token = mint(t, jwt.MapClaims{"exp": time.Now().Add(2 * time.Second).Unix()})
	})
	select {
	case <-short.Done():
	case <-time.After(6 * time.Second):
		t.Fatal("the expired session is still open")
	}
	if !isClose(short.Err(), protocols.CodeUnauthorized) || !strings.Contains(short.Err().Error(), "expired") {
		t.Fatalf("closed with %v", short.Err())
	}
	// The refreshed one outlived its first token.
	time.Sleep(time.Until(time.Now().Add(1500 * time.Millisecond)))
	if _, err := c.Publish(ctx, "chat:1", []byte("y")); err != nil {
		t.Fatalf("the refreshed session: %v", err)
	}
}

// TestTokenSaysWhoTheClientIs: with a token, presence shows the token's
// user, not the one the client claims.
func TestTokenSaysWhoTheClientIs(t *testing.T) {
	n := startAuthNode(t)
	tok := mint(t, jwt.MapClaims{"sub": "ada", "info": map[string]any{"name": "Ada"}, "caps": caps("chat:*", "subscribe,presence")})
	c := n.dial(t, protocols.WebSocket, func(o *client.Options) { o.Token = tok; o.User = "root" })
	ctx := ctxT(t)
	if _, err := c.Subscribe(ctx, "chat:who"); err != nil {
		t.Fatal(err)
	}
	p, err := c.Presence(ctx, "chat:who", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Members) != 1 || p.Members[0].User != "ada" || string(p.Members[0].Info) != `{"name":"Ada"}` {
		t.Fatalf("presence %+v", p.Members)
	}
}

// TestClientKeepsItsToken: a Go client with a TokenFunc refreshes a
// short-lived token before it expires, so the session outlives it.
func TestClientKeepsItsToken(t *testing.T) {
	n := startAuthNode(t)
	var calls atomic.Int32
	c := n.dial(t, protocols.WebTransport, func(o *client.Options) {
		o.TokenFunc = func(context.Context) (string, error) {
			calls.Add(1)
			return mint(t, jwt.MapClaims{"exp": time.Now().Add(3 * time.Second).Unix()}), nil
		}
	})
	sub, err := c.Subscribe(ctxT(t), "chat:kept")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second) // two lifetimes of a token
	if c.Err() != nil {
		t.Fatalf("session ended: %v", c.Err())
	}
	if got := calls.Load(); got < 3 {
		t.Fatalf("TokenFunc called %d times, want the dial and at least two refreshes", got)
	}
	if code, body := n.apiPublish(t, testAPIKey, `{"channel":"chat:kept","data":"still here"}`); code != 200 {
		t.Fatalf("api publish: %d %v", code, body)
	}
	receive(t, sub, 1)
}

// TestScopedAPIKeys: each API key may do what its scopes say; a key
// without the scope gets 403 with a JSON reason, an unknown one 401.
func TestScopedAPIKeys(t *testing.T) {
	keys, err := auth.NewAPIKeys([]auth.APIKey{
		{Name: "backend", Key: "publisher-key-0123456789", Scopes: []string{auth.ScopePublish}},
		{Name: "support", Key: "reader-key-0123456789abc", Scopes: []string{auth.ScopeHistory, auth.ScopePresence}},
		{Name: "ops", Key: "admin-key-0123456789abcde", Scopes: []string{auth.ScopeAdmin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{}, 1)
	n := startNode(t, func(c *edge.Config) {
		c.APIKey = ""
		c.APIKeys = keys
		c.History = []edge.HistoryRule{{Channels: "*", Size: 10}}
		c.OnDrain = func() { drained <- struct{}{} }
	})
	get := func(key, path string) int {
		req, _ := http.NewRequest(http.MethodGet, n.http+path, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		key    string
		status int
		reason string
	}{
		{"publisher-key-0123456789", 200, ""},
		{"admin-key-0123456789abcde", 200, ""},
		{"reader-key-0123456789abc", 403, "forbidden"},
		{"reader-key-0123456789abX", 401, "bad_api_key"},
		{"", 401, "missing_api_key"},
	} {
		code, body := n.apiPublish(t, tc.key, `{"channel":"news","data":"x"}`)
		if code != tc.status || (tc.reason != "" && body["error"] != tc.reason) {
			t.Errorf("publish with %q: %d %v, want %d %s", tc.key, code, body, tc.status, tc.reason)
		}
	}
	if s := get("reader-key-0123456789abc", "/api/history?channel=news"); s != 200 {
		t.Errorf("history with the reader key: %d", s)
	}
	if s := get("publisher-key-0123456789", "/api/history?channel=news"); s != 403 {
		t.Errorf("history with the publisher key: %d", s)
	}
	// Profiles take the admin scope.
	if s := get("reader-key-0123456789abc", "/debug/pprof/heap"); s != 403 {
		t.Errorf("heap profile with the reader key: %d", s)
	}
	if s := get("", "/debug/pprof/"); s != 401 {
		t.Errorf("profiles without a key: %d", s)
	}
	if s := get("admin-key-0123456789abcde", "/debug/pprof/heap?debug=1"); s != 200 {
		t.Errorf("heap profile with the admin key: %d", s)
	}
	// Draining takes the admin scope.
	drain := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, n.http+"/api/drain", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := drain("reader-key-0123456789abc"); s != 403 {
		t.Fatalf("drain with the reader key: %d", s)
	}
	select {
	case <-drained:
		t.Fatal("drained without the admin scope")
	default:
	}
	if s := drain("admin-key-0123456789abcde"); s != 202 {
		t.Fatalf("drain with the admin key: %d", s)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("OnDrain not called")
	}
}
