package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchyard/switchyard/client"
)

// game runs the example as `go run ./examples/game` would, on free ports.
type game struct {
	page string // http://host:port/?url=https://host:port
	http string // http://host:port
	wt   string // https://host:port
}

func startGame(t *testing.T, bots int) *game {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", "127.0.0.1:0", bots, pw); pw.Close() }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return")
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`open ((http://\S+?)/\?url=(\S+)) in`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no URL in %q", line)
	}
	return &game{page: m[1], http: m[2], wt: m[3]}
}

// The bots move: a Go player sees each bot's position change, as
// datagrams, many times a second.
func TestBotsMove(t *testing.T) {
	g := startGame(t, 2)
	resp, err := http.Get(g.http + "/certhash")
	if err != nil {
		t.Fatal(err)
	}
	var hash struct{ Value string }
	json.NewDecoder(resp.Body).Decode(&hash)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, g.wt, client.Options{CertHash: hash.Value})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, arena)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]position{}
	for len(seen["bot-0"]) < 15 || len(seen["bot-1"]) < 15 {
		select {
		case m := <-sub.Messages():
			var p position
			if err := json.Unmarshal(m.Data, &p); err != nil || !m.Datagram {
				t.Fatalf("message %+v: %v", m, err)
			}
			seen[p.ID] = append(seen[p.ID], p)
		case <-ctx.Done():
			t.Fatalf("positions seen: %d of bot-0, %d of bot-1", len(seen["bot-0"]), len(seen["bot-1"]))
		}
	}
	for id, ps := range seen {
		if first, last := ps[0], ps[len(ps)-1]; first.X == last.X && first.Y == last.Y {
			t.Fatalf("%s did not move: %+v", id, ps)
		}
	}
}

const chromiumPath = "/usr/bin/chromium"

// A browser on each transport shows the bots moving; the WebTransport
// page's screenshot is the example's picture.
func TestGameScreenshot(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("SWITCHYARD_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium is required but missing at %s", chromiumPath)
		}
		t.Skipf("no chromium at %s (apt-get install -y chromium)", chromiumPath)
	}
	g := startGame(t, 3)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(640, 720))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if _, err := chromedp.Run(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	for _, transport := range []string{"webtransport", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := chromedp.NewContext(browser)
			defer cancel()
			ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
			defer cancelT()
			url := fmt.Sprintf("%s&transports=%s&name=tester", g.page, transport)
			if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
				t.Fatal(err)
			}
			waitJS(t, ctx, "window.game && window.game.ready")
			if got := evalJS[string](t, ctx, "game.client.transport"); got != transport {
				t.Fatalf("page on %s, want %s", got, transport)
			}
			waitJS(t, ctx, "game.players.size >= 3")
			before := evalJS[float64](t, ctx, `game.players.get("bot-0").x`)
			waitJS(t, ctx, fmt.Sprintf(`Math.abs(game.players.get("bot-0").x - %v) > 0.01`, before))
			if !evalJS[bool](t, ctx, "game.datagram === true") {
				t.Fatal("positions did not arrive as datagrams")
			}
			if transport != "webtransport" {
				return
			}
			waitJS(t, ctx, `document.getElementById("stats").textContent.includes("players")`)
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
			if err != nil {
				t.Fatal(err)
			}
			screenshot(t, shot)
		})
	}
}

// screenshot checks a PNG is not blank and keeps it.
func screenshot(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	colors := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 5 {
		for x := b.Min.X; x < b.Max.X; x += 5 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>12<<8|g>>12<<4|bl>>12] = true
		}
	}
	if b.Dx() < 400 || b.Dy() < 400 || len(colors) < 6 {
		t.Fatalf("screenshot %dx%d with %d colours looks blank", b.Dx(), b.Dy(), len(colors))
	}
	out := filepath.Join(t.TempDir(), "game.png")
	if os.Getenv("UPDATE_SCREENSHOT") != "" {
		out = "screenshot.png"
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
}

func waitJS(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error %v)", cond, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
