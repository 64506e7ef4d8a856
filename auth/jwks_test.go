package auth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a JWK Set that a test can swap, or an error status.
type jwksServer struct {
	url    string
	body   atomic.Pointer[[]byte]
	status atomic.Int32 // 0: 200
	hits   atomic.Int32
	// lengthHeader sends Content-Length; otherwise the body is streamed
	// (chunked) and only the reader's bound can stop it.
	lengthHeader atomic.Bool
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.body.Store(&body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if st := s.status.Load(); st != 0 {
			http.Error(w, "no", int(st))
			return
		}
		b := *s.body.Load()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		if s.lengthHeader.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		for len(b) > 0 { // in pieces, flushed: chunked unless a length was set
			n := min(len(b), 32<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/.well-known/jwks.json"
	return s
}

func (s *jwksServer) set(b []byte) { s.body.Store(&b) }

// urlConfig verifies RS256/ES256/EdDSA from the server only.
func urlConfig(s *jwksServer) Config {
	return Config{
		JWKSURL:         s.url,
		JWKSRefresh:     time.Hour,
		JWKSMinInterval: time.Nanosecond,
		Audience:        testAud,
		Issuer:          testIss,
	}
}

// liveClaims are valid now, for tests on the real clock.
func liveClaims() map[string]any {
	c := claimsFor("u-live")
	c["exp"] = time.Now().Add(time.Hour).Unix()
	c["iat"] = time.Now().Add(-time.Minute).Unix()
	return c
}

func TestJWKSURLUnknownKidRefresh(t *testing.T) {
	k := keysOnce()
	s := newJWKSServer(t, jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)))
	v := newVerifier(t, urlConfig(s))
	tok1 := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	tok2 := sign(t, jwt.SigningMethodES256, k.ec2, "k2", liveClaims())

	// The first Verify waits for New's background fetch.
	if _, err := v.Verify(t.Context(), tok1); err != nil {
		t.Fatalf("k1 before rotation: %v", err)
	}
	s.set(jwks(t, jwkOf(t, "k2", &k.ec2.PublicKey)))
	// k2 is unknown: Verify refreshes at once and finds it.
	if id, err := v.Verify(t.Context(), tok2); err != nil || id.User != "u-live" {
		t.Fatalf("k2 after rotation: %+v, %v", id, err)
	}
	// k1 is gone from the server: after another refresh it is unknown.
	if got := reasonOf(t, mustErr(v.Verify(t.Context(), tok1))); got != "unknown_key" {
		t.Fatalf("k1 after rotation: %q, want unknown_key", got)
	}
	if h := s.hits.Load(); h != 3 {
		t.Fatalf("server hits = %d, want 3 (initial, k2, k1)", h)
	}
}

func TestJWKSURLPeriodicRefresh(t *testing.T) {
	k := keysOnce()
	s := newJWKSServer(t, jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)))
	cfg := urlConfig(s)
	cfg.JWKSRefresh = 20 * time.Millisecond
	cfg.JWKSMinInterval = time.Hour // unknown kids do not trigger fetches here
	v := newVerifier(t, cfg)
	tok1 := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	tok2 := sign(t, jwt.SigningMethodEdDSA, k.ed2, "k2", liveClaims())
	if _, err := v.Verify(t.Context(), tok1); err != nil {
		t.Fatalf("k1: %v", err)
	}
	s.set(jwks(t, jwkOf(t, "k2", k.ed2.Public())))
	waitFor(t, 5*time.Second, "k2 picked up by the periodic refresh", func() bool {
		_, err := v.Verify(t.Context(), tok2)
		return err == nil
	})
	waitFor(t, 5*time.Second, "k1 dropped", func() bool {
		_, err := v.Verify(t.Context(), tok1)
		return err != nil && reasonOf(t, err) == "unknown_key"
	})
}

func TestJWKSURLRateLimited(t *testing.T) {
	k := keysOnce()
	s := newJWKSServer(t, jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)))
	cfg := urlConfig(s)
	cfg.JWKSMinInterval = time.Hour
	v := newVerifier(t, cfg)
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		tok := sign(t, jwt.SigningMethodRS256, k.rsa2, fmt.Sprintf("random-%d", i), liveClaims())
		if got := reasonOf(t, mustErr(v.Verify(t.Context(), tok))); got != "unknown_key" {
			t.Fatalf("token %d: %q, want unknown_key", i, got)
		}
	}
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("server hits = %d, want 1: unknown kids must not cause a fetch each", h)
	}
}

func TestJWKSURLKeepsLastGood(t *testing.T) {
	k := keysOnce()
	good := jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey))
	s := newJWKSServer(t, good)
	var logs syncBuffer
	cfg := urlConfig(s)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	v := newVerifier(t, cfg)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	// A set without k1: were it accepted despite its size, k1 would fail.
	huge := hugeJWKS(t, jwks(t, jwkOf(t, "k2", &k.rsa2.PublicKey)), 2<<20)
	bad := []struct {
		name  string
		apply func()
	}{
		{"HTTP 500", func() { s.status.Store(500) }},
		{"HTTP 404", func() { s.status.Store(404) }},
		{"not JSON", func() { s.status.Store(0); s.set([]byte("<html>")) }},
		{"no usable key", func() { s.set([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`)) }},
		{"empty set", func() { s.set([]byte(`{"keys":[]}`)) }},
		{"huge body, chunked", func() { s.set(huge) }},
		{"huge body, with length", func() { s.lengthHeader.Store(true) }},
	}
	for _, b := range bad {
		b.apply()
		before := s.hits.Load()
		// An unknown kid forces a fetch, which fails: k1 must still verify.
		unknown := sign(t, jwt.SigningMethodRS256, k.rsa2, "k9", liveClaims())
		if got := reasonOf(t, mustErr(v.Verify(t.Context(), unknown))); got != "unknown_key" {
			t.Fatalf("%s: unknown kid: %q", b.name, got)
		}
		if s.hits.Load() == before {
			t.Fatalf("%s: no fetch happened", b.name)
		}
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("%s: last good set lost: %v", b.name, err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "JWKS refresh failed"); n != len(bad) {
		t.Errorf("%d refresh failures logged, want %d:\n%s", n, len(bad), out)
	}
	if strings.Contains(out, s.url) {
		t.Errorf("log holds the JWKS URL, which may carry credentials:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hugeJWKS pads a valid set to n bytes, so only its size is wrong.
func hugeJWKS(t *testing.T, set []byte, n int) []byte {
	t.Helper()
	pad := `,"pad":"` + strings.Repeat("x", n) + `"}`
	return append(bytes.TrimSuffix(set, []byte("}")), pad...)
}

func TestJWKSURLHugeBodyRefused(t *testing.T) {
	k := keysOnce()
	s := newJWKSServer(t, hugeJWKS(t, jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)), 64<<10))
	cfg := urlConfig(s)
	cfg.JWKSMaxBytes = 16 << 10
	v := newVerifier(t, cfg)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	if got := reasonOf(t, mustErr(v.Verify(t.Context(), tok))); got != "unknown_key" {
		t.Fatalf("huge set: %q, want unknown_key", got)
	}
	// The same set within the bound is accepted.
	s.set(jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("small set: %v", err)
	}
}

func TestJWKSURLSkipsUnusableKeys(t *testing.T) {
	k := keysOnce()
	rsaKey := jwkOf(t, "rsa", &k.rsa1.PublicKey)
	wrongAlg := jwkOf(t, "wrong-alg", &k.rsa2.PublicKey)
	wrongAlg["alg"] = "ES256"
	encKey := jwkOf(t, "enc", &k.rsa2.PublicKey)
	encKey["use"] = "enc"
	set := jwks(t,
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		map[string]any{"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AAAA", "y": "AAAA"},
		map[string]any{"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": strings.Repeat("A", 43), "y": strings.Repeat("A", 43)},
		map[string]any{"kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
		map[string]any{"kty": 7},
		wrongAlg, encKey, rsaKey,
	)
	keys, skipped, err := parseJWKS(set)
	if err != nil || len(keys) != 1 || skipped != 8 || keys[0].id != "rsa" {
		t.Fatalf("parseJWKS: %d keys, %d skipped, %v", len(keys), skipped, err)
	}
	s := newJWKSServer(t, set)
	v := newVerifier(t, urlConfig(s))
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa", liveClaims())); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"enc", "wrong-alg", "hmac"} {
		tok := sign(t, jwt.SigningMethodRS256, k.rsa2, kid, liveClaims())
		if got := reasonOf(t, mustErr(v.Verify(t.Context(), tok))); got != "unknown_key" {
			t.Errorf("kid %s: %q, want unknown_key", kid, got)
		}
	}
	// An HS256 token signed with the "oct" key's secret finds no HMAC key.
	hs := sign(t, jwt.SigningMethodHS256, []byte("secretsecretsecretsecretsecret"), "hmac", liveClaims())
	if got := reasonOf(t, mustErr(v.Verify(t.Context(), hs))); got != "bad_algorithm" {
		t.Errorf("HS256 with a JWKS oct key: %q, want bad_algorithm", got)
	}
}

func TestJWKSURLHangingServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks the handler
	k := keysOnce()
	v, err := New(Config{JWKSURL: srv.URL, JWKSTimeout: time.Minute, JWKSMinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if got := reasonOf(t, mustErr(v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())))); got != "unknown_key" {
		t.Fatalf("reason %q, want unknown_key", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Verify took %v; it must give up with its context", d)
	}
	start = time.Now()
	v.Close() // cancels the hanging fetch
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestStaticKeysDoNotWaitForJWKS(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	k := keysOnce()
	v := newVerifier(t, Config{
		PublicKeys: [][]byte{pemOf(t, &k.rsa1.PublicKey)},
		JWKSURL:    srv.URL, JWKSTimeout: time.Minute, JWKSMinInterval: time.Nanosecond,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	// New's first fetch hangs; a token the PEM key verifies must not wait for it.
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa1, "", liveClaims())); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Verify waited %v for a JWKS fetch it did not need", d)
	}
}

func TestJWKSURLRedirects(t *testing.T) {
	k := keysOnce()
	s := newJWKSServer(t, jwks(t, jwkOf(t, "k1", &k.rsa1.PublicKey)))
	hops := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n == 0 {
			http.Redirect(w, r, s.url, http.StatusFound)
			return
		}
		http.Redirect(w, r, "/?n="+strconv.Itoa(n-1), http.StatusFound)
	}))
	t.Cleanup(hops.Close)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	for _, tc := range []struct {
		hops int
		ok   bool
	}{{2, true}, {9, false}} {
		v := newVerifier(t, Config{JWKSURL: hops.URL + "/?n=" + strconv.Itoa(tc.hops), JWKSMinInterval: time.Hour})
		_, err := v.Verify(t.Context(), tok)
		if (err == nil) != tc.ok {
			t.Errorf("%d redirects: err = %v, want ok=%v", tc.hops, err, tc.ok)
		}
	}
}

func TestJWKSURLTimeout(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	k := keysOnce()
	v := newVerifier(t, Config{JWKSURL: srv.URL, JWKSTimeout: 50 * time.Millisecond, JWKSMinInterval: time.Nanosecond})
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", liveClaims())
	// Each Verify waits at most JWKSTimeout for its fetch, even with no
	// deadline of its own.
	for range 2 {
		if got := reasonOf(t, mustErr(v.Verify(context.Background(), tok))); got != "unknown_key" {
			t.Fatalf("reason %q, want unknown_key", got)
		}
	}
	if h := hits.Load(); h < 2 {
		t.Fatalf("hits = %d, want a fetch per Verify", h)
	}
}

func TestJWKSFileRefresh(t *testing.T) {
	k := keysOnce()
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(b []byte) {
		t.Helper()
		// Write then rename, as a deploy tool would: a reader never sees half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(jwks(t, jwkOf(t, "a", &k.rsa1.PublicKey), jwkOf(t, "b", &k.ec1.PublicKey)))
	v := newVerifier(t, Config{JWKSFile: path, JWKSRefresh: time.Hour, JWKSMinInterval: time.Nanosecond})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsa1, "a", liveClaims())
	tokB := sign(t, jwt.SigningMethodES256, k.ec1, "b", liveClaims())
	tokC := sign(t, jwt.SigningMethodEdDSA, k.ed1, "c", liveClaims())
	for _, tok := range []string{tokA, tokB} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	write(jwks(t, jwkOf(t, "c", k.ed1.Public())))
	if _, err := v.Verify(t.Context(), tokC); err != nil {
		t.Fatalf("new kid after the file changed: %v", err)
	}
	write([]byte("not json")) // a broken file keeps the last good set
	if _, err := v.Verify(t.Context(), tokC); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
	if got := reasonOf(t, mustErr(v.Verify(t.Context(), tokA))); got != "unknown_key" {
		t.Fatalf("removed kid: %q, want unknown_key", got)
	}
}

// mustErr drops the Identity of a Verify that is expected to fail.
func mustErr(_ Identity, err error) error { return err }

func TestCheckRedirectRefusesDowngrade(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := checkRedirect(req("http://idp.example/jwks"), []*http.Request{req("https://idp.example/jwks")}); err == nil {
		t.Error("https to http redirect followed")
	}
	if err := checkRedirect(req("https://cdn.example/jwks"), []*http.Request{req("https://idp.example/jwks")}); err != nil {
		t.Errorf("https to https redirect refused: %v", err)
	}
	if err := checkRedirect(req("http://b/"), []*http.Request{req("http://a/")}); err != nil {
		t.Errorf("http to http redirect refused: %v", err)
	}
}
