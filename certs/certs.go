package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by this package. Match them with errors.Is; the returned
// errors wrap them with the details.
var (
	// ErrInvalidConfig reports a DevConfig that NewDev cannot use.
	ErrInvalidConfig = errors.New("certs: invalid config")
	// ErrValidityTooLong reports a DevConfig.Validity of 14 days or more,
	// which browsers reject for serverCertificateHashes.
	ErrValidityTooLong = errors.New("certs: dev certificate validity must be less than 14 days")
	// ErrKeyPair reports certificate and key files that do not form a
	// usable pair: no PEM data, unparsable contents or a key that does not
	// match the certificate.
	ErrKeyPair = errors.New("certs: invalid certificate/key pair")
	// ErrRunning is returned by Run when the Store is already running.
	ErrRunning = errors.New("certs: store is already running")
)

// HashAlgorithm is the value of Hash.Algorithm, as WebTransport
// serverCertificateHashes spells it.
const HashAlgorithm = "sha-256"

// Hash identifies a certificate. It is what /certhash serves, as JSON:
//
//	{"algorithm":"sha-256","value":"<base64 SHA-256 of the leaf DER>","notAfter":"<RFC 3339>"}
type Hash struct {
	// Algorithm is always HashAlgorithm.
	Algorithm string `json:"algorithm"`
	// Value is HashDER of the leaf certificate.
	Value string `json:"value"`
	// NotAfter is the leaf's expiry, in UTC.
	NotAfter time.Time `json:"notAfter"`
}

// HashDER returns the standard base64 encoding (with padding) of the
// SHA-256 digest of der.
func HashDER(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func hashOf(leaf *x509.Certificate) Hash {
	return Hash{
		Algorithm: HashAlgorithm,
		Value:     HashDER(leaf.Raw),
		NotAfter:  leaf.NotAfter.UTC(),
	}
}

// current is one certificate with its precomputed hash. It is never
// modified after it is published in Store.cur.
type current struct {
	cert *tls.Certificate
	hash Hash
}

// Store holds the current certificate of a node. Its methods are safe for
// concurrent use.
type Store struct {
	// Immutable after NewDev or LoadFiles.
	dev      bool
	log      *slog.Logger
	now      func() time.Time
	cfg      DevConfig     // dev only, with defaults applied
	certFile string        // files only
	keyFile  string        // files only
	poll     time.Duration // files only: how often Run stats the files
	recheck  time.Duration // dev only: longest single wait in Run
	retry    time.Duration // dev only: wait after a failed generation

	cur     atomic.Pointer[current] // swapped by Run, read by everyone
	running atomic.Bool             // set while Run runs

	// Owned by Run (or by LoadFiles before the Store is returned).
	loaded stamp   // files as they were when cur was read from them
	warned failure // the last logged reload failure

	mu   sync.Mutex // guards subs; never held while blocking
	subs map[chan Hash]struct{}
}

// GetCertificate returns the current certificate. It has the signature of
// tls.Config.GetCertificate, ignores hello and never fails. The returned
// certificate is shared and must not be modified.
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// TLSConfig returns a new tls.Config that serves the current certificate
// through GetCertificate and requires TLS 1.2 or later. Each call returns a
// fresh value that the caller may modify (NextProtos, for example).
func (s *Store) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: s.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	}
}

// Hash returns the hash of the current leaf certificate.
func (s *Store) Hash() Hash {
	return s.cur.Load().hash
}

// Dev reports whether the Store was made by NewDev.
func (s *Store) Dev() bool {
	return s.dev
}

// Run keeps the certificate fresh until ctx is done, then returns nil.
//
// For a dev Store it generates a new certificate RotateBefore ahead of the
// current one's NotAfter, forever. For a file Store it stats the files every
// 30 seconds and reloads them when a modification time or size changed; if
// the new files are bad it logs a warning, keeps the current certificate
// and tries again at the next change.
//
// New handshakes get the new certificate at once; established connections
// are unaffected. Only one Run may be active per Store: a second concurrent
// call returns ErrRunning.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	if s.dev {
		return s.runDev(ctx)
	}
	return s.runFiles(ctx)
}

// Subscribe returns a channel that receives the new Hash after each
// rotation or reload that changed the certificate, and a function that ends
// the subscription and closes the channel. The channel holds only the
// latest Hash: a subscriber that falls behind misses intermediate values,
// never the newest one, and never delays a rotation. The cancel function is
// idempotent.
func (s *Store) Subscribe() (<-chan Hash, func()) {
	ch := make(chan Hash, 1)
	s.mu.Lock()
	if s.subs == nil {
		s.subs = make(map[chan Hash]struct{})
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	cancel := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
	}
	return ch, cancel
}

// swap publishes c as the current certificate and notifies subscribers if
// it differs from the previous one.
func (s *Store) swap(c *current) {
	old := s.cur.Swap(c)
	if old != nil && old.hash.Value == c.hash.Value {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		// Only swap sends, and only under mu, so after dropping a stale
		// value the send cannot block.
		select {
		case <-ch:
		default:
		}
		ch <- c.hash
	}
}
