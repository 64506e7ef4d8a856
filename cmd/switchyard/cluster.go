package main

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard/switchyard/certs"
	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/protocols"
)

// localProxy hands the mesh's calls to the node, which is built after the
// cluster (the node needs the cluster, the cluster needs the node).
type localProxy struct{ node *edge.Node }

func (l *localProxy) Sequence(ch, key string, data []byte) (string, uint64, bool, error) {
	return l.node.Sequence(ch, key, data)
}
func (l *localProxy) Deliver(ch, epoch string, offset uint64, frame []byte) {
	l.node.Deliver(ch, epoch, offset, frame)
}
func (l *localProxy) Hold(ch string, fn func(string, uint64, []protocols.Publication)) {
	l.node.Hold(ch, fn)
}
func (l *localProxy) Registered(ch, epoch string, offset uint64, history []protocols.Publication) {
	l.node.Registered(ch, epoch, offset, history)
}
func (l *localProxy) Channels() []string { return l.node.Channels() }

// The mesh.Keeper methods: replication.

func (l *localProxy) SequenceAsync(ch, key string, data []byte, done func(string, uint64, bool, error)) {
	l.node.SequenceAsync(ch, key, data, done)
}
func (l *localProxy) HoldFor(ch, epoch string, offset uint64, fn func(string, uint64, []protocols.Publication)) {
	l.node.HoldFor(ch, epoch, offset, fn)
}
func (l *localProxy) Position(ch string) (string, uint64, bool) { return l.node.Position(ch) }
func (l *localProxy) Replicate(from, ch, epoch string, offset uint64, key string, frame []byte) (string, uint64, bool) {
	return l.node.Replicate(from, ch, epoch, offset, key, frame)
}
func (l *localProxy) Seed(from, ch string, st protocols.ChannelState, handed bool) {
	l.node.Seed(from, ch, st, handed)
}
func (l *localProxy) Forget(from, ch string) { l.node.Forget(from, ch) }
func (l *localProxy) ReplicaAcked(from, ch, epoch string, offset uint64, ok bool) {
	l.node.ReplicaAcked(from, ch, epoch, offset, ok)
}
func (l *localProxy) HandOff(ch, to string) (protocols.ChannelState, bool) {
	return l.node.HandOff(ch, to)
}
func (l *localProxy) MembersChanged(reset []string) { l.node.MembersChanged(reset) }

// The mesh.PresenceKeeper methods.

func (l *localProxy) PresenceUpdate(from, ch string, joined, left []*protocols.ClientInfo, sync bool) {
	l.node.PresenceUpdate(from, ch, joined, left, sync)
}
func (l *localProxy) PresenceEvent(ch string, joined, left []*protocols.ClientInfo) {
	l.node.PresenceEvent(ch, joined, left)
}
func (l *localProxy) Presence(ch string, limit int) (*protocols.PresenceReply, error) {
	return l.node.Presence(ch, limit)
}

var (
	_ mesh.Local           = (*localProxy)(nil)
	_ mesh.Keeper          = (*localProxy)(nil)
	_ edge.Replicator      = (*mesh.Cluster)(nil)
	_ mesh.PresenceKeeper  = (*localProxy)(nil)
	_ edge.PresenceCarrier = (*mesh.Cluster)(nil)
)

// newCluster builds the mesh from the options; nil when --mesh-bind is
// empty (a node on its own).
func newCluster(o options, logger *slog.Logger) (*mesh.Cluster, *localProxy, error) {
	if o.meshBind == "" {
		return nil, nil, nil
	}
	cf, kf := meshNodeFiles(o.meshTLS, o.node)
	tlsConf, err := certs.LoadMeshTLS(filepath.Join(o.meshTLS, meshCAFile), cf, kf)
	if err != nil {
		return nil, nil, err
	}
	key, err := gossipKey(o.meshKey)
	if err != nil {
		return nil, nil, err
	}
	forward := o.meshForward
	if forward == "" {
		host, _, _ := net.SplitHostPort(o.meshBind)
		forward = net.JoinHostPort(host, "0")
	}
	local := &localProxy{}
	c, err := mesh.New(mesh.Config{
		Name:        o.node,
		Region:      o.region,
		Bind:        o.meshBind,
		Join:        o.join,
		Key:         key,
		Profile:     o.meshProfile,
		LANBind:     o.meshLANBind,
		ForwardBind: forward,
		TLS:         tlsConf,
		Logger:      logger,
	}, local)
	if err != nil {
		return nil, nil, err
	}
	return c, local, nil
}

// gossipKey reads --mesh-key: base64 of 16, 24 or 32 bytes, or @FILE
// holding that.
func gossipKey(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(v, "@") {
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return nil, fmt.Errorf("--mesh-key: %w", err)
		}
		v = string(b)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("--mesh-key: not base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("--mesh-key: %d bytes, want 16, 24 or 32", len(key))
}

// nodesOf adapts the mesh's member list for /api/nodes.
func nodesOf(c *mesh.Cluster) func() []edge.NodeInfo {
	return func() []edge.NodeInfo {
		var out []edge.NodeInfo
		for _, m := range c.Members() {
			out = append(out, edge.NodeInfo{Name: m.Name, Region: m.Region, URLs: m.PublicURLs, Draining: m.Draining, Self: m.Name == c.Name()})
		}
		return out
	}
}
