package edge

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// connLimiter caps the HTTP connections of each client IP across the
// node's TCP listeners (Config.MaxHTTPConnsPerIP). A connection counts from
// Accept until it closes or net/http hands it to a WebSocket session
// (hijacks it).
type connLimiter struct {
	// immutable after newConnLimiter
	max int
	log *slog.Logger

	// guarded by mu
	mu      sync.Mutex
	perIP   map[netip.Addr]int
	refused int       // since lastLog
	lastLog time.Time // of the last refusal logged
}

func newConnLimiter(max int, log *slog.Logger) *connLimiter {
	return &connLimiter{max: max, log: log, perIP: make(map[netip.Addr]int)}
}

// acquire counts a connection from ip unless ip is at the cap.
func (l *connLimiter) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] >= l.max {
		return false
	}
	l.perIP[ip]++
	return true
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] <= 1 {
		delete(l.perIP, ip)
	} else {
		l.perIP[ip]--
	}
}

// count is how many connections from ip count now.
func (l *connLimiter) count(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

// logRefused logs refusals at Debug, at most once a second with the number
// refused since the last line, so that a flood does not flood the log.
func (l *connLimiter) logRefused(ip netip.Addr, ln net.Addr) {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if now.Sub(l.lastLog) < time.Second {
		l.mu.Unlock()
		return
	}
	refused := l.refused
	l.refused, l.lastLog = 0, now
	l.mu.Unlock()
	l.log.Debug("http connections over the per-IP cap refused", "ip", ip, "listener", ln, "cap", l.max, "refused", refused)
}

// listener wraps ln so that its connections count against the cap; with
// answer (plain HTTP), a connection over the cap is told 429 before it is
// closed. Wrap a TLS listener's TCP listener: its refusals are just closed.
func (l *connLimiter) listener(ln net.Listener, answer bool) net.Listener {
	return &limitListener{Listener: ln, lim: l, answer: answer}
}

type limitListener struct {
	net.Listener
	lim    *connLimiter
	answer bool
}

// refuseWriteTimeout bounds writing the 429 to a refused connection. A
// fresh socket's send buffer takes it at once; the deadline only keeps a
// broken one from holding up Accept.
const refuseWriteTimeout = 100 * time.Millisecond

// tooManyConns is the whole answer to a plain-HTTP connection over the cap.
var tooManyConns = func() []byte {
	body := `{"error":"too_many_connections","message":"too many HTTP connections from your address; close some or retry later"}` + "\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\n" +
		"Content-Type: application/json\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Connection: close\r\n" +
		"Retry-After: 1\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + body)
}()

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := remoteIP(c)
		if !ok {
			return c, nil // not an IP connection: not counted
		}
		if l.lim.acquire(ip) {
			return &countedConn{Conn: c, lim: l.lim, ip: ip}, nil
		}
		l.lim.logRefused(ip, l.Addr())
		if l.answer {
			_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
			_, _ = c.Write(tooManyConns)
		}
		_ = c.Close()
	}
}

func remoteIP(c net.Conn) (netip.Addr, bool) {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap(), true
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// countedConn is a connection that counts against its IP's cap until it
// is closed or hijacked, whichever comes first.
type countedConn struct {
	net.Conn
	lim  *connLimiter
	ip   netip.Addr
	once sync.Once
}

func (c *countedConn) release() { c.once.Do(func() { c.lim.release(c.ip) }) }

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// CloseWrite keeps net/http's half-close (it sends the FIN after an answer
// to a request whose body it did not read, then waits for the client).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn hands out the socket of a plain TCP connection, for the
// WebSocket sessions' non-blocking direct writes (protocols.DirectWire).
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// releaseHandedOff is the http.Server's ConnState hook: a hijacked
// connection (now a WebSocket session) stops counting, and so does a
// closed one (Close releases it too; the count drops once).
func releaseHandedOff(c net.Conn, s http.ConnState) {
	if s == http.StateHijacked || s == http.StateClosed {
		releaseHandedOver(c)
	}
}

// releaseHandedOver stops counting c, a connection that has become a
// WebSocket session (or closed), under any wrappers (TLS, the WebSocket
// front's replay).
func releaseHandedOver(c net.Conn) {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		cc.release()
	}
}
