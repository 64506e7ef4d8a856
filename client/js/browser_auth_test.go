package js_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// These tests run the browser SDK against a node that checks tokens
// (HS256): a token function keeps one session alive across several short
// token lifetimes by refreshing it in place; a string token is not renewed
// and its expiry ends the client.

// authSecret is the HS256 secret of the test node (at least 32 bytes).
var authSecret = []byte("switchyard browser tests: an HS256 secret of 32+ bytes")

// tokenTTL is the lifetime of the tokens the tests mint: short, so that a
// session outlives several of them within seconds.
const tokenTTL = 3 * time.Second

// mintToken returns a token for user that may subscribe and publish on
// "demo" and expires ttl from now (exp has whole seconds: 2 to 3 s left
// for a 3 s ttl).
func mintToken(t *testing.T, user string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":  user,
		"exp":  time.Now().Add(ttl).Unix(),
		"caps": []map[string][]string{{"channels": {"demo"}, "allow": {"subscribe", "publish"}}},
	}).SignedString(authSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authNode is a test node that checks tokens, with GET /token handing out
// a fresh tokenTTL token for user "ada" (counted in minted).
type authNode struct {
	*testNode
	minted atomic.Int64
}

// startAuthNode is startNode with Config.Auth set and the /token route.
func startAuthNode(t *testing.T) *authNode {
	t.Helper()
	v, err := auth.New(auth.Config{HMACSecrets: [][]byte{authSecret}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	an := &authNode{}
	an.testNode = startNodeWith(t, "127.0.0.1:0", "127.0.0.1:0", func(cfg *edge.Config) {
		cfg.Auth = v
		cfg.Extra["/token"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			an.minted.Add(1)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write([]byte(mintToken(t, "ada", tokenTTL)))
		})
	})
	return an
}

// TestAuthRefreshKeepsSession: a page whose token
// function fetches 3-second tokens from /token connects over
// WebTransport, subscribes and publishes; more than two token lifetimes
// later it is still on the same session (no disconnect, no reconnect, the
// same sessionId), having refreshed in place, and messages still flow
// both ways. A publish the token does not allow fails with 107 and the
// session lives on.
func TestAuthRefreshKeepsSession(t *testing.T) {
	needBrowser(t)
	n := startAuthNode(t)
	p := openPage(t, n.http+"/e2e.html")
	opts := fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q, token: async (x) => {
		(window.reasons ??= []).push(x.reason);
		const r = await fetch("/token", {cache: "no-store"});
		if (!r.ok) throw new Error("GET /token: " + r.status);
		return r.text();
	}}`, n.ws)
	if tr := connectJS(p, n.wt, opts, "demo"); tr != "webtransport" {
		t.Fatalf("on %s, want webtransport", tr)
	}
	eval[any](p, `(window.errors = [], c.on("error", (e) => errors.push(String(e.error))), window.t0 = performance.now(), 0)`)
	session := eval[string](p, "c.sessionId")
	eval[map[string]any](p, `c.publish("demo", "before")`)
	if got := p.waitMessages(1); got[0].Data != "before" {
		t.Fatalf("messages %+v", got)
	}
	denied := eval[float64](p, `c.publish("elsewhere", "x").then(() => 0, (e) => e.code)`)
	if denied != float64(protocols.ErrCodePermissionDenied) {
		t.Fatalf("publish on a channel the token does not allow: code %v, want %d", denied, protocols.ErrCodePermissionDenied)
	}

	// Two token lifetimes and more: the first token is long expired.
	p.waitJS(`performance.now() - t0 > 7000`)
	p.waitJS(`reasons.filter((r) => r === "refresh").length >= 3`)
	if s := eval[string](p, "c.sessionId"); s != session {
		t.Fatalf("session %s, was %s: the client reconnected", s, session)
	}
	if ev := eval[[]map[string]any](p, "events"); len(ev) != 0 {
		t.Fatalf("events %v, want none (no disconnect, no reconnect)", ev)
	}
	if errs := eval[[]string](p, "errors"); len(errs) != 0 {
		t.Fatalf("error events %v", errs)
	}
	reasons := eval[[]string](p, "reasons")
	if reasons[0] != "connect" {
		t.Fatalf("token function reasons %v", reasons)
	}
	for _, r := range reasons[1:] {
		if r != "refresh" {
			t.Fatalf("token function reasons %v, want connect then refresh only", reasons)
		}
	}
	if got := int(n.minted.Load()); got != len(reasons) {
		t.Fatalf("/token minted %d tokens, the function was called %d times", got, len(reasons))
	}
	t.Logf("one session, %d refreshes in %.1f s", len(reasons)-1, eval[float64](p, "(performance.now() - t0) / 1000"))

	n.apiPublish(t, "demo", "from api")
	eval[map[string]any](p, `c.publish("demo", "after")`)
	got := p.waitMessages(3)
	if got[1].Data != "from api" || got[2].Data != "after" {
		t.Fatalf("messages %+v", got)
	}
	if st := eval[string](p, "c.state"); st != "connected" {
		t.Fatalf("state %s", st)
	}
}

// TestAuthExpiredStringTokenIsTerminal: a page given a string token (no
// function to ask for another) is closed by the node with 3502 when the
// token expires, and does not reconnect.
func TestAuthExpiredStringTokenIsTerminal(t *testing.T) {
	needBrowser(t)
	n := startAuthNode(t)
	p := openPage(t, n.http+"/e2e.html")
	opts := fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q, token: %q}`, n.ws, mintToken(t, "bob", tokenTTL))
	if tr := connectJS(p, n.wt, opts, "demo"); tr != "webtransport" {
		t.Fatalf("on %s, want webtransport", tr)
	}
	eval[map[string]any](p, `c.publish("demo", "hi")`)
	p.waitMessages(1)
	p.waitJS(`events.some((e) => e.ev === "disconnected")`)
	ev := eval[[]map[string]any](p, "events")
	if len(ev) != 1 || ev[0]["code"] != float64(protocols.CodeUnauthorized) || ev[0]["reconnect"] != false {
		t.Fatalf("events %v, want one disconnected with %d and reconnect false", ev, protocols.CodeUnauthorized)
	}
	t.Logf("closed: %v", ev[0]["reason"])
	if st := eval[string](p, "c.state"); st != "closed" {
		t.Fatalf("state %s, want closed", st)
	}
	if code := eval[float64](p, `c.publish("demo", "late").then(() => 0, (e) => e.code)`); code != float64(protocols.CodeUnauthorized) {
		t.Fatalf("publish after the close: code %v, want %d", code, protocols.CodeUnauthorized)
	}
	n.waitSubscribers(t, "demo", 0)
}
