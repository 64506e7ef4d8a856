package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// envInside marks the copy of the test binary that runs in the network
// namespace.
const envInside = "SWITCHYARD_P2P_NETNS"

// example runs the example as `go run ./examples/p2p` would, on free ports.
type example struct {
	pages []string
}

func startExample(t *testing.T, room string) *example {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"127.0.0.1:0", "127.0.0.1:0"}, room, true, pw); pw.Close() }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not return")
		}
	})
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pages := regexp.MustCompile(`http://\S+\?room=\S+`).FindAllString(line, -1)
	if len(pages) != 2 {
		t.Fatalf("no two URLs in %q", line)
	}
	if line, err = br.ReadString('\n'); err != nil || !strings.Contains(line, "bot") {
		t.Fatalf("no bot line: %q %v", line, err)
	}
	go io.Copy(io.Discard, br)
	return &example{pages: pages}
}

// Two Chromium pages, each joined through a different node of a mesh, open
// a data channel with each other and with a Go (pion) peer, and chat.
// Chromium gathers no host candidate on loopback, so the test runs itself
// again in a network namespace of its own, with a veth pair and a default
// route: nothing leaves the namespace.
func TestBrowsersChat(t *testing.T) {
	if os.Getenv(envInside) == "" {
		runInNamespace(t)
		return
	}
	setupNamespace(t)
	ex := startExample(t, "t")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(900, 640))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if _, err := chromedp.Run(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	tab := func(url string) context.Context {
		tc, _ := chromedp.NewContext(ctx)
		if _, err := chromedp.Run(tc, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, tc, `window.p2p && (window.p2p.peerId || window.p2p.error)`)
		if e := evalJS[string](t, tc, "window.p2p.error"); e != "" {
			t.Fatalf("page: %s", e)
		}
		return tc
	}
	a := tab(ex.pages[0])
	b := tab(ex.pages[1])
	idA, idB := evalJS[string](t, a, "p2p.peerId"), evalJS[string](t, b, "p2p.peerId")
	open := func(tc context.Context, id string) string {
		return fmt.Sprintf(`p2p.channels.get(%q)?.readyState === "open"`, id)
	}
	dump := func() {
		for name, tc := range map[string]context.Context{"a": a, "b": b} {
			st, err := chromedp.Run(tc, chromedp.Evaluate[string](`JSON.stringify({peers: p2p.room.peers(), pcs: p2p.room.peers().map(id => [id, p2p.pcs.get(id)?.connectionState, p2p.pcs.get(id)?.iceConnectionState, p2p.pcs.get(id)?.signalingState, p2p.channels.get(id)?.readyState]), log: document.getElementById("log").textContent})`))
			t.Logf("page %s: %s %v", name, st, err)
		}
	}
	defer func() {
		if t.Failed() {
			dump()
		}
	}()
	waitJS(t, a, open(a, idB))
	waitJS(t, b, open(b, idA))
	waitJS(t, b, `p2p.room.peers().length === 2 && [...p2p.channels.values()].every(c => c.readyState === "open")`)

	if n := evalJS[int](t, b, `sendChat("hello from b")`); n != 2 {
		t.Fatalf("b sent on %d channels, want 2 (a and the bot)", n)
	}
	waitJS(t, a, fmt.Sprintf(`p2p.messages.some(m => m.from === %q && m.text === "hello from b")`, idB))
	waitJS(t, b, `p2p.messages.some(m => m.text === "echo: hello from b")`)
	evalJS[int](t, a, `sendChat("hi b")`)
	waitJS(t, b, fmt.Sprintf(`p2p.messages.some(m => m.from === %q && m.text === "hi b")`, idA))

	// The page shows the pair: host (or peer-reflexive) candidates in the
	// namespace's subnet, nothing relayed.
	waitJS(t, a, `document.getElementById("peers").textContent.includes("⇄")`)
	pairs := evalJS[string](t, a, `document.getElementById("peers").textContent`)
	if strings.Contains(pairs, "relay") {
		t.Fatalf("a relayed pair: %s", pairs)
	}
	t.Logf("a's table: %s", pairs)
	shot, err := chromedp.Run(a, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "p2p.png")
	if os.Getenv("UPDATE_SCREENSHOT") != "" {
		out = "screenshot.png"
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// A page that leaves is reported to the other.
	if _, err := chromedp.Run(b, chromedp.Evaluate[any](`p2p.room.leave()`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, a, fmt.Sprintf(`!p2p.room.peers().includes(%q)`, idB))
}

// runInNamespace runs this test again in a new network namespace.
func runInNamespace(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("SWITCHYARD_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium is required but missing at %s", chromiumPath)
		}
		t.Skipf("no chromium at %s (apt-get install -y chromium)", chromiumPath)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates a network namespace with a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not found: apt-get install iproute2")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrowsersChat$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envInside+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a new network namespace (CLONE_NEWNET): %v", err)
	}
	err := cmd.Wait()
	t.Logf("in a new network namespace:\n%s", out.Bytes())
	if err != nil {
		t.Fatalf("the test in the namespace failed: %v", err)
	}
	if !bytes.Contains(out.Bytes(), []byte("--- PASS: TestBrowsersChat")) {
		t.Fatal("the test in the namespace did not pass")
	}
}

// setupNamespace gives the namespace what WebRTC in Chromium needs to
// gather a host candidate: an interface that is not loopback, with an
// address and a default route through its subnet (a veth pair, both ends
// here, so nothing can leave).
func setupNamespace(t *testing.T) {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "sy0", "type", "veth", "peer", "name", "sy1"},
		{"addr", "add", "10.99.0.1/24", "dev", "sy0"},
		{"link", "set", "sy0", "up"},
		{"link", "set", "sy1", "up"},
		{"route", "add", "default", "via", "10.99.0.2", "dev", "sy0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

func waitJS(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error %v)", cond, err)
		}
		time.Sleep(50 * time.Millisecond)
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
