package mesh

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// memberlistLog is the io.Writer behind memberlist's *log.Logger: each
// line goes to slog at debug level, except "[ERR]" lines (failed
// decryption, failed pushes) at warn.
type memberlistLog struct{ log *slog.Logger }

func (w *memberlistLog) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	for _, pre := range []string{"[DEBUG] ", "[INFO] ", "[WARN] ", "[ERR] "} {
		if rest, ok := strings.CutPrefix(s, pre); ok {
			if pre == "[ERR] " {
				level = slog.LevelWarn
			}
			s = rest
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	w.log.Log(context.Background(), level, s, "from", "memberlist")
	return len(p), nil
}

// rateLog lets a repeated log line through at most once per interval per
// key (links that keep failing must not flood the log).
type rateLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLog) allow(key string, every time.Duration) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	if t, ok := r.last[key]; ok && now.Sub(t) < every {
		return false
	}
	if len(r.last) > 4096 { // keys include remote addresses: bound the map
		for k, t := range r.last {
			if now.Sub(t) > time.Minute {
				delete(r.last, k)
			}
		}
	}
	r.last[key] = now
	return true
}
