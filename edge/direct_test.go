package edge_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/edge"
	"github.com/switchyard/switchyard/protocols"
)

// The fan-out workers write to a socket without blocking and leave the
// rest of a write the socket did not take to the session's writer. A
// subscriber that stops reading while a burst goes out (so that writes are
// cut short), and keeps sending WebSocket pings and protocol pings (so
// that pongs and replies are written in between), must still get every
// publication whole and in order, and a pong for its pings.
func TestDirectWritesKeepOrderUnderBackpressure(t *testing.T) {
	n := startNode(t, func(c *edge.Config) {
		c.Session.SendQueueFrames = 1 << 16
		c.Session.SendQueueBytes = 256 << 20
	})
	d := websocket.Dialer{
		ReadBufferSize: 4 << 10,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(256 << 10) // no autotuning: writes are cut short
			}
			return c, err
		},
	}
	c, _, err := d.Dial(n.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &rawWS{t: t, c: c}
	r.connect()
	r.send(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: "burst"}}})
	waitFor(t, 5*time.Second, "subscriber", func() bool { return n.Hub().Subscribers("burst") == 1 })

	var wsPongs atomic.Int64
	c.SetPongHandler(func(string) error { wsPongs.Add(1); return nil })
	stopPings := make(chan struct{})
	pingsDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := uint32(100); ; i++ {
			select {
			case <-stopPings:
				pingsDone <- nil
				return
			case <-tick.C:
			}
			if err := c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
				pingsDone <- err
				return
			}
			if i%50 != 0 {
				continue // protocol pings are rate limited (4/s, bursts of 32)
			}
			b, _ := protocols.AppendFrame(nil, &protocols.Frame{Id: i, Kind: &protocols.Frame_Ping{Ping: &protocols.Ping{}}})
			if err := c.WriteMessage(websocket.BinaryMessage, b); err != nil {
				pingsDone <- err
				return
			}
		}
	}()

	before := protocols.DirectWriteStats()
	const total, size = 400, 24 << 10
	go func() {
		payload := make([]byte, size)
		for i := range total {
			binary.BigEndian.PutUint32(payload, uint32(i+1))
			n.Hub().Sequence("burst", payload)
			time.Sleep(time.Millisecond) // one write each, whole until the socket is full, then cut short
		}
	}()
	time.Sleep(500 * time.Millisecond) // not reading: the socket fills

	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	next, pongs := uint64(1), 0
	for next <= total {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("after %d messages: %v", next-1, err)
		}
		err = protocols.SplitFrames(b, 1<<20, func(body []byte) error {
			f, err := protocols.DecodeFrame(body)
			if err != nil {
				return err
			}
			switch k := f.Kind.(type) {
			case *protocols.Frame_Pong:
				pongs++
			case *protocols.Frame_Message:
				m := k.Message
				if m.Offset != next || len(m.Data) != size || uint64(binary.BigEndian.Uint32(m.Data)) != next {
					return errors.New("out of order or damaged")
				}
				next++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("message %d: %v", next, err)
		}
	}
	close(stopPings)
	if err := <-pingsDone; err != nil {
		t.Fatal(err)
	}
	after := protocols.DirectWriteStats()
	t.Logf("direct writes: %d whole, %d cut short, %d busy; %d protocol pongs, %d WebSocket pongs",
		after.Written-before.Written, after.Partial-before.Partial, after.Busy-before.Busy, pongs, wsPongs.Load())
	if after.Partial == before.Partial {
		t.Error("no direct write was cut short: the test did not exercise the hand-over")
	}
	if after.Written == before.Written {
		t.Error("no direct write went out whole")
	}
	if pongs == 0 || wsPongs.Load() == 0 {
		t.Errorf("pongs: %d protocol, %d WebSocket", pongs, wsPongs.Load())
	}
}
