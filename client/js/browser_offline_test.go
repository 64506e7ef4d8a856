package js_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// setOnline makes the page's navigator.onLine false or true again, with
// the browser's "offline" and "online" events, as when a laptop leaves
// and finds its Wi-Fi.
func (p *page) setOnline(online bool) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: !online, DownloadThroughput: -1, UploadThroughput: -1,
		})
		return chromedp.Void{}, err
	})
	if err != nil {
		p.t.Fatalf("override the network state: %v", err)
	}
}

// TestOfflineAndBack: when the device goes offline the page's client ends
// its session at once (no heartbeat's wait) and makes no attempts while
// offline; when it comes back online it reconnects at once, not after its
// backoff, and recovers what was published meanwhile.
func TestOfflineAndBack(t *testing.T) {
	needBrowser(t)
	n := startNode(t, "127.0.0.1:0", "127.0.0.1:0")
	p := openPage(t, n.http+"/e2e.html")
	if tr := connectJS(p, n.wt, fmt.Sprintf(`{certHash: "auto", webSocketUrl: %q, backoff: {min: 15000, max: 60000}}`, n.ws), "demo"); tr != "webtransport" {
		t.Fatalf("on %s", tr)
	}
	n.apiPublish(t, "demo", "1")
	p.waitMessages(1)

	p.setOnline(false)
	p.waitJS(`events.some((e) => e.ev === "disconnected" && /offline/.test(e.reason))`)
	if s := eval[string](p, "c.state"); s != "reconnecting" {
		t.Fatalf("offline: state %q", s)
	}
	n.waitSubscribers(t, "demo", 0)
	n.apiPublish(t, "demo", "2")
	n.apiPublish(t, "demo", "3")

	// The backoff (at least 15 s) would hold the next attempt: "online"
	// cuts it short, and the subscription recovers 2 and 3.
	p.setOnline(true)
	got := p.waitMessages(3)
	for i, want := range []string{"1", "2", "3"} {
		if got[i].Data != want || got[i].Offset != uint64(i+1) {
			t.Fatalf("messages %+v", got)
		}
	}
	if !eval[bool](p, "sub.recovered") {
		t.Fatal("the subscription did not recover")
	}
	n.apiPublish(t, "demo", "4")
	if got := p.waitMessages(4); len(got) != 4 || got[3].Data != "4" {
		t.Fatalf("messages after: %+v", got)
	}
}
