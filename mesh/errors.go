package mesh

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed reports a call on a Cluster that was shut down.
	ErrClosed = errors.New("mesh: cluster is shut down")
	// ErrStarted reports a second Start.
	ErrStarted = errors.New("mesh: cluster already started")
	// ErrTimeout reports a request the owner did not answer within
	// Config.RequestTimeout.
	ErrTimeout = errors.New("mesh: request timed out")
	// ErrPeerGone reports a request to a node that left or died.
	ErrPeerGone = errors.New("mesh: peer left the cluster")
	// ErrLinkReset reports a request whose link was dropped (queue overflow
	// or write error) before the answer came.
	ErrLinkReset = errors.New("mesh: link to peer was reset")
	// ErrNoLink reports a request to a node the cluster has no link to.
	ErrNoLink = errors.New("mesh: no link to peer")
)

// RemoteError is the error the owner's Local.Sequence returned for a
// publish request from this node.
type RemoteError struct {
	Node string // the owner
	Msg  string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("mesh: owner %s: %s", e.Node, e.Msg) }
