package edge_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// The node of TestHostileHTTP runs with short timeouts so that the test is
// quick; the cases measure against them.
const (
	hostileHeaderTimeout = 500 * time.Millisecond
	hostileBodyTimeout   = 400 * time.Millisecond
	hostileIdleTimeout   = 400 * time.Millisecond
	hostilePerIP         = 16
	// answerWithin bounds every wait for the server: a liveness bound on a
	// shared, race-instrumented machine, far above the timeouts.
	answerWithin = 5 * time.Second
)

// httpConn is a hand-driven HTTP/1.1 connection, for requests no
// well-behaved client sends.
type httpConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newHTTPConn(t *testing.T, c net.Conn) *httpConn {
	t.Cleanup(func() { c.Close() })
	return &httpConn{t: t, c: c, br: bufio.NewReader(c)}
}

func dialHTTP(t *testing.T, addr string) *httpConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newHTTPConn(t, c)
}

// dialHTTPS completes a TLS handshake speaking HTTP/1.1.
func dialHTTPS(t *testing.T, addr string) *httpConn {
	t.Helper()
	c, err := dialTLSConn(addr)
	if err != nil {
		t.Fatal(err)
	}
	return newHTTPConn(t, c)
}

func dialTLSConn(addr string) (*tls.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(answerWithin))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

func (r *httpConn) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(answerWithin))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// response reads one answer to a request of method, and its JSON body if
// it has one.
func (r *httpConn) response(method string) (*http.Response, map[string]any) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(answerWithin))
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.t.Fatalf("read answer body: %v", err)
	}
	var body map[string]any
	if method != http.MethodHead && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &body); err != nil {
			r.t.Fatalf("%d answer is not JSON: %q", resp.StatusCode, b)
		}
	}
	return resp, body
}

// closed fails unless the server closes the connection within d, with
// nothing more sent; it returns how long that took.
func (r *httpConn) closed(d time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	r.c.SetReadDeadline(start.Add(d))
	b, err := r.br.ReadByte()
	switch {
	case err == nil:
		r.t.Fatalf("got %q where the server should have closed the connection", b)
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.t.Fatalf("connection still open after %v", d)
	}
	return time.Since(start)
}

// trickle sends the start of a request, then a header line every 50 ms,
// until the server closes the connection; it returns how long that took.
func (r *httpConn) trickle() time.Duration {
	r.t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := r.br.ReadByte()
		done <- err
	}()
	io.WriteString(r.c, "GET /healthz HTTP/1.1\r\nHost: node\r\n")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err == nil {
				r.t.Fatal("the server answered a request whose headers never ended")
			}
			return time.Since(start)
		case <-tick.C:
			if time.Since(start) > answerWithin {
				r.t.Fatalf("the server kept a trickling request for %v", answerWithin)
			}
			r.c.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(r.c, "X-Slow-%d: x\r\n", i) // fails once the server is gone
		}
	}
}

// rawRequest is the head of an HTTP/1.1 request, with extra header lines.
func rawRequest(method, path string, header ...string) string {
	s := method + " " + path + " HTTP/1.1\r\nHost: node\r\n"
	for _, h := range header {
		s += h + "\r\n"
	}
	return s + "\r\n"
}

// rawPublish is a POST /api/publish head with key (none if empty), the given
// Content-Length (or, if negative, chunked), then start of the body.
func rawPublish(key string, length int, start string) string {
	h := []string{"Content-Type: application/json"}
	if key != "" {
		h = append(h, "X-API-Key: "+key)
	}
	if length < 0 {
		h = append(h, "Transfer-Encoding: chunked")
	} else {
		h = append(h, fmt.Sprintf("Content-Length: %d", length))
	}
	return rawRequest(http.MethodPost, "/api/publish", h...) + start
}

func httpChunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// TestHostileHTTP sends the node's HTTP listeners what attackers and
// broken clients send. Each case gets exactly the answer expected, within
// the configured timeouts, without holding the connection, and afterwards
// the node still serves a subscriber.
func TestHostileHTTP(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.MaxFrameSize = 1024 // API bodies up to 5461 bytes
		c.HTTPReadHeaderTimeout = hostileHeaderTimeout
		c.HTTPBodyTimeout = hostileBodyTimeout
		c.HTTPIdleTimeout = hostileIdleTimeout
		c.MaxHTTPConnsPerIP = hostilePerIP
		c.Extra = map[string]http.Handler{"/page": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "page")
		})}
	})
	canary := newCanary(t, n, protocols.WebSocket)
	plain, tlsAddr := n.Addrs().HTTP.String(), n.Addrs().TLS.String()
	const localhost = "127.0.0.1"

	cases := []struct {
		name   string
		tls    bool
		send   string        // the request, cut short where the case says so
		method string        // of the request ("" is GET), to read the answer
		status int           // the answer expected
		code   string        // its JSON "error"; "" for none
		allow  string        // its Allow header, if any
		before time.Duration // the answer comes within this of the request (0: answerWithin)
		after  time.Duration // and not sooner than this
		// closes: the server closes the connection after the answer;
		// otherwise the connection serves a next request.
		closes bool
		check  func(t *testing.T, resp *http.Response, body map[string]any)
		run    func(t *testing.T) // a case of its own, instead of send
	}{
		{name: "slowloris headers", run: func(t *testing.T) {
			if el := dialHTTP(t, plain).trickle(); el < hostileHeaderTimeout/2 {
				t.Fatalf("closed after %v, before the header timeout", el)
			}
		}},
		{name: "slowloris headers over TLS", run: func(t *testing.T) {
			if el := dialHTTPS(t, tlsAddr).trickle(); el < hostileHeaderTimeout/2 {
				t.Fatalf("closed after %v, before the header timeout", el)
			}
		}},
		{name: "stalled TLS handshake", run: func(t *testing.T) {
			dialHTTP(t, tlsAddr).closed(answerWithin)
		}},
		{
			name: "lying Content-Length without key", send: rawPublish("", 100_000, `{"chan`),
			status: 401, code: "missing_api_key", before: hostileBodyTimeout, closes: true,
		},
		{
			name: "lying Content-Length over 256 KiB without key", send: rawPublish("", 10_000_000, `{"chan`),
			status: 401, code: "missing_api_key", before: hostileBodyTimeout, closes: true,
		},
		{
			name: "lying Content-Length with a wrong key", send: rawPublish("nope", 100_000, `{"chan`),
			status: 401, code: "bad_api_key", before: hostileBodyTimeout, closes: true,
		},
		{
			name: "lying Content-Length without key over TLS", tls: true, send: rawPublish("", 100_000, `{"chan`),
			status: 401, code: "missing_api_key", before: hostileBodyTimeout, closes: true,
		},
		{
			name: "lying Content-Length with key", send: rawPublish(testAPIKey, 100, `{"chan`),
			status: 408, code: "body_timeout", after: hostileBodyTimeout / 2, closes: true,
		},
		{
			name: "unfinished chunked body with key", send: rawPublish(testAPIKey, -1, httpChunk(`{"chan`)),
			status: 408, code: "body_timeout", after: hostileBodyTimeout / 2, closes: true,
		},
		{
			name: "lying Content-Length with key over TLS", tls: true, send: rawPublish(testAPIKey, 100, `{"chan`),
			status: 408, code: "body_timeout", after: hostileBodyTimeout / 2, closes: true,
		},
		{
			name: "oversized body announced", send: rawPublish(testAPIKey, 20_000, strings.Repeat("x", 20_000)),
			status: 413, code: "body_too_large", closes: true,
		},
		{
			name: "oversized chunked body", send: rawPublish(testAPIKey, -1, httpChunk(strings.Repeat("x", 4000))+httpChunk(strings.Repeat("x", 4000))+"0\r\n\r\n"),
			status: 413, code: "body_too_large", closes: true,
		},
		{
			name: "lying Content-Length over 256 KiB with key", send: rawPublish(testAPIKey, 10_000_000, `{"chan`),
			status: 413, code: "body_too_large", before: hostileBodyTimeout, closes: true,
		},
		{name: "idle keep-alive", run: func(t *testing.T) {
			rc := dialHTTP(t, plain)
			rc.send(rawRequest(http.MethodGet, "/healthz"))
			if resp, _ := rc.response(http.MethodGet); resp.StatusCode != 200 {
				t.Fatalf("GET /healthz: %d", resp.StatusCode)
			}
			if el := rc.closed(answerWithin); el < hostileIdleTimeout/2 {
				t.Fatalf("closed after %v idle, before the idle timeout", el)
			}
		}},
		{
			name: "body on GET /healthz", send: rawRequest(http.MethodGet, "/healthz", "Content-Length: 100000") + "x",
			status: 200, before: hostileBodyTimeout, closes: true,
		},
		{name: "HEAD /healthz", send: rawRequest(http.MethodHead, "/healthz"), method: http.MethodHead, status: 200},
		{name: "DELETE /healthz", send: rawRequest(http.MethodDelete, "/healthz"), status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{name: "TRACE /healthz", send: rawRequest(http.MethodTrace, "/healthz"), status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{
			name: "POST /healthz", send: rawRequest(http.MethodPost, "/healthz", "Content-Length: 1") + "x",
			status: 405, code: "method_not_allowed", allow: "GET, HEAD", closes: true,
		},
		{name: "DELETE /readyz", send: rawRequest(http.MethodDelete, "/readyz"), status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{
			name: "POST /readyz with a lying body", send: rawRequest(http.MethodPost, "/readyz", "Content-Length: 100000"),
			status: 405, code: "method_not_allowed", allow: "GET, HEAD", before: hostileBodyTimeout, closes: true,
		},
		{name: "DELETE /certhash", send: rawRequest(http.MethodDelete, "/certhash"), status: 405, code: "method_not_allowed", allow: "GET, HEAD, OPTIONS"},
		{name: "TRACE /certhash", send: rawRequest(http.MethodTrace, "/certhash"), status: 405, code: "method_not_allowed", allow: "GET, HEAD, OPTIONS"},
		{name: "POST /certhash", send: rawRequest(http.MethodPost, "/certhash", "Content-Length: 0"), status: 405, code: "method_not_allowed", allow: "GET, HEAD, OPTIONS"},
		{
			name: "OPTIONS /certhash", send: rawRequest(http.MethodOptions, "/certhash", "Origin: "+testAllowedOrigin), status: 204,
			check: func(t *testing.T, resp *http.Response, _ map[string]any) {
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != testAllowedOrigin {
					t.Fatalf("Access-Control-Allow-Origin %q", got)
				}
			},
		},
		{name: "DELETE on an extra route", send: rawRequest(http.MethodDelete, "/page"), status: 405, code: "method_not_allowed", allow: "GET, HEAD"},
		{name: "GET on an extra route", send: rawRequest(http.MethodGet, "/page"), status: 200},
		{name: "PUT /api/publish", send: rawRequest(http.MethodPut, "/api/publish"), status: 405, code: "method_not_allowed", allow: "POST"},
		{
			name: "PATCH /api/publish with a lying body", send: rawRequest(http.MethodPatch, "/api/publish", "X-API-Key: "+testAPIKey, "Content-Length: 100000"),
			status: 405, code: "method_not_allowed", allow: "POST", before: hostileBodyTimeout, closes: true,
		},
		{name: "DELETE /api/nodes", send: rawRequest(http.MethodDelete, "/api/nodes"), status: 405, code: "method_not_allowed", allow: "GET"},
		{
			name: "60 KB path under /api/", send: rawRequest(http.MethodGet, "/api/"+strings.Repeat("a", 60_000)), status: 404, code: "not_found",
			check: func(t *testing.T, _ *http.Response, body map[string]any) {
				if msg, _ := body["message"].(string); len(msg) > 100 || !strings.HasPrefix(msg, `no such API endpoint: "/api/aaa`) {
					t.Fatalf("message of %d bytes: %.120q", len(msg), msg)
				}
			},
		},
		{name: "bad JSON", send: rawPublish(testAPIKey, 9, `{"channel`), status: 400, code: "bad_json"},
		{
			name: "unknown field with a huge name", status: 400, code: "bad_json",
			send: func() string {
				b := `{"channel":"a","data":"x","` + strings.Repeat("z", 4000) + `":1}`
				return rawPublish(testAPIKey, len(b), b)
			}(),
			check: func(t *testing.T, _ *http.Response, body map[string]any) {
				if msg, _ := body["message"].(string); len(msg) > protocols.MaxErrorMessageLen {
					t.Fatalf("message of %d bytes: %.120q", len(msg), msg)
				}
			},
		},
		{name: "per-IP cap", run: func(t *testing.T) {
			http.DefaultClient.CloseIdleConnections()
			// Only the canary's WebSocket is open now, and it does not count.
			waitFor(t, answerWithin, "no HTTP connections from "+localhost, func() bool { return n.HTTPConns(localhost) == 0 })
			n.rawWS(t, "")
			if got := n.HTTPConns(localhost); got != 0 {
				t.Fatalf("%d HTTP connections counted with two WebSockets open", got)
			}
			held := make([]*httpConn, hostilePerIP)
			for i := range held {
				held[i] = dialHTTP(t, plain)
			}
			waitFor(t, answerWithin, "the held connections counted", func() bool { return n.HTTPConns(localhost) == hostilePerIP })

			over := dialHTTP(t, plain)
			resp, body := over.response(http.MethodGet)
			if resp.StatusCode != 429 || body["error"] != "too_many_connections" || body["message"] == "" ||
				resp.Header.Get("Retry-After") != "1" || !resp.Close {
				t.Fatalf("over the cap: %d %v %v", resp.StatusCode, resp.Header, body)
			}
			over.closed(answerWithin)
			if got := n.HTTPConns(localhost); got != hostilePerIP {
				t.Fatalf("%d connections counted, want %d", got, hostilePerIP)
			}

			for _, rc := range held {
				rc.c.Close()
			}
			waitFor(t, answerWithin, "closed connections released", func() bool { return n.HTTPConns(localhost) == 0 })
			rc := dialHTTP(t, plain)
			rc.send(rawRequest(http.MethodGet, "/healthz"))
			if resp, _ := rc.response(http.MethodGet); resp.StatusCode != 200 {
				t.Fatalf("after the release: %d", resp.StatusCode)
			}
		}},
		{name: "per-IP cap over TLS", run: func(t *testing.T) {
			http.DefaultClient.CloseIdleConnections()
			waitFor(t, answerWithin, "no HTTP connections from "+localhost, func() bool { return n.HTTPConns(localhost) == 0 })
			held := make([]*httpConn, hostilePerIP)
			for i := range held {
				held[i] = dialHTTP(t, tlsAddr) // and no handshake
			}
			waitFor(t, answerWithin, "the held connections counted", func() bool { return n.HTTPConns(localhost) == hostilePerIP })
			if c, err := dialTLSConn(tlsAddr); err == nil {
				c.Close()
				t.Fatal("TLS handshake over the cap succeeded")
			}
			for _, rc := range held {
				rc.c.Close()
			}
			waitFor(t, answerWithin, "closed connections released", func() bool { return n.HTTPConns(localhost) == 0 })
			rc := dialHTTPS(t, tlsAddr)
			rc.send(rawRequest(http.MethodGet, "/healthz"))
			if resp, _ := rc.response(http.MethodGet); resp.StatusCode != 200 {
				t.Fatalf("after the release: %d", resp.StatusCode)
			}
		}},
		{name: "flood of lying Content-Lengths", run: func(t *testing.T) {
			// 500 connections from 50 loopback addresses (Linux routes all of
			// 127/8 to lo), 10 each: under the per-IP cap.
			const conns, ips = 500, 50
			from := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%ips)}) }
			dial := func(i int) (net.Conn, error) {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from(i), 0))}
				return d.Dial("tcp", plain)
			}
			if c, err := dial(0); err != nil {
				t.Skipf("cannot dial from %v: %v", from(0), err)
			} else {
				c.Close()
			}
			waitFor(t, answerWithin, "the probe released", func() bool { return n.HTTPConns(from(0).String()) == 0 })
			base := runtime.NumGoroutine()
			rcs := make([]*httpConn, conns)
			for i := range rcs {
				c, err := dial(i)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				rcs[i] = newHTTPConn(t, c)
				rcs[i].send(rawPublish("", 100_000, `{"chan`))
			}
			for i, rc := range rcs {
				if resp, body := rc.response(http.MethodPost); resp.StatusCode != 401 || body["error"] != "missing_api_key" || !resp.Close {
					t.Fatalf("connection %d: %d %v", i, resp.StatusCode, body)
				}
			}
			for _, rc := range rcs {
				rc.closed(answerWithin)
				rc.c.Close()
			}
			waitFor(t, answerWithin, "the flood's connections released", func() bool {
				for i := range ips {
					if n.HTTPConns(from(i).String()) != 0 {
						return false
					}
				}
				return true
			})
			waitFor(t, answerWithin, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base+10 })
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.run != nil {
				c.run(t)
			} else {
				addr := plain
				if c.tls {
					addr = tlsAddr
				}
				var rc *httpConn
				if c.tls {
					rc = dialHTTPS(t, addr)
				} else {
					rc = dialHTTP(t, addr)
				}
				method := c.method
				if method == "" {
					method = http.MethodGet
				}
				start := time.Now()
				rc.send(c.send)
				resp, body := rc.response(method)
				el := time.Since(start)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d %v, want %d", resp.StatusCode, body, c.status)
				}
				if c.code != "" && (body["error"] != c.code || body["message"] == "") {
					t.Fatalf("body %v, want error %q with a message", body, c.code)
				}
				if got := resp.Header.Get("Allow"); got != c.allow {
					t.Fatalf("Allow %q, want %q", got, c.allow)
				}
				if c.before > 0 && el >= c.before {
					t.Fatalf("answered after %v, want within %v", el, c.before)
				}
				if el < c.after {
					t.Fatalf("answered after %v, want not before %v", el, c.after)
				}
				if c.check != nil {
					c.check(t, resp, body)
				}
				if c.closes {
					if !resp.Close {
						t.Fatal("answer without Connection: close")
					}
					rc.closed(answerWithin)
				} else {
					rc.send(rawRequest(http.MethodGet, "/healthz"))
					if resp, _ := rc.response(http.MethodGet); resp.StatusCode != 200 {
						t.Fatalf("next request on the connection: %d", resp.StatusCode)
					}
				}
			}
			// The node is still up and still delivers.
			resp, err := http.Get(n.http + "/healthz")
			if err != nil {
				t.Fatalf("node down: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/healthz: %d", resp.StatusCode)
			}
			canary.check(t)
		})
	}
}
