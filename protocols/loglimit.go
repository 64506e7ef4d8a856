package protocols

import (
	"sync"
	"time"
)

// LogLimiter lets a repeated log line through at most once per interval
// per key, so that a peer or client that keeps failing cannot flood the
// log. The zero value is ready to use; it is safe for concurrent use.
type LogLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// Allow reports whether the line keyed by key may be logged now, and if so
// records it.
func (r *LogLimiter) Allow(key string, every time.Duration) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	if t, ok := r.last[key]; ok && now.Sub(t) < every {
		return false
	}
	if len(r.last) > 4096 { // keys may include remote addresses: bound the map
		for k, t := range r.last {
			if now.Sub(t) > time.Minute {
				delete(r.last, k)
			}
		}
	}
	r.last[key] = now
	return true
}
