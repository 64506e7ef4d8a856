package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// ICEServer is one entry of RTCConfiguration.iceServers, as clients get it
// in "joined".
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Cluster is what signaling needs from the mesh (mesh.Cluster satisfies
// it). A nil Config.Cluster means a node on its own.
type Cluster interface {
	// Name is this node's name.
	Name() string
	// Owner is the live node that owns key (rendezvous hashing).
	Owner(key string) string
	// Live reports whether node is a live member.
	Live(node string) bool
	// SendSignal queues msg for node's signaling (its Server.HandleSignal),
	// on the ordered link to it, without blocking.
	SendSignal(node string, msg []byte) error
}

// Config configures a Server. Zero values take the defaults given.
type Config struct {
	// Cluster spans rooms over the mesh; nil: this node alone. The mesh
	// must call HandleSignal and MembersChanged (mesh.Cluster.SetSignals).
	Cluster Cluster
	// CheckOrigin allows a browser page's Origin; nil: any. A refused page
	// is closed with 3503.
	CheckOrigin func(*http.Request) bool
	// Authorize checks a join's token for its room (the "signal"
	// capability of the node's tokens); an error closes the connection
	// with 3502 and its text as the reason. Nil: anyone may join any
	// room.
	Authorize func(ctx context.Context, token, room string) error
	// Logger; nil: slog.Default().
	Logger *slog.Logger

	// ICEServers are handed to every peer in "joined".
	ICEServers []ICEServer
	// TURNSecret, when set, gives every TURN server of ICEServers without a
	// Username time-limited credentials in the TURN REST style (username
	// "expiry:peer", credential base64(HMAC-SHA1(secret, username))), as
	// coturn's use-auth-secret and pion/turn check them.
	TURNSecret string
	// TURNTTL is how long those credentials are valid. Zero: 24 h.
	TURNTTL time.Duration

	// MaxRoomSize is the most peers a room holds, over the mesh. Zero: 50.
	MaxRoomSize int
	// Grace is how long a peer whose connection was lost stays in its room,
	// for a resume. Zero: 10 s; negative: none.
	Grace time.Duration
	// JoinTimeout is how long a new connection may take to send "join".
	// Zero: 10 s.
	JoinTimeout time.Duration
	// RequestTimeout bounds the wait for the room owner's answer to a join.
	// Zero: 5 s.
	RequestTimeout time.Duration
	// PingInterval is how often the server pings each connection. Zero:
	// 20 s.
	PingInterval time.Duration
	// IdleTimeout drops a connection that sent nothing, pongs included, for
	// this long. Zero: 60 s.
	IdleTimeout time.Duration

	// MaxMessageSize is the largest WebSocket message handled; larger ones
	// get too_large, and ones over 1 MiB close the connection (1009).
	// Zero: 64 KiB.
	MaxMessageSize int
	// MaxSDPSize bounds "sdp". Zero: 32 KiB.
	MaxSDPSize int
	// MaxCandidateSize bounds "candidate" as JSON. Zero: 2 KiB.
	MaxCandidateSize int
	// MaxDataSize bounds a custom message's "data" as JSON. Zero: 16 KiB.
	MaxDataSize int
	// Rate and Burst limit the messages of one connection (a token bucket).
	// Zero: 50 per second, bursts of 200.
	Rate  float64
	Burst int
	// QueueLen is how many messages may wait for a connection's writer
	// before it is closed as a slow consumer (3001). The queue takes memory
	// only while it holds messages. Zero: 1024 (several senders' bursts).
	QueueLen int
}

// hardReadLimit is the largest WebSocket message read at all.
const hardReadLimit = 1 << 20

func (cfg Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.TURNTTL, 24*time.Hour)
	def(&cfg.Grace, 10*time.Second)
	def(&cfg.JoinTimeout, 10*time.Second)
	def(&cfg.RequestTimeout, 5*time.Second)
	def(&cfg.PingInterval, 20*time.Second)
	def(&cfg.IdleTimeout, 60*time.Second)
	defInt(&cfg.MaxRoomSize, 50)
	defInt(&cfg.MaxMessageSize, 64<<10)
	defInt(&cfg.MaxSDPSize, 32<<10)
	defInt(&cfg.MaxCandidateSize, 2<<10)
	defInt(&cfg.MaxDataSize, 16<<10)
	defInt(&cfg.Burst, 200)
	defInt(&cfg.QueueLen, 1024)
	if cfg.Rate == 0 {
		cfg.Rate = 50
	}
	if cfg.Grace < 0 {
		cfg.Grace = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

func (cfg *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("signaling: "+format, args...)) }
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TURNTTL", cfg.TURNTTL}, {"JoinTimeout", cfg.JoinTimeout}, {"RequestTimeout", cfg.RequestTimeout},
		{"PingInterval", cfg.PingInterval}, {"IdleTimeout", cfg.IdleTimeout}} {
		if d.v < 0 {
			bad("%s is negative (%v)", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"MaxRoomSize", cfg.MaxRoomSize}, {"MaxMessageSize", cfg.MaxMessageSize}, {"MaxSDPSize", cfg.MaxSDPSize},
		{"MaxCandidateSize", cfg.MaxCandidateSize}, {"MaxDataSize", cfg.MaxDataSize}, {"Burst", cfg.Burst},
		{"QueueLen", cfg.QueueLen}} {
		if n.v < 0 {
			bad("%s is negative (%d)", n.name, n.v)
		}
	}
	if cfg.MaxMessageSize > hardReadLimit {
		bad("MaxMessageSize %d is over %d", cfg.MaxMessageSize, hardReadLimit)
	}
	if cfg.Rate < 0 {
		bad("Rate is negative (%v)", cfg.Rate)
	}
	if cfg.IdleTimeout <= cfg.PingInterval {
		bad("IdleTimeout (%v) must exceed PingInterval (%v)", cfg.IdleTimeout, cfg.PingInterval)
	}
	for i, s := range cfg.ICEServers {
		if len(s.URLs) == 0 {
			bad("ICEServers[%d] has no URL", i)
		}
		for _, u := range s.URLs {
			if !validICEURL(u) {
				bad("ICEServers[%d]: %q is not a stun:, stuns:, turn: or turns: URL", i, u)
			}
		}
		if isTURN(s.URLs) && (s.Username == "" || s.Credential == "") && cfg.TURNSecret == "" {
			// Browsers refuse a TURN server without credentials: every
			// RTCPeerConnection made with the list would fail.
			bad("ICEServers[%d] (%s): a TURN server needs credentials: a TURN secret (--turn-secret) or a username and credential", i, s.URLs[0])
		}
	}
	return errors.Join(errs...)
}

func validICEURL(u string) bool {
	for _, p := range []string{"stun:", "stuns:", "turn:", "turns:"} {
		if strings.HasPrefix(u, p) && len(u) > len(p) {
			return true
		}
	}
	return false
}

// alone is the Cluster of a node on its own.
type alone struct{}

const aloneName = "self"

func (alone) Name() string          { return aloneName }
func (alone) Owner(string) string   { return aloneName }
func (alone) Live(node string) bool { return node == aloneName }
func (alone) SendSignal(string, []byte) error {
	return errors.New("signaling: no other node")
}
