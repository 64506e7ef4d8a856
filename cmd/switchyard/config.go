package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/signaling"
)

// fileConfig is the --config file: JSON with the same names as the flags.
// Flags given on the command line win over the file.
type fileConfig struct {
	Listen         *string  `json:"listen"`
	HTTP           *string  `json:"http"`
	Cert           string   `json:"cert"`
	Key            string   `json:"key"`
	APIKey         string   `json:"api_key"`
	AllowedOrigins list     `json:"allowed_origins"`
	PublicURLs     list     `json:"public_urls"`
	Volatile       list     `json:"volatile_channels"`
	Presence       list     `json:"presence_channels"`
	History        list     `json:"history"`
	Replicas       int      `json:"replicas"`
	Node           string   `json:"node"`
	Region         string   `json:"region"`
	LogLevel       string   `json:"log_level"`
	MaxFrameSize   int      `json:"max_frame_size"`
	MeshBind       string   `json:"mesh_bind"`
	MeshForward    string   `json:"mesh_forward"`
	Join           list     `json:"join"`
	MeshKey        string   `json:"mesh_key"`
	MeshTLS        string   `json:"mesh_tls"`
	MeshProfile    string   `json:"mesh_profile"`
	MeshLANBind    string   `json:"mesh_lan_bind"`
	PingInterval   duration `json:"ping_interval"`
	PongTimeout    duration `json:"pong_timeout"`
	ICEServers     iceList  `json:"ice_servers"`
	TURNSecret     string   `json:"turn_secret"`
	TURNTTL        duration `json:"turn_ttl"`
	TURNListen     string   `json:"turn_listen"`
	TURNRelayIP    string   `json:"turn_relay_ip"`
	RoomSize       int      `json:"room_size"`
	SignalGrace    duration `json:"signal_grace"`
}

// iceList reads ice_servers: a list whose entries are URLs ("stun:…",
// "turn:…") or objects {"urls": [...], "username": "…", "credential": "…"}
// for servers with fixed credentials; or one comma-separated string.
type iceList []signaling.ICEServer

func (l *iceList) UnmarshalJSON(b []byte) error {
	var urls list
	if err := urls.UnmarshalJSON(b); err == nil {
		*l = iceServersOf(urls)
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("want a list of ICE server URLs or {urls, username, credential} objects")
	}
	out := iceList{}
	for i, r := range raw {
		var u string
		if json.Unmarshal(r, &u) == nil {
			out = append(out, signaling.ICEServer{URLs: []string{u}})
			continue
		}
		var s struct {
			URLs       list   `json:"urls"`
			Username   string `json:"username"`
			Credential string `json:"credential"`
		}
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return fmt.Errorf("entry %d: %v", i, err)
		}
		out = append(out, signaling.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	*l = out
	return nil
}

func iceServersOf(urls []string) []signaling.ICEServer {
	out := make([]signaling.ICEServer, 0, len(urls))
	for _, u := range urls {
		out = append(out, signaling.ICEServer{URLs: []string{u}})
	}
	return out
}

// list reads a JSON array of strings, or one string of comma-separated
// values as the flags take.
type list []string

func (l *list) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = splitList(one)
		if *l == nil {
			*l = list{} // "" is an empty list, not an absent one
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a list of strings or one comma-separated string")
	}
	*l = many
	return nil
}

// duration reads "25s"-style strings from JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"25s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// options are the resolved settings of one run.
type options struct {
	listen         string
	http           string
	cert, key      string
	apiKey         string
	apiKeyDefault  bool
	allowedOrigins []string
	publicURLs     []string
	volatile       []string
	presence       []string
	history        []edge.HistoryRule
	replicas       int
	batchUDP       bool
	node, region   string
	logLevel       string
	maxFrameSize   int
	meshBind       string
	meshForward    string
	join           []string
	meshKey        string
	meshTLS        string
	meshProfile    string
	meshLANBind    string
	pingInterval   time.Duration
	pongTimeout    time.Duration
	iceServers     []signaling.ICEServer
	turnSecret     string
	turnTTL        time.Duration
	turnListen     string
	turnRelayIP    string
	roomSize       int
	signalGrace    time.Duration
}

const devAPIKey = "dev-api-key"

func parseOptions(args []string, usage io.Writer) (options, error) {
	fs := flag.NewFlagSet("switchyard", flag.ContinueOnError)
	fs.SetOutput(usage)
	var o options
	var origins, publicURLs, volatile, presence, history, configFile string
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4433", "TLS `address`: TCP for WebSocket and the API, UDP for HTTP/3 and WebTransport")
	fs.StringVar(&o.http, "http", "127.0.0.1:8080", "plain-HTTP `address` for local browsers and tools (empty disables it)")
	fs.StringVar(&o.cert, "cert", "", "TLS certificate `file` (PEM); without it a self-signed dev certificate is generated and rotated")
	fs.StringVar(&o.key, "key", "", "TLS key `file` (PEM), with --cert")
	fs.StringVar(&o.apiKey, "api-key", "", "`key` for the server API (X-API-Key); default on loopback: "+devAPIKey+", else a random key")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated browser `origins` allowed to connect besides this node's own URLs (\"*\" for any)")
	fs.StringVar(&publicURLs, "public-url", "", "comma-separated `URLs` clients reach this node by, when not its listen addresses (https://rt.example.com); their pages may connect and the cluster advertises them")
	fs.StringVar(&volatile, "volatile-channels", "game:*", "comma-separated volatile `channels` (names, or prefixes ending in *): their publications travel as datagrams, latest wins; empty for none")
	fs.StringVar(&presence, "presence-channels", "chat,chat:*", "comma-separated `channels` (names, or prefixes ending in *) that keep presence: who is in them over the cluster, join and leave events; empty for none")
	fs.StringVar(&history, "history", "chat=100/5m,chat:*=100/5m", "comma-separated `rules` CHANNELS=SIZE/TTL (CHANNELS a name, a prefix ending in *, or *): keep the latest SIZE publications for TTL, for recovery and /api/history; the first rule that matches wins; empty for none")
	fs.IntVar(&o.replicas, "replicas", 2, "nodes holding each channel's state in a cluster: 2 keeps a copy at the channel's successor (the owner's death, a join or a drain keep epochs, history and idempotency keys); 1 keeps none")
	fs.BoolVar(&o.batchUDP, "batch-udp-writes", false, "send the QUIC packets of all WebTransport sessions in batches (sendmmsg), several per system call")
	fs.StringVar(&configFile, "config", "", "JSON config `file` (keys as the flags, with _ for -)")
	fs.StringVar(&o.node, "node", "", "node `name` (default: host name)")
	fs.StringVar(&o.region, "region", "", "`region` this node runs in (default: local)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	var iceServers string
	fs.StringVar(&iceServers, "ice-servers", "", "comma-separated STUN/TURN `URLs` handed to WebRTC peers at /signal (stun:host:port, turn:host:port?transport=udp)")
	fs.StringVar(&o.turnSecret, "turn-secret", "", "shared `secret` (or @FILE) for time-limited TURN credentials (TURN REST, as coturn's use-auth-secret); default with --turn-listen: a random one")
	fs.DurationVar(&o.turnTTL, "turn-ttl", 24*time.Hour, "how long TURN credentials are valid")
	fs.StringVar(&o.turnListen, "turn-listen", "", "UDP `address` for an embedded TURN server (pion/turn); empty: none")
	fs.StringVar(&o.turnRelayIP, "turn-relay-ip", "", "`IP` the embedded TURN server's relays are reached at; default: the --turn-listen host")
	fs.IntVar(&o.roomSize, "room-size", 50, "most peers in a signaling room, over the cluster")
	fs.DurationVar(&o.signalGrace, "signal-grace", 10*time.Second, "how long a signaling peer whose connection was lost keeps its id for a resume")
	var join string
	fs.StringVar(&o.meshBind, "mesh-bind", "", "gossip `address` (UDP and TCP) to join a cluster; empty: a node on its own")
	fs.StringVar(&o.meshForward, "mesh-forward", "", "forwarding-link `address` (TLS over TCP) for publications between nodes; default: the mesh-bind host, any port")
	fs.StringVar(&join, "join", "", "comma-separated gossip `addresses` of seed nodes")
	fs.StringVar(&o.meshKey, "mesh-key", "", "gossip encryption `key`: base64 of 16, 24 or 32 bytes, or @FILE")
	fs.StringVar(&o.meshTLS, "mesh-tls", "", "`directory` with ca.pem, NODE.pem and NODE.key for the forwarding links (switchyard certs init)")
	fs.StringVar(&o.meshProfile, "mesh-profile", "lan", "gossip timings: lan (one region) or wan (a cluster across regions: WAN timings between regions plus a LAN pool within this node's region)")
	fs.StringVar(&o.meshLANBind, "mesh-lan-bind", "", "with --mesh-profile wan: the region's LAN gossip `address`; default: the mesh-bind host, any port")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if configFile != "" {
		raw, err := os.ReadFile(configFile)
		if err != nil {
			return o, fmt.Errorf("config: %w", err)
		}
		var fc fileConfig
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc); err != nil {
			return o, fmt.Errorf("config %s: %w", configFile, err)
		}
		apply := func(name string, dst *string, v string) {
			if !set[name] && v != "" {
				*dst = v
			}
		}
		if fc.Listen != nil && !set["listen"] {
			o.listen = *fc.Listen
		}
		if fc.HTTP != nil && !set["http"] {
			o.http = *fc.HTTP
		}
		apply("cert", &o.cert, fc.Cert)
		apply("key", &o.key, fc.Key)
		apply("api-key", &o.apiKey, fc.APIKey)
		apply("node", &o.node, fc.Node)
		apply("region", &o.region, fc.Region)
		apply("log-level", &o.logLevel, fc.LogLevel)
		if !set["allowed-origins"] && len(fc.AllowedOrigins) > 0 {
			origins = strings.Join(fc.AllowedOrigins, ",")
		}
		if !set["public-url"] && len(fc.PublicURLs) > 0 {
			publicURLs = strings.Join(fc.PublicURLs, ",")
		}
		if !set["volatile-channels"] && fc.Volatile != nil {
			volatile = strings.Join(fc.Volatile, ",")
		}
		if !set["presence-channels"] && fc.Presence != nil {
			presence = strings.Join(fc.Presence, ",")
		}
		if !set["history"] && fc.History != nil {
			history = strings.Join(fc.History, ",")
		}
		o.maxFrameSize = fc.MaxFrameSize
		if !set["replicas"] && fc.Replicas != 0 {
			o.replicas = fc.Replicas
		}
		apply("mesh-bind", &o.meshBind, fc.MeshBind)
		apply("mesh-forward", &o.meshForward, fc.MeshForward)
		apply("mesh-key", &o.meshKey, fc.MeshKey)
		apply("mesh-tls", &o.meshTLS, fc.MeshTLS)
		apply("mesh-profile", &o.meshProfile, fc.MeshProfile)
		apply("mesh-lan-bind", &o.meshLANBind, fc.MeshLANBind)
		if !set["join"] && len(fc.Join) > 0 {
			join = strings.Join(fc.Join, ",")
		}
		o.pingInterval = time.Duration(fc.PingInterval)
		o.pongTimeout = time.Duration(fc.PongTimeout)
		if !set["ice-servers"] && fc.ICEServers != nil {
			o.iceServers = fc.ICEServers
		}
		apply("turn-secret", &o.turnSecret, fc.TURNSecret)
		apply("turn-listen", &o.turnListen, fc.TURNListen)
		apply("turn-relay-ip", &o.turnRelayIP, fc.TURNRelayIP)
		if !set["turn-ttl"] && fc.TURNTTL != 0 {
			o.turnTTL = time.Duration(fc.TURNTTL)
		}
		if !set["room-size"] && fc.RoomSize != 0 {
			o.roomSize = fc.RoomSize
		}
		if !set["signal-grace"] && fc.SignalGrace != 0 {
			o.signalGrace = time.Duration(fc.SignalGrace)
		}
	}
	if set["ice-servers"] {
		o.iceServers = iceServersOf(splitList(iceServers))
	}
	o.allowedOrigins = splitList(origins)
	o.publicURLs = splitList(publicURLs)
	o.volatile = splitList(volatile)
	o.presence = splitList(presence)
	rules, err := parseHistory(splitList(history))
	if err != nil {
		return o, err
	}
	o.history = rules
	if set["join"] || join != "" {
		o.join = splitList(join)
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var errs []error
	if o.listen == "" && o.http == "" {
		errs = append(errs, errors.New("--listen and --http are both empty: nothing to serve"))
	}
	for name, addr := range map[string]string{"--listen": o.listen, "--http": o.http} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	if (o.cert == "") != (o.key == "") {
		errs = append(errs, errors.New("--cert and --key go together"))
	}
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	if o.maxFrameSize < 0 || o.maxFrameSize > 16<<20 {
		errs = append(errs, fmt.Errorf("max_frame_size %d: want 0 (default) to 16 MiB", o.maxFrameSize))
	}
	if o.meshBind == "" && (len(o.join) > 0 || o.meshTLS != "" || o.meshKey != "") {
		errs = append(errs, errors.New("--join, --mesh-tls and --mesh-key need --mesh-bind"))
	}
	if o.meshBind != "" {
		if _, _, err := net.SplitHostPort(o.meshBind); err != nil {
			errs = append(errs, fmt.Errorf("--mesh-bind %q: want host:port", o.meshBind))
		}
		if o.meshTLS == "" {
			errs = append(errs, errors.New("--mesh-bind needs --mesh-tls DIR (create it with `switchyard certs init`)"))
		}
	}
	if o.meshProfile != "lan" && o.meshProfile != "wan" {
		errs = append(errs, fmt.Errorf("--mesh-profile %q: want lan or wan", o.meshProfile))
	}
	if o.turnListen != "" {
		if _, _, err := net.SplitHostPort(o.turnListen); err != nil {
			errs = append(errs, fmt.Errorf("--turn-listen %q: want host:port", o.turnListen))
		}
	}
	if ip := net.ParseIP(o.turnRelayIP); o.turnRelayIP != "" && (ip == nil || ip.IsUnspecified()) {
		errs = append(errs, fmt.Errorf("--turn-relay-ip %q: want the IP address peers reach this node at", o.turnRelayIP))
	}
	if o.turnTTL <= 0 {
		errs = append(errs, errors.New("--turn-ttl must be positive"))
	}
	if o.replicas != 1 && o.replicas != 2 {
		errs = append(errs, fmt.Errorf("--replicas %d: must be 1 (no copy) or 2 (a copy at each channel's successor)", o.replicas))
	}
	if o.roomSize <= 0 {
		errs = append(errs, fmt.Errorf("--room-size %d: must be positive", o.roomSize))
	}
	if o.signalGrace < 0 {
		errs = append(errs, errors.New("--signal-grace must not be negative"))
	}
	if o.pingInterval < 0 || o.pongTimeout < 0 {
		errs = append(errs, errors.New("ping_interval and pong_timeout must not be negative"))
	}
	return errors.Join(errs...)
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

// parseHistory reads --history rules: CHANNELS=SIZE or CHANNELS=SIZE/TTL.
func parseHistory(items []string) ([]edge.HistoryRule, error) {
	var out []edge.HistoryRule
	for _, it := range items {
		pattern, spec, ok := strings.Cut(it, "=")
		if !ok || pattern == "" {
			return nil, fmt.Errorf("--history %q: want CHANNELS=SIZE/TTL, e.g. chat:*=100/5m", it)
		}
		sizeText, ttlText, hasTTL := strings.Cut(spec, "/")
		size, err := strconv.Atoi(sizeText)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("--history %q: size %q is not a count", it, sizeText)
		}
		r := edge.HistoryRule{Channels: pattern, Size: size}
		if hasTTL {
			if r.TTL, err = time.ParseDuration(ttlText); err != nil || r.TTL <= 0 {
				return nil, fmt.Errorf("--history %q: TTL %q is not a positive duration such as 5m", it, ttlText)
			}
		}
		out = append(out, r)
	}
	return out, nil
}
