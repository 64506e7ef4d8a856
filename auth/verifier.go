package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is who a verified token speaks for and what it allows.
type Identity struct {
	User    string    // the "sub" claim; empty only for an anonymous identity
	Info    []byte    // the "info" claim as raw JSON, or nil
	Grants  Grants    // the "caps" claim; nil allows nothing
	Expires time.Time // the "exp" claim; zero: never (anonymous, or ExpiryOptional)
}

// Anonymous reports whether the identity came from an empty token.
func (id Identity) Anonymous() bool { return id.User == "" }

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	// immutable after New
	cfg       Config
	hmac      []jwt.VerificationKey // []byte secrets, HS256 only
	static    []publicKey           // from PEM
	sources   []*jwksSource         // JWKSFile, then JWKSURL
	anonymous *Grants
	parser    *jwt.Parser
	ownClient *http.Client // made by New, idle connections closed by Close

	cancel    context.CancelFunc
	loops     sync.WaitGroup // one refresh loop per source
	closeOnce sync.Once
}

// New checks cfg, loads its keys and starts the JWKS refresh loops. Errors
// name the Config field at fault. A JWKSFile must load now; a JWKSURL is
// fetched in the background, and tokens wait for that first fetch.
func New(cfg Config) (*Verifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		cfg: cfg,
		parser: jwt.NewParser(
			jwt.WithValidMethods(allowedAlgs),
			jwt.WithStrictDecoding(),
			jwt.WithoutClaimsValidation(), // done by identity, with reasons
		),
	}
	for _, s := range cfg.HMACSecrets {
		v.hmac = append(v.hmac, bytes.Clone(s))
	}
	for i, data := range cfg.PublicKeys {
		keys, err := parsePEMKeys(data)
		if err != nil {
			return nil, fmt.Errorf("auth: config: PublicKeys[%d]: %w", i, err)
		}
		v.static = append(v.static, keys...)
	}
	for i, path := range cfg.PublicKeyFiles {
		data, err := os.ReadFile(path)
		if err == nil {
			var keys []publicKey
			if keys, err = parsePEMKeys(data); err == nil {
				v.static = append(v.static, keys...)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("auth: config: PublicKeyFiles[%d]: %w", i, err)
		}
	}
	if cfg.Anonymous != nil {
		g := cfg.Anonymous.clone()
		v.anonymous = &g
	}

	base, cancel := context.WithCancel(context.Background())
	newSource := func(name string, load func(context.Context) ([]byte, error)) *jwksSource {
		return &jwksSource{
			name: name, load: load, minGap: cfg.JWKSMinInterval, timeout: cfg.JWKSTimeout,
			log: cfg.Logger, now: cfg.now, base: base,
		}
	}
	if cfg.JWKSFile != "" {
		src := newSource("JWKSFile", fileLoader(cfg.JWKSFile, cfg.JWKSMaxBytes))
		if err := src.reload(base); err != nil {
			cancel()
			return nil, fmt.Errorf("auth: config: JWKSFile: %w", err)
		}
		v.sources = append(v.sources, src)
	}
	if cfg.JWKSURL != "" {
		client := cfg.HTTPClient
		if client == nil {
			v.ownClient = &http.Client{
				Transport:     http.DefaultTransport.(*http.Transport).Clone(),
				CheckRedirect: checkRedirect,
			}
			client = v.ownClient
		}
		src := newSource("JWKSURL", urlLoader(client, cfg.JWKSURL, cfg.JWKSMaxBytes))
		src.trigger(false)
		v.sources = append(v.sources, src)
	}
	v.cancel = cancel
	for _, src := range v.sources {
		v.loops.Go(func() { src.loop(cfg.JWKSRefresh) })
	}
	return v, nil
}

// checkRedirect follows at most 5 redirects and never from https to http.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("redirect from https to http refused")
	}
	return nil
}

// Close stops the JWKS refreshes and waits for them. Verify keeps working
// with the keys it has. Close is idempotent.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		for _, src := range v.sources {
			src.shutdown()
		}
		v.loops.Wait()
		if v.ownClient != nil {
			v.ownClient.CloseIdleConnections()
		}
	})
}

// Verify checks token and returns the identity it carries. An empty token
// gets the Anonymous grants, or ErrMissing. On failure the error is always an
// *Error; see its reasons. Verify waits for a JWKS refresh only when the
// token names a key not yet known, and then no longer than ctx allows.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		if v.anonymous == nil {
			return Identity{}, fail(ErrMissing, "no token and anonymous access is off")
		}
		return Identity{Grants: v.anonymous.clone()}, nil
	}
	if len(token) > v.cfg.MaxTokenBytes {
		return Identity{}, fail(ErrTooLarge, fmt.Sprintf("token longer than %d bytes", v.cfg.MaxTokenBytes))
	}
	var c claims
	t, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		return v.keys(ctx, t)
	})
	if err != nil {
		return Identity{}, classify(t, err)
	}
	return v.identity(&c)
}

// claims is the token payload. Caps stays raw until the signature is
// verified, so that only a verified token gets its grants validated.
type claims struct {
	jwt.RegisteredClaims
	Info json.RawMessage `json:"info"`
	Caps json.RawMessage `json:"caps"`
}

// classify turns a parse failure into an *Error.
func classify(t *jwt.Token, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if t == nil {
		return fail(ErrMalformed, "token must be three dot-separated segments")
	}
	if t.Header == nil {
		return fail(ErrMalformed, "header is not base64url-encoded JSON")
	}
	if alg, ok := t.Header["alg"].(string); !ok || !slices.Contains(allowedAlgs, alg) {
		return fail(ErrBadAlgorithm, "alg must be one of HS256, RS256, ES256, EdDSA")
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ErrMalformed, "claims or signature do not decode, or a claim has the wrong JSON type")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ErrBadSignature, ErrBadSignature.Message)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return fail(ErrBadAlgorithm, ErrBadAlgorithm.Message)
	}
	return fail(ErrMalformed, ErrMalformed.Message)
}

// methods pins each allowed alg to the library's implementation, so that a
// method registered under the same name elsewhere is not used.
var methods = map[string]jwt.SigningMethod{
	algHS256: jwt.SigningMethodHS256,
	algRS256: jwt.SigningMethodRS256,
	algES256: jwt.SigningMethodES256,
	algEdDSA: jwt.SigningMethodEdDSA,
}

// keys returns the keys that may verify t. The set depends on alg: HMAC
// secrets for HS256 only, and for the others only public keys of the
// matching type. So no key ever verifies an algorithm it was not made for.
func (v *Verifier) keys(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if m, ok := methods[alg]; !ok || m != t.Method {
		return nil, fail(ErrBadAlgorithm, "alg must be one of HS256, RS256, ES256, EdDSA")
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, fail(ErrMalformed, "crit header is not supported")
	}
	var kid string
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, fail(ErrMalformed, "kid must be a string")
		}
		kid = s
	}
	if alg == algHS256 {
		if len(v.hmac) == 0 {
			return nil, fail(ErrBadAlgorithm, "HS256 is not configured")
		}
		return jwt.VerificationKeySet{Keys: v.hmac}, nil
	}

	var keys []jwt.VerificationKey
	for _, k := range v.static {
		if k.usable(alg) {
			keys = append(keys, k.key)
		}
	}
	if len(keys) == 0 && len(v.sources) == 0 {
		return nil, fail(ErrBadAlgorithm, alg+" is not configured")
	}
	fromSets, kidSeen := v.jwksKeys(alg, kid)
	// Refresh when the sets lack the key the token names, or, without a kid,
	// when no key at all could verify it. A token that static keys can
	// verify never waits for a fetch.
	if len(fromSets) == 0 && len(v.sources) > 0 && (kid != "" || len(keys) == 0) {
		for _, src := range v.sources {
			src.refresh(ctx, true)
		}
		fromSets, kidSeen = v.jwksKeys(alg, kid)
	}
	keys = append(keys, fromSets...)
	switch {
	case len(keys) > 0:
		return jwt.VerificationKeySet{Keys: keys}, nil
	case kidSeen:
		return nil, fail(ErrBadAlgorithm, "the key named by kid is not for "+alg)
	case kid != "":
		return nil, fail(ErrUnknownKey, "no key with this kid")
	}
	return nil, fail(ErrUnknownKey, "no key for "+alg)
}

// jwksKeys returns the JWKS keys usable for alg: those with the kid when one
// is given, else all. kidSeen reports a key with the kid, usable or not.
func (v *Verifier) jwksKeys(alg, kid string) (keys []jwt.VerificationKey, kidSeen bool) {
	for _, src := range v.sources {
		for _, k := range src.current() {
			if kid != "" {
				if k.id != kid {
					continue
				}
				kidSeen = true
			}
			if k.usable(alg) {
				keys = append(keys, k.key)
			}
		}
	}
	return keys, kidSeen
}

// identity checks the verified claims and builds the Identity. The order of
// checks is the order of precedence of the reasons.
func (v *Verifier) identity(c *claims) (Identity, error) {
	now, leeway := v.cfg.now(), v.cfg.Leeway
	if v.cfg.Issuer != "" && c.Issuer != v.cfg.Issuer {
		return Identity{}, fail(ErrWrongIssuer, ErrWrongIssuer.Message)
	}
	if v.cfg.Audience != "" && !slices.Contains(c.Audience, v.cfg.Audience) {
		return Identity{}, fail(ErrWrongAudience, ErrWrongAudience.Message)
	}
	var expires time.Time
	switch {
	case c.ExpiresAt != nil:
		expires = c.ExpiresAt.Time
		if !now.Before(expires.Add(leeway)) {
			return Identity{}, fail(ErrExpired, ErrExpired.Message)
		}
	case !v.cfg.ExpiryOptional:
		return Identity{}, fail(ErrBadClaims, "exp is required")
	}
	if c.NotBefore != nil && now.Before(c.NotBefore.Add(-leeway)) {
		return Identity{}, fail(ErrNotYetValid, ErrNotYetValid.Message)
	}
	if c.IssuedAt != nil && now.Before(c.IssuedAt.Add(-leeway)) {
		return Identity{}, fail(ErrNotYetValid, "token issued in the future")
	}

	switch {
	case c.Subject == "":
		return Identity{}, fail(ErrBadClaims, "sub is required")
	case len(c.Subject) > maxUserBytes:
		return Identity{}, fail(ErrBadClaims, fmt.Sprintf("sub longer than %d bytes", maxUserBytes))
	case hasControl(c.Subject):
		return Identity{}, fail(ErrBadClaims, "sub contains control characters")
	}
	var info []byte
	if len(c.Info) > maxInfoBytes {
		return Identity{}, fail(ErrBadClaims, fmt.Sprintf("info longer than %d bytes", maxInfoBytes))
	}
	if len(c.Info) > 0 && string(c.Info) != "null" {
		info = c.Info
	}
	var grants Grants
	if len(c.Caps) > 0 {
		g, err := decodeGrants(c.Caps)
		if err != nil {
			return Identity{}, fail(ErrBadClaims, `caps must be a list of {"channels": [...], "allow": [...]}`)
		}
		if err := g.Validate(); err != nil {
			return Identity{}, fail(ErrBadClaims, "caps: "+err.Error())
		}
		grants = g
	}
	return Identity{User: c.Subject, Info: info, Grants: grants, Expires: expires}, nil
}

// hasControl reports whether s has a control character.
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}
