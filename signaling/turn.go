package signaling

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// TURNConfig configures the embedded TURN server (off unless started).
type TURNConfig struct {
	// Listen is the UDP address for TURN clients, "host:port"; port 0
	// picks one.
	Listen string
	// Secret checks the TURN REST credentials that Server hands out
	// (Config.TURNSecret). Required.
	Secret string
	// Realm; zero: "switchyard".
	Realm string
	// RelayIP is the address relayed candidates carry, the one peers can
	// reach. Zero: Listen's IP, which must then not be unspecified.
	RelayIP net.IP
}

// TURNServer is a running embedded TURN server (pion/turn).
type TURNServer struct {
	srv *turn.Server
	pc  net.PacketConn
	ip  net.IP
}

// StartTURN starts a TURN server that accepts the credentials of
// TURNCredentials made with cfg.Secret.
func StartTURN(cfg TURNConfig) (*TURNServer, error) {
	if cfg.Secret == "" {
		return nil, errors.New("signaling: TURN: a secret is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "switchyard"
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("signaling: TURN listen %q: %w", cfg.Listen, err)
	}
	relayIP := cfg.RelayIP
	if relayIP == nil {
		relayIP = net.ParseIP(host)
		if relayIP == nil || relayIP.IsUnspecified() {
			return nil, fmt.Errorf("signaling: TURN listen %q has no specific IP: give the IP peers reach this node at (--turn-relay-ip)", cfg.Listen)
		}
	}
	if relayIP.IsUnspecified() {
		return nil, fmt.Errorf("signaling: TURN relay IP %s: give the IP peers reach this node at, not an unspecified one", relayIP)
	}
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("signaling: TURN: %w", err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, lf.NewLogger("turn")),
		LoggerFactory: lf,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: relayBind(host, relayIP)},
		}},
	})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("signaling: TURN: %w", err)
	}
	return &TURNServer{srv: srv, pc: pc, ip: relayIP}, nil
}

// relayBind is where relay sockets listen: the TURN listener's host when
// it is specific, else every address.
func relayBind(host string, relayIP net.IP) string {
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return host
	}
	if relayIP.To4() != nil {
		return "0.0.0.0"
	}
	return "::"
}

// Addr is the UDP address the server listens on.
func (t *TURNServer) Addr() net.Addr { return t.pc.LocalAddr() }

// URL is the server's entry for iceServers: turn:IP:PORT?transport=udp.
func (t *TURNServer) URL() string {
	port := t.pc.LocalAddr().(*net.UDPAddr).Port
	return "turn:" + net.JoinHostPort(t.ip.String(), strconv.Itoa(port)) + "?transport=udp"
}

// Close stops the server and its relays.
func (t *TURNServer) Close() error { return t.srv.Close() }
