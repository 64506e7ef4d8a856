package js_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/client/js"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/examples/chat/web"
	"github.com/switchyard/switchyard/protocols"
)

// These tests drive the browser SDK in a real headless Chromium (Debian's
// chromium; `make test` installs it). One browser serves the package; each
// test opens its own tabs.

var browserCtx context.Context

const chromiumPath = "/usr/bin/chromium"

func TestMain(m *testing.M) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("SWITCHYARD_REQUIRE_BROWSER") != "" {
			fmt.Fprintln(os.Stderr, "browser tests: chromium is required but missing at", chromiumPath)
			os.Exit(1)
		}
		os.Exit(m.Run()) // each browser test skips, naming the reason
	}
	dir, err := os.MkdirTemp("", "switchyard-chromium-")
	if err != nil {
		panic(err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(900, 700),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		fmt.Fprintln(os.Stderr, "browser tests: start chromium:", err)
		os.Exit(1)
	}
	browserCtx = ctx
	code := m.Run()
	cancel()
	cancelAlloc()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needBrowser(t *testing.T) {
	t.Helper()
	if browserCtx == nil {
		t.Skip("chromium is not installed at " + chromiumPath + " (make test installs it)")
	}
}

// harness is the page the tests drive: it loads the SDK as window.sy.
const harness = `<!doctype html><meta charset="utf-8"><title>e2e</title>
<script type="module">
window.sy = await import("/switchyard.js");
window.ready = true;
</script>`

type testNode struct {
	*edge.Node
	store *certs.Store
	wt    string // https://127.0.0.1:port (the TLS address, UDP side)
	ws    string // ws://127.0.0.1:port/ws (plain HTTP)
	http  string // http://127.0.0.1:port
	cfg   edge.Config
}

func nodeConfig(listen, plain string, store *certs.Store) edge.Config {
	return edge.Config{
		Listen: listen,
		HTTP:   plain,
		Certs:  store,
		APIKey: "k",
		Extra: map[string]http.Handler{
			"/switchyard.js": js.Handler(),
			"/e2e.html": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Write([]byte(harness))
			}),
			"/": web.Handler(),
		},
		Session: protocols.SessionConfig{PingInterval: 2 * time.Second, PongTimeout: 2 * time.Second},
	}
}

func startNode(t *testing.T, listen, plain string) *testNode {
	t.Helper()
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(listen, plain, store)
	n, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, store: store, cfg: cfg}
	a := n.Addrs()
	tn.wt = "https://" + a.QUIC.String()
	tn.ws = "ws://" + a.HTTP.String() + "/ws"
	tn.http = "http://" + a.HTTP.String()
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

func (n *testNode) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func (n *testNode) goClient(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.ws, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (n *testNode) apiPublish(t *testing.T, channel, data string) {
	t.Helper()
	body := fmt.Sprintf(`{"channel":%q,"data":%q}`, channel, data)
	req, _ := http.NewRequest("POST", n.http+"/api/publish", strings.NewReader(body))
	req.Header.Set("X-API-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("api publish: %d", resp.StatusCode)
	}
}

type page struct {
	t   *testing.T
	ctx context.Context
}

// openPage opens url in a new tab and waits for window.ready.
func openPage(t *testing.T, url string) *page {
	t.Helper()
	needBrowser(t)
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	p := &page{t: t, ctx: ctx}
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	p.waitJS("window.ready === true")
	return p
}

// eval runs an expression (awaiting a promise) and decodes its result.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a boolean expression until it is true.
func (p *page) waitJS(cond string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (last error %v)", cond, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connectJS connects window.c with opts (a JS object literal), collects
// messages of channel into window.msgs and returns the transport.
func connectJS(p *page, url, opts, channel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`(async () => {
		window.events = [];
		window.msgs = [];
		window.c = await sy.connect(%q, %s);
		for (const ev of ["connected", "disconnected", "reconnecting"]) c.on(ev, (e) => events.push({ev, ...e}));
		window.sub = await c.subscribe(%q, (m) => msgs.push({data: new TextDecoder().decode(m.data), offset: m.offset, epoch: m.epoch, channel: m.channel}));
		return c.transport;
	})()`, url, opts, channel))
}

type jsMsg struct {
	Data    string
	Offset  uint64
	Epoch   string
	Channel string
}

func messages(p *page) []jsMsg { return eval[[]jsMsg](p, "window.msgs") }

func (p *page) waitMessages(n int) []jsMsg {
	p.t.Helper()
	p.waitJS(fmt.Sprintf("window.msgs.length >= %d", n))
	return messages(p)
}

func recvGo(t *testing.T, sub *client.Subscription) string {
	t.Helper()
	select {
	case m := <-sub.Messages():
		return string(m.Data)
	case <-time.After(10 * time.Second):
		t.Fatal("Go subscriber got nothing")
		return ""
	}
}

func TestWebTransportPageAndGoClient(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	p := openPage(t, n.http+"/e2e.html")
	tr := connectJS(p, n.wt, fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q}`, n.ws), "room")
	if tr != "webtransport" {
		t.Fatalf("page on %s, want webtransport", tr)
	}
	gc := n.goClient(t)
	sub, err := gc.Subscribe(context.Background(), "room")
	if err != nil {
		t.Fatal(err)
	}
	// Go → page.
	if _, err := gc.Publish(context.Background(), "room", []byte("from go")); err != nil {
		t.Fatal(err)
	}
	got := p.waitMessages(1)
	if got[0].Data != "from go" || got[0].Channel != "room" || got[0].Offset == 0 || got[0].Epoch == "" {
		t.Fatalf("page got %+v", got[0])
	}
	if recvGo(t, sub) != "from go" {
		t.Fatal("Go subscriber missed its own publication")
	}
	// page → Go, string and bytes.
	pos := eval[map[string]any](p, `c.publish("room", "from page")`)
	if pos["offset"] != float64(2) {
		t.Fatalf("publish resolved to %v", pos)
	}
	if got := recvGo(t, sub); got != "from page" {
		t.Fatalf("Go got %q", got)
	}
	eval[map[string]any](p, `c.publish("room", new Uint8Array([104, 105]))`)
	if got := recvGo(t, sub); got != "hi" {
		t.Fatalf("Go got %q", got)
	}
	// unsubscribe stops delivery to the page.
	eval[chromedp.Void](p, `sub.unsubscribe()`)
	before := len(messages(p))
	gc.Publish(context.Background(), "room", []byte("after"))
	if recvGo(t, sub) != "after" {
		t.Fatal("Go missed 'after'")
	}
	if after := len(messages(p)); after != before {
		t.Fatalf("page got %d messages after unsubscribe", after-before)
	}
}

func TestFallbackToWebSocket(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	closedUDP := func() string {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		return "https://" + addr
	}()
	// A UDP socket that never answers: QUIC hangs, so only the fallback
	// timer can save the page.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, c := range []struct{ name, url, hash string }{
		{"udp closed", closedUDP, `"auto"`},
		{"udp silent", "https://" + silent.LocalAddr().String(), `"auto"`},
		{"wrong cert hash", n.wt, `"` + strings.Repeat("A", 43) + `="`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := openPage(t, n.http+"/e2e.html")
			res := eval[map[string]any](p, fmt.Sprintf(`(async () => {
				const t0 = performance.now();
				window.c = await sy.connect(%q, {certHash: %s, webSocketUrl: %q});
				return {transport: c.transport, ms: performance.now() - t0};
			})()`, c.url, c.hash, n.ws))
			if res["transport"] != "websocket" {
				t.Fatalf("on %v, want websocket", res["transport"])
			}
			if ms := res["ms"].(float64); ms > 2000 {
				t.Fatalf("fallback took %.0f ms, want < 2000", ms)
			}
			t.Logf("fell back in %.0f ms", res["ms"])
			eval[chromedp.Void](p, `(async () => {
				window.msgs = [];
				await c.subscribe("fb", (m) => msgs.push({data: new TextDecoder().decode(m.data)}));
				await c.publish("fb", "works");
			})()`)
			if got := p.waitMessages(1); got[0].Data != "works" {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestMixedTransportsSeeEachOther(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	a := openPage(t, n.http+"/e2e.html")
	b := openPage(t, n.http+"/e2e.html")
	if tr := connectJS(a, n.wt, fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q}`, n.ws), "mix"); tr != "webtransport" {
		t.Fatalf("a on %s", tr)
	}
	if tr := connectJS(b, n.wt, fmt.Sprintf(`{transports: ["websocket"], webSocketUrl: %q}`, n.ws), "mix"); tr != "websocket" {
		t.Fatalf("b on %s", tr)
	}
	eval[map[string]any](a, `c.publish("mix", "from wt")`)
	eval[map[string]any](b, `c.publish("mix", "from ws")`)
	ga, gb := a.waitMessages(2), b.waitMessages(2)
	for i := range 2 {
		if ga[i] != gb[i] {
			t.Fatalf("pages disagree at %d: %+v vs %+v", i, ga[i], gb[i])
		}
	}
	if ga[0].Data != "from wt" || ga[1].Data != "from ws" {
		t.Fatalf("got %+v", ga)
	}
}

func TestReconnectAfterNodeRestart(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	a := n.Addrs()
	if a.TLS.(*net.TCPAddr).Port != a.QUIC.(*net.UDPAddr).Port {
		t.Fatalf("TCP %v and UDP %v ports differ", a.TLS, a.QUIC)
	}
	p := openPage(t, n.http+"/e2e.html")
	if tr := connectJS(p, n.wt, fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q}`, n.ws), "restart"); tr != "webtransport" {
		t.Fatalf("on %s", tr)
	}
	n.apiPublish(t, "restart", "before")
	p.waitMessages(1)

	n.stop(t)
	p.waitJS(`events.some(e => e.ev === "disconnected")`)
	// A new node on the same addresses, with a new dev certificate: the page
	// must fetch the new hash and resubscribe by itself.
	n2 := startNode(t, a.TLS.String(), a.HTTP.String())
	p.waitJS(`events.some(e => e.ev === "connected")`)
	n2.waitSubscribers(t, "restart", 1)
	n2.apiPublish(t, "restart", "after")
	got := p.waitMessages(2)
	if got[1].Data != "after" {
		t.Fatalf("got %+v", got)
	}
	if tr := eval[string](p, "c.transport"); tr != "webtransport" {
		t.Fatalf("reconnected over %s, want webtransport", tr)
	}
	ev := eval[[]map[string]any](p, "events")
	if ev[0]["ev"] != "disconnected" || ev[0]["code"] != float64(protocols.CodeGoingAway) {
		t.Fatalf("first event %v, want disconnected with %d", ev[0], protocols.CodeGoingAway)
	}
}

func (n *testNode) waitSubscribers(t *testing.T, channel string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.Hub().Subscribers(channel) < want {
		if time.Now().After(deadline) {
			t.Fatalf("channel %s has %d subscribers, want %d", channel, n.Hub().Subscribers(channel), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTerminalCloseIsNotRetried(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	// A page on another origin, not on the node's allowlist.
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(strings.Replace(harness, `"/switchyard.js"`, `"`+n.http+`/switchyard.js"`, 1)))
	}))
	defer foreign.Close()
	p := openPage(t, foreign.URL)
	res := eval[map[string]any](p, fmt.Sprintf(`(async () => {
		window.events = [];
		try {
			const c = await sy.connect(%q, {certHash: "auto", webSocketUrl: %q,
				// register listeners through a hook if the SDK offers one; events are also checked below
			});
			return {ok: true, transport: c.transport};
		} catch (e) {
			return {ok: false, code: e.code, reason: e.reason, name: e.name};
		}
	})()`, n.wt, n.ws))
	if res["ok"] != false || res["code"] != float64(protocols.CodeOriginNotAllowed) || res["reason"] == "" {
		t.Fatalf("connect from a foreign origin: %v, want rejection with %d", res, protocols.CodeOriginNotAllowed)
	}
	// Nothing retries: the node sees no session for the next seconds.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if s := n.Sessions(); s != 0 {
			t.Fatalf("%d sessions after a terminal close", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestChatExampleScreenshot(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	url := func(name, transports string) string {
		return fmt.Sprintf("%s/?url=%s&name=%s&transports=%s&room=demo", n.http, n.wt, name, transports)
	}
	alice := openChat(t, url("alice", "webtransport,websocket"))
	bob := openChat(t, url("bob", "websocket"))
	say := func(p *page, text string) {
		eval[chromedp.Void](p, fmt.Sprintf(`(() => { document.getElementById("text").value = %q; document.getElementById("form").requestSubmit(); })()`, text))
	}
	say(alice, "hi bob, I am on WebTransport")
	bob.waitJS(`chat.received.length >= 1`)
	say(bob, "hi alice, WebSocket here")
	for _, p := range []*page{alice, bob} {
		p.waitJS(`chat.received.length >= 2`)
		p.waitJS(`document.querySelectorAll("#log .who").length >= 2`)
	}
	if tr := eval[string](alice, `document.getElementById("transport").textContent`); tr != "webtransport" {
		t.Fatalf("alice shows %q", tr)
	}
	if tr := eval[string](bob, `document.getElementById("transport").textContent`); tr != "websocket" {
		t.Fatalf("bob shows %q", tr)
	}
	who := eval[[]string](alice, `[...document.querySelectorAll("#log .who")].map(e => e.textContent)`)
	if len(who) < 2 || who[0] != "alice" || who[1] != "bob" {
		t.Fatalf("alice's page shows messages from %v, want alice and bob", who)
	}
	shot, err := chromedp.Run(alice.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	colors := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>12<<8|g>>12<<4|bl>>12] = true
		}
	}
	if b.Dx() < 400 || b.Dy() < 300 || len(colors) < 8 {
		t.Fatalf("screenshot %dx%d with %d colours looks blank", b.Dx(), b.Dy(), len(colors))
	}
	out := filepath.Join(t.TempDir(), "chat.png")
	if os.Getenv("UPDATE_SCREENSHOT") != "" {
		out = filepath.Join("..", "..", "examples", "chat", "screenshot.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
}

func openChat(t *testing.T, url string) *page {
	t.Helper()
	needBrowser(t)
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	p := &page{t: t, ctx: ctx}
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	p.waitJS(`window.chat && window.chat.ready`)
	return p
}
