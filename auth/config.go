package auth

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Config configures a Verifier. Every field's zero value is usable; at least
// one key source (HMACSecrets, PublicKeys, PublicKeyFiles, JWKSFile, JWKSURL)
// or Anonymous must be set.
type Config struct {
	// HMACSecrets verify HS256 tokens. Give several to rotate: a token is
	// accepted if any of them verifies it. Each is at least 32 bytes. An HMAC
	// secret only ever verifies HS256, never RS256/ES256/EdDSA.
	HMACSecrets [][]byte

	// PublicKeys are PEM-encoded public keys or certificates ("PUBLIC KEY",
	// "RSA PUBLIC KEY", "CERTIFICATE"): RSA of at least 2048 bits for RS256,
	// ECDSA P-256 for ES256, Ed25519 for EdDSA. PublicKeyFiles names files
	// holding the same, read once by New.
	PublicKeys     [][]byte
	PublicKeyFiles []string

	// JWKSFile is the path of a JWK Set file, read by New (it must hold a
	// usable key then) and re-read every JWKSRefresh. JWKSURL is an http(s)
	// URL of a JWK Set, fetched in the background from New on and every
	// JWKSRefresh. Both sources are also refreshed when a token names a kid
	// they do not hold, at most once per JWKSMinInterval. On a failed
	// refresh the last good set stays in use.
	JWKSFile string
	JWKSURL  string
	// JWKSRefresh is the refresh period. Zero: 5 minutes.
	JWKSRefresh time.Duration
	// JWKSMinInterval is the least time between two refreshes triggered by
	// unknown kids. Zero: 30 seconds.
	JWKSMinInterval time.Duration
	// JWKSTimeout bounds one fetch of JWKSURL. Zero: 10 seconds.
	JWKSTimeout time.Duration
	// JWKSMaxBytes bounds a JWK Set file or response body. Zero: 1 MiB.
	JWKSMaxBytes int64
	// HTTPClient fetches JWKSURL. Nil: a client of its own, closed by Close.
	HTTPClient *http.Client

	// Audience, when set, must be one of the token's "aud" values. Issuer,
	// when set, must equal the token's "iss". A token without the claim is
	// refused.
	Audience string
	Issuer   string

	// Leeway absorbs clock skew when checking exp, nbf and iat. Zero: 5
	// seconds; negative: none.
	Leeway time.Duration

	// ExpiryOptional accepts tokens without "exp" (they never expire).
	// Default false: a token without "exp" is refused with bad_claims.
	ExpiryOptional bool

	// MaxTokenBytes refuses longer tokens before any parsing. Zero: 8 KiB.
	MaxTokenBytes int

	// Anonymous are the grants of a client that presents no token. Nil:
	// such a client is refused with reason "missing".
	Anonymous *Grants

	// Logger receives JWKS refresh failures. Nil: discard.
	Logger *slog.Logger

	// now is the clock; nil: time.Now. Tests set it.
	now func() time.Time
}

// Defaults for the zero values of Config.
const (
	DefaultJWKSRefresh     = 5 * time.Minute
	DefaultJWKSMinInterval = 30 * time.Second
	DefaultJWKSTimeout     = 10 * time.Second
	DefaultJWKSMaxBytes    = 1 << 20
	DefaultLeeway          = 5 * time.Second
	DefaultMaxTokenBytes   = 8 << 10
)

// maxUserBytes and maxInfoBytes bound the "sub" and "info" claims.
const (
	maxUserBytes = 256
	maxInfoBytes = 1024
)

func (c Config) withDefaults() Config {
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.JWKSMinInterval == 0 {
		c.JWKSMinInterval = DefaultJWKSMinInterval
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = DefaultJWKSTimeout
	}
	if c.JWKSMaxBytes == 0 {
		c.JWKSMaxBytes = DefaultJWKSMaxBytes
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// validate checks what withDefaults cannot fix; keys are checked as New
// loads them.
func (c Config) validate() error {
	if len(c.HMACSecrets) == 0 && len(c.PublicKeys) == 0 && len(c.PublicKeyFiles) == 0 &&
		c.JWKSFile == "" && c.JWKSURL == "" && c.Anonymous == nil {
		return fmt.Errorf("auth: config: no key source (HMACSecrets, PublicKeys, PublicKeyFiles, JWKSFile, JWKSURL) and no Anonymous grants")
	}
	for i, s := range c.HMACSecrets {
		if len(s) < minHMACBytes {
			return fmt.Errorf("auth: config: HMACSecrets[%d]: %d bytes, want at least %d", i, len(s), minHMACBytes)
		}
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("auth: config: JWKSURL: want an absolute http or https URL")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"JWKSRefresh", c.JWKSRefresh}, {"JWKSMinInterval", c.JWKSMinInterval}, {"JWKSTimeout", c.JWKSTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("auth: config: %s: negative duration %v", d.name, d.v)
		}
	}
	if c.JWKSMaxBytes < 0 {
		return fmt.Errorf("auth: config: JWKSMaxBytes: negative")
	}
	if c.MaxTokenBytes < 0 {
		return fmt.Errorf("auth: config: MaxTokenBytes: negative")
	}
	if c.Anonymous != nil {
		if err := c.Anonymous.Validate(); err != nil {
			return fmt.Errorf("auth: config: Anonymous: %w", err)
		}
	}
	return nil
}
