package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/protocols/websocket"
	"github.com/switchyard/switchyard/protocols/webtransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a small Switchyard node built from the real adapters: it
// answers Connect, Subscribe, Unsubscribe and Publish, fans publications
// out to subscribers, and refuses the channel "forbidden". Requests on the
// channel "noreply" get no answer.
type testServer struct {
	wsURL    string // ws://127.0.0.1:P/ws
	httpsURL string // https://127.0.0.1:Q: WebTransport on UDP Q, wss on TCP Q
	certHash string
	cfg      protocols.SessionConfig

	mu       sync.Mutex
	sessions map[string]protocols.Session
	subs     map[string]map[protocols.Session]bool
	ended    map[string]*protocols.CloseError // how each session ended, by id
	origins  map[string]string                // Origin header, by session id
	tokens   map[string]string                // Connect token, by session id
	offset   uint64
}

type serverConfig struct {
	noWebTransport bool // leave the UDP port of httpsURL closed
	session        protocols.SessionConfig
}

func newTestServer(t testing.TB, sc serverConfig) *testServer {
	t.Helper()
	cert, hash := testCert(t)
	srv := &testServer{
		certHash: hash,
		cfg:      sc.session.WithDefaults(),
		sessions: make(map[string]protocols.Session),
		subs:     make(map[string]map[protocols.Session]bool),
		ended:    make(map[string]*protocols.CloseError),
		origins:  make(map[string]string),
		tokens:   make(map[string]string),
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.NewServer(srv, websocket.Config{Session: sc.session}))

	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	srv.wsURL = "ws" + strings.TrimPrefix(plain.URL, "http") + "/ws"

	var udp *net.UDPConn
	var tcp net.Listener
	if sc.noWebTransport {
		tcp = listenTCPWithClosedUDP(t)
	} else {
		udp, tcp = listenPair(t)
	}
	secure := httptest.NewUnstartedServer(mux)
	secure.Listener.Close()
	secure.Listener = tcp
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	secure.Config.ErrorLog = log.New(io.Discard, "", 0) // refused certificates are expected
	secure.StartTLS()
	t.Cleanup(secure.Close)
	srv.httpsURL = "https://" + tcp.Addr().String()

	if udp != nil {
		wtMux := http.NewServeMux()
		wt, err := webtransport.NewServer(srv, webtransport.Config{
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
			Handler:   wtMux,
			Session:   sc.session,
		})
		if err != nil {
			t.Fatal(err)
		}
		wtMux.Handle("/wt", wt)
		served := make(chan error, 1)
		go func() { served <- wt.Serve(udp) }()
		t.Cleanup(func() {
			if err := wt.Close(); err != nil {
				t.Errorf("webtransport server close: %v", err)
			}
			if err := <-served; err != nil {
				t.Errorf("webtransport serve: %v", err)
			}
			udp.Close()
		})
		// Serve starts the QUIC listener in the background: wait for it, so
		// that tests see a steady set of server goroutines.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := Dial(ctx, srv.httpsURL, Options{Transport: protocols.WebTransport, CertHash: hash})
		if err != nil {
			t.Fatalf("webtransport server not up: %v", err)
		}
		c.Close()
	}
	return srv
}

// listenPair listens on one port number for both UDP and TCP, like a node.
func listenPair(t testing.TB) (*net.UDPConn, net.Listener) {
	t.Helper()
	for range 20 {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, tcp
		}
		udp.Close()
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil, nil
}

// listenTCPWithClosedUDP listens on a TCP port whose UDP twin has nothing
// bound to it.
func listenTCPWithClosedUDP(t testing.TB) net.Listener {
	t.Helper()
	for range 20 {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcp.Addr().(*net.TCPAddr).Port})
		if err == nil {
			udp.Close()
			return tcp
		}
		tcp.Close()
	}
	t.Fatal("no TCP port with a free UDP twin")
	return nil
}

// testCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// returns it with the base64 SHA-256 of its DER.
func testCert(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "switchyard client test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, base64.StdEncoding.EncodeToString(sum[:])
}

func (srv *testServer) Accept(s protocols.Session, r *http.Request) (protocols.Handler, error) {
	srv.mu.Lock()
	srv.sessions[s.ID()] = s
	srv.origins[s.ID()] = r.Header.Get("Origin")
	srv.mu.Unlock()
	return &testHandler{srv: srv, s: s}, nil
}

// session returns the live session with id, or nil.
func (srv *testServer) session(id string) protocols.Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.sessions[id]
}

// endOf waits for session id to end and returns how it ended.
func (srv *testServer) endOf(t testing.TB, id string) *protocols.CloseError {
	t.Helper()
	var ce *protocols.CloseError
	waitFor(t, 5*time.Second, "the server to end the session", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		ce = srv.ended[id]
		return ce != nil
	})
	return ce
}

func (srv *testServer) subscribers(channel string) int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.subs[channel])
}

type testHandler struct {
	srv *testServer
	s   protocols.Session
}

func (h *testHandler) send(f *protocols.Frame) error { return h.s.Send(protocols.MustEncode(f)) }

func (h *testHandler) HandleFrame(f *protocols.Frame) error {
	srv := h.srv
	switch k := f.Kind.(type) {
	case *protocols.Frame_Connect:
		if k.Connect.GetProtocol() != protocols.ProtocolVersion || k.Connect.GetClient() != clientName {
			return protocols.Closef(protocols.CodeBadProtocol, "protocol %q from %q", k.Connect.GetProtocol(), k.Connect.GetClient())
		}
		srv.mu.Lock()
		srv.tokens[h.s.ID()] = k.Connect.GetToken()
		srv.mu.Unlock()
		return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
			SessionId:      h.s.ID(),
			PingIntervalMs: uint32(srv.cfg.PingInterval / time.Millisecond),
			PongTimeoutMs:  uint32(srv.cfg.PongTimeout / time.Millisecond),
			MaxFrameSize:   uint32(srv.cfg.MaxFrameSize),
			Node:           "test-node",
			Region:         "test-region",
			Protocol:       protocols.ProtocolVersion,
		}}})
	case *protocols.Frame_Subscribe:
		ch := k.Subscribe.GetChannel()
		switch ch {
		case "noreply":
			return nil
		case "forbidden":
			return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Error{Error: &protocols.Error{
				Code: uint32(protocols.ErrCodePermissionDenied), Message: "no access to forbidden",
			}}})
		}
		srv.mu.Lock()
		if srv.subs[ch] == nil {
			srv.subs[ch] = make(map[protocols.Session]bool)
		}
		srv.subs[ch][h.s] = true
		offset := srv.offset
		srv.mu.Unlock()
		return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Subscribed{Subscribed: &protocols.Subscribed{
			Channel: ch, Epoch: "e1", Offset: offset,
		}}})
	case *protocols.Frame_Unsubscribe:
		ch := k.Unsubscribe.GetChannel()
		srv.mu.Lock()
		delete(srv.subs[ch], h.s)
		srv.mu.Unlock()
		return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Unsubscribed{Unsubscribed: &protocols.Unsubscribed{
			Channel: ch,
		}}})
	case *protocols.Frame_Publish:
		ch := k.Publish.GetChannel()
		if ch == "noreply" {
			return nil
		}
		srv.mu.Lock()
		srv.offset++
		offset := srv.offset
		msg := protocols.EncodeMessage(ch, "e1", offset, k.Publish.GetData())
		for s := range srv.subs[ch] {
			_ = s.Send(msg)
		}
		srv.mu.Unlock()
		return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_PublishAck{PublishAck: &protocols.PublishAck{
			Epoch: "e1", Offset: offset,
		}}})
	}
	return h.send(&protocols.Frame{Id: f.Id, Kind: &protocols.Frame_Error{Error: &protocols.Error{
		Code: uint32(protocols.ErrCodeUnknownFrame), Message: fmt.Sprintf("unexpected %T", f.Kind),
	}}})
}

func (h *testHandler) Closed(err *protocols.CloseError) {
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	h.srv.ended[h.s.ID()] = err
	delete(h.srv.sessions, h.s.ID())
	for _, subs := range h.srv.subs {
		delete(subs, h.s)
	}
}

// transports lists the ways a test dials the server.
var transports = []string{protocols.WebSocket, "wss", protocols.WebTransport}

// dial connects over transport: "websocket" is ws:// on the plain
// listener, "wss" is WebSocket over TLS from the https URL, "webtransport"
// is WebTransport.
func dial(t *testing.T, srv *testServer, transport string, opts Options) *Client {
	t.Helper()
	url := srv.httpsURL
	switch transport {
	case protocols.WebSocket:
		url = srv.wsURL
	case "wss":
		opts.Transport = protocols.WebSocket
		opts.CertHash = srv.certHash
	case protocols.WebTransport:
		opts.Transport = protocols.WebTransport
		opts.CertHash = srv.certHash
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func receive(t *testing.T, sub *Subscription) Message {
	t.Helper()
	select {
	case m, ok := <-sub.Messages():
		if !ok {
			t.Fatalf("subscription to %q closed", sub.Channel())
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %q", sub.Channel())
	}
	return Message{}
}

func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection did not end")
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDial(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, srv, tr, Options{Origin: "https://app.example", Token: "t0ken"})
			want := tr
			if tr == "wss" {
				want = protocols.WebSocket
			}
			if c.Transport() != want {
				t.Errorf("Transport() = %q, want %q", c.Transport(), want)
			}
			if c.SessionID() == "" || srv.session(c.SessionID()) == nil {
				t.Errorf("SessionID() = %q, not a live session of the server", c.SessionID())
			}
			srv.mu.Lock()
			origin, token := srv.origins[c.SessionID()], srv.tokens[c.SessionID()]
			srv.mu.Unlock()
			if origin != "https://app.example" || token != "t0ken" {
				t.Errorf("server got Origin %q and token %q", origin, token)
			}
			if got := c.Connected(); got.GetNode() != "test-node" || got.GetRegion() != "test-region" ||
				got.GetMaxFrameSize() != protocols.DefaultMaxFrameSize {
				t.Errorf("Connected() = %v", got)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// The server hears the normal close: 1000 on WebSocket, session
			// error 0 on WebTransport.
			wantCode := protocols.CloseCode(1000)
			if want == protocols.WebTransport {
				wantCode = 0
			}
			if ce := srv.endOf(t, c.SessionID()); ce.Code != wantCode || !ce.Remote {
				t.Errorf("server saw the session end with %+v, want remote code %d", ce, wantCode)
			}
		})
	}
}

func TestAutoPrefersWebTransport(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	ctx := testContext(t)
	// A long fallback delay: WebSocket starts only if WebTransport fails.
	c, err := Dial(ctx, srv.httpsURL, Options{CertHash: srv.certHash, FallbackDelay: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Transport() != protocols.WebTransport {
		t.Fatalf("Transport() = %q, want webtransport", c.Transport())
	}
	if _, err := c.Publish(ctx, "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
}

func TestAutoFallsBackToWebSocket(t *testing.T) {
	srv := newTestServer(t, serverConfig{noWebTransport: true})
	ctx := testContext(t)
	start := time.Now()
	c, err := Dial(ctx, srv.httpsURL, Options{CertHash: srv.certHash})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("fallback took %v", took)
	}
	if c.Transport() != protocols.WebSocket {
		t.Fatalf("Transport() = %q, want websocket", c.Transport())
	}
	if _, err := c.Publish(ctx, "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
}

func TestAutoBothFail(t *testing.T) {
	ln := listenTCPWithClosedUDP(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens on TCP or UDP
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := Dial(ctx, "https://"+addr, Options{CertHash: strings.Repeat("A", 43) + "="})
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	if !strings.Contains(err.Error(), "webtransport") || !strings.Contains(err.Error(), "websocket") {
		t.Errorf("error does not name both transports: %v", err)
	}
}

func TestSubscribePublish(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			sub := dial(t, srv, tr, Options{})
			// The publisher uses the other kind of transport.
			pubTr := protocols.WebTransport
			if tr == protocols.WebTransport {
				pubTr = protocols.WebSocket
			}
			pub := dial(t, srv, pubTr, Options{})

			channel := "news-" + tr
			s, err := sub.Subscribe(ctx, channel)
			if err != nil {
				t.Fatal(err)
			}
			if s.Channel() != channel || s.Position().Epoch != "e1" {
				t.Errorf("subscription %q at %+v", s.Channel(), s.Position())
			}
			var acks []Position
			for i := range 3 {
				pos, err := pub.Publish(ctx, channel, []byte{'m', byte('0' + i)})
				if err != nil {
					t.Fatal(err)
				}
				if pos.Epoch != "e1" || pos.Offset <= s.Position().Offset {
					t.Errorf("publish ack %+v after subscription at %+v", pos, s.Position())
				}
				acks = append(acks, pos)
			}
			for i, ack := range acks {
				m := receive(t, s)
				if m.Channel != channel || !bytes.Equal(m.Data, []byte{'m', byte('0' + i)}) || m.Position != ack {
					t.Errorf("message %d = %+v, want data m%d at %+v", i, m, i, ack)
				}
			}
			if _, err := sub.Subscribe(ctx, channel); !errors.Is(err, &protocols.RequestError{Code: protocols.ErrCodeAlreadySubscribed}) {
				t.Errorf("second Subscribe: %v, want already subscribed", err)
			}
		})
	}
}

func TestRequestError(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{})
			_, err := c.Subscribe(ctx, "forbidden")
			var re *protocols.RequestError
			if !errors.As(err, &re) || re.Code != protocols.ErrCodePermissionDenied {
				t.Fatalf("Subscribe(forbidden) = %v, want a RequestError %d", err, protocols.ErrCodePermissionDenied)
			}
			// The session lives on, and the channel can be asked for again.
			if _, err := c.Subscribe(ctx, "forbidden"); !errors.As(err, &re) {
				t.Fatalf("second Subscribe(forbidden) = %v", err)
			}
			if _, err := c.Subscribe(ctx, "allowed"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPublishTooLarge: a frame over the server's max_frame_size fails
// locally instead of getting the session closed.
func TestPublishTooLarge(t *testing.T) {
	srv := newTestServer(t, serverConfig{session: protocols.SessionConfig{MaxFrameSize: 1 << 10}})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{})
			if _, err := c.Publish(ctx, "big", make([]byte, 2<<10)); !errors.Is(err, protocols.ErrFrameTooLarge) {
				t.Fatalf("Publish = %v, want ErrFrameTooLarge", err)
			}
			if _, err := c.Publish(ctx, "big", make([]byte, 512)); err != nil {
				t.Fatalf("Publish under the limit: %v", err)
			}
			// Concurrent publishes get batched; on WebSocket a batch must
			// stay within max_frame_size + 4, the server's limit on a whole
			// message, however small its frames.
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for range 64 {
				wg.Go(func() {
					if _, err := c.Publish(ctx, "batch", make([]byte, 400)); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("concurrent Publish: %v", err)
			}
		})
	}
}

func TestServerClose(t *testing.T) {
	// With a long grace the server ends the session in time only if the
	// client answers its close.
	srv := newTestServer(t, serverConfig{session: protocols.SessionConfig{CloseGrace: time.Minute}})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{})
			s, err := c.Subscribe(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			srv.session(c.SessionID()).Close(4001, "test over")
			waitDone(t, c)
			var ce *protocols.CloseError
			if err := c.Err(); !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "test over" || !ce.Remote {
				t.Fatalf("Err() = %#v, want remote CloseError 4001 %q", err, "test over")
			}
			if _, ok := <-s.Messages(); ok {
				t.Error("Messages not closed")
			}
			if _, err := c.Publish(ctx, "a", nil); !errors.Is(err, &protocols.CloseError{Code: 4001}) {
				t.Errorf("Publish after the end = %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close after the end: %v", err)
			}
			if !errors.As(c.Err(), &ce) {
				t.Errorf("Close replaced Err: %v", c.Err())
			}
			if ce := srv.endOf(t, c.SessionID()); ce.Code != 4001 {
				t.Errorf("server saw the session end with %+v", ce)
			}
		})
	}
}

func TestCloseIdempotent(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{})
			s, err := c.Subscribe(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			pending := make(chan error, 1)
			go func() {
				_, err := c.Publish(ctx, "noreply", []byte("?"))
				pending <- err
			}()
			waitFor(t, 5*time.Second, "the publish to be in flight", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return len(c.calls) == 1
			})
			for range 2 {
				if err := c.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("Done not closed after Close")
			}
			if err := c.Err(); err != nil {
				t.Errorf("Err() = %v after Close", err)
			}
			if err := <-pending; !errors.Is(err, ErrClosed) {
				t.Errorf("pending Publish = %v, want ErrClosed", err)
			}
			if _, ok := <-s.Messages(); ok {
				t.Error("Messages not closed")
			}
			if _, err := c.Subscribe(ctx, "b"); !errors.Is(err, ErrClosed) {
				t.Errorf("Subscribe after Close = %v", err)
			}
			if err := c.SendRaw([]byte{0}); !errors.Is(err, ErrClosed) {
				t.Errorf("SendRaw after Close = %v", err)
			}
			waitFor(t, 5*time.Second, "the server to end the session", func() bool { return srv.session(c.SessionID()) == nil })
		})
	}
}

func TestUnsubscribe(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{})
			channel := "u-" + tr
			s, err := c.Subscribe(ctx, channel)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Unsubscribe(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok := <-s.Messages(); ok {
				t.Error("Messages not closed")
			}
			if n := srv.subscribers(channel); n != 0 {
				t.Errorf("server still has %d subscribers", n)
			}
			if err := s.Unsubscribe(ctx); err != nil {
				t.Errorf("second Unsubscribe: %v", err)
			}
			// Subscribing again works.
			s, err = c.Subscribe(ctx, channel)
			if err != nil {
				t.Fatal(err)
			}
			pos, err := c.Publish(ctx, channel, []byte("again"))
			if err != nil {
				t.Fatal(err)
			}
			if m := receive(t, s); m.Position != pos {
				t.Errorf("got %+v, want at %+v", m, pos)
			}
		})
	}
}

// TestUnsubscribeFullBuffer: a subscriber that stopped reading must still
// be able to unsubscribe, though the read loop waits for room.
func TestUnsubscribeFullBuffer(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, srv, tr, Options{MessageBuffer: 1})
			pub := dial(t, srv, tr, Options{})
			channel := "full-" + tr
			s, err := c.Subscribe(ctx, channel)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if _, err := pub.Publish(ctx, channel, []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 5*time.Second, "the read loop to stall", func() bool { return c.stalled.Load() > 0 })
			if err := s.Unsubscribe(ctx); err != nil {
				t.Fatalf("Unsubscribe with a full buffer: %v", err)
			}
			n := 0
			for range s.Messages() {
				n++
			}
			if n != 1 {
				t.Errorf("%d messages left in the buffer, want 1", n)
			}
			// The client reads again.
			if _, err := c.Publish(ctx, channel, []byte("y")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRequestContext(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, srv, tr, Options{})
			short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := c.Publish(short, "noreply", nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Publish = %v, want DeadlineExceeded", err)
			}
			if _, err := c.Subscribe(short, "noreply"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Subscribe = %v, want DeadlineExceeded", err)
			}
			if _, err := c.Publish(testContext(t), "ok", nil); err != nil {
				t.Errorf("Publish after a cancelled request: %v", err)
			}
		})
	}
}

func TestSendRawBadFrame(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, srv, tr, Options{})
			// A whole frame whose body is not protobuf.
			if err := c.SendRaw([]byte{3, 0xff, 0xff, 0xff}); err != nil {
				t.Fatal(err)
			}
			waitDone(t, c)
			var ce *protocols.CloseError
			if err := c.Err(); !errors.As(err, &ce) || ce.Code != protocols.CodeBadFrame || !ce.Remote {
				t.Fatalf("Err() = %v, want remote CloseError %d", err, protocols.CodeBadFrame)
			}
		})
	}
}

// TestHeartbeat: the server's pings are answered, so a session with a
// short pong timeout stays up. (The timeout leaves room for a loaded,
// race-instrumented machine; a client that did not answer would be closed
// within the window watched.)
func TestHeartbeat(t *testing.T) {
	srv := newTestServer(t, serverConfig{session: protocols.SessionConfig{
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  time.Second,
	}})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, srv, tr, Options{})
			select {
			case <-c.Done():
				t.Fatalf("connection ended: %v", c.Err())
			case <-time.After(1500 * time.Millisecond): // 75 pings
			}
			if _, err := c.Publish(testContext(t), "x", nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// fakeServer serves one WebSocket connection with script, which gets the
// Connect frame's id and reports a failure by returning an error.
func fakeServer(t *testing.T, script func(c *gorilla.Conn, connectID uint32) error) (url string, result <-chan error) {
	t.Helper()
	res := make(chan error, 1)
	up := gorilla.Upgrader{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			res <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := readFake(c)
		if err != nil {
			res <- err
			return
		}
		if f.GetConnect() == nil {
			res <- fmt.Errorf("first frame %T, want Connect", f.Kind)
			return
		}
		res <- script(c, f.Id)
	}))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws", res
}

func readFake(c *gorilla.Conn) (*protocols.Frame, error) {
	_, msg, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	body, rest, err := protocols.NextFrame(msg, protocols.DefaultMaxFrameSize)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the frame", len(rest))
	}
	return protocols.DecodeFrame(body)
}

// TestHeartbeatTimeout: a server that goes silent is given up after
// ping interval + pong timeout, and told so with CodeHeartbeatTimeout.
func TestHeartbeatTimeout(t *testing.T) {
	url, result := fakeServer(t, func(c *gorilla.Conn, id uint32) error {
		// Connected and a Ping batched in one message.
		msg := protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
			SessionId: "fake", PingIntervalMs: 50, PongTimeoutMs: 50,
		}}})
		msg = append(msg, protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Ping{Ping: &protocols.Ping{}}})...)
		if err := c.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
			return err
		}
		f, err := readFake(c)
		if err != nil {
			return err
		}
		if f.GetPong() == nil {
			return fmt.Errorf("answer to Ping is %T, want Pong", f.Kind)
		}
		// Silence, until the client gives up.
		_, _, err = c.ReadMessage()
		if !gorilla.IsCloseError(err, int(protocols.CodeHeartbeatTimeout)) {
			return fmt.Errorf("client closed with %v, want close code %d", err, protocols.CodeHeartbeatTimeout)
		}
		return nil
	})
	c, err := Dial(testContext(t), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitDone(t, c)
	var ce *protocols.CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != protocols.CodeHeartbeatTimeout || ce.Remote {
		t.Fatalf("Err() = %v, want local CloseError %d", err, protocols.CodeHeartbeatTimeout)
	}
	if err := <-result; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// TestBadFrameFromServer: the client closes with CodeBadFrame when the
// server sends garbage.
func TestBadFrameFromServer(t *testing.T) {
	url, result := fakeServer(t, func(c *gorilla.Conn, id uint32) error {
		msg := protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
			SessionId: "fake",
		}}})
		if err := c.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
			return err
		}
		if err := c.WriteMessage(gorilla.BinaryMessage, []byte{2, 0xff, 0xff}); err != nil {
			return err
		}
		_, _, err := c.ReadMessage()
		if !gorilla.IsCloseError(err, int(protocols.CodeBadFrame)) {
			return fmt.Errorf("client closed with %v, want close code %d", err, protocols.CodeBadFrame)
		}
		return nil
	})
	c, err := Dial(testContext(t), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitDone(t, c)
	var ce *protocols.CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != protocols.CodeBadFrame || ce.Remote {
		t.Fatalf("Err() = %v, want local CloseError %d", err, protocols.CodeBadFrame)
	}
	if err := <-result; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// TestUnknownFrameKind: frames of kinds the client does not know (from a
// newer server) are skipped, not taken for garbage.
func TestUnknownFrameKind(t *testing.T) {
	url, result := fakeServer(t, func(c *gorilla.Conn, id uint32) error {
		msg := protocols.MustEncode(&protocols.Frame{Id: id, Kind: &protocols.Frame_Connected{Connected: &protocols.Connected{
			SessionId: "fake",
		}}})
		// Field 20, length-delimited, empty: a kind from the future.
		msg = append(msg, 3, 20<<3|2, 0x01, 0x00)
		msg = append(msg, protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Disconnect{Disconnect: &protocols.Disconnect{
			Code: 4002, Reason: "after the unknown frame",
		}}})...)
		if err := c.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
			return err
		}
		if err := c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(4002, "after the unknown frame"),
			time.Now().Add(time.Second)); err != nil {
			return err
		}
		_, _, err := c.ReadMessage()
		if !gorilla.IsCloseError(err, 4002) {
			return fmt.Errorf("client answered the close with %v, want an echo of 4002", err)
		}
		return nil
	})
	c, err := Dial(testContext(t), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitDone(t, c)
	if err := c.Err(); !errors.Is(err, &protocols.CloseError{Code: 4002}) {
		t.Fatalf("Err() = %v, want CloseError 4002", err)
	}
	if err := <-result; err != nil {
		t.Fatalf("server: %v", err)
	}
	if _, err := protocols.DecodeFrame([]byte{0xff, 0xff, 0xff}); errors.Is(err, protocols.ErrUnknownKind) {
		t.Error("garbage taken for an unknown kind")
	}
}

// TestHandshakeDisconnect: a server that refuses the session in the
// handshake makes Dial fail with its close code.
func TestHandshakeDisconnect(t *testing.T) {
	url, result := fakeServer(t, func(c *gorilla.Conn, _ uint32) error {
		msg := protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Disconnect{Disconnect: &protocols.Disconnect{
			Code: uint32(protocols.CodeUnauthorized), Reason: "bad token",
		}}})
		if err := c.WriteMessage(gorilla.BinaryMessage, msg); err != nil {
			return err
		}
		return c.WriteControl(gorilla.CloseMessage,
			gorilla.FormatCloseMessage(int(protocols.CodeUnauthorized), "bad token"), time.Now().Add(time.Second))
	})
	_, err := Dial(testContext(t), url, Options{Token: "nope"})
	if !errors.Is(err, &protocols.CloseError{Code: protocols.CodeUnauthorized}) {
		t.Fatalf("Dial = %v, want CloseError %d", err, protocols.CodeUnauthorized)
	}
	if err := <-result; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestCertHash(t *testing.T) {
	srv := newTestServer(t, serverConfig{})
	raw := strings.TrimRight(srv.certHash, "=")
	wrong := base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
	for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			c, err := Dial(ctx, srv.httpsURL, Options{Transport: tr, CertHash: raw})
			if err != nil {
				t.Fatalf("unpadded hash: %v", err)
			}
			c.Close()
			if c, err := Dial(ctx, srv.httpsURL, Options{Transport: tr, CertHash: wrong}); err == nil {
				c.Close()
				t.Fatal("dial with the wrong hash succeeded")
			}
			if _, err := Dial(ctx, srv.httpsURL, Options{Transport: tr}); err == nil {
				t.Fatal("dial of a self-signed server without a hash succeeded")
			}
		})
	}
	if _, err := Dial(testContext(t), srv.httpsURL, Options{CertHash: "not base64!"}); err == nil {
		t.Fatal("a bad hash was accepted")
	}
}

func TestEndpoints(t *testing.T) {
	for _, tc := range []struct {
		url, transport, wsURL string
		want                  endpoints
		bad                   bool
	}{
		{url: "https://127.0.0.1:4433", want: endpoints{"https://127.0.0.1:4433/wt", "wss://127.0.0.1:4433/ws"}},
		{url: "https://h:1/", want: endpoints{"https://h:1/wt", "wss://h:1/ws"}},
		{url: "https://h:1/edge/wt?x=1", want: endpoints{"https://h:1/edge/wt?x=1", "wss://h:1/ws"}},
		{url: "https://h:1", wsURL: "ws://h:8080/ws", want: endpoints{"https://h:1/wt", "ws://h:8080/ws"}},
		{url: "https://h:1", transport: "webtransport", want: endpoints{webTransport: "https://h:1/wt"}},
		{url: "https://h:1", transport: "websocket", want: endpoints{webSocket: "wss://h:1/ws"}},
		{url: "ws://127.0.0.1:8080/ws", want: endpoints{webSocket: "ws://127.0.0.1:8080/ws"}},
		{url: "wss://h/ws", transport: "websocket", want: endpoints{webSocket: "wss://h/ws"}},
		{url: "wss://h/ws", transport: "webtransport", bad: true},
		{url: "https://h:1", transport: "carrier-pigeon", bad: true},
		{url: "ftp://h", bad: true},
		{url: "https://", bad: true},
	} {
		got, err := Options{Transport: tc.transport, WebSocketURL: tc.wsURL}.withDefaults().endpoints(tc.url)
		if tc.bad {
			if err == nil {
				t.Errorf("%s (%s): no error", tc.url, tc.transport)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s (%s) = %+v, %v; want %+v", tc.url, tc.transport, got, err, tc.want)
		}
	}
}

// BenchmarkPublish measures a publish round trip (request, ack and the
// message to a subscriber on the same client) over each transport.
func BenchmarkPublish(b *testing.B) {
	for _, tr := range []string{protocols.WebSocket, protocols.WebTransport} {
		b.Run(tr, func(b *testing.B) {
			srv := newTestServer(b, serverConfig{})
			url, opts := srv.httpsURL, Options{Transport: tr, CertHash: srv.certHash}
			ctx := context.Background()
			c, err := Dial(ctx, url, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			sub, err := c.Subscribe(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 128)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Publish(ctx, "bench", data); err != nil {
					b.Fatal(err)
				}
				<-sub.Messages()
			}
		})
	}
}
