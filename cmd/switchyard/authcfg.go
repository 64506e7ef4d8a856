package main

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/edge"
)

// secretValue reads a secret given as a value or @FILE (trailing space
// and newlines dropped).
func secretValue(option, v string) (string, error) {
	if !strings.HasPrefix(v, "@") {
		return v, nil
	}
	b, err := os.ReadFile(v[1:])
	if err != nil {
		return "", fmt.Errorf("%s: %w", option, err)
	}
	s := strings.TrimRight(string(b), " \t\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", option, v[1:])
	}
	return s, nil
}

// tokenKeys reports whether any token key source is configured.
func (a authOptions) tokenKeys() bool {
	return len(a.hmacSecrets) > 0 || len(a.publicKeys) > 0 || a.jwksFile != "" || a.jwksURL != ""
}

// newVerifier builds the token checks of o.auth; nil when no token key is
// set and anonymous clients may do anything (the dev node).
func newVerifier(o options, logger *slog.Logger) (*auth.Verifier, error) {
	a := o.auth
	if !a.tokenKeys() && (a.anonymous == "" || a.anonymous == "all") {
		if !o.loopback() {
			logger.Warn("auth.anonymous all: any client may connect and do anything")
		}
		return nil, nil // open: the dev node on loopback, or asked for
	}
	cfg := auth.Config{
		PublicKeyFiles: a.publicKeys, JWKSFile: a.jwksFile, JWKSURL: a.jwksURL, JWKSRefresh: a.jwksRefresh,
		Audience: a.audience, Issuer: a.issuer, Leeway: a.leeway, Logger: logger,
	}
	if a.leeway == 0 {
		cfg.Leeway = -1 // zero in the config means none; zero in auth.Config means the default
	}
	for _, s := range a.hmacSecrets {
		v, err := secretValue("auth.hmac_secrets", s)
		if err != nil {
			return nil, err
		}
		cfg.HMACSecrets = append(cfg.HMACSecrets, []byte(v))
	}
	switch a.anonymous {
	case "", "none":
	case "all":
		all := auth.Grants{{Channels: []string{"*"}, Allow: []auth.Action{auth.Subscribe, auth.Publish, auth.Presence, auth.History, auth.Signal}}}
		cfg.Anonymous = &all
	default:
		g, err := auth.ParseGrants([]byte(a.anonymous))
		if err != nil {
			return nil, fmt.Errorf("auth.anonymous: %w", err)
		}
		cfg.Anonymous = &g
	}
	if !a.tokenKeys() {
		// Anonymous grants alone: every client is anonymous. A token then
		// cannot be checked: refuse tokens rather than ignore them.
		cfg.HMACSecrets = [][]byte{randomSecret()}
	}
	v, err := auth.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return v, nil
}

// newAPIKeys reads api_keys: NAME:KEY:SCOPE+SCOPE, KEY a value or @FILE.
func newAPIKeys(entries []string) (*auth.APIKeys, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	var keys []auth.APIKey
	for _, e := range entries {
		parts := strings.SplitN(e, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("api_keys: want NAME:KEY:SCOPE+SCOPE")
		}
		key, err := secretValue("api_keys "+parts[0], parts[1])
		if err != nil {
			return nil, err
		}
		keys = append(keys, auth.APIKey{Name: parts[0], Key: key, Scopes: strings.Split(parts[2], "+")})
	}
	k, err := auth.NewAPIKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("api_keys: %w", err)
	}
	return k, nil
}

// limitsOf fills edge.Limits from the options.
func limitsOf(o options) edge.Limits {
	l := o.limits
	l.ConnectRate, l.ConnectBurst = float64(o.connectRate), o.connectBurst
	l.PublishRate, l.PublishBurst = float64(o.publishRate), o.publishBurst
	l.UserPublishRate, l.UserPublishBurst = float64(o.userPubRate), o.userPubBurst
	l.ChannelPublishRate, l.ChannelPublishBurst = float64(o.chanPubRate), o.chanPubBurst
	return l
}

// acmeManager gets and renews the certificates of acme.domains from an
// ACME CA, keeping them in acme.cache_dir.
func acmeManager(o options) *autocert.Manager {
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(o.acmeDomains...),
		Cache:      autocert.DirCache(o.acmeCacheDir),
		Email:      o.acmeEmail,
	}
	if o.acmeDirectory != "" {
		m.Client = &acme.Client{DirectoryURL: o.acmeDirectory}
	}
	return m
}

// randomSecret is an HMAC secret nobody knows: no token verifies with it.
func randomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}
