package mesh

import (
	"encoding/json"
	"fmt"
	"maps"
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

// nodeMeta is the memberlist metadata of a node: compact JSON, at most
// memberlist.MetaMaxSize (512) bytes, checked by Config.validate.
type nodeMeta struct {
	Version  int               `json:"v"`
	Region   string            `json:"r,omitempty"`
	Forward  string            `json:"f,omitempty"`
	LAN      string            `json:"l,omitempty"` // LAN pool address
	Datagram string            `json:"g,omitempty"` // QUIC datagram address
	URLs     map[string]string `json:"u,omitempty"`
	Drain    bool              `json:"d,omitempty"`
}

const metaVersion = 1

func (m nodeMeta) encode() []byte {
	m.Version = metaVersion
	b, err := json.Marshal(m)
	if err != nil { // maps of strings always marshal
		panic(fmt.Sprintf("mesh: encode metadata: %v", err))
	}
	return b
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, fmt.Errorf("mesh: empty node metadata")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nodeMeta{}, fmt.Errorf("mesh: decode node metadata: %w", err)
	}
	return m, nil
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
