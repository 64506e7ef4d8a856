// Package naive is the baseline of the benchmark: the broadcast loop most
// people write first with gorilla/websocket. Every subscriber is in one
// global set; each publication is written to each subscriber with its own
// conn.WriteMessage, one write (and one syscall) per delivery, under a mutex
// per conn. There is no queue: a slow reader blocks the loop, and with it
// every other subscriber. That is the point of the baseline.
//
// Routes:
//
//	GET  /ws       subscribe; the server sends the text message "ready" once
//	               the subscriber is in the set, then binary payloads
//	GET  /pub      publisher WebSocket: each binary message is a payload
//	POST /publish  the body is a payload; 204 once it has been broadcast
package naive

import (
	"io"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

// Ready is the text message a subscriber gets once it is in the set; no
// publication broadcast after it is missed.
const Ready = "ready"

// Server is the naive broadcast server.
type Server struct {
	// immutable after New
	upgrader websocket.Upgrader
	mux      *http.ServeMux

	mu     sync.RWMutex // guards the fields below
	subs   map[*subscriber]struct{}
	pubs   map[*websocket.Conn]struct{}
	closed bool

	handlers sync.WaitGroup // one per WebSocket handler
}

type subscriber struct {
	mu sync.Mutex // serializes writes to c
	c  *websocket.Conn
}

// New returns a server with no subscribers.
func New() *Server {
	s := &Server{
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		subs:     make(map[*subscriber]struct{}),
		pubs:     make(map[*websocket.Conn]struct{}),
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /ws", s.subscribe)
	s.mux.HandleFunc("GET /pub", s.publisher)
	s.mux.HandleFunc("POST /publish", s.publish)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Subscribers returns how many subscribers are in the set.
func (s *Server) Subscribers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.subs)
}

// track registers a WebSocket handler unless the server is closed.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	defer s.handlers.Done()
	c, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	sub := &subscriber{c: c}
	// Hold sub.mu across joining the set and writing Ready, so that no
	// broadcast reaches the subscriber before Ready does.
	sub.mu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sub.mu.Unlock()
		c.Close()
		return
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	err = c.WriteMessage(websocket.TextMessage, []byte(Ready))
	sub.mu.Unlock()
	if err == nil {
		// Read until the peer goes away; subscribers send nothing but
		// control frames, which gorilla answers itself.
		for {
			if _, _, err := c.NextReader(); err != nil {
				break
			}
		}
	}
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) publisher(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	defer s.handlers.Done()
	c, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.pubs[c] = struct{}{}
	s.mu.Unlock()
	for {
		typ, payload, err := c.ReadMessage()
		if err != nil {
			break
		}
		if typ == websocket.BinaryMessage {
			s.Broadcast(payload)
		}
	}
	s.mu.Lock()
	delete(s.pubs, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.Broadcast(payload)
	w.WriteHeader(http.StatusNoContent)
}

// Broadcast writes payload to every subscriber, one WriteMessage each, and
// returns when all writes are done. A subscriber whose write fails is
// closed; its handler then drops it from the set.
func (s *Server) Broadcast(payload []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for sub := range s.subs {
		sub.mu.Lock()
		err := sub.c.WriteMessage(websocket.BinaryMessage, payload)
		sub.mu.Unlock()
		if err != nil {
			sub.c.Close()
		}
	}
}

// Close closes every WebSocket connection and waits for their handlers to
// return. It does not close the HTTP listener. It is safe to call more
// than once.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for sub := range s.subs {
		sub.c.Close()
	}
	for c := range s.pubs {
		c.Close()
	}
	s.mu.Unlock()
	s.handlers.Wait()
}
