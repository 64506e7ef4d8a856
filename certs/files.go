package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// failure identifies a failed reload, so each is logged once.
type failure struct {
	st  stamp
	msg string
}

// pollInterval is how often Run stats the certificate and key files.
const pollInterval = 30 * time.Second

// stamp identifies one version of the certificate and key files.
type stamp struct {
	certMod, keyMod   int64 // modification times, Unix nanoseconds
	certSize, keySize int64
}

// LoadFiles returns a Store holding the PEM certificate chain in certFile
// (leaf first) and the PEM private key in keyFile, of any type
// tls.X509KeyPair accepts. Call Run to reload them when they change. A nil
// logger discards logs.
//
// Unreadable files yield the os error wrapped (errors.Is(err,
// fs.ErrNotExist) for a missing file); files that do not form a pair yield
// an error wrapping ErrKeyPair. An expired certificate is loaded with a
// warning.
func LoadFiles(certFile, keyFile string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:      logger,
		now:      time.Now,
		certFile: certFile,
		keyFile:  keyFile,
		poll:     pollInterval,
	}
	st, err := s.stat()
	if err != nil {
		return nil, err
	}
	c, err := s.read()
	if err != nil {
		return nil, err
	}
	s.loaded = st
	s.cur.Store(c)
	s.log.Info("certs: loaded certificate",
		"cert_file", certFile, "hash", c.hash.Value, "not_after", c.hash.NotAfter)
	s.warnExpiry(c)
	return s, nil
}

// stat returns the current stamp of the files.
func (s *Store) stat() (stamp, error) {
	cfi, err := os.Stat(s.certFile)
	if err != nil {
		return stamp{}, fmt.Errorf("certs: certificate file: %w", err)
	}
	kfi, err := os.Stat(s.keyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("certs: key file: %w", err)
	}
	return stamp{
		certMod:  cfi.ModTime().UnixNano(),
		keyMod:   kfi.ModTime().UnixNano(),
		certSize: cfi.Size(),
		keySize:  kfi.Size(),
	}, nil
}

// read loads and checks the key pair.
func (s *Store) read() (*current, error) {
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (certificate %q, key %q): %w", ErrKeyPair, s.certFile, s.keyFile, err)
	}
	if cert.Leaf == nil { // only with GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w (certificate %q): %w", ErrKeyPair, s.certFile, err)
		}
	}
	return &current{cert: &cert, hash: hashOf(cert.Leaf)}, nil
}

func (s *Store) warnExpiry(c *current) {
	if now := s.now(); now.After(c.hash.NotAfter) {
		s.log.Warn("certs: certificate has expired",
			"cert_file", s.certFile, "not_after", c.hash.NotAfter)
	}
}

func (s *Store) runFiles(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.reload()
		}
	}
}

// reload re-reads the files if they changed since the last successful load.
// On failure it keeps the current certificate, leaves s.loaded alone so the
// next poll tries again (the files may be half written), and warns once per
// version of the files.
func (s *Store) reload() {
	st, err := s.stat()
	if err == nil {
		if st == s.loaded {
			return
		}
		var c *current
		if c, err = s.read(); err == nil {
			s.loaded, s.warned = st, failure{}
			old := s.Hash()
			s.swap(c)
			s.log.Info("certs: reloaded certificate",
				"cert_file", s.certFile, "hash", c.hash.Value, "not_after", c.hash.NotAfter,
				"old_hash", old.Value)
			s.warnExpiry(c)
			return
		}
	}
	if f := (failure{st, err.Error()}); f != s.warned {
		s.warned = f
		s.log.Warn("certs: reload failed, keeping the current certificate",
			"err", err, "hash", s.Hash().Value)
	}
}
