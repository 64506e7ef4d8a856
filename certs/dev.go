package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"time"
)

const (
	// MaxDevValidity is the exclusive upper bound on DevConfig.Validity:
	// Chromium rejects serverCertificateHashes certificates valid for 14
	// days or more.
	MaxDevValidity = 14 * 24 * time.Hour

	defaultValidity = 10 * 24 * time.Hour
	// clockSkew backdates NotBefore so clients whose clocks lag a little
	// still accept a fresh certificate.
	clockSkew = time.Minute
	// recheckInterval caps each wait in Run, so a suspended host or a
	// stepped wall clock cannot leave an expired certificate in place for
	// long.
	recheckInterval = time.Hour
	// retryInterval is the wait after a failed generation.
	retryInterval = time.Minute
	devCommonName = "switchyard dev"
)

// DevConfig configures a self-signed development certificate: ECDSA P-256,
// valid for less than 14 days, which browsers accept for WebTransport
// through serverCertificateHashes.
type DevConfig struct {
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for. Zero: 127.0.0.1, ::1 and localhost.
	Hosts []string
	// Validity is NotAfter minus NotBefore. It must be less than
	// MaxDevValidity (14 days) and more than one minute, since NotBefore is
	// backdated by a minute for clock skew. Zero: 10 days.
	Validity time.Duration
	// RotateBefore is how long before NotAfter Run generates the next
	// certificate. It must leave the certificate at least a moment of life
	// (less than Validity minus one minute). Zero: Validity/3.
	RotateBefore time.Duration
	// Now gives the time used for NotBefore and for scheduling rotations.
	// Zero: time.Now.
	Now func() time.Time
	// Logger receives rotation events. Zero: logs are discarded.
	Logger *slog.Logger
}

// withDefaults returns cfg with zero fields set to their defaults and Hosts
// copied, or an error if cfg is invalid.
func (cfg DevConfig) withDefaults() (DevConfig, error) {
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{"127.0.0.1", "::1", "localhost"}
	} else {
		cfg.Hosts = slices.Clone(cfg.Hosts)
	}
	for i, h := range cfg.Hosts {
		if h == "" {
			return cfg, fmt.Errorf("%w: Hosts[%d] is empty", ErrInvalidConfig, i)
		}
	}
	if cfg.Validity == 0 {
		cfg.Validity = defaultValidity
	}
	switch {
	case cfg.Validity >= MaxDevValidity:
		return cfg, fmt.Errorf("%w (browsers reject serverCertificateHashes certificates valid for 14 days or more): Validity is %v",
			ErrValidityTooLong, cfg.Validity)
	case cfg.Validity <= clockSkew:
		return cfg, fmt.Errorf("%w: Validity %v must exceed the %v NotBefore backdating",
			ErrInvalidConfig, cfg.Validity, clockSkew)
	}
	if cfg.RotateBefore == 0 {
		cfg.RotateBefore = cfg.Validity / 3
	}
	if cfg.RotateBefore < 0 || cfg.RotateBefore >= cfg.Validity-clockSkew {
		return cfg, fmt.Errorf("%w: RotateBefore %v must be positive and less than Validity %v minus %v",
			ErrInvalidConfig, cfg.RotateBefore, cfg.Validity, clockSkew)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// NewDev validates cfg and returns a Store holding a freshly generated
// self-signed certificate. Call Run to rotate it before it expires.
func NewDev(cfg DevConfig) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		dev:     true,
		log:     cfg.Logger,
		now:     cfg.Now,
		cfg:     cfg,
		recheck: recheckInterval,
		retry:   retryInterval,
	}
	c, err := generate(cfg, cfg.Now())
	if err != nil {
		return nil, err
	}
	s.cur.Store(c)
	s.log.Info("certs: generated dev certificate",
		"hash", c.hash.Value, "not_after", c.hash.NotAfter, "hosts", cfg.Hosts)
	return s, nil
}

// generate makes a self-signed certificate valid from now minus clockSkew
// for cfg.Validity.
func generate(cfg DevConfig, now time.Time) (*current, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	// A random positive 128-bit serial: [1, 2^128-1].
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	serial, err := rand.Int(rand.Reader, limit.Sub(limit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("certs: generate serial: %w", err)
	}
	serial.Add(serial, big.NewInt(1))

	// Certificates carry whole seconds; truncate first so that
	// NotAfter-NotBefore is exactly Validity.
	notBefore := now.Add(-clockSkew).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: devCommonName},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(cfg.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range cfg.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse generated certificate: %w", err)
	}
	return &current{
		cert: &tls.Certificate{
			Certificate: [][]byte{der},
			PrivateKey:  key,
			Leaf:        leaf,
		},
		hash: hashOf(leaf),
	}, nil
}

// untilRotation is how long until the current certificate is due for
// rotation; zero or negative means now.
func (s *Store) untilRotation() time.Duration {
	at := s.cur.Load().cert.Leaf.NotAfter.Add(-s.cfg.RotateBefore)
	return at.Sub(s.now())
}

func (s *Store) runDev(ctx context.Context) error {
	failed := false
	for {
		wait := min(s.untilRotation(), s.recheck)
		if failed {
			wait = max(wait, s.retry)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			if !failed && s.untilRotation() > 0 {
				continue // woke up to recheck the clock, not to rotate
			}
		} else if ctx.Err() != nil {
			return nil
		}
		c, err := generate(s.cfg, s.now())
		if failed = err != nil; failed {
			s.log.Error("certs: dev certificate rotation failed, keeping the current one",
				"err", err, "retry_in", s.retry, "not_after", s.Hash().NotAfter)
			continue
		}
		old := s.Hash()
		s.swap(c)
		s.log.Info("certs: rotated dev certificate",
			"hash", c.hash.Value, "not_after", c.hash.NotAfter,
			"old_hash", old.Value, "old_not_after", old.NotAfter)
	}
}
