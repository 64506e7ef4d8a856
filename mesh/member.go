package mesh

import (
	"fmt"
	"maps"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
)

// Member is a live node of the cluster as its metadata describes it.
type Member struct {
	Name         string            // unique node name
	Region       string            // the node's region
	Addr         string            // memberlist address "host:port" (a seed)
	LANAddr      string            // LAN pool address "host:port"; "" if the node runs none
	ForwardAddr  string            // link listener "host:port"
	DatagramAddr string            // QUIC datagram socket "host:port"; "" if none
	PublicURLs   map[string]string // e.g. {"wt": "https://...", "ws": "wss://..."}
	Draining     bool              // the node is draining: it owns no channel while others can
}

// nodeMeta is the memberlist metadata of a node, encoded as the protobuf
// message NodeMeta (mesh/proto/gossip.proto): at most
// memberlist.MetaMaxSize (512) bytes, checked by Config.validate and
// SetPublicURLs.
type nodeMeta struct {
	Version  uint32 // the format of the encoding: metaVersion
	Region   string
	Forward  string
	LAN      string // LAN pool address
	Datagram string // QUIC datagram address
	URLs     map[string]string
	Drain    bool
}

// metaVersion is the format of NodeMeta (1 was the JSON that came before
// the schema); metadata of another format is malformed.
const metaVersion = 2

// encode marshals m deterministically (memberlist compares metadata to tell
// an update). A string that is not UTF-8 has its bad bytes replaced by
// U+FFFD (as JSON did), so encoding cannot fail.
func (m nodeMeta) encode() []byte {
	valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	urls := make(map[string]string, len(m.URLs))
	for k, v := range m.URLs {
		urls[valid(k)] = valid(v)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&wirepb.NodeMeta{
		Format:   metaVersion,
		Region:   valid(m.Region),
		Forward:  valid(m.Forward),
		Lan:      valid(m.LAN),
		Datagram: valid(m.Datagram),
		Urls:     urls,
		Draining: m.Drain,
	})
	if err != nil { // every string is UTF-8
		panic(fmt.Sprintf("mesh: encode metadata: %v", err))
	}
	return b
}

func decodeMeta(b []byte) (nodeMeta, error) {
	if len(b) == 0 {
		return nodeMeta{}, fmt.Errorf("mesh: empty node metadata")
	}
	var pm wirepb.NodeMeta
	if err := gossipUnmarshal.Unmarshal(b, &pm); err != nil {
		return nodeMeta{}, fmt.Errorf("mesh: decode node metadata: %w", err)
	}
	if pm.Format != metaVersion {
		return nodeMeta{}, fmt.Errorf("mesh: node metadata of format %d, want %d", pm.Format, metaVersion)
	}
	if len(pm.Urls) == 0 {
		pm.Urls = nil // a urls field of the wrong wire type leaves an empty map
	}
	return nodeMeta{
		Version:  pm.Format,
		Region:   pm.Region,
		Forward:  pm.Forward,
		LAN:      pm.Lan,
		Datagram: pm.Datagram,
		URLs:     pm.Urls,
		Drain:    pm.Draining,
	}, nil
}

// member builds the Member of a node named name at memberlist address addr.
func (m nodeMeta) member(name, addr string) Member {
	return Member{
		Name:         name,
		Region:       m.Region,
		Addr:         addr,
		LANAddr:      m.LAN,
		ForwardAddr:  m.Forward,
		DatagramAddr: m.Datagram,
		PublicURLs:   maps.Clone(m.URLs),
		Draining:     m.Drain,
	}
}
