// Command floor is the benchmark's floor: the least a Go server can spend
// on the naive target's protocol (bench/internal/naive), so that the
// other targets' figures can be read against what the machine allows. A
// connect is accept, one read of the request head, and one write of the
// 101 answer with the "ready" message; a delivery is one write(2) of a
// frame built once per publication, from one goroutine, straight to the
// socket. No HTTP parsing beyond the path and the key, no queues, no
// deadlines, no heartbeats, no limits: it is not a server anyone should
// run, only a bound. A write that would block drops that delivery (the
// load generator reports it as lost); with the benchmark's small payloads
// it does not happen.
//
//	floor -listen 127.0.0.1:0
//
// It prints "listening on ADDR" first and serves until SIGINT or SIGTERM.
// Routes, as the naive server's: GET /ws subscribes (text "ready", then
// binary payloads), GET /pub is the publisher's WebSocket (each binary
// message is broadcast). A subscriber has no goroutine and is never read
// from (pings go unanswered: the load generator sends none); it is
// forgotten when a write to it fails.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP `address` to serve on (port 0 picks one)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	newServer().acceptLoop(ln)
}

func newServer() *server { return &server{subs: make(map[*net.TCPConn]int)} }

// acceptLoop serves ln's connections until it is closed.
func (s *server) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c.(*net.TCPConn))
	}
}

type server struct {
	mu   sync.Mutex
	subs map[*net.TCPConn]int // subscribers and their fds
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// serve reads c's request head and answers it.
func (s *server) serve(c *net.TCPConn) {
	buf := make([]byte, 4096)
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			c.Close()
			return
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			c.Close()
			return
		}
		n += m
	}
	head := buf[:n]
	path, _, _ := bytes.Cut(bytes.TrimPrefix(head, []byte("GET ")), []byte(" "))
	path, _, _ = bytes.Cut(path, []byte("?"))
	key := header(head, "Sec-WebSocket-Key")
	if key == nil || (string(path) != "/ws" && string(path) != "/pub") {
		_, _ = c.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		c.Close()
		return
	}
	h := sha1.New()
	h.Write(key)
	h.Write([]byte(wsGUID))
	answer := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h.Sum(nil)) + "\r\n\r\n"
	if string(path) == "/pub" {
		if _, err := c.Write([]byte(answer)); err != nil {
			c.Close()
			return
		}
		s.publisher(c)
		return
	}
	s.subscriber(c, append([]byte(answer), 0x81, 5, 'r', 'e', 'a', 'd', 'y'))
}

// header returns the value of the header name in head (case as sent by
// gorilla and browsers), or nil.
func header(head []byte, name string) []byte {
	i := bytes.Index(head, []byte("\r\n"+name+": "))
	if i < 0 {
		return nil
	}
	v := head[i+len(name)+4:]
	v, _, _ = bytes.Cut(v, []byte("\r\n"))
	return v
}

// subscriber joins the set and writes the answer and "ready" in one write
// (no broadcast can reach it first: the set's lock is held). Nothing
// reads from it after that, and no goroutine waits on it: a subscriber
// that has gone is noticed when a write to it fails (broadcast).
func (s *server) subscriber(c *net.TCPConn, answer []byte) {
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return
	}
	fd := -1
	_ = raw.Control(func(f uintptr) { fd = int(f) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := c.Write(answer); err != nil {
		c.Close()
		return
	}
	s.subs[c] = fd
}

// publisher reads the publisher's masked frames and broadcasts each
// binary message once its last fragment has come (a client library may
// split a long message into several frames).
func (s *server) publisher(c *net.TCPConn) {
	defer c.Close()
	var hdr [14]byte
	var msg []byte
	for {
		if _, err := io.ReadFull(c, hdr[:2]); err != nil {
			return
		}
		fin, op, n := hdr[0]&0x80 != 0, hdr[0]&0x0f, uint64(hdr[1]&0x7f)
		ext := map[uint64]int{126: 2, 127: 8}[n]
		if _, err := io.ReadFull(c, hdr[2:2+ext+4]); err != nil {
			return
		}
		switch ext {
		case 2:
			n = uint64(binary.BigEndian.Uint16(hdr[2:]))
		case 8:
			n = binary.BigEndian.Uint64(hdr[2:])
		}
		if n > 1<<20 || uint64(len(msg))+n > 1<<20 {
			return
		}
		mask := hdr[2+ext : 2+ext+4]
		payload := make([]byte, n)
		if _, err := io.ReadFull(c, payload); err != nil {
			return
		}
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
		switch op {
		case 2: // a binary message's first frame
			msg = payload
		case 0: // a continuation
			msg = append(msg, payload...)
		case 8:
			return
		default: // ping, pong, text: not part of the protocol
			continue
		}
		if fin && (op == 2 || op == 0) {
			s.broadcast(frame(msg))
			msg = nil
		}
	}
}

// frame is payload as one unmasked binary frame.
func frame(payload []byte) []byte {
	b := []byte{0x82}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// broadcast writes f to every subscriber with one write(2) each, on the
// caller's goroutine; a socket that would block misses it.
func (s *server) broadcast(f []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, fd := range s.subs {
		n, err := syscall.Write(fd, f)
		for errors.Is(err, syscall.EINTR) {
			n, err = syscall.Write(fd, f)
		}
		// A write that would block misses this publication; a failed
		// one (the subscriber has gone), or part of a frame (which
		// would break the stream), ends the subscriber.
		if (err != nil && !errors.Is(err, syscall.EAGAIN)) || (err == nil && n < len(f)) {
			delete(s.subs, c)
			c.Close()
		}
	}
}
