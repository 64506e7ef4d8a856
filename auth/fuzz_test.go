package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

var knownReasons = []string{
	"missing", "too_large", "malformed", "bad_algorithm", "unknown_key", "bad_signature",
	"wrong_issuer", "wrong_audience", "expired", "not_yet_valid", "bad_claims",
}

// FuzzVerify feeds arbitrary strings to a Verifier with every kind of key:
// it must never panic, and must fail only with an *Error of a known reason
// whose text holds none of the input.
func FuzzVerify(f *testing.F) {
	k := keysOnce()
	cfg := baseConfig(f)
	cfg.ExpiryOptional = true // let more mutated claims reach the later checks
	v, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)

	good := claimsFor("u-1")
	for _, s := range []string{
		sign(f, jwt.SigningMethodHS256, secretA, "", good),
		sign(f, jwt.SigningMethodHS256, secretB, "kid-1", good),
		sign(f, jwt.SigningMethodRS256, k.rsa1, "", good),
		sign(f, jwt.SigningMethodES256, k.ec1, "", good),
		sign(f, jwt.SigningMethodEdDSA, k.ed1, "", good),
		sign(f, jwt.SigningMethodHS256, secretA, "", map[string]any{"sub": "x", "caps": "x", "info": 1e300, "exp": 1e300}),
		sign(f, jwt.SigningMethodHS256, secretA, "", map[string]any{"sub": "x", "exp": -1, "nbf": "x", "aud": []any{1}}),
		rawToken(f, map[string]any{"alg": "none"}, good, nil),
		"", ".", "..", "...", "a.b.c", "e30.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(t.Context(), token)
		if err == nil {
			if token != "" && id.User == "" {
				t.Fatalf("accepted a token without a user")
			}
			if len(id.Info) > maxInfoBytes || len(id.User) > maxUserBytes || id.Grants.Validate() != nil {
				t.Fatalf("accepted an identity out of bounds: %+v", id)
			}
			return
		}
		e, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %T, want *Error", err)
		}
		if !slices.Contains(knownReasons, e.Reason) {
			t.Fatalf("unknown reason %q", e.Reason)
		}
		if len(token) >= 12 && strings.Contains(e.Error(), token) {
			t.Fatalf("error %q holds the token", e)
		}
	})
}

// FuzzVerifyClaims signs arbitrary claim bytes with a configured secret, so
// that every input passes the signature and reaches the claim checks.
func FuzzVerifyClaims(f *testing.F) {
	cfg := baseConfig(f)
	v, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	for _, c := range []map[string]any{
		claimsFor("u-1"),
		with(func(c map[string]any) { c["exp"] = 1e300; c["nbf"] = -1e300 }),
		with(func(c map[string]any) { c["aud"] = []any{"a", testAud}; c["info"] = []any{nil, 1.5, "x"} }),
		with(func(c map[string]any) {
			c["caps"] = []any{map[string]any{"channels": []string{"*"}, "allow": []string{"signal"}}}
		}),
	} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	f.Add([]byte(`{"sub":"x","exp":1800000100,"aud":"switchyard","iss":"https://id.example","caps":null,"info":null}`))
	f.Add([]byte(`{"sub":"x","exp":"1","caps":[{}]}`))
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		unsigned := header + "." + base64.RawURLEncoding.EncodeToString(claims)
		mac := hmac.New(sha256.New, secretA)
		mac.Write([]byte(unsigned))
		token := unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		id, err := v.Verify(t.Context(), token)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || !slices.Contains(knownReasons, e.Reason) {
				t.Fatalf("error %v (%T)", err, err)
			}
			if e.Reason == "bad_signature" || e.Reason == "bad_algorithm" {
				t.Fatalf("a correctly signed token refused with %q", e.Reason)
			}
			return
		}
		if id.User == "" || len(id.User) > maxUserBytes || len(id.Info) > maxInfoBytes || id.Grants.Validate() != nil {
			t.Fatalf("accepted an identity out of bounds: %+v", id)
		}
		if !id.Expires.After(testNow.Add(-cfg.withDefaults().Leeway)) {
			t.Fatalf("accepted a token expired at %v", id.Expires)
		}
	})
}

// FuzzGrants parses arbitrary "caps" JSON: no panic, and what parses is
// valid, survives a JSON round trip, and answers Allows.
func FuzzGrants(f *testing.F) {
	for _, s := range []string{
		`[{"channels": ["chat:*", "lobby"], "allow": ["subscribe", "presence"]}]`,
		`[{"channels": ["*"], "allow": ["publish", "history", "signal"]}]`,
		`[{"channels": ["a*b"], "allow": ["subscribe"]}]`,
		`[{"channels": [], "allow": []}]`,
		`[{"chanels": ["a"], "allow": ["subscribe"]}]`,
		`null`, `[]`, `[] x`, `{}`, `[{"channels": ["\u0000*"], "allow": ["subscribe"]}]`,
	} {
		f.Add([]byte(s), "chat:1")
	}
	f.Fuzz(func(t *testing.T, data []byte, channel string) {
		g, err := ParseGrants(data)
		if err != nil {
			return
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("ParseGrants accepted invalid grants: %v", err)
		}
		b, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseGrants(b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		for _, a := range []Action{Subscribe, Publish, Presence, History, Signal} {
			if g.Allows(channel, a) != back.Allows(channel, a) {
				t.Fatalf("round trip changed Allows(%q, %q)", channel, a)
			}
			if channel == "" && g.Allows(channel, a) {
				t.Fatalf("empty channel allowed")
			}
		}
	})
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := newVerifier(b, baseConfig(b))
	tok := sign(b, jwt.SigningMethodHS256, secretB, "", claimsFor("u-1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	v := newVerifier(b, baseConfig(b))
	tok := sign(b, jwt.SigningMethodES256, keysOnce().ec1, "", claimsFor("u-1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
