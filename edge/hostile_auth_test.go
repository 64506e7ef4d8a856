package edge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// TestHostileAuthAndLimits is the table of issue 11: on a node with
// tokens, capabilities and limits, each hostile input — bad tokens,
// capability escalation, a foreign origin, oversized frames and
// datagrams, floods of one session and of one address — is refused with
// its code, and a subscriber on each transport keeps getting its messages
// after every case.
func TestHostileAuthAndLimits(t *testing.T) {
	v, err := auth.New(auth.Config{HMACSecrets: [][]byte{authSecret}, Audience: authAud, Issuer: authIss, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	n := startNode(t, func(c *edge.Config) {
		c.Auth = v
		c.VolatileChannels = []string{"game:*"}
		c.PresenceChannels = []string{"chat:*"}
		c.History = []edge.HistoryRule{{Channels: "chat:*", Size: 10}}
		c.Limits = edge.Limits{PublishRate: 5, PublishBurst: 5, SessionsPerIP: 40}
	})
	reader := mint(t, jwt.MapClaims{"caps": caps("chat:*", "subscribe", "game:*", "subscribe", "canary-*", "subscribe")})
	var canaries []*canary
	for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
		c := n.dial(t, tr, func(o *client.Options) { o.Token = reader })
		canaries = append(canaries, newCanaryOn(t, n, c, tr))
	}

	connectWith := func(token string) *protocols.Frame {
		return &protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{Protocol: protocols.ProtocolVersion, Token: token}}}
	}
	refusedToken := func(token, reason string) func(t *testing.T, tr string) {
		return func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "")
			r.send(connectWith(token))
			expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeUnauthorized, reason)
		}
	}
	denied := func(f *protocols.Frame, msgHas string) func(t *testing.T, tr string) {
		return func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "")
			r.send(connectWith(reader), f)
			expectError(t, r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(f.Id) != nil }), f.Id, protocols.ErrCodePermissionDenied, msgHas)
		}
	}
	valid := mint(t, nil)
	parts := strings.Split(valid, ".")
	type hostile struct {
		name string
		run  func(t *testing.T, tr string)
	}
	cases := []hostile{
		{"no token", refusedToken("", "missing")},
		{"garbage token", refusedToken("garbage", "malformed")},
		{"expired", refusedToken(mint(t, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), "expired")},
		{"not yet valid", refusedToken(mint(t, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}), "not_yet_valid")},
		{"wrong audience", refusedToken(mint(t, jwt.MapClaims{"aud": "other"}), "wrong_audience")},
		{"wrong issuer", refusedToken(mint(t, jwt.MapClaims{"iss": "https://evil.test"}), "wrong_issuer")},
		{"wrong key", refusedToken(mintWith(t, jwt.SigningMethodHS256, otherSecret, nil), "bad_signature")},
		{"alg none", refusedToken("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."+parts[1]+".", "bad_algorithm")},
		{"signature of another token", refusedToken(parts[0]+"."+strings.Split(mint(t, jwt.MapClaims{"sub": "root"}), ".")[1]+"."+parts[2], "bad_signature")},
		{"token over 8 KiB", refusedToken(valid+strings.Repeat("A", 9000), "too_large")},
		{"publish with subscribe only", denied(publishFrame(2, "chat:1", "x"), "publish")},
		{"near miss chatx", denied(subscribeFrame(2, "chatx"), "subscribe")},
		{"near miss chat (pattern chat:*)", denied(subscribeFrame(2, "chat"), "subscribe")},
		{"unlisted channel", denied(subscribeFrame(2, "admin"), "subscribe")},
		{"presence without it", denied(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "chat:1", Presence: true}}}, "presence")},
		{"history without it", denied(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "chat:1", Recover: true}}}, "history")},
		{"refresh as another user", func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "")
			r.send(connectWith(reader), &protocols.Frame{Id: 2, Kind: &protocols.Frame_Refresh{Refresh: &protocols.Refresh{Token: mint(t, jwt.MapClaims{"sub": "root", "caps": caps("*", "publish")})}}},
				publishFrame(3, "chat:1", "escalated?"))
			a := r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(3) != nil })
			expectError(t, a, 2, protocols.ErrCodeUnauthorized, "another user")
			expectError(t, a, 3, protocols.ErrCodePermissionDenied, "publish")
		}},
		{"foreign origin", func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "https://evil.example")
			r.send(connectWith(reader))
			expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeOriginNotAllowed, "origin")
		}},
		{"frame over max_frame_size", func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "")
			r.send(connectWith(reader))
			r.write([]byte{0x80, 0x80, 0x80, 0x01}) // a 2 MiB frame announced
			expectClose(t, r.readUntil(10*time.Second, closed), protocols.CodeFrameTooLarge, "limit")
		}},
		{"publish flood of one session", func(t *testing.T, tr string) {
			r := dialRaw(t, n, tr, "")
			frames := []*protocols.Frame{connectWith(mint(t, jwt.MapClaims{"caps": caps("chat:*", "subscribe,publish")}))}
			for i := range 20 {
				frames = append(frames, publishFrame(uint32(i+2), "chat:flood", "x"))
			}
			r.send(frames...)
			a := r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(21) != nil || a.has(21, "publish_ack") })
			expectError(t, a, 21, protocols.ErrCodeRateLimited, "publishes a second")
		}},
	}
	{
		cases = append(cases,
			hostile{"datagram over max_datagram_size", func(t *testing.T, tr string) {
				r := dialRaw(t, n, tr, "")
				r.send(connectWith(mint(t, jwt.MapClaims{"caps": caps("game:*", "subscribe,publish")})),
					&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:1", Alias: 3}}},
					&protocols.Frame{Kind: &protocols.Frame_Datagram{Datagram: &protocols.Datagram{Alias: 3, Seq: 1, Data: make([]byte, 2000)}}})
				a := r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(0) != nil })
				expectError(t, a, 0, protocols.ErrCodePayloadTooLarge, "limit")
			}},
			hostile{"datagram without publish", func(t *testing.T, tr string) {
				r := dialRaw(t, n, tr, "")
				r.send(connectWith(reader),
					&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "game:1", Alias: 3}}},
					&protocols.Frame{Kind: &protocols.Frame_Datagram{Datagram: &protocols.Datagram{Alias: 3, Seq: 1, Data: []byte("move")}}})
				a := r.readUntil(10*time.Second, func(a *answer) bool { return a.errorFor(0) != nil })
				expectError(t, a, 0, protocols.ErrCodePermissionDenied, "publish")
			}},
		)
	}
	count := 0
	for _, c := range cases {
		for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
			count++
			t.Run(tr+"/"+c.name, func(t *testing.T) {
				c.run(t, tr)
				for _, cn := range canaries {
					cn.check(t)
				}
			})
		}
	}
	// Sessions from one address over its cap: 3006 with a retry-after
	// (the canaries and the cases' sessions count too).
	t.Run("sessions flood of one address", func(t *testing.T) {
		refusedAt := 0
		for i := range 45 {
			r := n.rawWS(t, "")
			r.send(connectWith(reader))
			a := r.readUntil(10*time.Second, func(a *answer) bool { return a.code != 0 || a.has(1, "connected") })
			if a.code != 0 {
				expectClose(t, a, protocols.CodeTryLater, "too many sessions")
				refusedAt = i
				break
			}
		}
		if refusedAt == 0 {
			t.Fatal("45 sessions from one address and none refused, with a cap of 40")
		}
		for _, cn := range canaries {
			cn.check(t)
		}
	})
	if count+1 < 30 {
		t.Fatalf("%d hostile cases, want at least 30", count+1)
	}
}
