package signaling

import (
	"slices"
	"sort"

	"github.com/switchyard/switchyard/signaling/internal/meshpb"
)

// The owner's side of its rooms: the membership of each room it owns.
// Every function here runs with Server.mu held.

type ownedRoom struct {
	peers map[string]*ownedPeer
	seq   uint64
}

type ownedPeer struct {
	node string
	hash []byte
	seq  uint64
}

func (s *Server) ownedRoom(name string) *ownedRoom {
	or := s.owned[name]
	if or == nil {
		or = &ownedRoom{peers: make(map[string]*ownedPeer)}
		s.owned[name] = or
	}
	return or
}

// nodes lists the nodes with peers in the room, but not except.
func (or *ownedRoom) nodes(except string) []string {
	seen := map[string]bool{except: true}
	var out []string
	for _, p := range or.peers {
		if !seen[p.node] {
			seen[p.node] = true
			out = append(out, p.node)
		}
	}
	sort.Strings(out)
	return out
}

// list is the room's peers in join order, but not except.
func (or *ownedRoom) list(except string) []*meshpb.Peer {
	out := make([]*meshpb.Peer, 0, len(or.peers))
	for id, p := range or.peers {
		if id != except {
			out = append(out, &meshpb.Peer{Id: id, Node: p.node})
		}
	}
	sort.Slice(out, func(i, j int) bool { return or.peers[out[i].Id].seq < or.peers[out[j].Id].seq })
	return out
}

func (s *Server) announce(ob *outbox, room string, or *ownedRoom, kind meshpb.Event_Kind, peer, node, except string) {
	s.announceTo(ob, or.nodes(except), room, kind, peer, node)
}

func (s *Server) announceTo(ob *outbox, nodes []string, room string, kind meshpb.Event_Kind, peer, node string) {
	for _, n := range nodes {
		s.toNode(ob, n, &meshpb.Envelope{Kind: &meshpb.Envelope_Event{Event: &meshpb.Event{
			Room: room, Kind: kind, Peer: peer, Node: node,
		}}}, nil)
	}
}

// ownerJoin admits a peer of node from, or moves a resumed one to it.
func (s *Server) ownerJoin(ob *outbox, from string, j *meshpb.Join) {
	or := s.ownedRoom(j.Room)
	reply := &meshpb.JoinReply{Request: j.Request, Room: j.Room}
	if p := or.peers[j.ResumeId]; j.ResumeId != "" && p != nil && equalHash(p.hash, j.ResumeHash) {
		reply.Peer, reply.Resumed = j.ResumeId, true
		if old := p.node; old != from {
			p.node = from
			to := or.nodes(from)
			if !slices.Contains(to, old) {
				to = append(to, old) // it has no other peer here, but must let this one go
			}
			s.announceTo(ob, to, j.Room, meshpb.Event_MOVED, j.ResumeId, from)
		}
	} else {
		max := int(j.MaxRoomSize)
		if max <= 0 {
			max = s.cfg.MaxRoomSize
		}
		if len(or.peers) >= max || or.peers[j.NewId] != nil {
			reply.Error = errRoomFull
			if len(or.peers) == 0 {
				delete(s.owned, j.Room)
			}
			s.toNode(ob, from, &meshpb.Envelope{Kind: &meshpb.Envelope_JoinReply{JoinReply: reply}}, nil)
			return
		}
		or.seq++
		or.peers[j.NewId] = &ownedPeer{node: from, hash: j.NewHash, seq: or.seq}
		reply.Peer = j.NewId
		s.announce(ob, j.Room, or, meshpb.Event_JOINED, j.NewId, from, from)
	}
	reply.Peers = or.list(reply.Peer)
	s.toNode(ob, from, &meshpb.Envelope{Kind: &meshpb.Envelope_JoinReply{JoinReply: reply}}, nil)
}

// ownerLeave removes a peer that left node from.
func (s *Server) ownerLeave(ob *outbox, from string, l *meshpb.Leave) {
	or := s.owned[l.Room]
	if or == nil {
		return
	}
	p := or.peers[l.Peer]
	if p == nil || p.node != from {
		return // moved to another node since
	}
	delete(or.peers, l.Peer)
	s.announce(ob, l.Room, or, meshpb.Event_LEFT, l.Peer, from, from)
	if len(or.peers) == 0 {
		delete(s.owned, l.Room)
	}
}

// ownerSync takes node from's peers of a room (after ownership moved, or a
// link reset): they are the room's peers on that node, no more, no less.
func (s *Server) ownerSync(ob *outbox, from string, sy *meshpb.Sync) {
	or := s.ownedRoom(sy.Room)
	listed := make(map[string]bool, len(sy.Peers))
	for _, p := range sy.Peers {
		listed[p.Id] = true
		cur := or.peers[p.Id]
		switch {
		case cur == nil:
			or.seq++
			or.peers[p.Id] = &ownedPeer{node: from, hash: p.SecretHash, seq: or.seq}
			s.announce(ob, sy.Room, or, meshpb.Event_JOINED, p.Id, from, from)
		case cur.node != from && !s.cl.Live(cur.node):
			cur.node = from
		}
	}
	for id, p := range or.peers {
		if p.node == from && !listed[id] {
			delete(or.peers, id)
			s.announce(ob, sy.Room, or, meshpb.Event_LEFT, id, from, from)
		}
	}
	s.toNode(ob, from, &meshpb.Envelope{Kind: &meshpb.Envelope_SyncReply{SyncReply: &meshpb.SyncReply{
		Room: sy.Room, Peers: or.list(""),
	}}}, nil)
	if len(or.peers) == 0 {
		delete(s.owned, sy.Room)
	}
}

// ownersChanged drops the rooms this node no longer owns, and the peers of
// nodes that are gone from the ones it still does.
func (s *Server) ownersChanged(ob *outbox) {
	for name, or := range s.owned {
		if s.cl.Owner(roomKey(name)) != s.self {
			delete(s.owned, name)
			continue
		}
		for id, p := range or.peers {
			if p.node != s.self && !s.cl.Live(p.node) {
				delete(or.peers, id)
			}
		}
		if len(or.peers) == 0 {
			delete(s.owned, name)
		}
	}
}
