package mesh

import (
	"context"
	"log/slog"
	"strings"
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
