//go:build !linux

package websocket

import (
	"bufio"
	"net/http"

	"github.com/switchyard/switchyard/protocols"
)

// serve runs the session on a goroutine of its own, blocked in its read
// loop: readiness-woken reads (poll_linux.go) are Linux-only.
func (s *Server) serve(w *wire, _ *bufio.Reader, r *http.Request) {
	go protocols.Serve(w, protocols.WebSocket, r, s.acc, s.session)
}
