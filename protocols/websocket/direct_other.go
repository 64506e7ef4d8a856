//go:build !unix

package websocket

import "errors"

// writeNow is unix only: elsewhere setDirect finds a socket, but the
// session keeps its blocking writer (Direct reports false).
func (w *wire) writeNow(b []byte) ([]byte, error) {
	return b, errors.ErrUnsupported
}

const directWrites = false
