package websocket

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// readBufferSize is each session's read buffer: gorilla reads frame
// headers and small messages through it; a payload larger than it is read
// straight into the message, so large publishes take no more system calls.
const readBufferSize = 1 << 10

// hijacker hands gorilla's Upgrader a read buffer of the session's own
// when it hijacks the connection: with ReadBufferSize zero gorilla reads
// through the hijacked bufio.Reader (if larger than 256 bytes), and this
// one is smaller than net/http's 4 KiB and known to the wire, which asks
// it whether bytes are buffered before it waits for readiness (polled
// reads).
type hijacker struct {
	http.ResponseWriter
	br *bufio.Reader // the session's read buffer; nil until Hijack
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("websocket: response does not implement http.Hijacker")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		// The client sent before the handshake was answered: gorilla
		// refuses that when it sees the bytes, so let it see them.
		return nc, brw, nil
	}
	h.br = bufio.NewReaderSize(nc, readBufferSize)
	return nc, bufio.NewReadWriter(h.br, brw.Writer), nil
}
