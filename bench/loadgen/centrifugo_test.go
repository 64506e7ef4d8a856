package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestParseCentrifugo reads one batched message of every kind of line the
// load generator meets, as Centrifugo v6 writes them.
func TestParseCentrifugo(t *testing.T) {
	var hdr [payloadHeader]byte
	binary.BigEndian.PutUint64(hdr[:], 1733140000123456789)
	binary.BigEndian.PutUint64(hdr[8:], 7)
	data := make([]byte, 64)
	cfEncodePayload(data, hdr[:])

	msg := strings.Join([]string{
		`{"id":1,"connect":{"client":"7c1a…","version":"6.9.1","ping":25,"pong":true}}`,
		`{"id":2,"subscribe":{}}`,
		`{"push":{"channel":"bench","pub":{"data":` + string(data) + `}}}`, // the fast path
		`{}`, // a ping, in the middle of a batch
		`{"push":{"channel":"bench","pub":{"data":` + string(data) + `,"offset":3}}}`, // not the fast path
		`{"push":{"channel":"bench","pub":{"data":{"text":"hi \"there\""}}}}`,
		``, // an empty line is skipped
		`{"id":3,"error":{"code":103,"message":"permission denied"}}`,
		`{"push":{"channel":"bench","join":{"info":{"client":"c"}}}}`,
		`{"push":{"channel":"bench","unsubscribe":{"code":2500,"reason":"server unsubscribe"}}}`,
		`{"push":{"disconnect":{"code":3008,"reason":"slow","reconnect":true}}}`,
	}, "\n") + "\n"

	want := []cfMessage{
		{Kind: cfReply, ID: 1},
		{Kind: cfReply, ID: 2},
		{Kind: cfPublication, Channel: []byte("bench"), Data: data},
		{Kind: cfPing},
		{Kind: cfPublication, Channel: []byte("bench"), Data: data},
		{Kind: cfPublication, Channel: []byte("bench"), Data: []byte(`{"text":"hi \"there\""}`)},
		{Kind: cfError, ID: 3, Code: 103, Message: "permission denied"},
		{Kind: cfOther},
		{Kind: cfUnsubscribe, Channel: []byte("bench"), Code: 2500, Message: "server unsubscribe"},
		{Kind: cfDisconnect, Code: 3008, Message: "slow"},
	}
	var got []cfMessage
	if err := eachCentrifugo([]byte(msg), func(m cfMessage) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !sameCfMessage(got[i], want[i]) {
			t.Errorf("line %d: got %s %+v, want %s %+v", i, got[i].Kind, got[i], want[i].Kind, want[i])
		}
	}
	var back [payloadHeader]byte
	if !cfDecodePayload(got[2].Data, &back) || back != hdr {
		t.Errorf("payload header: got %x, want %x", back, hdr)
	}

	if err := eachCentrifugo([]byte("{\"id\":1,\"connect\":{}}\n{\"push\":"), func(cfMessage) error { return nil }); err == nil {
		t.Error("a cut line was accepted")
	}
}

func sameCfMessage(a, b cfMessage) bool {
	return a.Kind == b.Kind && a.ID == b.ID && bytes.Equal(a.Channel, b.Channel) && bytes.Equal(a.Data, b.Data) &&
		a.Code == b.Code && a.Message == b.Message
}

func TestCentrifugoPayload(t *testing.T) {
	for _, size := range []int{cfMinPayload, 64, 1000} {
		var hdr [payloadHeader]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(size)*1e9)
		binary.BigEndian.PutUint64(hdr[8:], ^uint64(0)-uint64(size))
		data := make([]byte, size)
		cfEncodePayload(data, hdr[:])
		if !json.Valid(data) || !plainASCII(data[1:len(data)-1]) {
			t.Fatalf("size %d: %q is not a plain JSON string", size, data)
		}
		var back [payloadHeader]byte
		if !cfDecodePayload(data, &back) || back != hdr {
			t.Errorf("size %d: decoded %x, want %x", size, back, hdr)
		}
	}
	var back [payloadHeader]byte
	for _, bad := range []string{`"short"`, `{"a":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`, `"!!!!!!!!!!!!!!!!!!!!!!!!!!"`} {
		if cfDecodePayload([]byte(bad), &back) {
			t.Errorf("cfDecodePayload(%s) succeeded", bad)
		}
	}
}

// FuzzParseCentrifugo checks that the fast path for publications agrees
// with encoding/json, and that no line makes the parser panic.
func FuzzParseCentrifugo(f *testing.F) {
	data := make([]byte, 64)
	cfEncodePayload(data, make([]byte, payloadHeader))
	for _, s := range []string{
		`{"push":{"channel":"bench","pub":{"data":` + string(data) + `}}}`,
		`{"push":{"channel":"bench","pub":{"data":"x"}}}`,
		`{"push":{"channel":"b\"x","pub":{"data":"x"}}}`,
		`{"push":{"channel":"bench","pub":{"data":"\u00e9"}}}`,
		`{"push":{"channel":"bench","pub":{"data":{"a":1},"offset":2}}}`,
		`{"id":2,"subscribe":{}}`,
		`{}`,
		` { } `,
		`{"id":3,"error":{"code":103,"message":"permission denied"}}`,
		`{"push":{"disconnect":{"code":3008,"reason":"slow"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fast, ferr := parseCentrifugo(line)
		slow, serr := parseCentrifugoJSON(line)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: parseCentrifugo error %v, encoding/json %v", line, ferr, serr)
		}
		if ferr == nil && !sameCfMessage(fast, slow) {
			t.Fatalf("%q: parseCentrifugo %+v, encoding/json %+v", line, fast, slow)
		}
		_ = eachCentrifugo(line, func(cfMessage) error { return nil })
	})
}

// fakeCentrifugo speaks as much of Centrifugo's client protocol v2 (JSON)
// and HTTP API as the load generator uses, and stresses the parts it must
// get right: it batches pushes several to a message, writes publications
// with and without extra fields, and pings every connection often and
// closes those that do not answer.
type fakeCentrifugo struct {
	key          string
	pingInterval time.Duration

	mu    sync.Mutex
	subs  map[*fakeCfConn]bool
	conns sync.WaitGroup
	pubs  uint64

	pongs, batched atomic.Int64
	multi          atomic.Int64 // /api/batch calls with more than one publication
}

type fakeCfConn struct {
	c    *websocket.Conn
	out  chan []byte
	pong chan struct{}
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/connection/websocket":
		f.serveWS(w, r)
	case "/api/info", "/api/batch":
		if r.Header.Get("X-API-Key") != f.key {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/info" {
			fmt.Fprint(w, `{"result":{}}`)
			return
		}
		// As Centrifugo v6.9.1 answers (checked against the binary): a
		// reply per command, in order, an error in place of a result.
		var req struct {
			Commands []struct {
				Publish *struct {
					Channel string          `json:"channel"`
					Data    json.RawMessage `json:"data"`
				} `json:"publish"`
			} `json:"commands"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"code":107,"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		if len(req.Commands) > 1 {
			f.multi.Add(1)
		}
		replies := make([]string, len(req.Commands))
		for i, c := range req.Commands {
			if c.Publish == nil || c.Publish.Channel == "" || !json.Valid(c.Publish.Data) {
				replies[i] = `{"error":{"code":107,"message":"bad request"}}`
				continue
			}
			f.publish(c.Publish.Channel, c.Publish.Data)
			replies[i] = `{"publish":{}}`
		}
		fmt.Fprintf(w, `{"replies":[%s]}`, strings.Join(replies, ","))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeCentrifugo) publish(channel string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs++
	extra := ""
	if f.pubs%3 == 0 {
		extra = `,"offset":` + strconv.FormatUint(f.pubs, 10) // off the load generator's fast path
	}
	line := fmt.Appendf(nil, `{"push":{"channel":%q,"pub":{"data":%s%s}}}`, channel, data, extra)
	for c := range f.subs {
		select {
		case c.out <- line:
		default:
			c.c.Close() // a slow consumer
		}
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 4 << 10, WriteBufferSize: 16 << 10}

func (f *fakeCentrifugo) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	fc := &fakeCfConn{c: c, out: make(chan []byte, 1024), pong: make(chan struct{}, 1)}
	done := make(chan struct{})
	f.conns.Add(1)
	go func() {
		defer f.conns.Done()
		f.writeLoop(fc, done)
	}()
	defer func() {
		f.mu.Lock()
		delete(f.subs, fc)
		f.mu.Unlock()
		close(done)
		c.Close()
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(msg, []byte("\n")) {
			var cmd struct {
				ID        uint32 `json:"id"`
				Subscribe *struct {
					Channel string `json:"channel"`
				} `json:"subscribe"`
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				return
			}
			switch {
			case cmd.ID == 0: // the answer to a ping
				f.pongs.Add(1)
				select {
				case fc.pong <- struct{}{}:
				default:
				}
			case cmd.Subscribe != nil:
				f.mu.Lock()
				f.subs[fc] = true
				f.mu.Unlock()
				fc.out <- fmt.Appendf(nil, `{"id":%d,"subscribe":{}}`, cmd.ID)
			default:
				fc.out <- fmt.Appendf(nil, `{"id":%d,"connect":{"client":"c","version":"fake","ping":1,"pong":true}}`, cmd.ID)
			}
		}
	}
}

// pongTimeout is how long the fake server waits for the answer to a ping
// before it closes the connection. Centrifugo waits a ping interval; the
// test's interval is short (so that pings happen in a short run), and on a
// busy machine (the race detector, other packages' tests) a subscriber may
// not get a CPU within it.
const pongTimeout = 2 * time.Second

// writeLoop writes what is queued for one connection, up to 16 lines a
// message, and a ping every pingInterval; it closes the connection when a
// ping is not answered within pongTimeout.
func (f *fakeCentrifugo) writeLoop(fc *fakeCfConn, done <-chan struct{}) {
	ping := time.NewTicker(f.pingInterval)
	defer ping.Stop()
	var waiting time.Time // when the unanswered ping went out; zero: none
	for {
		var batch [][]byte
		select {
		case <-done:
			return
		case <-fc.pong:
			waiting = time.Time{}
			continue
		case <-ping.C:
			if !waiting.IsZero() {
				if time.Since(waiting) > pongTimeout {
					fc.c.Close()
					return
				}
				continue // one ping outstanding at a time
			}
			waiting = time.Now()
			batch = append(batch, []byte("{}"))
		case line := <-fc.out:
			batch = append(batch, line)
		}
	more:
		for len(batch) < 16 {
			select {
			case line := <-fc.out:
				batch = append(batch, line)
			default:
				break more
			}
		}
		if len(batch) > 1 {
			f.batched.Add(1)
		}
		_ = fc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := fc.c.WriteMessage(websocket.TextMessage, bytes.Join(batch, []byte("\n"))); err != nil {
			fc.c.Close()
			return
		}
	}
}

// TestRunCentrifugoProtocol runs the load generator's centrifugo target
// against fakeCentrifugo: no Centrifugo binary needed.
func TestRunCentrifugoProtocol(t *testing.T) {
	f := &fakeCentrifugo{key: "test-key", pingInterval: 100 * time.Millisecond, subs: map[*fakeCfConn]bool{}}
	addr := serve(t, f)
	t.Cleanup(f.conns.Wait) // the load generator closes its connections: their loops end

	const subs = 20
	cfg := Config{
		Target:   targetCentrifugo,
		URL:      "ws://" + addr + "/connection/websocket",
		APIKey:   f.key,
		Subs:     subs,
		Settle:   250 * time.Millisecond, // pings while idle too
		Duration: time.Second,
		Drain:    3 * time.Second,
	}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, subs)
	if r.LastSamples == 0 || r.LastP50Ms <= 0 || r.LastP99Ms < r.LastP50Ms {
		t.Errorf("last-subscriber latency: %d samples, p50 %v ms, p99 %v ms", r.LastSamples, r.LastP50Ms, r.LastP99Ms)
	}
	if f.pongs.Load() == 0 || f.batched.Load() == 0 {
		t.Errorf("%d pongs, %d batched messages: the test did not exercise both", f.pongs.Load(), f.batched.Load())
	}
	if f.multi.Load() == 0 {
		t.Error("no /api/batch call carried more than one publication: the publisher does not pipeline")
	}

	cfg.APIKey = "wrong"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("with a wrong API key: err = %v, want a 401", err)
	}
}

func TestRunCentrifugoBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Target: targetCentrifugo, URL: "ws://127.0.0.1:1/connection/websocket", Payload: 20},
		{Target: targetCentrifugo, URL: "ws://127.0.0.1:1/connection/websocket", PubURL: "ws://127.0.0.1:1/api/publish"},
	} {
		if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "centrifugo") {
			t.Errorf("Run(payload %d, pub-url %q): err = %v, want a complaint about centrifugo", cfg.Payload, cfg.PubURL, err)
		}
	}
	if got := (Config{Target: targetCentrifugo, URL: "wss://h:8000/connection/websocket"}).withDefaults().PubURL; got != "https://h:8000/api/publish" {
		t.Errorf("default pub-url = %q", got)
	}
}

// TestRunCentrifugo runs the centrifugo target against a real Centrifugo,
// started with bench/centrifugo.json as bench/run.sh starts it, when
// CENTRIFUGO_BIN names its binary (bench/centrifugo.sh prints it, and
// installs it first if needed); the test never installs it. Centrifugo
// pings every second here, so the answers to its pings are tested too.
func TestRunCentrifugo(t *testing.T) {
	bin := os.Getenv("CENTRIFUGO_BIN")
	if bin == "" {
		t.Skip("CENTRIFUGO_BIN is not set: CENTRIFUGO_BIN=$(bench/centrifugo.sh) go test -run Centrifugo ./bench/loadgen/")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close() // Centrifugo cannot bind port 0: give it this one

	var out bytes.Buffer
	cmd := exec.Command(bin, "--config", "../centrifugo.json")
	cmd.Env = append(os.Environ(), "CENTRIFUGO_HTTP_SERVER_PORT="+port, "CENTRIFUGO_HTTP_API_KEY=test-key",
		"CENTRIFUGO_CLIENT_PING_INTERVAL=1s", "CENTRIFUGO_CLIENT_PONG_TIMEOUT=500ms")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("centrifugo output:\n%s", out.String())
		}
	})
	waitFor(t, 10*time.Second, "centrifugo to listen on "+addr, func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("centrifugo exited: %v\n%s", err, out.String())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	const subs = 50
	r, err := Run(context.Background(), Config{
		Target:    targetCentrifugo,
		URL:       "ws://" + addr + "/connection/websocket",
		APIKey:    "test-key",
		Subs:      subs,
		Settle:    500 * time.Millisecond,
		Warmup:    200 * time.Millisecond,
		Duration:  1500 * time.Millisecond,
		Drain:     5 * time.Second,
		ServerPID: cmd.Process.Pid,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, subs)
	if r.ServerCPU <= 0 || r.BaseRSSMiB <= 0 || r.IdleRSSMiB <= 0 || r.LastSamples == 0 {
		t.Errorf("server CPU %v s, RSS %v → %v MiB, %d last-subscriber samples: want all > 0", r.ServerCPU, r.BaseRSSMiB, r.IdleRSSMiB, r.LastSamples)
	}
}
