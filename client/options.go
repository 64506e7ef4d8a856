package client

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// Transport choices for Options.Transport.
const (
	transportAuto = "auto"
)

// Defaults of Options and fixed timings of the client.
const (
	defaultFallbackDelay = 300 * time.Millisecond
	defaultMessageBuffer = 256
	// defaultDialTimeout bounds Dial when its context has no deadline.
	defaultDialTimeout = 30 * time.Second
	// writeTimeout bounds one transport write.
	writeTimeout = 10 * time.Second
	// closeGrace is how long a closing client waits for the server to
	// acknowledge the close before dropping the transport.
	closeGrace = time.Second
	// A WebTransport close waits about two round trips, within these
	// bounds, for its close capsule to leave before it closes the QUIC
	// connection.
	minCloseLinger = 5 * time.Millisecond
	maxCloseLinger = 100 * time.Millisecond
	// maxFrameSize is the largest frame the client accepts from a server.
	// The server's limit (Connected.max_frame_size, at most 16 MiB) binds
	// what the client sends; a server's frames may be a little larger (a
	// message carries a publish of that size plus its header), so what the
	// client receives is bounded only by this sanity cap.
	maxFrameSize = 32 << 20
	// maxMessageSize caps one WebSocket message from the server, which may
	// batch frames.
	maxMessageSize = 64 << 20
	// batchBytes caps how many bytes of frames one WebTransport write
	// carries. A WebSocket message carries at most max_frame_size + 4
	// bytes, the server's limit on a whole message. At least one frame is
	// always written.
	batchBytes = 256 << 10
	// clientName is sent in Connect.
	clientName = "switchyard-go/0.1"
)

// Options tunes Dial. The zero value dials with defaults.
type Options struct {
	// Transport is "auto", "webtransport" or "websocket". Auto (and the
	// zero value) tries WebTransport first and falls back to WebSocket,
	// happy-eyeballs style (see FallbackDelay); it needs an https:// URL.
	Transport string
	// CertHash pins the server's leaf certificate: the standard base64
	// (padded or not) of the SHA-256 of its DER encoding. When set, the
	// chain is not verified, only the hash is compared — for self-signed
	// dev certificates. It applies to wss:// and to WebTransport.
	CertHash string
	// CertHashes pins any of several leaf certificates (the dev nodes of a
	// cluster each have their own), as CertHash does for one.
	CertHashes []string
	// TLSConfig is the base TLS configuration (RootCAs, ServerName, ...).
	// It is cloned. Zero: system roots.
	TLSConfig *tls.Config
	// WebSocketURL is where WebSocket connects when Dial is given an
	// https:// URL. Zero: wss://host:port/ws on the URL's host and port.
	// Ignored for ws:// and wss:// URLs, which name the endpoint themselves.
	WebSocketURL string
	// Origin, when set, is sent as the Origin header on either transport.
	Origin string
	// Token is sent in Connect to authenticate the client.
	Token string
	// TokenFunc, when set, is asked for a token before every connection
	// attempt (instead of Token) and, when the node says the session's
	// token expires (Connected.expires_in_s), for a fresh one a little
	// before it does, which the client hands over with Refresh. A Conn
	// that is closed with 3502 (unauthorized) asks it once more and
	// reconnects before giving up. It is called on a goroutine of the
	// client's; ctx ends with the attempt or the session.
	TokenFunc func(ctx context.Context) (string, error)
	// User and Info describe this client in the presence of the channels
	// it subscribes to that keep presence (at most 256 and 1,024 bytes).
	User string
	Info []byte
	// FallbackDelay is how long auto waits for WebTransport before it
	// starts WebSocket as well; a WebTransport failure starts WebSocket at
	// once. The first to complete the handshake wins. Zero: 300 ms.
	FallbackDelay time.Duration
	// MessageBuffer is the capacity of each Subscription's Messages
	// channel. When a channel is full the client stops reading from the
	// server until there is room (backpressure: a server whose send queue
	// then overflows closes the client as a slow consumer). Zero: 256.
	MessageBuffer int
	// SingleStream, on WebTransport, has the server deliver every
	// subscription's messages on the control stream, as over WebSocket,
	// instead of each on a unidirectional stream of its own (the default,
	// so that a bulky or lossy channel never holds up another).
	SingleStream bool
	// Logger receives debug logs. Zero: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Transport == "" {
		o.Transport = transportAuto
	}
	if o.FallbackDelay <= 0 {
		o.FallbackDelay = defaultFallbackDelay
	}
	if o.MessageBuffer <= 0 {
		o.MessageBuffer = defaultMessageBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// endpoints are the URLs Dial tries; an empty one is not tried.
type endpoints struct {
	webTransport string
	webSocket    string
}

// endpoints resolves the URL given to Dial against o.Transport.
func (o Options) endpoints(raw string) (endpoints, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoints{}, fmt.Errorf("client: bad URL %q: %w", raw, err)
	}
	if u.Host == "" {
		return endpoints{}, fmt.Errorf("client: URL %q has no host", raw)
	}
	var ep endpoints
	switch u.Scheme {
	case "https":
		wt := *u
		if wt.Path == "" || wt.Path == "/" {
			wt.Path, wt.RawPath = "/wt", ""
		}
		ep.webTransport = wt.String()
		ep.webSocket = o.WebSocketURL
		if ep.webSocket == "" {
			ep.webSocket = (&url.URL{Scheme: "wss", Host: u.Host, Path: "/ws"}).String()
		}
	case "ws", "wss":
		if u.Path == "" || u.Path == "/" {
			// The node's WebSocket endpoint; "/" is its demo page.
			u.Path, u.RawPath = "/ws", ""
		}
		ep.webSocket = u.String()
	default:
		return endpoints{}, fmt.Errorf("client: URL %q: scheme must be https, wss or ws", raw)
	}
	switch o.Transport {
	case transportAuto:
	case protocols.WebTransport:
		if ep.webTransport == "" {
			return endpoints{}, fmt.Errorf("client: WebTransport needs an https:// URL, got %q", raw)
		}
		ep.webSocket = ""
	case protocols.WebSocket:
		ep.webTransport = ""
	default:
		return endpoints{}, fmt.Errorf("client: unknown transport %q (want auto, webtransport or websocket)", o.Transport)
	}
	return ep, nil
}

// tlsConfig returns the base TLS configuration, with the certificate hash
// pinned when o.CertHash is set.
func (o Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	}
	hashes := o.CertHashes
	if o.CertHash != "" {
		hashes = append([]string{o.CertHash}, hashes...)
	}
	if len(hashes) == 0 {
		return cfg, nil
	}
	var pins [][]byte
	for _, h := range hashes {
		want, err := decodeCertHash(h)
		if err != nil {
			return nil, err
		}
		pins = append(pins, want)
	}
	verify := cfg.VerifyConnection
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("client: server sent no certificate")
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		pinned := false
		for _, want := range pins {
			pinned = pinned || subtle.ConstantTimeCompare(got[:], want) == 1
		}
		if !pinned {
			return fmt.Errorf("client: server certificate hash %s does not match the pinned hash %s",
				base64.StdEncoding.EncodeToString(got[:]), strings.Join(hashes, " or "))
		}
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
	return cfg, nil
}

func decodeCertHash(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("client: CertHash is not base64: %w", err)
	}
	if len(b) != sha256.Size {
		return nil, fmt.Errorf("client: CertHash has %d bytes, want a %d-byte SHA-256", len(b), sha256.Size)
	}
	return b, nil
}
