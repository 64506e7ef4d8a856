package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
	"github.com/switchyard/switchyard/signaling"
)

// options are the resolved settings of one run, filled from optionTable.
type options struct {
	listen           string
	http             string
	cert, key        string
	apiKey           string
	apiKeyDefault    bool // set by run: apiKey was made up
	allowedOrigins   []string
	publicURLs       []string
	volatile         []string
	presence         []string
	history          []edge.HistoryRule
	replicas         int
	batchUDP         bool
	node, region     string
	logLevel         string
	maxFrameSize     int
	meshBind         string
	meshForward      string
	join             []string
	meshKey          string
	meshTLS          string
	meshProfile      string
	meshLANBind      string
	pingInterval     time.Duration
	pongTimeout      time.Duration
	iceServers       []signaling.ICEServer
	turnSecret       string
	turnTTL          time.Duration
	turnListen       string
	turnRelayIP      string
	roomSize         int
	signalGrace      time.Duration
	logFormat        string
	drainWindow      time.Duration
	metricsKey       string
	apiKeys          []string
	auth             authOptions
	limits           edge.Limits
	httpConnsPerIP   int
	connectRate      int // limits, as whole numbers (edge.Limits takes floats)
	connectBurst     int
	publishRate      int
	publishBurst     int
	userPubRate      int
	userPubBurst     int
	chanPubRate      int
	chanPubBurst     int
	maxSubscriptions int
	acmeDomains      []string
	acmeCacheDir     string
	acmeEmail        string
	acmeDirectory    string
}

// authOptions configure token checks (auth.Config).
type authOptions struct {
	hmacSecrets []string
	publicKeys  []string
	jwksFile    string
	jwksURL     string
	jwksRefresh time.Duration
	audience    string
	issuer      string
	leeway      time.Duration
	anonymous   string
}

// An opt declares one option. Its key names it in a config file; its flag
// and environment variable follow from the key:
//
//	key                  flag                    environment
//	mesh_bind            --mesh-bind             SWITCHYARD_MESH_BIND
//	limits.publish_rate  --limits.publish-rate   SWITCHYARD_LIMITS_PUBLISH_RATE
//
// A dotted key is an option in a section of the file (limits: {publish_rate:
// 10}, or the dotted key itself). Adding an option is one entry in
// optionTable (and its field in options); the loader, `switchyard config`
// and docs/config.md take it from there.
type opt struct {
	Key        string   // file key: lower case, words joined by _, sections by .
	Flag       string   // flag name when not the key's (public-url for public_urls)
	Alias      []string // more flag names, e.g. a short one for a key in a section
	Value      binding  // type, default, field, checks: bind(kind, default, field, checks...)
	Help       string   // a `word` in backquotes names the flag's argument in -h
	DefaultDoc string   // the default as docs/config.md and -h word it, when Value's is decided at start
	// Secret values are hidden by `config print` (of ICE servers, the
	// credentials). A secret may be @FILE where the code that uses it reads
	// it so (mesh_key, turn_secret).
	Secret bool
}

const devAPIKey = "dev-api-key"

// sessionDefaults are the protocol's own defaults for the session options.
var sessionDefaults = protocols.SessionConfig{}.WithDefaults()

// optionTable is every option, in the order docs/config.md and `config
// print` list them.
var optionTable = optionSet{
	{Key: "listen", Value: bind(strKind, "127.0.0.1:4433", func(o *options) *string { return &o.listen }, hostPort),
		Help: "TLS `address`: TCP for WebSocket and the API, UDP for HTTP/3 and WebTransport; empty disables TLS and WebTransport"},
	{Key: "http", Value: bind(strKind, "127.0.0.1:8080", func(o *options) *string { return &o.http }, hostPort),
		Help: "plain-HTTP `address` for local browsers and tools (empty disables it)"},
	{Key: "cert", Value: bind(strKind, "", func(o *options) *string { return &o.cert }),
		Help: "TLS certificate `file` (PEM), re-read when it changes; without it a self-signed dev certificate is generated and rotated"},
	{Key: "key", Value: bind(strKind, "", func(o *options) *string { return &o.key }),
		Help: "TLS key `file` (PEM), with cert"},
	{Key: "acme.domains", Value: bind(listKind, nil, func(o *options) *[]string { return &o.acmeDomains }),
		DefaultDoc: "none",
		Help:       "DNS `names` to get certificates for from an ACME CA (Let's Encrypt), instead of cert and key; the TLS listener must be reachable on port 443 of those names (TLS-ALPN-01)"},
	{Key: "acme.cache_dir", Value: bind(strKind, "switchyard-acme", func(o *options) *string { return &o.acmeCacheDir }),
		Help: "`directory` where ACME keys and certificates are kept across restarts"},
	{Key: "acme.email", Value: bind(strKind, "", func(o *options) *string { return &o.acmeEmail }),
		Help: "contact `address` given to the ACME CA (expiry notices)"},
	{Key: "acme.directory_url", Value: bind(strKind, "", func(o *options) *string { return &o.acmeDirectory }),
		DefaultDoc: "Let's Encrypt", Help: "ACME directory `URL` (e.g. a CA's staging one)"},
	{Key: "api_key", Value: bind(strKind, "", func(o *options) *string { return &o.apiKey }), Secret: true,
		DefaultDoc: "`" + devAPIKey + "` on loopback, else random",
		Help:       "`key` for the server API (X-API-Key); printed at start when defaulted"},
	{Key: "allowed_origins", Value: bind(listKind, nil, func(o *options) *[]string { return &o.allowedOrigins }),
		DefaultDoc: "the node's own URLs",
		Help:       "browser `origins` allowed to connect besides this node's own URLs (\"*\" for any)"},
	{Key: "public_urls", Flag: "public-url", Value: bind(listKind, nil, func(o *options) *[]string { return &o.publicURLs }),
		DefaultDoc: "the listen addresses",
		Help:       "`URLs` clients reach this node by, when not its listen addresses (https://rt.example.com); their pages may connect and the cluster advertises them"},
	{Key: "volatile_channels", Value: bind(listKind, []string{"game:*"}, func(o *options) *[]string { return &o.volatile }),
		Help: "volatile `channels` (names, or prefixes ending in *): their publications travel as datagrams, latest wins; empty for none"},
	{Key: "presence_channels", Value: bind(listKind, []string{"chat", "chat:*"}, func(o *options) *[]string { return &o.presence }),
		Help: "`channels` (names, or prefixes ending in *) that keep presence: who is in them over the cluster, join and leave events; empty for none"},
	{Key: "history", Value: bind(historyKind, []edge.HistoryRule{{Channels: "chat", Size: 100, TTL: 5 * time.Minute}, {Channels: "chat:*", Size: 100, TTL: 5 * time.Minute}},
		func(o *options) *[]edge.HistoryRule { return &o.history }),
		Help: "`rules` CHANNELS=SIZE/TTL (CHANNELS a name, a prefix ending in *, or *; TTL default 5m): keep the latest SIZE publications for TTL, for recovery and /api/history; the first rule that matches wins; empty for none"},
	{Key: "replicas", Value: bind(intKind, 2, func(o *options) *int { return &o.replicas }, replicaCount),
		Help: "nodes holding each channel's state in a cluster: 2 keeps a copy at the channel's successor (the owner's death, a join or a drain keep epochs, history and idempotency keys); 1 keeps none"},
	{Key: "batch_udp_writes", Value: bind(boolKind, false, func(o *options) *bool { return &o.batchUDP }),
		Help: "send the QUIC packets of all WebTransport sessions in batches (sendmmsg), several per system call"},
	{Key: "node", Value: bind(strKind, "", func(o *options) *string { return &o.node }),
		DefaultDoc: "host name", Help: "node `name`, told to clients; in a cluster it must match the node's certificate"},
	{Key: "region", Value: bind(strKind, "", func(o *options) *string { return &o.region }),
		DefaultDoc: "`local`", Help: "`region` this node runs in"},
	{Key: "log_level", Value: bind(strKind, "info", func(o *options) *string { return &o.logLevel }, oneOf("debug", "info", "warn", "error")),
		Help: "log `level`: debug, info, warn, error"},
	{Key: "log_format", Value: bind(strKind, "text", func(o *options) *string { return &o.logFormat }, oneOf("text", "json")),
		Help: "log `format`: text (key=value) or json (one object a line, for log pipelines)"},
	{Key: "drain_window", Value: bind(durationKind, time.Second, func(o *options) *time.Duration { return &o.drainWindow }, positive),
		Help: "on SIGTERM or POST /api/drain, the time over which the node spreads its clients' reconnects to other nodes of its region"},
	{Key: "metrics_key", Value: bind(strKind, "", func(o *options) *string { return &o.metricsKey }), Secret: true,
		DefaultDoc: "none: /metrics is open",
		Help:       "`key` a scraper must send (Authorization: Bearer, or X-API-Key) for /metrics on a listener that is not on loopback"},
	{Key: "api_keys", Value: bind(listKind, nil, func(o *options) *[]string { return &o.apiKeys }, apiKeyList), Secret: true,
		DefaultDoc: "none",
		Help:       "more API `keys`, each NAME:KEY:SCOPE+SCOPE with scopes publish, history, presence, admin (admin: all); KEY may be @FILE"},
	{Key: "auth.hmac_secrets", Value: bind(listKind, nil, func(o *options) *[]string { return &o.auth.hmacSecrets }), Secret: true,
		DefaultDoc: "none",
		Help:       "HS256 `secrets` (at least 32 bytes each, or @FILE) that sign client tokens; several for rotation"},
	{Key: "auth.public_keys", Value: bind(listKind, nil, func(o *options) *[]string { return &o.auth.publicKeys }),
		DefaultDoc: "none",
		Help:       "PEM `files` of public keys (RSA for RS256, P-256 for ES256, Ed25519 for EdDSA) that verify client tokens"},
	{Key: "auth.jwks_file", Value: bind(strKind, "", func(o *options) *string { return &o.auth.jwksFile }),
		Help: "JWK Set `file` of token keys, re-read every auth.jwks_refresh"},
	{Key: "auth.jwks_url", Value: bind(strKind, "", func(o *options) *string { return &o.auth.jwksURL }),
		Help: "JWK Set `URL` of token keys (an identity provider's), fetched every auth.jwks_refresh and when a token names an unknown key"},
	{Key: "auth.jwks_refresh", Value: bind(durationKind, 5*time.Minute, func(o *options) *time.Duration { return &o.auth.jwksRefresh }, positive),
		Help: "how often the JWK Set is read again"},
	{Key: "auth.audience", Value: bind(strKind, "", func(o *options) *string { return &o.auth.audience }),
		Help: "the `aud` a token must name; empty: not checked"},
	{Key: "auth.issuer", Value: bind(strKind, "", func(o *options) *string { return &o.auth.issuer }),
		Help: "the `iss` a token must have; empty: not checked"},
	{Key: "auth.leeway", Value: bind(durationKind, 5*time.Second, func(o *options) *time.Duration { return &o.auth.leeway }, notNegative),
		Help: "clock skew allowed when checking exp and nbf"},
	{Key: "auth.anonymous", Value: bind(strKind, "", func(o *options) *string { return &o.auth.anonymous }, anonymousCaps),
		DefaultDoc: "on loopback with no token key: all (the dev node); else none",
		Help:       "what a client without a token may do: `caps` as in a token ([{\"channels\":[\"public:*\"],\"allow\":[\"subscribe\"]}]), all, or none. A node on a public address needs a token key or this"},
	{Key: "limits.connect_rate", Value: bind(intKind, 2000, func(o *options) *int { return &o.connectRate }, notNegative),
		Help: "new sessions a second the node admits; over it a client is told to come back later (3006) at a slot of its own; 0: no limit"},
	{Key: "limits.connect_burst", Value: bind(intKind, 1000, func(o *options) *int { return &o.connectBurst }, notNegative),
		Help: "new sessions admitted at once above the rate (0: the rate)"},
	{Key: "limits.sessions_per_ip", Value: bind(intKind, 0, func(o *options) *int { return &o.limits.SessionsPerIP }, notNegative),
		Help: "open sessions of one client IP (0: no limit; behind a proxy all clients share its IP)"},
	{Key: "limits.sessions_per_user", Value: bind(intKind, 0, func(o *options) *int { return &o.limits.SessionsPerUser }, notNegative),
		Help: "open sessions of one authenticated user (0: no limit)"},
	{Key: "limits.http_conns_per_ip", Value: bind(intKind, 256, func(o *options) *int { return &o.httpConnsPerIP }, notNegative),
		Help: "TCP connections of one client IP still in HTTP (not yet a WebSocket session): over it 429 (0: no limit; behind a proxy all clients share its IP)"},
	{Key: "limits.publish_rate", Value: bind(intKind, 0, func(o *options) *int { return &o.publishRate }, notNegative),
		Help: "publishes and datagrams a second one session may send (error 111 over it; 0: no limit)"},
	{Key: "limits.publish_burst", Value: bind(intKind, 0, func(o *options) *int { return &o.publishBurst }, notNegative),
		Help: "publishes one session may send at once above its rate (0: twice the rate)"},
	{Key: "limits.user_publish_rate", Value: bind(intKind, 0, func(o *options) *int { return &o.userPubRate }, notNegative),
		Help: "publishes a second of all the sessions of one user together (0: no limit)"},
	{Key: "limits.channel_publish_rate", Value: bind(intKind, 0, func(o *options) *int { return &o.chanPubRate }, notNegative),
		Help: "publishes a second one channel may take in on this node, from every publisher (error 111, HTTP 429 over it; 0: no limit)"},
	{Key: "limits.channel_publish_burst", Value: bind(intKind, 0, func(o *options) *int { return &o.chanPubBurst }, notNegative),
		Help: "the same at once above the rate (0: twice the rate)"},
	{Key: "limits.subscriptions", Value: bind(intKind, 128, func(o *options) *int { return &o.maxSubscriptions }, positive),
		Help: "subscriptions one session may hold (error 103 over it)"},
	{Key: "limits.user_publish_burst", Value: bind(intKind, 0, func(o *options) *int { return &o.userPubBurst }, notNegative),
		Help: "the same at once above the rate (0: twice the rate)"},
	{Key: "max_frame_size", Value: bind(intKind, sessionDefaults.MaxFrameSize, func(o *options) *int { return &o.maxFrameSize }, frameSize),
		Help: "largest frame accepted from a client, in `bytes`"},
	{Key: "ping_interval", Value: bind(durationKind, sessionDefaults.PingInterval, func(o *options) *time.Duration { return &o.pingInterval }, notNegative),
		Help: "how often the server pings each session (0: the default)"},
	{Key: "pong_timeout", Value: bind(durationKind, sessionDefaults.PongTimeout, func(o *options) *time.Duration { return &o.pongTimeout }, notNegative),
		Help: "how long after a ping a silent session is closed (0: the default)"},
	{Key: "ice_servers", Value: bind(iceKind, nil, func(o *options) *[]signaling.ICEServer { return &o.iceServers }), Secret: true, // credentials
		DefaultDoc: "none",
		Help:       "STUN/TURN `URLs` handed to WebRTC peers at /signal (stun:host:port, turn:host:port?transport=udp); in a file, entries may also be {urls, username, credential} maps"},
	{Key: "turn_secret", Value: bind(strKind, "", func(o *options) *string { return &o.turnSecret }), Secret: true,
		DefaultDoc: "with turn_listen: random",
		Help:       "shared `secret` (or @FILE) for time-limited TURN credentials (TURN REST, as coturn's use-auth-secret)"},
	{Key: "turn_ttl", Value: bind(durationKind, 24*time.Hour, func(o *options) *time.Duration { return &o.turnTTL }, positive),
		Help: "how long TURN credentials are valid"},
	{Key: "turn_listen", Value: bind(strKind, "", func(o *options) *string { return &o.turnListen }, hostPort),
		Help: "UDP `address` for an embedded TURN server (pion/turn); empty: none"},
	{Key: "turn_relay_ip", Value: bind(strKind, "", func(o *options) *string { return &o.turnRelayIP }, relayIP),
		DefaultDoc: "the turn_listen host", Help: "`IP` the embedded TURN server's relays are reached at"},
	{Key: "room_size", Value: bind(intKind, 50, func(o *options) *int { return &o.roomSize }, positive),
		Help: "most peers in a signaling room, over the cluster"},
	{Key: "signal_grace", Value: bind(durationKind, 10*time.Second, func(o *options) *time.Duration { return &o.signalGrace }, notNegative),
		Help: "how long a signaling peer whose connection was lost keeps its id for a resume; 0: none"},
	{Key: "mesh_bind", Value: bind(strKind, "", func(o *options) *string { return &o.meshBind }, hostPort),
		Help: "gossip `address` (UDP and TCP) to join a cluster; empty: a node on its own"},
	{Key: "mesh_forward", Value: bind(strKind, "", func(o *options) *string { return &o.meshForward }, hostPort),
		DefaultDoc: "the mesh_bind host, any port", Help: "forwarding-link `address` (TLS over TCP) for publications between nodes; it is advertised"},
	{Key: "join", Value: bind(listKind, nil, func(o *options) *[]string { return &o.join }),
		Help: "gossip `addresses` of seed nodes, re-joined every 10 s"},
	{Key: "mesh_key", Value: bind(strKind, "", func(o *options) *string { return &o.meshKey }), Secret: true,
		Help: "gossip encryption `key`: base64 of 16, 24 or 32 bytes, or @FILE"},
	{Key: "mesh_tls", Value: bind(strKind, "", func(o *options) *string { return &o.meshTLS }),
		Help: "`directory` with ca.pem, NODE.pem and NODE.key for the forwarding links (switchyard certs init)"},
	{Key: "mesh_profile", Value: bind(strKind, "lan", func(o *options) *string { return &o.meshProfile }, oneOf("lan", "wan")),
		Help: "gossip timings: lan (one region) or wan (a cluster across regions: WAN timings between regions plus a LAN pool within this node's region)"},
	{Key: "mesh_lan_bind", Value: bind(strKind, "", func(o *options) *string { return &o.meshLANBind }, hostPort),
		DefaultDoc: "the mesh_bind host, any port", Help: "with mesh_profile wan: the region's LAN gossip `address`; it is advertised"},
}

// Checks of one option each (configkind.go has the shared ones).

func replicaCount(n int) error {
	if n != 1 && n != 2 {
		return fmt.Errorf("must be 1 (no copy) or 2 (a copy at each channel's successor), got %d", n)
	}
	return nil
}

func frameSize(n int) error {
	if n < 0 || n > 16<<20 {
		return fmt.Errorf("want 0 (the default) to 16 MiB (16777216), got %d", n)
	}
	return nil
}

func relayIP(s string) error {
	if ip := net.ParseIP(s); s != "" && (ip == nil || ip.IsUnspecified()) {
		return fmt.Errorf("want the IP address peers reach this node at, got %q", s)
	}
	return nil
}

// apiKeyList checks NAME:KEY:SCOPE+SCOPE entries (the keys themselves are
// checked at start, after @FILE is read).
func apiKeyList(keys []string) error {
	for i, k := range keys {
		if parts := strings.SplitN(k, ":", 3); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("entry %d: want NAME:KEY:SCOPE+SCOPE, e.g. backend:@/run/secrets/api:publish+history", i+1)
		}
	}
	return nil
}

// anonymousCaps checks auth.anonymous: empty, "none", "all", or grants.
func anonymousCaps(s string) error {
	if s == "" || s == "none" || s == "all" {
		return nil
	}
	if _, err := auth.ParseGrants([]byte(s)); err != nil {
		return fmt.Errorf("want none or capabilities as in a token's caps: %v", err)
	}
	return nil
}

// parseOptions reads the options of a node start from args, the
// process's environment and the config file either names.
func parseOptions(args []string, usage io.Writer) (options, error) {
	return loadOptions(args, os.Environ, usage)
}

// crossCheck reports what no single option shows wrong.
func crossCheck(o *options, r *report) {
	if o.listen == "" && o.http == "" {
		r.add("http", "empty, and so is %s: nothing to serve", "listen")
	}
	if !o.loopback() && !o.auth.tokenKeys() && o.auth.anonymous == "" {
		r.add("auth.anonymous", "unset while the node listens beyond loopback and has no token key: set %s (or auth.public_keys, auth.jwks_url, auth.jwks_file), or auth.anonymous all to let anyone do anything", "auth.hmac_secrets")
	}
	if len(o.acmeDomains) > 0 {
		if o.cert != "" {
			r.add("acme.domains", "set together with %s: take certificates from files or from ACME, not both", "cert")
		}
		if o.listen == "" {
			r.add("acme.domains", "needs %s, the TLS address", "listen")
		}
	}
	switch {
	case o.cert != "" && o.key == "":
		r.add("cert", "needs %s too", "key")
	case o.cert == "" && o.key != "":
		r.add("key", "needs %s too", "cert")
	}
	if o.meshBind == "" {
		if len(o.join) > 0 {
			r.add("join", "needs %s, the node's gossip address", "mesh_bind")
		}
		if o.meshTLS != "" {
			r.add("mesh_tls", "needs %s, the node's gossip address", "mesh_bind")
		}
		if o.meshKey != "" {
			r.add("mesh_key", "needs %s, the node's gossip address", "mesh_bind")
		}
	} else if o.meshTLS == "" {
		r.add("mesh_bind", "needs %s DIR (create it with `switchyard certs init`)", "mesh_tls")
	}
}

// loopback reports whether every configured listener is on a loopback
// address, where the well-known dev API key is harmless.
func (o *options) loopback() bool {
	for _, addr := range []string{o.listen, o.http} {
		if addr == "" {
			continue
		}
		host, _, _ := net.SplitHostPort(addr)
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// parseHistory reads history rules: CHANNELS=SIZE or CHANNELS=SIZE/TTL.
func parseHistory(items []string) ([]edge.HistoryRule, error) {
	out := []edge.HistoryRule{}
	for _, it := range items {
		pattern, spec, ok := strings.Cut(it, "=")
		if !ok || pattern == "" {
			return nil, fmt.Errorf("rule %q: want CHANNELS=SIZE/TTL, e.g. chat:*=100/5m", it)
		}
		sizeText, ttlText, hasTTL := strings.Cut(spec, "/")
		size, err := strconv.Atoi(sizeText)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("rule %q: size %q is not a count", it, sizeText)
		}
		r := edge.HistoryRule{Channels: pattern, Size: size}
		if hasTTL {
			if r.TTL, err = time.ParseDuration(ttlText); err != nil || r.TTL <= 0 {
				return nil, fmt.Errorf("rule %q: TTL %q is not a positive duration such as 5m", it, ttlText)
			}
		}
		out = append(out, r)
	}
	return out, nil
}
