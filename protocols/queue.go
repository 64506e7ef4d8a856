package protocols

import "time"

// bucket is a token bucket, owned by one goroutine.
type bucket struct {
	tokens float64
	last   time.Time
}

// take spends a token if there is one; the bucket starts full.
func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// item is one queued frame and what it counts against.
type item struct {
	b    []byte
	kind itemKind
	slot *slot // volatile: the frames are taken from it when written
}

type itemKind uint8

const (
	delivery itemKind = iota // Send: bounded by SendQueueFrames and SendQueueBytes
	backlog                  // DeliverBacklog: counted in bytes only
	reply                    // Reply: bounded by MaxQueuedReplies
	control                  // the session's own ping and Disconnect: one at a time
	volatile                 // DeliverVolatile without datagrams: one per subscription
)

// ring is a FIFO of frames that grows as needed and lets a large buffer go
// once it has drained, so that a burst does not stay in an idle session's
// memory.
type ring struct {
	buf  []item
	head int
	n    int
}

func (r *ring) push(it item) {
	if r.n == len(r.buf) {
		nb := make([]item, max(8, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = it
	r.n++
}

func (r *ring) peek() item { return r.buf[r.head] }

func (r *ring) pop() {
	r.buf[r.head] = item{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 && len(r.buf) > 64 {
		r.buf, r.head = nil, 0
	}
}
