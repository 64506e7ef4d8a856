package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/protocols"
)

// proc is one switchyard process of a multi-process cluster test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	banner  map[string]string
	http    string // http://host:port
	ws      string // ws://host:port/ws
	wt      string // https://host:port
	gossip  string
	meshDir string
	extra   []string // more flags it was started with
	killed  bool     // the test killed it
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "switchyard-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "switchyard")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startProc runs the binary and waits for its banner.
func startProc(t *testing.T, bin, name, region, meshDir string, join string, extra ...string) *proc {
	t.Helper()
	args := []string{"--node", name, "--region", region, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--mesh-bind", "127.0.0.1:0", "--mesh-tls", meshDir, "--mesh-key", "@" + filepath.Join(meshDir, meshGossipFile), "--log-level", "warn"}
	args = append(args, extra...)
	if join != "" {
		args = append(args, "--join", join)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, banner: map[string]string{}, meshDir: meshDir, extra: extra}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
	line := regexp.MustCompile(`^\s+(WebSocket|WebTransport|mesh|Cert hash)\s+(.*)$`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			key := m[1]
			if _, dup := p.banner[key]; dup {
				key += " plain"
			}
			p.banner[key] = m[2]
			if m[1] == "mesh" {
				break
			}
		}
	}
	go io.Copy(io.Discard, stdout)
	p.ws = strings.Fields(p.banner["WebSocket plain"])[0]
	p.wt = strings.TrimSuffix(strings.Fields(p.banner["WebTransport"])[0], "/wt")
	p.http = strings.TrimSuffix(p.banner["Cert hash"], "/certhash")
	g := regexp.MustCompile(`gossip (\S+),`).FindStringSubmatch(p.banner["mesh"])
	if g == nil {
		t.Fatalf("%s: no gossip address in %q", name, p.banner["mesh"])
	}
	p.gossip = g[1]
	return p
}

func (p *proc) nodes(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get(p.http + "/api/nodes")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Regions map[string][]struct{ Name string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	var names []string
	for _, ns := range body.Regions {
		for _, n := range ns {
			names = append(names, n.Name)
		}
	}
	return names
}

func (p *proc) publish(t *testing.T, channel, data string) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.http+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":%q}`, channel, data)))
	req.Header.Set("X-API-Key", devAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish on %s: %d %s", p.name, resp.StatusCode, body)
	}
}

func (p *proc) dial(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.ws, client.Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", p.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialWT connects over WebTransport, pinning the node's dev certificate.
func (p *proc) dialWT(t *testing.T) *client.Client {
	t.Helper()
	resp, err := http.Get(p.http + "/certhash")
	if err != nil {
		t.Fatal(err)
	}
	var hash struct{ Value string }
	json.NewDecoder(resp.Body).Decode(&hash)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.wt, client.Options{Transport: protocols.WebTransport, CertHash: hash.Value})
	if err != nil {
		t.Fatalf("dial %s over WebTransport: %v", p.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func recvN(t *testing.T, sub *client.Subscription, n int) []string {
	t.Helper()
	var out []string
	timeout := time.After(15 * time.Second)
	for len(out) < n {
		select {
		case m := <-sub.Messages():
			out = append(out, string(m.Data))
		case <-timeout:
			t.Fatalf("got %d of %d messages: %v", len(out), n, out)
		}
	}
	return out
}

// TestThreeProcessCluster runs three switchyard processes on loopback:
// publications cross nodes in one order, a subscribe on one node followed
// at once by a publish on another is delivered, and a node killed with
// SIGKILL is detected and routed around.
func TestThreeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes; skipped with -short")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	meshDir := t.TempDir()
	if err := runCerts([]string{"init", "--dir", meshDir, "--nodes", "a,b,c,d"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	a := startProc(t, bin, "a", "eu", meshDir, "")
	b := startProc(t, bin, "b", "eu", meshDir, a.gossip)
	c := startProc(t, bin, "c", "us", meshDir, a.gossip)
	d := startProc(t, bin, "d", "us", meshDir, a.gossip)
	procs := []*proc{a, b, c}
	for _, p := range append(procs, d) {
		waitUntil(t, 10*time.Second, p.name+" sees 4 nodes", func() bool { return len(p.nodes(t)) == 4 })
	}

	// A subscriber on c and one on b; publishers: a client on a and the API
	// on b, concurrently. Both subscribers see one order.
	ctx := context.Background()
	subC, err := c.dial(t).Subscribe(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	subB, err := b.dial(t).Subscribe(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	pubA := a.dial(t)
	const each = 30
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range each {
			if _, err := pubA.Publish(ctx, "room", []byte(fmt.Sprintf("a-%d", i))); err != nil {
				t.Errorf("publish on a: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range each {
			b.publish(t, "room", fmt.Sprintf("b-%d", i))
		}
	})
	wg.Wait()
	gotC, gotB := recvN(t, subC, 2*each), recvN(t, subB, 2*each)
	if strings.Join(gotC, ",") != strings.Join(gotB, ",") {
		t.Fatalf("subscribers on b and c disagree:\nc: %v\nb: %v", gotC, gotB)
	}

	// Subscribe on one node, publish on another at once: many channels, so
	// that owners fall on every node.
	for i := range 20 {
		ch := fmt.Sprintf("race-%d", i)
		sub, err := procs[i%3].dial(t).Subscribe(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		procs[(i+1)%3].publish(t, ch, "first")
		if got := recvN(t, sub, 1); got[0] != "first" {
			t.Fatalf("%s: got %v", ch, got)
		}
	}

	// Volatile channels span the nodes too: datagrams a WebTransport client
	// sends on a reach subscribers on b (WebTransport) and c (WebSocket),
	// in sequence order, the newest last (none is resent, and a busy
	// WebSocket subscriber gets only the newest, so some may be missing).
	for i := range 3 {
		ch := fmt.Sprintf("game:%d", i) // owners fall on different nodes
		var vsubs []*client.Subscription
		for _, cl := range []*client.Client{b.dialWT(t), c.dial(t), a.dialWT(t)} { // WebTransport on b, WebSocket on c
			sub, err := cl.Subscribe(ctx, ch)
			if err != nil {
				t.Fatal(err)
			}
			if !sub.Volatile() {
				t.Fatalf("%s is not volatile", ch)
			}
			vsubs = append(vsubs, sub)
		}
		sender := a.dialWT(t)
		if _, err := sender.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		// The first datagrams open the QUIC paths between the nodes and may
		// arrive together, when a WebSocket subscriber keeps only the
		// newest (latest wins): warm up, then count.
		if err := sender.SendDatagram(ch, []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
		for _, sub := range vsubs {
			if m := recvN(t, sub, 1); m[0] != "warm-up" {
				t.Fatalf("%s: got %q", ch, m[0])
			}
		}
		for j := range 10 {
			if err := sender.SendDatagram(ch, []byte(fmt.Sprint(j))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // a 200 Hz sender, not a burst
		}
		for k, sub := range vsubs[:2] {
			var last uint64
			got := 0
			var seen []string
		recv:
			for {
				select {
				case m := <-sub.Messages():
					if !m.Datagram || m.Offset <= last {
						t.Fatalf("%s on %s: %+v after sequence number %d", ch, []string{"b", "c"}[k], m, last)
					}
					last = m.Offset
					seen = append(seen, fmt.Sprintf("%s@%d", m.Data, m.Offset))
					if got++; string(m.Data) == "9" {
						break recv
					}
				case <-time.After(5 * time.Second):
					break recv
				}
			}
			// A busy WebSocket writer keeps only the newest (latest wins):
			// the last one must arrive, most of the others may not.
			if got < 3 || !strings.HasPrefix(seen[len(seen)-1], "9@") {
				t.Fatalf("%s on %s: %d of 10 datagrams: %v", ch, []string{"b", "c"}[k], got, seen)
			}
		}
	}

	// Subscriptions made before the kill, on channels some of which a owns.
	cc := c.dial(t)
	var survivors []*client.Subscription
	for i := range 10 {
		sub, err := cc.Subscribe(ctx, fmt.Sprintf("survive-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		survivors = append(survivors, sub)
	}

	// Kill a (no goodbye): b and c notice, and b → c still flows.
	a.cmd.Process.Kill()
	a.cmd.Wait()
	detect := waitUntil(t, 15*time.Second, "a declared dead", func() bool {
		return len(b.nodes(t)) == 3 && len(c.nodes(t)) == 3
	})
	t.Logf("a killed: b and c dropped it after %v", detect.Round(10*time.Millisecond))
	for i := range 10 {
		ch := fmt.Sprintf("after-%d", i)
		sub, err := c.dial(t).Subscribe(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		b.publish(t, ch, "healed")
		if got := recvN(t, sub, 1); got[0] != "healed" {
			t.Fatalf("%s: got %v", ch, got)
		}
	}
	// The old subscriptions follow their channels to the new owners.
	for i, sub := range survivors {
		ch := fmt.Sprintf("survive-%d", i)
		b.publish(t, ch, "still here")
		if got := recvN(t, sub, 1); got[0] != "still here" {
			t.Fatalf("%s: got %v", ch, got)
		}
	}

	// A graceful stop of d (us) tells its clients to reconnect to c, the
	// other node of its region, rather than b in eu.
	onD := d.dial(t)
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-onD.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("d's client was not closed")
	}
	ce, ok := onD.Err().(*protocols.CloseError)
	if !ok || ce.Code != protocols.CodeGoingAway || ce.ReconnectURL != c.ws {
		t.Fatalf("d closed its client with %#v, want going away with advice %s", onD.Err(), c.ws)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("d exited with %v", err)
	}
}
