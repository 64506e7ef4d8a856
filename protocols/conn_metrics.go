package protocols

import "sync/atomic"

// SessionStats counts one session's traffic, for metrics. The counters
// only grow while the session lives; once it has ended (Handler.Closed)
// they are final.
type SessionStats struct {
	FramesIn  uint64 // frames read from the client, pings included
	BytesIn   uint64 // their bytes, length prefixes excluded
	FramesOut uint64 // frames written to the client: deliveries, replies, pings, the Disconnect
	BytesOut  uint64 // their bytes, length prefixes included

	// Deliveries are the publications queued for the client (Send,
	// Deliver, DeliverBacklog, DeliverVolatile), whether written yet or
	// not: a slow consumer's queue is dropped when it is closed.
	Deliveries   uint64
	DatagramsIn  uint64 // datagrams received (WebTransport)
	DatagramsOut uint64 // datagrams sent (WebTransport)
	Dropped      uint64 // volatile publications dropped (replaced, queue full, failed send)

	// The deliveries waiting in the send queue now (streams included):
	// what SendQueueFrames and SendQueueBytes bound.
	QueuedFrames int
	QueuedBytes  int
}

// StatsReporter is a Session that counts its traffic; every Session that
// Serve runs is one. Optional: the edge checks for it by type assertion.
type StatsReporter interface {
	Stats() SessionStats
}

var _ StatsReporter = (*conn)(nil)

// traffic holds a conn's counters. The atomic ones are each written by
// one goroutine (the reader, the writer and stream writers, the datagram
// sender or receiver) and read by Stats; deliveries is guarded by conn.mu.
type traffic struct {
	framesIn, bytesIn         atomic.Uint64
	framesOut, bytesOut       atomic.Uint64
	datagramsIn, datagramsOut atomic.Uint64
	deliveries                uint64 // guarded by conn.mu
}

// read counts a frame body read from the client.
func (t *traffic) read(body []byte) {
	t.framesIn.Add(1)
	t.bytesIn.Add(uint64(len(body)))
}

// wrote counts a batch of frames written, unless the write failed.
func (t *traffic) wrote(batch [][]byte, err error) {
	if err != nil {
		return
	}
	n := 0
	for _, f := range batch {
		n += len(f)
	}
	t.framesOut.Add(uint64(len(batch)))
	t.bytesOut.Add(uint64(n))
}

// Stats returns the session's counters.
func (c *conn) Stats() SessionStats {
	c.mu.Lock()
	st := SessionStats{
		Deliveries:   c.traffic.deliveries,
		Dropped:      c.dropped,
		QueuedFrames: c.sent,
		QueuedBytes:  c.sentBytes,
	}
	c.mu.Unlock()
	st.FramesIn, st.BytesIn = c.traffic.framesIn.Load(), c.traffic.bytesIn.Load()
	st.FramesOut, st.BytesOut = c.traffic.framesOut.Load(), c.traffic.bytesOut.Load()
	st.DatagramsIn, st.DatagramsOut = c.traffic.datagramsIn.Load(), c.traffic.datagramsOut.Load()
	return st
}
