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

// countingHarness is the harness with WebTransport wrapped so that the
// tests see what crossed the wire: datagrams in and out, and the server's
// unidirectional streams (window.counts).
const countingHarness = `<!doctype html><meta charset="utf-8"><title>e2e</title>
<script type="module">
window.counts = {datagramsIn: 0, datagramsOut: 0, streamsIn: 0};
const count = (k) => new TransformStream({transform(c, ctl) { counts[k]++; ctl.enqueue(c); }});
if (typeof WebTransport === "function") {
  window.WebTransport = class extends WebTransport {
    #d; #s;
    get datagrams() {
      if (!this.#d) {
        const d = super.datagrams, out = count("datagramsOut");
        out.readable.pipeTo(d.writable).catch(() => {});
        this.#d = {readable: d.readable.pipeThrough(count("datagramsIn")), writable: out.writable,
          get maxDatagramSize() { return d.maxDatagramSize; }};
      }
      return this.#d;
    }
    get incomingUnidirectionalStreams() {
      return this.#s ??= super.incomingUnidirectionalStreams.pipeThrough(count("streamsIn"));
    }
  };
}
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
		Listen:           listen,
		HTTP:             plain,
		Certs:            store,
		APIKey:           "k",
		VolatileChannels: []string{"game:*"},
		History:          []edge.HistoryRule{{Channels: "demo", Size: 100}}, // the chat page's room in these tests
		PresenceChannels: []string{"demo", "chat:*"},
		Extra: map[string]http.Handler{
			"/switchyard.js":     js.Handler(),
			"/switchyard.js.map": js.Handler(),
			"/e2e.html":          htmlPage(harness),
			"/e2e-count.html":    htmlPage(countingHarness),
			"/":                  web.Handler(),
		},
		Session: protocols.SessionConfig{PingInterval: 2 * time.Second, PongTimeout: 2 * time.Second},
	}
}

func htmlPage(html string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(html))
	})
}

func startNode(t *testing.T, listen, plain string) *testNode {
	t.Helper()
	return startNodeWith(t, listen, plain, nil)
}

// startNodeWith is startNode with mutate applied to the config first.
func startNodeWith(t *testing.T, listen, plain string, mutate func(*edge.Config)) *testNode {
	t.Helper()
	store, err := certs.NewDev(certs.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(listen, plain, store)
	if mutate != nil {
		mutate(&cfg)
	}
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
	t     *testing.T
	ctx   context.Context
	close context.CancelFunc // closes the tab
}

// openPage opens url in a new tab and waits for window.ready.
func openPage(t *testing.T, url string) *page {
	t.Helper()
	needBrowser(t)
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	p := &page{t: t, ctx: ctx, close: cancel}
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
	// The restart reuses the address, so TCP and UDP must share the port
	// number: the node tries the TCP port for UDP, which another process
	// may hold; try again on other ports then.
	var n *testNode
	for attempt := 0; ; attempt++ {
		n = startNode(t, "127.0.0.1:0", "127.0.0.1:0")
		a := n.Addrs()
		if a.TLS.(*net.TCPAddr).Port == a.QUIC.(*net.UDPAddr).Port {
			break
		}
		if attempt == 10 {
			t.Fatalf("TCP %v and UDP %v ports differ", a.TLS, a.QUIC)
		}
		n.stop(t)
	}
	a := n.Addrs()
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
	// Back on WebTransport: at once, or — when a loaded machine let the
	// WebSocket of the race win (500 ms) — by the background move.
	for deadline := time.Now().Add(30 * time.Second); eval[string](p, "c.transport") != "webtransport"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("reconnected over %s, want webtransport", eval[string](p, "c.transport"))
		}
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
	alice.waitJS(`chat.online.join() === "alice"`) // from client.presence()
	bob := openChat(t, url("bob", "websocket"))
	// Who's online: bob's page lists both from client.presence(), alice's
	// learns of bob from his join event.
	for _, p := range []*page{alice, bob} {
		p.waitJS(`chat.online.join() === "alice,bob" && document.querySelectorAll("#people li").length === 2`)
	}
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
	// A newcomer sees the recent messages, from the room's history.
	carol := openChat(t, url("carol", "webtransport,websocket"))
	carol.waitJS(`chat.received.length >= 2`)
	if got := eval[[]string](carol, `chat.received.map(m => m.name)`); len(got) != 2 || got[0] != "alice" || got[1] != "bob" {
		t.Fatalf("carol's page shows %v, want alice's and bob's messages", got)
	}
	carol.waitJS(`chat.online.join() === "alice,bob,carol"`)
	alice.waitJS(`chat.online.join() === "alice,bob,carol"`)
	// Carol closes her tab: the others see her leave.
	carol.close()
	for _, p := range []*page{alice, bob} {
		p.waitJS(`chat.online.join() === "alice,bob"`)
		p.waitJS(`[...document.querySelectorAll("#log .system")].some(e => e.textContent === "carol left")`)
	}
	if got := eval[string](alice, `document.getElementById("people").textContent`); got != "aliceyoubob" {
		t.Fatalf("alice's page lists %q as online, want alice (you) and bob", got)
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
	p := &page{t: t, ctx: ctx, close: cancel}
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	p.waitJS(`window.chat && window.chat.ready`)
	return p
}

// goClientWT dials the node over WebTransport, pinning the dev certificate.
func (n *testNode) goClientWT(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.wt, client.Options{Transport: protocols.WebTransport, CertHash: n.store.Hash().Value})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type jsDatagram struct {
	Data     string
	Offset   uint64
	Epoch    string
	Channel  string
	Datagram bool
}

// subscribeVolatile connects window.c with opts, subscribes to channel
// collecting into window.dgrams, and reports the client's state.
func subscribeVolatile(p *page, url, opts, channel string) map[string]any {
	p.t.Helper()
	return eval[map[string]any](p, fmt.Sprintf(`(async () => {
		window.dgrams = [];
		window.c = await sy.connect(%q, %s);
		window.vsub = await c.subscribe(%q, (m) => dgrams.push({data: new TextDecoder().decode(m.data), offset: m.offset, epoch: m.epoch, channel: m.channel, datagram: m.datagram}));
		return {transport: c.transport, max: c.maxDatagramSize, volatile: vsub.volatile};
	})()`, url, opts, channel))
}

// waitDatagram waits until the page holds a datagram with data and returns it.
func (p *page) waitDatagram(data string) jsDatagram {
	p.t.Helper()
	p.waitJS(fmt.Sprintf("dgrams.some((m) => m.data === %q)", data))
	for _, m := range eval[[]jsDatagram](p, "dgrams") {
		if m.Data == data {
			return m
		}
	}
	p.t.Fatalf("datagram %q vanished", data)
	return jsDatagram{}
}

// recvDatagram waits for the Go subscriber's next message, which must be a datagram.
func recvDatagram(t *testing.T, sub *client.Subscription) client.Message {
	t.Helper()
	select {
	case m := <-sub.Messages():
		if !m.Datagram || m.Epoch != "" {
			t.Fatalf("Go subscriber got %+v, want a datagram", m)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("Go subscriber got no datagram")
		return client.Message{}
	}
}

// A page on WebTransport exchanges real QUIC datagrams with a Go client on
// a volatile channel, and reads a reliable channel from its own stream.
func TestDatagramsWebTransport(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	p := openPage(t, n.http+"/e2e-count.html")
	st := subscribeVolatile(p, n.wt, fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q}`, n.ws), "game:1")
	if st["transport"] != "webtransport" || st["max"] != float64(protocols.DefaultMaxDatagramSize) || st["volatile"] != true {
		t.Fatalf("page: %v", st)
	}
	gc := n.goClientWT(t)
	sub, err := gc.Subscribe(context.Background(), "game:1")
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Volatile() {
		t.Fatal("game:1 is not volatile for the Go client")
	}
	// Go → page, one at a time (on loopback nothing is lost).
	for i := range 5 {
		data := fmt.Sprintf("go-%d", i)
		if err := gc.SendDatagram("game:1", []byte(data)); err != nil {
			t.Fatal(err)
		}
		m := p.waitDatagram(data)
		if !m.Datagram || m.Epoch != "" || m.Channel != "game:1" || m.Offset != uint64(i+1) {
			t.Fatalf("page got %+v", m)
		}
		if got := recvDatagram(t, sub); string(got.Data) != data {
			t.Fatalf("Go got %q, want its own %q", got.Data, data)
		}
	}
	// page → Go.
	if sent := eval[bool](p, `c.sendDatagram("game:1", "from page")`); !sent {
		t.Fatal("sendDatagram returned false while connected")
	}
	if m := recvDatagram(t, sub); string(m.Data) != "from page" || m.Offset != 6 {
		t.Fatalf("Go got %+v", m)
	}
	p.waitDatagram("from page") // the sender is a subscriber too
	counts := eval[map[string]float64](p, "counts")
	if counts["datagramsOut"] < 1 || counts["datagramsIn"] < 6 {
		t.Fatalf("QUIC datagrams on the page: %v, want ≥ 1 out and ≥ 6 in", counts)
	}
	if lost := eval[float64](p, "vsub.lost"); lost != 0 {
		t.Fatalf("page counted %v lost on loopback", lost)
	}
	// Clear errors before anything is sent.
	errs := eval[map[string]string](p, `(() => {
		const name = (f) => { try { f(); return "none"; } catch (e) { return e.name + ": " + e.message; } };
		return {
			large: name(() => c.sendDatagram("game:1", new Uint8Array(c.maxDatagramSize + 1))),
			unsubscribed: name(() => c.sendDatagram("game:2", "x")),
		};
	})()`)
	if !strings.HasPrefix(errs["large"], "RangeError") || !strings.Contains(errs["large"], "limit 1100") {
		t.Errorf("oversized datagram: %s", errs["large"])
	}
	if !strings.HasPrefix(errs["unsubscribed"], "RequestError") {
		t.Errorf("datagram without a subscription: %s", errs["unsubscribed"])
	}

	// A reliable channel's messages come on the subscription's own stream.
	eval[chromedp.Void](p, `(async () => {
		window.msgs = [];
		window.rsub = await c.subscribe("room", (m) => msgs.push({data: new TextDecoder().decode(m.data), offset: m.offset, epoch: m.epoch, channel: m.channel}));
	})()`)
	if _, err := gc.Publish(context.Background(), "room", []byte("reliable")); err != nil {
		t.Fatal(err)
	}
	if got := p.waitMessages(1); got[0].Data != "reliable" || got[0].Offset != 1 || got[0].Epoch == "" {
		t.Fatalf("page got %+v", got[0])
	}
	if errs := eval[string](p, `(() => { try { c.sendDatagram("room", "x"); return "none"; } catch (e) { return e.name; } })()`); errs != "TypeError" {
		t.Errorf("datagram on a reliable channel: %s", errs)
	}
	if s := eval[float64](p, "counts.streamsIn"); s < 1 {
		t.Fatalf("the page read %v subscription streams, want ≥ 1", s)
	}
}

// The same over WebSocket: datagram frames out, conflated messages in, all
// delivered with datagram: true.
func TestDatagramsWebSocket(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	p := openPage(t, n.http+"/e2e-count.html")
	st := subscribeVolatile(p, n.wt, fmt.Sprintf(`{transports: ["websocket"], webSocketUrl: %q}`, n.ws), "game:ws")
	if st["transport"] != "websocket" || st["max"] != float64(protocols.DefaultMaxDatagramSize) || st["volatile"] != true {
		t.Fatalf("page: %v", st)
	}
	gc := n.goClient(t) // over WebSocket too
	sub, err := gc.Subscribe(context.Background(), "game:ws")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		data := fmt.Sprintf("go-%d", i)
		if err := gc.SendDatagram("game:ws", []byte(data)); err != nil {
			t.Fatal(err)
		}
		if m := p.waitDatagram(data); !m.Datagram || m.Epoch != "" || m.Offset != uint64(i+1) {
			t.Fatalf("page got %+v", m)
		}
		recvDatagram(t, sub)
	}
	if sent := eval[bool](p, `c.sendDatagram("game:ws", new Uint8Array([104, 105]))`); !sent {
		t.Fatal("sendDatagram returned false while connected")
	}
	if m := recvDatagram(t, sub); string(m.Data) != "hi" || m.Offset != 6 {
		t.Fatalf("Go got %+v", m)
	}
	p.waitDatagram("hi")
	if c := eval[map[string]float64](p, "counts"); c["datagramsIn"]+c["datagramsOut"]+c["streamsIn"] != 0 {
		t.Fatalf("WebTransport traffic on a WebSocket page: %v", c)
	}
	if lost := eval[float64](p, "vsub.lost"); lost != 0 {
		t.Fatalf("page counted %v lost on loopback", lost)
	}
}

// Nodes serve the minified bundle gzipped with a strong ETag, and its
// source map next to it.
func TestBundleServedGzippedWithSourceMap(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	p := openPage(t, n.http+"/e2e.html")
	res := eval[map[string]any](p, `(async () => {
		const js = await fetch("/switchyard.js", {cache: "no-store"});
		const map = await (await fetch("/switchyard.js.map", {cache: "no-store"})).json();
		return {encoding: js.headers.get("content-encoding"), etag: js.headers.get("etag"),
			tail: (await js.text()).slice(-40), sources: map.sources.length, hasSource: map.sources.includes("../src/switchyard.ts")};
	})()`)
	if res["encoding"] != "gzip" || !strings.HasPrefix(res["etag"].(string), `"`) {
		t.Fatalf("served with %v", res)
	}
	if !strings.Contains(res["tail"].(string), "sourceMappingURL=switchyard.js.map") || res["hasSource"] != true {
		t.Fatalf("source map: %v", res)
	}
}

// Presence between two pages (one on WebTransport, one on WebSocket) and a
// Go client: user and info in connect, join and leave events, the presence
// request and its errors.
func TestPresenceBetweenPages(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	a := openPage(t, n.http+"/e2e.html")
	b := openPage(t, n.http+"/e2e.html")
	watch := `
		window.pres = [];
		const show = (ev) => (m) => pres.push({ev, client: m.client, user: m.user, info: [...m.info]});
		window.psub.on("join", show("join"));
		window.psub.on("leave", show("leave"));
		return {transport: c.transport, id: c.sessionId};`
	ra := eval[map[string]string](a, fmt.Sprintf(`(async () => {
		window.c = await sy.connect(%q, {certHash: "auto", webSocketUrl: %q, user: "ada", info: JSON.stringify({avatar: "🦊"})});
		window.psub = await c.subscribe("chat:1", () => {}, {presence: true});`+watch+`
	})()`, n.wt, n.ws))
	rb := eval[map[string]string](b, fmt.Sprintf(`(async () => {
		window.c = await sy.connect(%q, {transports: ["websocket"], webSocketUrl: %q, user: "bob", info: new Uint8Array([1, 2, 3])});
		window.psub = await c.subscribe("chat:1", () => {}, {presence: true});`+watch+`
	})()`, n.wt, n.ws))
	if ra["transport"] != "webtransport" || rb["transport"] != "websocket" {
		t.Fatalf("pages on %s and %s", ra["transport"], rb["transport"])
	}
	a.waitJS(`pres.some((e) => e.ev === "join" && e.user === "bob" && e.info.join() === "1,2,3" && e.client === ` + fmt.Sprintf("%q", rb["id"]) + `)`)

	// The presence request, from the WebSocket page.
	got := eval[map[string]any](b, `(async () => {
		const p = await c.presence("chat:1");
		const counts = await c.presence("chat:1", {countsOnly: true});
		const fail = async (ch) => { try { await c.presence(ch); return "none"; } catch (e) { return e.name + " " + e.code; } };
		await c.subscribe("plain", () => {});
		return {clients: p.clients, users: p.users, truncated: p.truncated,
			members: p.members.map((m) => m.user + ":" + sy.decodeText(m.info)),
			counts: [counts.clients, counts.users, counts.members.length, counts.truncated],
			unsubscribed: await fail("chat:2"), nopresence: await fail("plain")};
	})()`)
	if got["clients"] != float64(2) || got["users"] != float64(2) || got["truncated"] != false {
		t.Fatalf("presence: %v", got)
	}
	members := fmt.Sprint(got["members"])
	if !strings.Contains(members, `ada:{"avatar":"🦊"}`) || !strings.Contains(members, "bob:\x01\x02\x03") {
		t.Fatalf("members %q", members)
	}
	if fmt.Sprint(got["counts"]) != "[2 2 0 true]" {
		t.Fatalf("counts only: %v", got["counts"])
	}
	if got["unsubscribed"] != fmt.Sprintf("RequestError %d", protocols.ErrCodeNotSubscribed) || got["nopresence"] != fmt.Sprintf("RequestError %d", protocols.ErrCodeBadRequest) {
		t.Fatalf("errors: %v, %v", got["unsubscribed"], got["nopresence"])
	}

	// A Go client is a member too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gc, err := client.Dial(ctx, n.ws, client.Options{User: "gopher"})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	if _, err := gc.Subscribe(ctx, "chat:1"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*page{a, b} {
		p.waitJS(`pres.some((e) => e.ev === "join" && e.user === "gopher")`)
	}
	// The WebSocket page closes: the others see it leave.
	b.close()
	a.waitJS(`pres.some((e) => e.ev === "leave" && e.user === "bob")`)
	info, err := gc.Presence(ctx, "chat:1", false)
	if err != nil || info.Clients != 2 {
		t.Fatalf("Go presence after bob left: %+v, %v", info, err)
	}
	if own := eval[float64](a, `pres.filter((e) => e.user === "ada").length`); own != 0 {
		t.Fatalf("ada's page got %v events about itself", own)
	}

	// The node refuses a user over 256 bytes: connect() rejects, not retrying.
	res := eval[map[string]any](a, fmt.Sprintf(`(async () => {
		try { await sy.connect(%q, {transports: ["websocket"], webSocketUrl: %q, user: "x".repeat(257)}); return {}; }
		catch (e) { return {name: e.name, code: e.code}; }
	})()`, n.wt, n.ws))
	if res["name"] != "ClosedError" || res["code"] != float64(protocols.CodeBadFrame) {
		t.Fatalf("connect with a user of 257 bytes: %v", res)
	}
}
