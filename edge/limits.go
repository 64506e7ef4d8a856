package edge

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/protocols"
)

// Limits caps what one client, one user or everyone together may take
// from a node. Every limit is off at zero (the binary, cmd/switchyard,
// turns the connect rate on by default).
type Limits struct {
	// ConnectRate is how many new sessions a node admits per second, and
	// ConnectBurst how many at once (zero: ConnectRate): above them a
	// session is closed with 3006 (try later) and a reconnect_after_ms
	// that gives each refused client its own slot at the connect rate,
	// so that a reconnect storm comes back spread out.
	ConnectRate  float64
	ConnectBurst int
	// SessionsPerIP caps the open sessions of one client IP (3006 with a
	// retry-after of 5–10 s above it). Behind a proxy all clients share
	// its IP.
	SessionsPerIP int
	// SessionsPerUser caps the open sessions of one authenticated user
	// (a token's sub), as SessionsPerIP.
	SessionsPerUser int
	// PublishRate and PublishBurst (zero: twice the rate) limit one
	// session's publishes and datagrams per second: above them a publish
	// gets error 111 (rate limited) and a datagram is dropped (told once
	// a second); the session lives on.
	PublishRate  float64
	PublishBurst int
	// UserPublishRate and UserPublishBurst limit all the sessions of one
	// authenticated user together, as PublishRate.
	UserPublishRate  float64
	UserPublishBurst int
	// ChannelPublishRate and ChannelPublishBurst limit the publishes of
	// one channel that this node takes in (from its sessions and its API),
	// as PublishRate: a cluster of N nodes lets up to N times through.
	ChannelPublishRate  float64
	ChannelPublishBurst int
}

func (l Limits) withDefaults() Limits {
	if l.ConnectBurst <= 0 {
		l.ConnectBurst = max(int(l.ConnectRate), 1)
	}
	if l.PublishBurst <= 0 {
		l.PublishBurst = max(int(2*l.PublishRate), 1)
	}
	if l.UserPublishBurst <= 0 {
		l.UserPublishBurst = max(int(2*l.UserPublishRate), 1)
	}
	if l.ChannelPublishBurst <= 0 {
		l.ChannelPublishBurst = max(int(2*l.ChannelPublishRate), 1)
	}
	return l
}

// limiter enforces Limits for a node.
type limiter struct {
	cfg     Limits
	connect *rate.Limiter // nil: no connect rate

	mu      sync.Mutex
	retryAt time.Time                // the next slot given to a refused session
	perIP   map[string]int           // open sessions by client IP
	perUser map[string]*userCounter  // open sessions by user
	perChan map[string]*rate.Limiter // publish rates by channel (ChannelPublishRate)
}

type userCounter struct {
	sessions int
	publish  *rate.Limiter // nil: no user publish rate
}

func newLimiter(cfg Limits) *limiter {
	l := &limiter{cfg: cfg, perIP: make(map[string]int), perUser: make(map[string]*userCounter), perChan: make(map[string]*rate.Limiter)}
	if cfg.ConnectRate > 0 {
		l.connect = rate.NewLimiter(rate.Limit(cfg.ConnectRate), max(cfg.ConnectBurst, 1))
	}
	return l
}

// maxRetryAfter bounds the wait told to a refused session.
const maxRetryAfter = time.Minute

// admit takes a slot for a new session from ip. A refusal is a 3006
// whose ReconnectAfter gives each refused session its own slot at the
// connect rate (with jitter), so that a storm comes back spread out.
func (l *limiter) admit(ip string) *protocols.CloseError {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if max := l.cfg.SessionsPerIP; max > 0 && l.perIP[ip] >= max {
		return tryLater(fmt.Sprintf("too many sessions from %s (limit %d)", ip, max), 5*time.Second+jitter(5*time.Second))
	}
	if l.connect != nil && !l.connect.AllowN(now, 1) {
		slot := time.Duration(float64(time.Second) / l.cfg.ConnectRate)
		if l.retryAt.Before(now) {
			l.retryAt = now
		}
		l.retryAt = l.retryAt.Add(slot)
		wait := min(l.retryAt.Sub(now), maxRetryAfter)
		return tryLater("too many new sessions: try again later", wait+jitter(max(slot, 50*time.Millisecond)))
	}
	l.perIP[ip]++
	return nil
}

// release gives back ip's session slot.
func (l *limiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.perIP[ip]; n > 1 {
		l.perIP[ip] = n - 1
	} else {
		delete(l.perIP, ip)
	}
}

// addUser counts a session of user; false when the user is at its cap.
func (l *limiter) addUser(user string) (*userCounter, *protocols.CloseError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.perUser[user]
	if u == nil {
		u = &userCounter{}
		if l.cfg.UserPublishRate > 0 {
			u.publish = rate.NewLimiter(rate.Limit(l.cfg.UserPublishRate), max(l.cfg.UserPublishBurst, 1))
		}
		l.perUser[user] = u
	}
	if max := l.cfg.SessionsPerUser; max > 0 && u.sessions >= max {
		if u.sessions == 0 {
			delete(l.perUser, user)
		}
		return nil, tryLater(fmt.Sprintf("too many sessions for user %.64q (limit %d)", user, max), 5*time.Second+jitter(5*time.Second))
	}
	u.sessions++
	return u, nil
}

// dropUser uncounts a session of user.
func (l *limiter) dropUser(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.perUser[user]; u != nil {
		if u.sessions--; u.sessions <= 0 {
			delete(l.perUser, user)
		}
	}
}

// maxChannelLimiters bounds the channels whose publish rates are kept;
// past it, those whose buckets are full again (idle) are dropped.
const maxChannelLimiters = 10000

// channelAllows takes a publish from channel's rate; false when spent.
func (l *limiter) channelAllows(channel string) bool {
	if l.cfg.ChannelPublishRate <= 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	lim := l.perChan[channel]
	if lim == nil {
		if len(l.perChan) >= maxChannelLimiters {
			for name, x := range l.perChan {
				if x.TokensAt(now) >= float64(x.Burst()) {
					delete(l.perChan, name)
				}
			}
		}
		lim = rate.NewLimiter(rate.Limit(l.cfg.ChannelPublishRate), l.cfg.ChannelPublishBurst)
		l.perChan[channel] = lim
	}
	l.mu.Unlock()
	return lim.AllowN(now, 1)
}

// publishLimiter is a session's publish rate (nil: none).
func (l *limiter) publishLimiter() *rate.Limiter {
	if l.cfg.PublishRate <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(l.cfg.PublishRate), max(l.cfg.PublishBurst, 1))
}

func tryLater(reason string, after time.Duration) *protocols.CloseError {
	return &protocols.CloseError{Code: protocols.CodeTryLater, Reason: reason, ReconnectAfter: after}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// clientIP is the address a request came from, without its port.
func clientIP(r *http.Request) string {
	if r == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
