//go:build linux

package websocket

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/http/httpguts"

	"github.com/switchyard/switchyard/protocols"
)

func TestParseUpgrade(t *testing.T) {
	const ok = "GET /ws?token=a.b.c HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\norigin:  http://a.example \t\r\n\r\n"
	r := parseUpgrade([]byte(ok), "/ws")
	if r == nil {
		t.Fatal("a plain upgrade was not parsed")
	}
	if r.Method != http.MethodGet || r.URL.Path != "/ws" || r.URL.Query().Get("token") != "a.b.c" || r.Host != "127.0.0.1:1" ||
		r.Header.Get("Origin") != "http://a.example" || r.Header.Get("Sec-Websocket-Key") != "dGhlIHNhbXBsZSBub25jZQ==" ||
		r.Header.Get("Host") != "" || r.RequestURI != "/ws?token=a.b.c" || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Fatalf("parsed %+v (URL %v, header %v)", r, r.URL, r.Header)
	}
	// Everything else is net/http's to answer.
	for name, head := range map[string]string{
		"another path":       strings.Replace(ok, "/ws?", "/wss?", 1),
		"a path it escapes":  strings.Replace(ok, "/ws?", "/w%73?", 1),
		"POST":               strings.Replace(ok, "GET ", "POST ", 1),
		"HTTP/1.0":           strings.Replace(ok, "HTTP/1.1", "HTTP/1.0", 1),
		"a fragment":         strings.Replace(ok, "?token", "#token", 1),
		"no Host":            strings.Replace(ok, "Host: 127.0.0.1:1\r\n", "", 1),
		"an empty Host":      strings.Replace(ok, "Host: 127.0.0.1:1", "Host: ", 1),
		"two Hosts":          strings.Replace(ok, "Upgrade:", "Host: b\r\nUpgrade:", 1),
		"a folded header":    strings.Replace(ok, "Connection: Upgrade\r\n", "Connection:\r\n Upgrade\r\n", 1),
		"a space in a name":  strings.Replace(ok, "Connection:", "Connection :", 1),
		"no colon":           strings.Replace(ok, "Connection: Upgrade", "Connection Upgrade", 1),
		"a control in value": strings.Replace(ok, "Upgrade: websocket", "Upgrade: web\x01socket", 1),
		"a body":             strings.Replace(ok, "Connection:", "Content-Length: 5\r\nConnection:", 1),
		"chunked":            strings.Replace(ok, "Connection:", "Transfer-Encoding: chunked\r\nConnection:", 1),
		"an Expect":          strings.Replace(ok, "Connection:", "Expect: 100-continue\r\nConnection:", 1),
		"HTTP/2 preface":     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		if r := parseUpgrade([]byte(head), "/ws"); r != nil {
			t.Errorf("%s: parsed, want it left to net/http", name)
		}
	}
}

// frontServer is a Server behind a Front on a real listener, with an
// http.Server that counts what reaches its /ws handler.
type frontServer struct {
	addr     string
	viaHTTP  atomic.Int64 // upgrades net/http's handler saw
	upgraded atomic.Int64 // connections the front upgraded itself
	admit    atomic.Bool
	reqs     chan *http.Request
}

func startFront(t *testing.T, acc *echoAcceptor) *frontServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &frontServer{addr: ln.Addr().String(), reqs: make(chan *http.Request, 16)}
	fs.admit.Store(true)
	srv := NewServer(&reqAcceptor{echoAcceptor: acc, reqs: fs.reqs}, Config{Session: quietSession()})
	mux := http.NewServeMux()
	mux.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.viaHTTP.Add(1)
		srv.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") })
	front := srv.Front(ln, FrontConfig{
		Path: "/ws", Admit: fs.admit.Load, Upgraded: func(net.Conn) { fs.upgraded.Add(1) },
		HeaderTimeout: 300 * time.Millisecond,
	})
	hs := &http.Server{Handler: mux}
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(front) })
	t.Cleanup(func() {
		hs.Close()
		wg.Wait()
	})
	return fs
}

// reqAcceptor hands the requests of admitted sessions to the test.
type reqAcceptor struct {
	*echoAcceptor
	reqs chan *http.Request
}

func (a *reqAcceptor) Accept(s protocols.Session, r *http.Request) (protocols.Handler, error) {
	select {
	case a.reqs <- r:
	default:
	}
	return a.echoAcceptor.Accept(s, r)
}

func TestFrontUpgradesItself(t *testing.T) {
	fs := startFront(t, newEchoAcceptor())
	h := http.Header{"Origin": {"http://page.example"}}
	c, _, err := wsDialer.Dial("ws://"+fs.addr+"/ws?token=t1", h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(2, publishFrame(7, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 7, []byte("x"))
	if fs.viaHTTP.Load() != 0 || fs.upgraded.Load() != 1 {
		t.Fatalf("net/http upgraded %d, the front %d; want 0 and 1", fs.viaHTTP.Load(), fs.upgraded.Load())
	}
	r := <-fs.reqs
	if r.URL.Query().Get("token") != "t1" || r.Header.Get("Origin") != "http://page.example" || r.RemoteAddr != c.LocalAddr().String() {
		t.Fatalf("the session's request: URL %v, header %v, from %q (client %v)", r.URL, r.Header, r.RemoteAddr, c.LocalAddr())
	}
}

var wsDialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}

func TestFrontLeavesTheRestToNetHTTP(t *testing.T) {
	fs := startFront(t, newEchoAcceptor())

	// Another path, twice on one kept-alive connection.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for range 2 {
		resp, err := client.Get("http://" + fs.addr + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hi" {
			t.Fatalf("/hello: %d %q", resp.StatusCode, b)
		}
	}

	// A POST to the path gets the upgrader's JSON error from net/http.
	resp, err := http.Post("http://"+fs.addr+"/ws", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"bad_handshake"`) {
		t.Fatalf("POST /ws: %d %s", resp.StatusCode, b)
	}

	// A head larger than the front reads, and an upgrade while the front
	// may not take it: net/http upgrades both.
	big := http.Header{"Cookie": {strings.Repeat("c", maxHead)}}
	c, _, err := wsDialer.Dial("ws://"+fs.addr+"/ws", big)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	fs.admit.Store(false)
	c, _, err = wsDialer.Dial("ws://"+fs.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(2, publishFrame(1, []byte("y"))); err != nil {
		t.Fatal(err)
	}
	expectEcho(t, c, 1, []byte("y"))
	c.Close()
	if fs.viaHTTP.Load() != 3 || fs.upgraded.Load() != 0 {
		t.Fatalf("net/http saw %d upgrades (want 3: the POST, the big head, the refused one), the front %d", fs.viaHTTP.Load(), fs.upgraded.Load())
	}
}

func TestFrontSlowAndSilentClients(t *testing.T) {
	fs := startFront(t, newEchoAcceptor())
	head := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

	// A head in three pieces, within the timeout: upgraded by the front.
	c := rawDial(t, fs.addr)
	for _, part := range []string{head[:3], head[3:40], head[40:]} {
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("answer to a head in pieces: %q, %v", status, err)
	}
	c.Close()

	// Silent, and a head that stops half-way: closed at the timeout,
	// without an answer.
	for _, sent := range []string{"", head[:30]} {
		c := rawDial(t, fs.addr)
		_, _ = io.WriteString(c, sent)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 || time.Since(start) > 3*time.Second {
			t.Fatalf("sent %q: read %q, %v after %v; want the connection closed at the timeout", sent, b, err, time.Since(start))
		}
		c.Close()
	}

	// Bytes after the head before the answer: refused (by gorilla,
	// through net/http), with nothing written back.
	c = rawDial(t, fs.addr)
	_, _ = io.WriteString(c, head+"\x82\x80abcd")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("data before the answer: read %q, %v", b, err)
	}
	c.Close()
	if fs.upgraded.Load() != 1 {
		t.Fatalf("the front upgraded %d connections, want 1", fs.upgraded.Load())
	}
}

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzParseUpgrade checks the front against net/http on any head: what
// the front takes, net/http must read as the same request (method, path,
// query, Host and headers), so that a session sees the same request
// whichever answered it; and nothing panics.
func FuzzParseUpgrade(f *testing.F) {
	f.Add([]byte("GET /ws?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nOrigin: http://o\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("GET /ws%20 HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: a b\r\n\r\n"))
	f.Add([]byte("GET /ws?q=%zz HTTP/1.1\r\nHost: [::1]:80\r\nSec-WebSocket-Key: \xff\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		r := parseUpgrade(head, "/ws")
		if r == nil {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("the front took %q, net/http refuses it: %v", head, err)
		}
		// What net/http's server checks beyond ReadRequest.
		if !httpguts.ValidHostHeader(want.Host) {
			t.Fatalf("the front took %q, net/http's server answers 400 (Host)", head)
		}
		if want.Method != r.Method || want.URL.Path != r.URL.Path || want.URL.RawQuery != r.URL.RawQuery ||
			want.Host != r.Host || want.RequestURI != r.RequestURI || !reflect.DeepEqual(want.Header, r.Header) {
			t.Fatalf("%q:\nfront    %s %v %q %v\nnet/http %s %v %q %v", head, r.Method, r.URL, r.Host, r.Header, want.Method, want.URL, want.Host, want.Header)
		}
	})
}

// An upgrade the front takes but the upgrader refuses (here a version it
// does not speak) gets the upgrader's JSON error from the front, as it
// would from net/http, and the connection closes.
func TestFrontUpgraderRefusal(t *testing.T) {
	fs := startFront(t, newEchoAcceptor())
	c := rawDial(t, fs.addr)
	defer c.Close()
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" ||
		!resp.Close || !strings.Contains(string(body), `"bad_handshake"`) {
		t.Fatalf("refusal: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if fs.viaHTTP.Load() != 0 || fs.upgraded.Load() != 0 {
		t.Fatalf("net/http saw %d, the front upgraded %d; want 0 and 0", fs.viaHTTP.Load(), fs.upgraded.Load())
	}
}
