package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/protocols"
)

// startBinary runs the command's run function with args and returns what
// the banner printed, keyed by label.
func startBinary(t *testing.T, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	banner := map[string]string{}
	line := regexp.MustCompile(`^\s+(WebSocket|WebTransport|Signaling|TURN|API key|API|Demo chat|Browser SDK|Cert hash|cert sha-256)\s+(\S+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "try:") {
			break
		}
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			key := m[1]
			if _, dup := banner[key]; dup {
				key += " plain"
			}
			banner[key] = m[2]
		}
	}
	go io.Copy(io.Discard, pr)
	return banner
}

func TestDevNodeServesWhatItPrints(t *testing.T) {
	b := startBinary(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	for _, k := range []string{"WebTransport", "WebSocket plain", "cert sha-256", "API key", "Cert hash", "Demo chat", "Browser SDK"} {
		if b[k] == "" {
			t.Fatalf("banner lacks %q: %v", k, b)
		}
	}
	healthz := strings.Replace(b["Cert hash"], "/certhash", "/healthz", 1)
	resp, err := http.Get(healthz)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}

	for _, page := range []string{b["Demo chat"], b["Browser SDK"]} {
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) < 1000 {
			t.Fatalf("%s: %d, %d bytes", page, resp.StatusCode, len(body))
		}
	}

	var ch struct{ Algorithm, Value string }
	resp, err = http.Get(b["Cert hash"])
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&ch)
	resp.Body.Close()
	if ch.Algorithm != "sha-256" || ch.Value != b["cert sha-256"] {
		t.Fatalf("/certhash %+v, banner %s", ch, b["cert sha-256"])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wtURL := strings.TrimSuffix(b["WebTransport"], "/wt")
	c, err := client.Dial(ctx, wtURL, client.Options{Transport: protocols.WebTransport, CertHash: b["cert sha-256"]})
	if err != nil {
		t.Fatalf("WebTransport dial with the printed hash: %v", err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", strings.Replace(b["Cert hash"], "/certhash", "/api/publish", 1), strings.NewReader(`{"channel":"news","data":"hello"}`))
	req.Header.Set("X-API-Key", b["API key"])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	select {
	case m := <-sub.Messages():
		if string(m.Data) != "hello" {
			t.Fatalf("got %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}
}

func TestBadConfigIsRejected(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string][]string{
		"unknown flag":     {"--nope"},
		"bad listen":       {"--listen", "nonsense"},
		"cert without key": {"--cert", "x.pem"},
		"missing cert":     {"--cert", filepath.Join(dir, "none.pem"), "--key", filepath.Join(dir, "none.key")},
		"garbage cert":     {"--cert", write("bad.pem", "junk"), "--key", write("bad.key", "junk"), "--http", ""},
		"bad config json":  {"--config", write("bad.json", "{")},
		"unknown key":      {"--config", write("unknown.json", `{"lisen": "x"}`)},
		"bad duration":     {"--config", write("dur.json", `{"ping_interval": "soon"}`)},
		"bad log level":    {"--log-level", "loud"},
		"nothing to serve": {"--listen", "", "--http", ""},
		"bad origin":       {"--allowed-origins", "not a url", "--listen", "127.0.0.1:0", "--http", ""},
		"bad public url":   {"--public-url", "ftp://x.example", "--listen", "127.0.0.1:0", "--http", ""},
		"bad volatile":     {"--volatile-channels", "game*x", "--listen", "127.0.0.1:0", "--http", ""},
		"bad list":         {"--config", write("list.json", `{"join": 5}`)},
	}
	for name, args := range cases {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a run that got past validation would return at once
		err := run(ctx, args, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(p, []byte(`{"listen": "", "http": "127.0.0.1:0", "api_key": "k", "region": "eu", "ping_interval": "5s", "public_urls": ["https://rt.example.com"]}`), 0o600)
	o, err := parseOptions([]string{"--config", p, "--region", "us"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "" || o.http != "127.0.0.1:0" || o.apiKey != "k" || o.region != "us" || o.pingInterval != 5*time.Second ||
		len(o.publicURLs) != 1 || o.publicURLs[0] != "https://rt.example.com" {
		t.Fatalf("options %+v", o)
	}
	// A list may also be one comma-separated string, as on the command line;
	// an empty one turns the default off.
	os.WriteFile(p, []byte(`{"volatile_channels": "game:*, fx:*", "allowed_origins": ["http://a.example"]}`), 0o600)
	if o, err = parseOptions([]string{"--config", p}, io.Discard); err != nil || strings.Join(o.volatile, " ") != "game:* fx:*" || o.allowedOrigins[0] != "http://a.example" {
		t.Fatalf("options %+v, %v", o, err)
	}
	os.WriteFile(p, []byte(`{"volatile_channels": ""}`), 0o600)
	if o, err = parseOptions([]string{"--config", p}, io.Discard); err != nil || len(o.volatile) != 0 {
		t.Fatalf("options %+v, %v", o, err)
	}
}

func TestCertsSubcommand(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"certs", "init", "--dir", dir, "--nodes", "a,b"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"certs", "node", "--dir", dir, "--name", "c"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		cf, kf := meshNodeFiles(dir, n)
		if _, err := certs.LoadMeshTLS(filepath.Join(dir, meshCAFile), cf, kf); err != nil {
			t.Fatalf("node %s: %v", n, err)
		}
	}
	if err := run(context.Background(), []string{"certs", "init", "--dir", dir, "--nodes", "x"}, io.Discard, io.Discard); err == nil {
		t.Fatal("init over an existing CA succeeded")
	}
	for _, args := range [][]string{{"certs"}, {"certs", "bogus", "--dir", dir}, {"certs", "node", "--dir", dir}, {"certs", "init"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}

// FuzzConfigFile: any --config file is either accepted or refused with an
// error, never a panic.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(`{"listen": "", "http": "127.0.0.1:0", "api_key": "k", "region": "eu", "ping_interval": "5s"}`))
	f.Add([]byte(`{"mesh_bind": "127.0.0.1:0", "join": ["a:1"], "mesh_tls": "x"}`))
	f.Add([]byte(`{"max_frame_size": -1}`))
	f.Add([]byte(`[`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = parseOptions([]string{"--config", p}, io.Discard)
	})
}
