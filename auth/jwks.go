package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// jwksSource is one JWK Set, from a file or a URL, with its last good keys.
type jwksSource struct {
	// immutable after New
	name    string // "JWKSFile" or "JWKSURL", for logs; never the URL, which may hold credentials
	load    func(ctx context.Context) ([]byte, error)
	minGap  time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
	base    context.Context // cancelled by Verifier.Close

	keys atomic.Pointer[[]publicKey] // the last good set; nil until one loads

	mu          sync.Mutex
	lastAttempt time.Time      // guarded by mu
	inflight    chan struct{}  // guarded by mu; closed when the running fetch ends
	closed      bool           // guarded by mu; set by shutdown, no fetch starts after
	wg          sync.WaitGroup // running fetch; Add only under mu while !closed
}

// current returns the last good keys, or nil.
func (s *jwksSource) current() []publicKey {
	if p := s.keys.Load(); p != nil {
		return *p
	}
	return nil
}

// trigger starts a fetch unless one is running, the Verifier is closed, or
// (when limited) the last one started less than minGap ago. It returns the
// channel closed when the running fetch ends, or nil if none runs.
func (s *jwksSource) trigger(limited bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil || s.closed {
		return s.inflight
	}
	if limited && !s.lastAttempt.IsZero() && s.now().Sub(s.lastAttempt) < s.minGap {
		return nil
	}
	s.lastAttempt = s.now()
	ch := make(chan struct{})
	s.inflight = ch
	s.wg.Add(1)
	go s.fetch(ch)
	return ch
}

// refresh triggers a fetch and waits for the running one, if any, until ctx
// is done. The fetch runs under the Verifier's context, so a caller that
// gives up does not abort it for the others.
func (s *jwksSource) refresh(ctx context.Context, limited bool) {
	ch := s.trigger(limited)
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// shutdown stops new fetches and waits for the running one; the base
// context must be cancelled first.
func (s *jwksSource) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *jwksSource) fetch(done chan struct{}) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(s.base, s.timeout)
	defer cancel()
	if err := s.reload(ctx); err != nil && s.base.Err() == nil {
		s.log.Warn("auth: JWKS refresh failed; keeping the last good set", "source", s.name, "err", err)
	}
}

// reload loads and parses the set and, if it holds a usable key, makes it
// current.
func (s *jwksSource) reload(ctx context.Context) error {
	data, err := s.load(ctx)
	if err != nil {
		return err
	}
	keys, skipped, err := parseJWKS(data)
	if err != nil {
		return err
	}
	if skipped > 0 {
		s.log.Debug("auth: JWKS keys skipped", "source", s.name, "skipped", skipped, "kept", len(keys))
	}
	s.keys.Store(&keys)
	return nil
}

// loop refreshes every period until the Verifier closes.
func (s *jwksSource) loop(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
			s.refresh(s.base, false)
		}
	}
}

// fileLoader reads a JWK Set file of at most max bytes.
func fileLoader(path string, max int64) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f, max)
	}
}

// urlLoader fetches a JWK Set with GET; the body must be at most max bytes.
func urlLoader(client *http.Client, rawURL string, max int64) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := client.Do(req)
		if err != nil {
			// The *url.Error names the URL, which may hold credentials.
			if ue, ok := errors.AsType[*url.Error](err); ok {
				err = ue.Err
			}
			return nil, fmt.Errorf("fetch: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			return nil, fmt.Errorf("fetch: HTTP status %d", resp.StatusCode)
		}
		if resp.ContentLength > max {
			return nil, fmt.Errorf("fetch: body of %d bytes exceeds %d", resp.ContentLength, max)
		}
		return readBounded(resp.Body, max)
	}
}

func readBounded(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("JWKS exceeds %d bytes", max)
	}
	return data, nil
}
