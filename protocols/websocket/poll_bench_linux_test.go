//go:build linux

package websocket

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyard/switchyard/protocols"
)

// countAcceptor counts the frames its sessions' handlers get.
type countAcceptor struct{ n atomic.Int64 }

func (a *countAcceptor) Accept(protocols.Session, *http.Request) (protocols.Handler, error) {
	return countHandler{a}, nil
}

type countHandler struct{ a *countAcceptor }

func (h countHandler) HandleFrame(*protocols.Frame) error { h.a.n.Add(1); return nil }
func (countHandler) Closed(*protocols.CloseError)         {}

// BenchmarkReadFrames: one session reads a stream of small frames, 60 KiB
// messages of them, with reads woken by readiness and blocking.
func BenchmarkReadFrames(b *testing.B) {
	for _, polled := range []bool{true, false} {
		name := "blocking"
		if polled {
			name = "polled"
		}
		b.Run(name, func(b *testing.B) {
			pollReads = polled
			defer func() { pollReads = true }()
			acc := &countAcceptor{}
			url := startEcho(b, acc, quietSession())
			c := dialWS(b, url)
			defer c.Close()
			frame := publishFrame(1, []byte("0123456789"))
			const perMsg = 60 << 10
			msg := bytes.Repeat(frame, perMsg/len(frame))
			per := int64(perMsg / len(frame))
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for range b.N {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					b.Fatal(err)
				}
			}
			for acc.n.Load() < int64(b.N)*per {
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
}
