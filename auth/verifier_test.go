package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// baseConfig accepts HS256 with secretA and secretB, and the first RSA,
// ECDSA and Ed25519 test keys from PEM, at testNow.
func baseConfig(t testing.TB) Config {
	k := keysOnce()
	return Config{
		HMACSecrets: [][]byte{secretA, secretB},
		PublicKeys: [][]byte{
			pemOf(t, &k.rsa1.PublicKey),
			append(pemOf(t, &k.ec1.PublicKey), pemOf(t, k.ed1.Public())...), // two blocks in one
		},
		Audience: testAud,
		Issuer:   testIss,
		now:      func() time.Time { return testNow },
	}
}

// with returns claimsFor("u-1") changed by edit.
func with(edit func(c map[string]any)) map[string]any {
	c := claimsFor("u-1")
	edit(c)
	return c
}

// flipMiddle changes one character in the middle of segment i of a token.
func flipMiddle(tok string, i int) string {
	parts := strings.Split(tok, ".")
	s := []byte(parts[i])
	m := len(s) / 2
	if s[m] == 'A' {
		s[m] = 'B'
	} else {
		s[m] = 'A'
	}
	parts[i] = string(s)
	return strings.Join(parts, ".")
}

func TestVerifyTable(t *testing.T) {
	k := keysOnce()
	dir := t.TempDir()
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks(t,
		jwkOf(t, "r1", &k.rsa1.PublicKey),
		jwkOf(t, "r2", &k.rsa2.PublicKey),
		jwkOf(t, "e2", &k.ec2.PublicKey),
		jwkOf(t, "d2", k.ed2.Public()),
	), 0o600); err != nil {
		t.Fatal(err)
	}
	jwksOnly := func(c *Config) {
		c.HMACSecrets, c.PublicKeys = nil, nil
		c.JWKSFile = jwksPath
		c.JWKSMinInterval = time.Hour // a file is re-read on unknown kid at most once here
	}
	rsaPEM := pemOf(t, &k.rsa1.PublicKey)
	hs := func(c map[string]any) string { return sign(t, jwt.SigningMethodHS256, secretA, "", c) }
	valid := hs(claimsFor("u-1"))
	sig := strings.Split(valid, ".")[2]

	tests := []struct {
		name   string
		cfg    func(*Config) // nil: baseConfig
		token  string
		reason string // "" : accepted
		check  func(t *testing.T, id Identity)
	}{
		{name: "valid HS256", token: valid, check: func(t *testing.T, id Identity) {
			if id.User != "u-1" || string(id.Info) != `{"name":"Ada"}` || !id.Expires.Equal(testNow.Add(time.Hour)) {
				t.Errorf("identity = %+v", id)
			}
			if !id.Grants.Allows("chat:x", Subscribe) || !id.Grants.Allows("chat:room-7", Publish) ||
				id.Grants.Allows("chat:x", Publish) || id.Grants.Allows("chatx", Subscribe) {
				t.Errorf("grants = %+v", id.Grants)
			}
		}},
		{name: "rotation: second secret", token: sign(t, jwt.SigningMethodHS256, secretB, "", claimsFor("u-1"))},
		{name: "rotation: removed secret", token: sign(t, jwt.SigningMethodHS256, secretOld, "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "valid RS256", token: sign(t, jwt.SigningMethodRS256, k.rsa1, "", claimsFor("u-1"))},
		{name: "valid ES256", token: sign(t, jwt.SigningMethodES256, k.ec1, "", claimsFor("u-1"))},
		{name: "valid EdDSA", token: sign(t, jwt.SigningMethodEdDSA, k.ed1, "", claimsFor("u-1"))},
		{name: "forged signature", token: flipMiddle(valid, 2), reason: "bad_signature"},
		{name: "tampered claims", token: strings.Join([]string{strings.Split(valid, ".")[0],
			strings.Split(hs(claimsFor("admin")), ".")[1], sig}, "."), reason: "bad_signature"},
		{name: "signature of another token", token: strings.Split(hs(claimsFor("u-2")), ".")[0] + "." +
			strings.Split(hs(claimsFor("u-2")), ".")[1] + "." + sig, reason: "bad_signature"},
		{name: "wrong RSA key", token: sign(t, jwt.SigningMethodRS256, k.rsa2, "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "wrong ECDSA key", token: sign(t, jwt.SigningMethodES256, k.ec2, "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "wrong Ed25519 key", token: sign(t, jwt.SigningMethodEdDSA, k.ed2, "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "empty signature", token: strings.TrimSuffix(valid, sig), reason: "bad_signature"},
		{name: "expired", token: hs(with(func(c map[string]any) { c["exp"] = testNow.Add(-time.Minute).Unix() })), reason: "expired"},
		{name: "not yet valid", token: hs(with(func(c map[string]any) { c["nbf"] = testNow.Add(time.Minute).Unix() })), reason: "not_yet_valid"},
		{name: "issued in the future", token: hs(with(func(c map[string]any) { c["iat"] = testNow.Add(time.Minute).Unix() })), reason: "not_yet_valid"},
		{name: "leeway: exp 4s ago", token: hs(with(func(c map[string]any) { c["exp"] = testNow.Add(-4 * time.Second).Unix() }))},
		{name: "leeway: exp 5s ago", token: hs(with(func(c map[string]any) { c["exp"] = testNow.Add(-5 * time.Second).Unix() })), reason: "expired"},
		{name: "leeway: nbf in 5s", token: hs(with(func(c map[string]any) { c["nbf"] = testNow.Add(5 * time.Second).Unix() }))},
		{name: "leeway: nbf in 6s", token: hs(with(func(c map[string]any) { c["nbf"] = testNow.Add(6 * time.Second).Unix() })), reason: "not_yet_valid"},
		{name: "leeway off: exp now", cfg: func(c *Config) { c.Leeway = -1 },
			token: hs(with(func(c map[string]any) { c["exp"] = testNow.Unix() })), reason: "expired"},
		{name: "leeway off: exp in 1s", cfg: func(c *Config) { c.Leeway = -1 },
			token: hs(with(func(c map[string]any) { c["exp"] = testNow.Add(time.Second).Unix() }))},
		{name: "leeway 1m: exp 59s ago", cfg: func(c *Config) { c.Leeway = time.Minute },
			token: hs(with(func(c map[string]any) { c["exp"] = testNow.Add(-59 * time.Second).Unix() }))},
		{name: "no exp", token: hs(with(func(c map[string]any) { delete(c, "exp") })), reason: "bad_claims"},
		{name: "no exp, ExpiryOptional", cfg: func(c *Config) { c.ExpiryOptional = true },
			token: hs(with(func(c map[string]any) { delete(c, "exp") })), check: func(t *testing.T, id Identity) {
				if !id.Expires.IsZero() {
					t.Errorf("Expires = %v, want zero", id.Expires)
				}
			}},
		{name: "exp not a number", token: hs(with(func(c map[string]any) { c["exp"] = "tomorrow" })), reason: "malformed"},
		{name: "wrong audience", token: hs(with(func(c map[string]any) { c["aud"] = "other" })), reason: "wrong_audience"},
		{name: "no audience", token: hs(with(func(c map[string]any) { delete(c, "aud") })), reason: "wrong_audience"},
		{name: "audience list", token: hs(with(func(c map[string]any) { c["aud"] = []string{"other", testAud} }))},
		{name: "audience not checked when unset", cfg: func(c *Config) { c.Audience = "" },
			token: hs(with(func(c map[string]any) { c["aud"] = "other" }))},
		{name: "wrong issuer", token: hs(with(func(c map[string]any) { c["iss"] = "https://evil.example" })), reason: "wrong_issuer"},
		{name: "no issuer", token: hs(with(func(c map[string]any) { delete(c, "iss") })), reason: "wrong_issuer"},
		{name: "alg none", token: rawToken(t, map[string]any{"alg": "none", "typ": "JWT"}, claimsFor("u-1"), nil), reason: "bad_algorithm"},
		{name: "alg None", token: rawToken(t, map[string]any{"alg": "None"}, claimsFor("u-1"), nil), reason: "bad_algorithm"},
		{name: "alg none with a signature", token: rawToken(t, map[string]any{"alg": "none"}, claimsFor("u-1"), []byte("x")), reason: "bad_algorithm"},
		{name: "no alg", token: rawToken(t, map[string]any{"typ": "JWT"}, claimsFor("u-1"), []byte("x")), reason: "bad_algorithm"},
		{name: "alg not a string", token: rawToken(t, map[string]any{"alg": 256}, claimsFor("u-1"), []byte("x")), reason: "bad_algorithm"},
		{name: "HS512 refused", token: sign(t, jwt.SigningMethodHS512, secretA, "", claimsFor("u-1")), reason: "bad_algorithm"},
		{name: "PS256 refused", token: sign(t, jwt.SigningMethodPS256, k.rsa1, "", claimsFor("u-1")), reason: "bad_algorithm"},
		{name: "ES384 refused", token: rawToken(t, map[string]any{"alg": "ES384"}, claimsFor("u-1"), make([]byte, 96)), reason: "bad_algorithm"},
		{name: "confusion: HS256 with RSA PEM as secret, no HMAC configured", cfg: func(c *Config) { c.HMACSecrets = nil },
			token: sign(t, jwt.SigningMethodHS256, rsaPEM, "", claimsFor("u-1")), reason: "bad_algorithm"},
		{name: "confusion: HS256 with RSA PEM as secret", token: sign(t, jwt.SigningMethodHS256, rsaPEM, "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "confusion: HS256 with RSA DER as secret", token: sign(t, jwt.SigningMethodHS256,
			must(x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)), "", claimsFor("u-1")), reason: "bad_signature"},
		{name: "confusion: RS256 header on an HMAC signature", token: rawToken(t, map[string]any{"alg": "RS256"},
			claimsFor("u-1"), []byte(sig)), reason: "bad_signature"},
		{name: "confusion: EdDSA header on an ES256 signature", token: func() string {
			parts := strings.Split(sign(t, jwt.SigningMethodES256, k.ec1, "", claimsFor("u-1")), ".")
			return rawToken(t, map[string]any{"alg": "EdDSA"}, claimsFor("u-1"), decodeSeg(t, parts[2]))
		}(), reason: "bad_signature"},
		{name: "RS256 not configured", cfg: func(c *Config) { c.PublicKeys = nil },
			token: sign(t, jwt.SigningMethodRS256, k.rsa1, "", claimsFor("u-1")), reason: "bad_algorithm"},
		{name: "oversized", token: hs(with(func(c map[string]any) { c["pad"] = strings.Repeat("x", 9000) })), reason: "too_large"},
		{name: "oversized before parsing", token: strings.Repeat("!", DefaultMaxTokenBytes+1), reason: "too_large"},
		{name: "MaxTokenBytes smaller", cfg: func(c *Config) { c.MaxTokenBytes = 100 }, token: valid, reason: "too_large"},
		{name: "garbage", token: "this is not a token", reason: "malformed"},
		{name: "two segments", token: strings.Join(strings.Split(valid, ".")[:2], "."), reason: "malformed"},
		{name: "four segments", token: valid + ".x", reason: "malformed"},
		{name: "dots only", token: "..", reason: "malformed"},
		{name: "bad base64 header", token: "e30!." + strings.SplitN(valid, ".", 2)[1], reason: "malformed"},
		{name: "bad base64 claims", token: strings.Split(valid, ".")[0] + ".*." + sig, reason: "malformed"},
		{name: "bad base64 signature", token: strings.TrimSuffix(valid, sig) + "%%%", reason: "malformed"},
		{name: "padded base64", token: strings.Replace(valid, ".", "=.", 1), reason: "malformed"},
		{name: "header not JSON", token: rawToken(t, []byte("{alg"), claimsFor("u-1"), nil), reason: "malformed"},
		{name: "claims an array", token: rawToken(t, map[string]any{"alg": "HS256"}, []any{1}, nil), reason: "malformed"},
		{name: "kid not a string", token: rawToken(t, map[string]any{"alg": "HS256", "kid": 7}, claimsFor("u-1"), nil), reason: "malformed"},
		{name: "crit header", token: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claimsFor("u-1")))
			tok.Header["crit"] = []string{"exp"}
			return must(tok.SignedString(secretA))
		}(), reason: "malformed"},
		{name: "caps unknown action", token: hs(with(func(c map[string]any) {
			c["caps"] = []any{map[string]any{"channels": []string{"a"}, "allow": []string{"subscribe", "admin"}}}
		})), reason: "bad_claims"},
		{name: "caps star in the middle", token: hs(with(func(c map[string]any) {
			c["caps"] = []any{map[string]any{"channels": []string{"chat:*:x"}, "allow": []string{"subscribe"}}}
		})), reason: "bad_claims"},
		{name: "caps misspelt field", token: hs(with(func(c map[string]any) {
			c["caps"] = []any{map[string]any{"channel": []string{"a"}, "allow": []string{"subscribe"}}}
		})), reason: "bad_claims"},
		{name: "caps not a list", token: hs(with(func(c map[string]any) { c["caps"] = "everything" })), reason: "bad_claims"},
		{name: "no caps allows nothing", token: hs(with(func(c map[string]any) { delete(c, "caps") })),
			check: func(t *testing.T, id Identity) {
				if id.Grants != nil || id.Grants.Allows("lobby", Subscribe) {
					t.Errorf("grants = %+v", id.Grants)
				}
			}},
		{name: "sub missing", token: hs(with(func(c map[string]any) { delete(c, "sub") })), reason: "bad_claims"},
		{name: "sub 256 bytes", token: hs(claimsFor(strings.Repeat("u", 256)))},
		{name: "sub 257 bytes", token: hs(claimsFor(strings.Repeat("u", 257))), reason: "bad_claims"},
		{name: "sub with newline", token: hs(claimsFor("u-1\nFAKE LOG LINE")), reason: "bad_claims"},
		{name: "sub not a string", token: hs(with(func(c map[string]any) { c["sub"] = 42 })), reason: "malformed"},
		{name: "info 1024 bytes", token: hs(with(func(c map[string]any) { c["info"] = strings.Repeat("i", 1022) }))},
		{name: "info 1025 bytes", token: hs(with(func(c map[string]any) { c["info"] = strings.Repeat("i", 1023) })), reason: "bad_claims"},
		{name: "info null", token: hs(with(func(c map[string]any) { c["info"] = nil })), check: func(t *testing.T, id Identity) {
			if id.Info != nil {
				t.Errorf("Info = %q, want nil", id.Info)
			}
		}},
		{name: "JWKS file: key chosen by kid", cfg: jwksOnly, token: sign(t, jwt.SigningMethodRS256, k.rsa2, "r2", claimsFor("u-1"))},
		{name: "JWKS file: ES256 by kid", cfg: jwksOnly, token: sign(t, jwt.SigningMethodES256, k.ec2, "e2", claimsFor("u-1"))},
		{name: "JWKS file: EdDSA by kid", cfg: jwksOnly, token: sign(t, jwt.SigningMethodEdDSA, k.ed2, "d2", claimsFor("u-1"))},
		{name: "JWKS file: no kid tries all", cfg: jwksOnly, token: sign(t, jwt.SigningMethodRS256, k.rsa2, "", claimsFor("u-1"))},
		{name: "JWKS file: kid of another key", cfg: jwksOnly, token: sign(t, jwt.SigningMethodRS256, k.rsa2, "r1", claimsFor("u-1")), reason: "bad_signature"},
		{name: "JWKS file: unknown kid", cfg: jwksOnly, token: sign(t, jwt.SigningMethodRS256, k.rsa2, "r9", claimsFor("u-1")), reason: "unknown_key"},
		{name: "JWKS file: kid of an EC key on RS256", cfg: jwksOnly, token: sign(t, jwt.SigningMethodRS256, k.rsa2, "e2", claimsFor("u-1")), reason: "bad_algorithm"},
		{name: "JWKS file: HS256 refused", cfg: jwksOnly, token: valid, reason: "bad_algorithm"},
		{name: "anonymous refused", token: "", reason: "missing"},
		{name: "anonymous allowed", cfg: func(c *Config) {
			c.Anonymous = &Grants{{Channels: []string{"public:*"}, Allow: []Action{Subscribe}}}
		}, token: "", check: func(t *testing.T, id Identity) {
			if !id.Anonymous() || !id.Grants.Allows("public:news", Subscribe) || id.Grants.Allows("public:news", Publish) {
				t.Errorf("identity = %+v", id)
			}
		}},
	}
	secrets := [][]byte{secretA, secretB, secretOld, rsaPEM}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v := newVerifier(t, cfg)
			id, err := v.Verify(t.Context(), tc.token)
			if got := reasonOf(t, err); got != tc.reason {
				t.Fatalf("reason = %q (%v), want %q", got, err, tc.reason)
			}
			if err != nil {
				t.Log(err)
				msg := err.Error()
				for _, seg := range strings.Split(tc.token, ".") {
					if len(seg) >= 8 && strings.Contains(msg, seg) {
						t.Errorf("error %q holds part of the token", msg)
					}
				}
				for _, s := range secrets {
					if strings.Contains(msg, string(s[:16])) {
						t.Errorf("error %q holds a secret", msg)
					}
				}
				if !errors.Is(err, &Error{Reason: tc.reason}) {
					t.Errorf("errors.Is by reason failed")
				}
				if id.User != "" || id.Grants != nil {
					t.Errorf("identity %+v returned with an error", id)
				}
				return
			}
			if tc.check != nil {
				tc.check(t, id)
			} else if id.User == "" && tc.token != "" {
				t.Errorf("no user in %+v", id)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func decodeSeg(t testing.TB, s string) []byte {
	t.Helper()
	b, err := jwt.NewParser().DecodeSegment(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyReturnsCopies(t *testing.T) {
	anon := Grants{{Channels: []string{"public:*"}, Allow: []Action{Subscribe}}}
	cfg := baseConfig(t)
	cfg.Anonymous = &anon
	v := newVerifier(t, cfg)
	anon[0].Channels[0] = "*" // the caller's later edits do not reach the verifier
	id, err := v.Verify(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	id.Grants[0].Allow[0] = Publish // nor do edits of a returned identity
	id2, _ := v.Verify(t.Context(), "")
	if !id2.Grants.Allows("public:x", Subscribe) || id2.Grants.Allows("private", Subscribe) {
		t.Fatalf("anonymous grants changed: %+v", id2.Grants)
	}
}

func TestNewConfigErrors(t *testing.T) {
	k := keysOnce()
	dir := t.TempDir()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(k.ec1))})
	emptyJWKS := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(emptyJWKS, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "no key source"},
		{"short secret", Config{HMACSecrets: [][]byte{secretA, []byte("short")}}, "HMACSecrets[1]"},
		{"PEM garbage", Config{PublicKeys: [][]byte{[]byte("hello")}}, "PublicKeys[0]"},
		{"private key PEM", Config{PublicKeys: [][]byte{privPEM}}, "private key"},
		{"P-384 key", Config{PublicKeys: [][]byte{pemOf(t, &p384.PublicKey)}}, "P-256"},
		{"RSA 1024", Config{PublicKeys: [][]byte{pemOf(t, &rsa1024.PublicKey)}}, "2048"},
		{"missing key file", Config{PublicKeyFiles: []string{filepath.Join(dir, "nope.pem")}}, "PublicKeyFiles[0]"},
		{"missing JWKS file", Config{JWKSFile: filepath.Join(dir, "nope.json")}, "JWKSFile"},
		{"JWKS file without usable key", Config{JWKSFile: emptyJWKS}, "JWKSFile"},
		{"JWKS URL scheme", Config{JWKSURL: "ftp://example.com/jwks"}, "JWKSURL"},
		{"JWKS URL relative", Config{JWKSURL: "/jwks"}, "JWKSURL"},
		{"negative refresh", Config{HMACSecrets: [][]byte{secretA}, JWKSRefresh: -time.Second}, "JWKSRefresh"},
		{"negative timeout", Config{HMACSecrets: [][]byte{secretA}, JWKSTimeout: -time.Second}, "JWKSTimeout"},
		{"negative max token", Config{HMACSecrets: [][]byte{secretA}, MaxTokenBytes: -1}, "MaxTokenBytes"},
		{"bad anonymous grants", Config{Anonymous: &Grants{{Channels: []string{"a*b"}, Allow: []Action{Subscribe}}}}, "Anonymous"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err == nil {
				v.Close()
				t.Fatalf("New succeeded, want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if strings.Contains(err.Error(), string(secretA)) {
				t.Fatalf("error %q holds a secret", err)
			}
		})
	}
}

func TestPEMFormats(t *testing.T) {
	k := keysOnce()
	dir := t.TempDir()
	// A PKCS #1 RSA key in a file, and a certificate.
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa2.PublicKey)})
	path := filepath.Join(dir, "rsa.pem")
	if err := os.WriteFile(path, pkcs1, 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.ec2.PublicKey, k.ec2)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	v := newVerifier(t, Config{PublicKeyFiles: []string{path}, PublicKeys: [][]byte{cert}, now: func() time.Time { return testNow }})
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, k.rsa2, "", claimsFor("u-1")),
		sign(t, jwt.SigningMethodES256, k.ec2, "", claimsFor("u-1")),
	} {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	v, err := New(baseConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close()
	// Verify still works after Close, with the keys it has.
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secretA, "", claimsFor("u-1"))); err != nil {
		t.Fatal(err)
	}
}
