//go:build !linux

package websocket

import (
	"bufio"
	"net/http"

	"github.com/switchyard/switchyard/protocols"
)

// run runs the session on the calling goroutine, blocked in its read
// loop: readiness-woken reads (poll_linux.go) are Linux-only.
func (s *Server) run(w *wire, _ *bufio.Reader, r *http.Request) {
	protocols.Serve(w, protocols.WebSocket, r, s.acc, s.session)
}
