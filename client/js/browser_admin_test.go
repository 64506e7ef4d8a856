package js_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/metrics"
)

// meshLocal hands the mesh the node made after it (mesh.Local).
type meshLocal struct{ *edge.Node }

// startAdminCluster runs three nodes joined by a real mesh on loopback:
// eu-west-1 and eu-west-2 in region eu-west, us-east-1 in us-east. Each
// serves what startNode's do, the mesh's metrics and the cluster's node
// list; the first is returned first.
func startAdminCluster(t *testing.T) []*testNode {
	t.Helper()
	ca, err := certs.NewCA("admin test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*testNode
	var clusters []*mesh.Cluster
	for i, nr := range [][2]string{{"eu-west-1", "eu-west"}, {"eu-west-2", "eu-west"}, {"us-east-1", "us-east"}} {
		name, region := nr[0], nr[1]
		certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg, err := certs.MeshTLS(ca.CertPEM(), certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		store, err := certs.NewDev(certs.DevConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{clusters[0].Addr()}
		}
		lp := &meshLocal{}
		cl, err := mesh.New(mesh.Config{Name: name, Region: region, Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0",
			Join: join, TLS: tlsCfg, Logger: logger, PublicURLs: map[string]string{"wss": "wss://" + name + ".example/ws"}}, lp)
		if err != nil {
			t.Fatal(err)
		}
		cfg := nodeConfig("127.0.0.1:0", "127.0.0.1:0", store)
		cfg.Name, cfg.Region, cfg.Logger = name, region, logger
		cfg.Cluster = cl
		cfg.MetricsCollectors = []prometheus.Collector{metrics.Mesh(cl)}
		cfg.Nodes = func() []edge.NodeInfo {
			var out []edge.NodeInfo
			for _, m := range cl.Members() {
				out = append(out, edge.NodeInfo{Name: m.Name, Region: m.Region, URLs: m.PublicURLs, Draining: m.Draining, Self: m.Name == name})
			}
			return out
		}
		n, err := edge.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		lp.Node = n
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		tn := &testNode{Node: n, store: store, cfg: cfg}
		a := n.Addrs()
		tn.wt, tn.ws, tn.http = "https://"+a.QUIC.String(), "ws://"+a.HTTP.String()+"/ws", "http://"+a.HTTP.String()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Shutdown(ctx); err != nil {
				t.Errorf("%s: shutdown: %v", name, err)
			}
			if err := cl.Shutdown(ctx); err != nil {
				t.Errorf("%s: mesh shutdown: %v", name, err)
			}
		})
		nodes, clusters = append(nodes, tn), append(clusters, cl)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, cl := range clusters {
		for len(cl.Members()) != len(clusters) {
			if time.Now().After(deadline) {
				t.Fatal("the mesh did not converge")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	clusters[1].SetDraining(true) // shown as draining in the nodes table
	return nodes
}

// publishLoad publishes from c to channels until the test ends, at a
// rate that swings between about 40 and 400 a second so that the charts
// have a shape.
func publishLoad(t *testing.T, c *client.Client, channels []string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			phase := time.Since(start).Seconds()
			burst := 1 + int(2.2+1.8*math.Sin(phase/6)+0.8*math.Sin(phase/1.7))
			for j := range burst {
				ch := channels[(i+j)%len(channels)]
				if _, err := c.Publish(ctx, ch, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil && ctx.Err() == nil {
					t.Errorf("publish to %s: %v", ch, err)
					return
				}
			}
		}
	})
}

// TestAdminDashboard opens /admin on a node of a three-node cluster with
// live sessions on both transports and publications going on, signs in
// (a wrong key first), and waits for the numbers, charts and tables; then
// takes a full-page screenshot, written to docs/admin.png with
// UPDATE_SCREENSHOT=1 (or SWITCHYARD_UPDATE_SCREENSHOT=1), else to a
// temporary directory.
func TestAdminDashboard(t *testing.T) {
	needBrowser(t)
	update := os.Getenv("UPDATE_SCREENSHOT") != "" || os.Getenv("SWITCHYARD_UPDATE_SCREENSHOT") != ""
	nodes := startAdminCluster(t)
	n := nodes[0]

	// Sessions: five WebSocket and three WebTransport clients here, a few
	// on the other nodes; each subscribes to some of the rooms.
	var rooms []string
	for i := range 12 {
		rooms = append(rooms, fmt.Sprintf("room-%02d", i))
	}
	var subs []*client.Subscription
	subscribe := func(c *client.Client, k int) {
		for j := range 4 {
			sub, err := c.Subscribe(context.Background(), rooms[(k*5+j)%len(rooms)])
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
		}
	}
	var local, all []*client.Client
	for k := range 8 {
		var c *client.Client
		if k < 5 {
			c = n.goClient(t)
		} else {
			c = n.goClientWT(t)
		}
		subscribe(c, k)
		local = append(local, c)
	}
	all = append(all, local...)
	for k, other := range nodes[1:] {
		c := other.goClient(t)
		subscribe(c, 8+k)
		all = append(all, c)
	}
	drain(t, all, subs)
	publishLoad(t, local[0], rooms)
	publishLoad(t, nodes[2].goClient(t), rooms[:6]) // from another region, over the mesh
	// Two more sessions that leave: counted as disconnects; one from a
	// page of another site: refused.
	for range 2 {
		n.goClient(t).Close()
	}
	conn, _, err := websocket.DefaultDialer.Dial(n.ws, http.Header{"Origin": {"https://elsewhere.example"}})
	if err == nil {
		for _, _, err = conn.ReadMessage(); err == nil; _, _, err = conn.ReadMessage() {
		}
		conn.Close()
	}

	needBrowser(t)
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 200*time.Second)
	t.Cleanup(cancelT)
	p := &page{t: t, ctx: ctx, close: cancel}
	if _, err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Navigate(n.http+"/admin")); err != nil {
		t.Fatal(err)
	}
	p.waitJS("window.ready === true")
	if !eval[bool](p, `!document.getElementById("login").hidden && document.getElementById("dash").hidden`) {
		t.Fatal("the page does not ask for a key first")
	}
	signIn := func(key string) {
		eval[chromedp.Void](p, fmt.Sprintf(`(() => { document.getElementById("key").value = %q; document.getElementById("login-form").requestSubmit(); })()`, key))
	}
	signIn("wrong-key")
	p.waitJS(`document.getElementById("login-error").textContent.includes("401")`)
	signIn("k")
	p.waitJS(`!document.getElementById("dash").hidden && window.admin.updates >= 3`)

	if got := eval[string](p, `document.getElementById("node").textContent + "/" + document.getElementById("region").textContent`); got != "eu-west-1/eu-west" {
		t.Errorf("header shows %q", got)
	}
	p.waitJS(`Number(document.getElementById("sessions-total").textContent) >= 8`)
	if got := eval[string](p, `[...document.querySelectorAll("#sessions-sub b")].map(b => b.textContent).join(",")`); got != "5,3" {
		t.Errorf("sessions by transport: %q", got)
	}
	// Rates need two snapshots, latency publications in its window.
	p.waitJS(`parseFloat(document.getElementById("rate-del").textContent) > 0 && parseFloat(document.getElementById("rate-in").textContent) > 0`)
	p.waitJS(`document.getElementById("lat-p99").textContent.match(/[µm]?s$/)`)
	points := func(series string) int {
		return eval[int](p, fmt.Sprintf(`((document.querySelector('path.line[data-series=%q]') || {getAttribute: () => ""}).getAttribute("d").match(/[ML]/g) || []).length`, series))
	}
	p.waitJS(`document.querySelector('#chart-rate path.line[data-series="del"]') !== null`)
	p.waitJS(`window.admin.updates >= 6`)
	if got := points("del"); got < 4 {
		t.Errorf("the deliveries chart has %d points", got)
	}
	if got := points("p99"); got < 2 {
		t.Errorf("the latency chart has %d points", got)
	}
	// The cluster: three nodes in two regions, one draining; the mesh.
	p.waitJS(`document.querySelectorAll("#nodes tr.node-row").length === 3 && document.querySelector("#nodes .badge.draining")`)
	p.waitJS(`!document.getElementById("mesh-box").hidden && document.getElementById("mesh").textContent.includes("members in us-east")`)
	p.waitJS(`document.getElementById("disconnects").textContent.includes("normal closure")`)
	p.waitJS(`document.getElementById("connects").textContent.includes("origin not allowed")`)

	if update { // a full picture for the committed screenshot
		for n := 15; n <= 120; n += 15 { // fill the charts' 2 minutes; waitJS waits 20 s at most
			p.waitJS(fmt.Sprintf(`window.admin.updates >= %d`, n))
		}
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 700 {
		t.Fatalf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	out := filepath.Join(t.TempDir(), "admin.png")
	if update {
		out = filepath.Join("..", "..", "docs", "admin.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))

	// Signing out forgets the key.
	eval[chromedp.Void](p, `document.getElementById("signout").click()`)
	p.waitJS(`!document.getElementById("login").hidden && sessionStorage.length === 0`)
}

// drain keeps reading the subscriptions so that no client is a slow
// consumer, until the test ends: then it closes their clients, which ends
// the subscriptions, and waits for the readers.
func drain(t *testing.T, clients []*client.Client, subs []*client.Subscription) {
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			for range s.Messages() {
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	})
}
