package mesh

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrInvalidConfig wraps every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("mesh: invalid config")

// Config configures a Cluster. The zero value of each optional field is
// documented beside it; New fills them in (withDefaults) and validates.
type Config struct {
	// Name is the node's unique name; required. It is the memberlist node
	// name and must be a DNS name (SAN) of the node's link certificate,
	// because peers dial with ServerName = Name.
	Name string
	// Region is the node's region; zero: "local".
	Region string
	// Bind is the memberlist bind address "host:port" (UDP and TCP); port 0
	// picks one. Required unless Transport is set.
	Bind string
	// Advertise is the memberlist address other nodes use, "host:port";
	// zero: the bound address.
	Advertise string
	// Join lists seed addresses (memberlist addresses, "host:port").
	Join []string
	// Key is the gossip encryption key: 16, 24 or 32 bytes (AES-128/192/256).
	// Zero: no encryption (tests only; New logs a warning).
	Key []byte
	// Profile is the memberlist timing preset of the cluster-wide pool:
	// "lan" (zero) or "wan". "lan" is a single-region cluster: one pool, LAN
	// timings. "wan" is a cluster that spans regions, and every node of it
	// must use "wan": the cluster-wide (WAN) pool runs WAN timings, and each
	// node also runs a LAN pool with LAN timings whose members are the nodes
	// of its own region, so that a same-region failure is detected at LAN
	// speed (see "Two pools" in doc.go and presets.go).
	Profile string
	// LANBind is the LAN pool's bind address "host:port" (UDP and TCP),
	// used only with Profile "wan"; port 0 picks one. Zero: Bind's host,
	// port 0. The bound (or LANAdvertise) address travels in the node's
	// metadata: same-region nodes must be able to reach it.
	LANBind string
	// LANAdvertise is the LAN pool address the other nodes of the region
	// use, "host:port"; zero: the bound address (with an unspecified host,
	// memberlist picks a private address of the machine).
	LANAdvertise string
	// LANTransport is the LAN pool's memberlist transport, for tests; zero:
	// memberlist's NetTransport on LANBind.
	LANTransport memberlist.Transport
	// Regions is reserved (maps region to a description); unused.
	Regions map[string]string
	// ForwardBind is the link listener "host:port"; port 0 picks one;
	// required. An unspecified host (0.0.0.0, ::) advertises the memberlist
	// address's host.
	ForwardBind string
	// TLS is the mutual-TLS config of the links (certs.MeshTLS); required.
	// It must carry the node certificate and the mesh CA as both RootCAs
	// and ClientCAs. Links dial with a Clone whose ServerName is the peer's
	// node name and accept only RequireAndVerifyClientCert.
	TLS *tls.Config
	// PublicURLs are advertised in metadata, e.g. {"wt": "https://...",
	// "ws": "wss://..."}. Metadata is capped at 512 bytes: New rejects
	// URLs that do not fit.
	PublicURLs map[string]string
	// RejoinInterval is how often seeds that are not members are joined
	// again (heals partitions); zero: 10 s.
	RejoinInterval time.Duration
	// LinkQueue is the per-peer outbound queue in messages; zero: 65536.
	// The queue is also capped at 64 MiB of payload. On overflow the link
	// is dropped and re-dialled (logged and counted); the caller never
	// blocks.
	LinkQueue int
	// RequestTimeout bounds Publish and registration round trips; zero: 5 s.
	RequestTimeout time.Duration
	// Transport is the memberlist transport of the cluster-wide pool, for
	// tests (fault injection, delay); zero: memberlist's NetTransport on
	// Bind.
	Transport memberlist.Transport
	// Logger receives the mesh's logs and memberlist's (at debug level,
	// errors at warn); zero: slog.Default().
	Logger *slog.Logger
}

const (
	defaultRegion         = "local"
	defaultRejoinInterval = 10 * time.Second
	defaultLinkQueue      = 65536
	defaultRequestTimeout = 5 * time.Second
	maxLinkQueueBytes     = 64 << 20
	maxNameLen            = 253 // a DNS name
)

// withDefaults returns cfg with zero values replaced by their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileLAN
	}
	if cfg.Profile == ProfileWAN && cfg.LANBind == "" && cfg.LANTransport == nil && cfg.Bind != "" {
		if host, _, err := net.SplitHostPort(cfg.Bind); err == nil {
			cfg.LANBind = net.JoinHostPort(host, "0")
		}
	}
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = defaultRejoinInterval
	}
	if cfg.LinkQueue == 0 {
		cfg.LinkQueue = defaultLinkQueue
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// validate checks a Config that went through withDefaults.
func (cfg *Config) validate() error {
	switch {
	case cfg.Name == "":
		return invalid("Name is required")
	case len(cfg.Name) > maxNameLen || strings.ContainsAny(cfg.Name, " \t\r\n\x00/"):
		return invalid("Name %q must be a DNS name of at most %d bytes", cfg.Name, maxNameLen)
	case len(cfg.Region) > 64:
		return invalid("Region %q is longer than 64 bytes", cfg.Region)
	}
	if cfg.Transport == nil {
		if cfg.Bind == "" {
			return invalid("Bind is required (or a Transport)")
		}
		if _, _, err := splitHostPort(cfg.Bind); err != nil {
			return invalid("Bind %q: %v", cfg.Bind, err)
		}
	}
	if cfg.Advertise != "" {
		if _, _, err := splitHostPort(cfg.Advertise); err != nil {
			return invalid("Advertise %q: %v", cfg.Advertise, err)
		}
	}
	for _, s := range cfg.Join {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return invalid("Join seed %q: %v", s, err)
		}
	}
	switch len(cfg.Key) {
	case 0, 16, 24, 32:
	default:
		return invalid("Key must be 16, 24 or 32 bytes, not %d", len(cfg.Key))
	}
	if cfg.Profile != ProfileLAN && cfg.Profile != ProfileWAN {
		return invalid("Profile %q: want %q or %q", cfg.Profile, ProfileLAN, ProfileWAN)
	}
	if cfg.runsLAN() {
		if cfg.LANTransport == nil {
			if cfg.LANBind == "" {
				return invalid("LANBind is required with Profile %q and a Transport (or a LANTransport)", ProfileWAN)
			}
			if _, _, err := splitHostPort(cfg.LANBind); err != nil {
				return invalid("LANBind %q: %v", cfg.LANBind, err)
			}
		}
		if cfg.LANAdvertise != "" {
			if _, _, err := splitHostPort(cfg.LANAdvertise); err != nil {
				return invalid("LANAdvertise %q: %v", cfg.LANAdvertise, err)
			}
		}
	}
	if cfg.ForwardBind == "" {
		return invalid("ForwardBind is required")
	}
	if _, _, err := splitHostPort(cfg.ForwardBind); err != nil {
		return invalid("ForwardBind %q: %v", cfg.ForwardBind, err)
	}
	if cfg.TLS == nil {
		return invalid("TLS is required (mutual TLS for links, see certs.MeshTLS)")
	}
	if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetClientCertificate == nil {
		return invalid("TLS has no node certificate")
	}
	if cfg.TLS.RootCAs == nil || cfg.TLS.ClientCAs == nil {
		return invalid("TLS must set RootCAs and ClientCAs to the mesh CA")
	}
	if cfg.RejoinInterval < 0 || cfg.RequestTimeout < 0 || cfg.LinkQueue < 0 {
		return invalid("RejoinInterval, RequestTimeout and LinkQueue must not be negative")
	}
	// The forward and datagram addresses are known only once their sockets
	// are bound: check the metadata size with the longest addresses they
	// can be.
	const longestAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
	probe := nodeMeta{
		Region:   cfg.Region,
		Forward:  longestAddr,
		Datagram: longestAddr,
		URLs:     cfg.PublicURLs,
		Drain:    true,
	}
	if cfg.runsLAN() {
		probe.LAN = longestAddr
	}
	if n := len(probe.encode()); n > memberlist.MetaMaxSize {
		return invalid("node metadata is %d bytes, memberlist allows %d: shorten PublicURLs or Region", n, memberlist.MetaMaxSize)
	}
	return nil
}

// runsLAN reports whether the node runs a LAN pool besides the
// cluster-wide one: with Profile "wan" (a cluster that spans regions).
func (cfg *Config) runsLAN() bool { return cfg.Profile == ProfileWAN }

// splitHostPort parses "host:port" with a numeric port.
func splitHostPort(s string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
