package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test keys, made once per test binary: RSA generation is slow.
type testKeys struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec1, ec2   *ecdsa.PrivateKey
	ed1, ed2   ed25519.PrivateKey
}

var keysOnce = sync.OnceValue(func() *testKeys {
	k := &testKeys{}
	var err error
	must := func() {
		if err != nil {
			panic(err)
		}
	}
	k.rsa1, err = rsa.GenerateKey(rand.Reader, 2048)
	must()
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must()
	k.ec1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must()
	k.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must()
	_, k.ed1, err = ed25519.GenerateKey(rand.Reader)
	must()
	_, k.ed2, err = ed25519.GenerateKey(rand.Reader)
	must()
	return k
})

var (
	secretA   = []byte("secret-A-0123456789abcdefghijklmnopqrstuv")
	secretB   = []byte("secret-B-0123456789abcdefghijklmnopqrstuv")
	secretOld = []byte("secret-OLD-123456789abcdefghijklmnopqrstu")
)

// testNow is the frozen clock of table tests: whole seconds, as in tokens.
var testNow = time.Unix(1_800_000_000, 0)

const (
	testAud = "switchyard"
	testIss = "https://id.example"
)

// claimsFor returns valid claims at testNow; edit the map to break them.
func claimsFor(user string) map[string]any {
	return map[string]any{
		"sub":  user,
		"exp":  testNow.Add(time.Hour).Unix(),
		"iat":  testNow.Add(-time.Minute).Unix(),
		"aud":  testAud,
		"iss":  testIss,
		"info": map[string]any{"name": "Ada"},
		"caps": []any{
			map[string]any{"channels": []string{"chat:*", "lobby"}, "allow": []string{"subscribe", "presence"}},
			map[string]any{"channels": []string{"chat:room-7"}, "allow": []string{"publish"}},
		},
	}
}

// sign signs claims with the library, the way an issuer would. kid is set
// in the header when non-empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// rawToken builds a token from any header and claims and a raw signature,
// without the library's help: for tokens no honest issuer makes.
func rawToken(t testing.TB, header, claims any, sig []byte) string {
	t.Helper()
	enc := func(v any) string {
		if b, ok := v.([]byte); ok {
			return base64.RawURLEncoding.EncodeToString(b)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// pemOf encodes a public key as a PKIX "PUBLIC KEY" block.
func pemOf(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// jwkOf encodes a public key as a JWK with kid.
func jwkOf(t testing.TB, kid string, pub crypto.PublicKey) map[string]any {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
	}
	t.Fatalf("jwkOf: %T", pub)
	return nil
}

// jwks encodes a JWK Set.
func jwks(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newVerifier makes a Verifier and closes it when the test ends.
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// reasonOf returns the reason of an *Error, "" for nil, and fails the test
// for any other error.
func reasonOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %T (%v), want *Error", err, err)
	}
	return e.Reason
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
