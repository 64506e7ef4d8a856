package edge

import (
	"strings"
	"time"

	"github.com/switchyard/switchyard/protocols"
)

// HistoryRule keeps the latest publications of the channels it matches,
// for recovery (subscribe with a position) and the history API.
type HistoryRule struct {
	// Channels is a channel name, a prefix ending in "*" ("chat:*"), or
	// "*" for every channel. Volatile channels keep no history.
	Channels string
	// Size is how many publications are kept; zero or less: none.
	Size int
	// TTL is how long a publication is kept. Zero: 5 minutes.
	TTL time.Duration
}

// historyPolicy returns, for a channel, its history size and TTL (size 0:
// none), from the first rule that matches.
func historyPolicy(rules []HistoryRule) func(string) (int, time.Duration) {
	return func(name string) (int, time.Duration) {
		for _, r := range rules {
			if matchChannel(r.Channels, name) {
				ttl := r.TTL
				if ttl <= 0 {
					ttl = 5 * time.Minute
				}
				return max(r.Size, 0), ttl
			}
		}
		return 0, 0
	}
}

func matchChannel(pattern, name string) bool {
	if pre, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, pre)
	}
	return pattern == name
}

// entry is one publication kept in a channel's history.
type entry struct {
	offset uint64
	frame  []byte // the Message frame, as encoded once for every subscriber
	at     time.Time
}

// history is a channel's ring of its latest publications, in offset
// order and without gaps: it holds a run of consecutive offsets ending at
// the channel's position, or nothing. Guarded by the channel's mu.
type history struct {
	size int
	ttl  time.Duration
	buf  []entry // ring; len(buf) grows up to size
	head int     // index of the oldest entry
	n    int
}

func newHistory(size int, ttl time.Duration) *history {
	return &history{size: size, ttl: ttl}
}

// add appends the publication at offset; one that does not follow the
// last kept offset empties the ring first, so the ring never has a gap.
func (h *history) add(offset uint64, frame []byte, now time.Time) {
	if h.n > 0 && h.at(h.n-1).offset+1 != offset {
		h.reset()
	}
	if len(h.buf) < h.size {
		h.buf = append(h.buf, entry{})
	}
	e := entry{offset: offset, frame: frame, at: now}
	if h.n < h.size {
		h.buf[(h.head+h.n)%len(h.buf)] = e
		h.n++
		return
	}
	h.buf[h.head] = e
	h.head = (h.head + 1) % len(h.buf)
}

func (h *history) at(i int) *entry { return &h.buf[(h.head+i)%len(h.buf)] }

// truncate drops the entries after offset last (publications taken back).
func (h *history) truncate(last uint64) {
	for h.n > 0 && h.at(h.n-1).offset > last {
		*h.at(h.n - 1) = entry{}
		h.n--
	}
}

func (h *history) reset() {
	clear(h.buf)
	h.buf, h.head, h.n = h.buf[:0], 0, 0
}

// expire drops the entries older than the TTL.
func (h *history) expire(now time.Time) {
	for h.n > 0 && now.Sub(h.at(0).at) > h.ttl {
		*h.at(0) = entry{}
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
}

// after returns the kept publications with offsets above since and up to
// last, oldest first, and whether they are all of them: whether the ring
// reaches back to since+1 (or there is nothing after since) and on to last.
func (h *history) after(since, last uint64, now time.Time) ([]entry, bool) {
	h.expire(now)
	if since == last {
		return nil, true
	}
	if since > last || h.n == 0 || h.at(h.n-1).offset < last || h.at(0).offset > since+1 {
		return nil, false
	}
	out := make([]entry, 0, last-since)
	for i := range h.n {
		if e := h.at(i); e.offset > since && e.offset <= last {
			out = append(out, *e)
		}
	}
	return out, true
}

// latest returns up to limit of the newest entries, oldest first.
func (h *history) latest(limit int, now time.Time) []entry {
	h.expire(now)
	n := h.n
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]entry, 0, n)
	for i := h.n - n; i < h.n; i++ {
		out = append(out, *h.at(i))
	}
	return out
}

// selectHistory picks from a channel's history (oldest first, ending at
// pos) what a history request asks for. Without since: the newest limit
// (0: all), complete. With since: the publications after it, and whether
// none is missing; limit then keeps the oldest ones, so that a reader can
// page forward (complete is false when more remain).
func selectHistory(pos Position, hist []protocols.Publication, since *Position, limit int) ([]protocols.Publication, bool) {
	out, complete := hist, since == nil
	if since != nil && since.Epoch == pos.Epoch {
		switch {
		case since.Offset == pos.Offset:
			out, complete = nil, true
		case len(hist) > 0 && hist[len(hist)-1].Offset == pos.Offset:
			for i, p := range hist {
				if p.Offset == since.Offset+1 {
					out, complete = hist[i:], true
					break
				}
			}
		}
	}
	if limit > 0 && len(out) > limit {
		if since != nil {
			return out[:limit], false // the next page starts after out[limit-1]
		}
		out = out[len(out)-limit:]
	}
	return out, complete
}
