package signaling

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes of signaling connections (the numbers of protocols' codes).
const (
	closeNormal       = websocket.CloseNormalClosure
	closeGoingAway    = 3000 // the node shuts down
	closeSlowConsumer = 3001
	closeInternal     = 3003 // the room's owner did not answer
	closeJoinTimeout  = 3004
	closeBadMessage   = 3500
	closeUnauthorized = 3502
	closeOrigin       = 3503
	closePolicy       = 3505 // room full, flood
	closeReplaced     = 4500 // the peer resumed on another connection (terminal)
)

// connState is where a connection is in its life; guarded by Server.mu.
type connState int

const (
	stateNew     connState = iota // no join yet
	stateJoining                  // join sent to the owner
	stateJoined
	stateClosed // the read loop ended (or the connection was replaced)
)

// conn is one WebSocket connection: one peer in one room.
type conn struct {
	s  *Server
	ws *websocket.Conn

	qmu   sync.Mutex
	queue [][]byte      // guarded by qmu: messages for the writer, at most Config.QueueLen
	wake  chan struct{} // cap 1: the queue has something
	quit  chan struct{} // closed by shutdown

	closeOnce   sync.Once
	closeCode   int    // set once, before quit closes
	closeReason string // likewise

	// guarded by Server.mu
	state connState
	room  string
	peer  string

	// owned by the read loop
	tokens   float64
	last     time.Time
	refused  int       // messages refused in a row for the rate
	lastWarn time.Time // last rate_limited error sent
}

// send queues a message for the client without blocking; a client that
// lets Config.QueueLen messages wait is closed as a slow consumer. The
// queue takes no memory while empty (most peers are idle most of the time).
func (c *conn) send(b []byte) {
	select {
	case <-c.quit:
		return
	default:
	}
	c.qmu.Lock()
	full := len(c.queue) >= c.s.cfg.QueueLen
	if !full {
		c.queue = append(c.queue, b)
	}
	c.qmu.Unlock()
	if full {
		c.shutdown(closeSlowConsumer, "slow consumer: too many messages waiting")
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (c *conn) take() [][]byte {
	c.qmu.Lock()
	q := c.queue
	c.queue = nil
	c.qmu.Unlock()
	return q
}

// shutdown makes the writer send what is queued, then a close frame with
// code and reason, and close the connection. Idempotent; the first call's
// code wins.
func (c *conn) shutdown(code int, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		close(c.quit)
	})
}

// writeLoop is the connection's one writer: messages, pings and the close.
func (c *conn) writeLoop() {
	ping := time.NewTicker(c.s.cfg.PingInterval)
	defer ping.Stop()
	const writeWait = 10 * time.Second
	write := func(b []byte) bool {
		_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		return c.ws.WriteMessage(websocket.TextMessage, b) == nil
	}
	for {
		select {
		case <-c.wake:
			for _, b := range c.take() {
				if !write(b) {
					c.shutdown(websocket.CloseAbnormalClosure, "write failed")
					c.ws.Close()
					return
				}
			}
		case <-ping.C:
			if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)) != nil {
				c.ws.Close()
				return
			}
		case <-c.quit:
			for _, b := range c.take() {
				if !write(b) {
					break
				}
			}
			if c.closeCode != websocket.CloseAbnormalClosure {
				msg := websocket.FormatCloseMessage(c.closeCode, trimReason(c.closeReason))
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
				// Give the client a moment to answer the close, so that it
				// sees the code, then cut the connection (the reader ends).
				_ = c.ws.SetReadDeadline(time.Now().Add(time.Second))
			} else {
				c.ws.Close()
			}
			return
		}
	}
}

// trimReason keeps a close reason within the 123 bytes a close frame has.
func trimReason(s string) string {
	if len(s) <= 120 {
		return s
	}
	return s[:117] + "..."
}

// allow takes a token from the connection's bucket.
func (c *conn) allow(now time.Time) bool {
	cfg := &c.s.cfg
	if c.last.IsZero() {
		c.tokens = float64(cfg.Burst)
	} else {
		c.tokens = min(float64(cfg.Burst), c.tokens+now.Sub(c.last).Seconds()*cfg.Rate)
	}
	c.last = now
	if c.tokens >= 1 {
		c.tokens--
		c.refused = 0
		return true
	}
	c.refused++
	return false
}

// readLoop reads the client's messages until the connection ends, then
// takes the peer out of its room (or keeps it for the grace period).
func (c *conn) readLoop() {
	cfg := &c.s.cfg
	c.ws.SetReadLimit(hardReadLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
	})
	lim := limits{sdp: cfg.MaxSDPSize, candidate: cfg.MaxCandidateSize, data: cfg.MaxDataSize}
	normal := false
	for {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				normal = ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.shutdown(websocket.CloseAbnormalClosure, "idle timeout")
			}
			break
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		now := time.Now()
		if !c.allow(now) {
			if c.refused >= floodLimit {
				c.fatal(errFlood, closePolicy, nil, "%d messages in a row over the rate limit", floodLimit)
				continue
			}
			if now.Sub(c.lastWarn) >= time.Second {
				c.lastWarn = now
				c.send(errorPayload(errRateLimited, "over the message rate: dropped", nil, ""))
			}
			continue
		}
		if typ != websocket.TextMessage {
			c.send(errorPayload(errBadMessage, "binary messages are not part of this protocol: send JSON text", nil, ""))
			continue
		}
		if len(b) > cfg.MaxMessageSize {
			c.send(errorPayload(errTooLarge, "message is over "+strconv.Itoa(cfg.MaxMessageSize)+" bytes", nil, ""))
			continue
		}
		m, perr := parse(b, lim)
		if perr != nil {
			if m.Type == typeJoin && perr.code == errBadMessage {
				c.fatal(perr.code, closeBadMessage, m.ID, "%s", perr.msg)
				continue
			}
			c.send(errorPayload(perr.code, perr.msg, m.ID, m.To))
			continue
		}
		c.s.handle(c, m)
	}
	select {
	case <-c.quit:
		// Closed by the server: for a fault of the client's, the peer leaves
		// at once; when the node shuts down or the connection was lost, it
		// may come back within the grace period.
		if c.closeCode != closeGoingAway && c.closeCode != websocket.CloseAbnormalClosure {
			normal = true
		}
	default:
	}
	c.s.disconnect(c, normal)
}

// floodLimit is how many messages in a row may be refused for the rate
// before the connection is closed.
const floodLimit = 500

// fatal sends an error and closes the connection with code.
func (c *conn) fatal(errCode string, code int, id []byte, format string, args ...any) {
	e := refuse(errCode, format, args...)
	c.send(errorPayload(e.code, e.msg, id, ""))
	c.shutdown(code, e.code+": "+e.msg)
}
