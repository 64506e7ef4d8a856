package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// The algorithms Verify accepts. Nothing else, ever: not "none", not HS384,
// not PS256.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

var allowedAlgs = []string{algHS256, algRS256, algES256, algEdDSA}

// minRSABits is the smallest RSA modulus accepted, from PEM or JWKS.
const minRSABits = 2048

// minHMACBytes is the shortest HMAC secret accepted (RFC 7518 §3.2: a key at
// least as long as the hash output).
const minHMACBytes = 32

// publicKey is one verification key for RS256, ES256 or EdDSA.
type publicKey struct {
	id  string           // the JWK "kid"; empty for PEM keys
	alg string           // the JWK "alg" if it named one; empty: any alg of the key's type
	key crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey on P-256, or ed25519.PublicKey
}

// algFor returns the one algorithm a key verifies.
func algFor(k crypto.PublicKey) string {
	switch k.(type) {
	case *rsa.PublicKey:
		return algRS256
	case *ecdsa.PublicKey:
		return algES256
	case ed25519.PublicKey:
		return algEdDSA
	}
	return ""
}

// usable reports whether k may verify a token signed with alg: the key type
// must be the one alg uses, and a JWK that names an alg must name this one.
func (k publicKey) usable(alg string) bool {
	return algFor(k.key) == alg && (k.alg == "" || k.alg == alg)
}

// checkPublicKey refuses key types, curves and sizes Verify does not accept.
func checkPublicKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key of %d bytes", len(k))
		}
	default:
		return fmt.Errorf("unsupported key type %T", k)
	}
	return nil
}

// parsePEMKeys returns every public key in data: "PUBLIC KEY" (PKIX), "RSA
// PUBLIC KEY" (PKCS #1) and "CERTIFICATE" blocks. A private key is refused:
// the verifier needs only the public half.
func parsePEMKeys(data []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var (
			k   crypto.PublicKey
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(block.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("PEM block %d is a private key: give the public key", n)
			}
			return nil, fmt.Errorf("PEM block %d: unsupported type %q", n, block.Type)
		}
		if err == nil {
			err = checkPublicKey(k)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, publicKey{key: k})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// jwk is the subset of RFC 7517/7518/8037 fields Verify uses.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS decodes a JWK Set. Keys Verify cannot use (encryption keys,
// symmetric "oct" keys, other curves, short RSA moduli, algorithms outside
// the allowed four) are skipped and counted; a set with no usable key at all
// is an error, so that a bad refresh never replaces a good set.
func parseJWKS(data []byte) (keys []publicKey, skipped int, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, 0, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	for _, raw := range set.Keys {
		var j jwk
		if json.Unmarshal(raw, &j) != nil {
			skipped++
			continue
		}
		k, err := j.publicKey()
		if err != nil {
			skipped++
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("JWKS has no usable key (%d skipped)", skipped)
	}
	return keys, skipped, nil
}

func (j jwk) publicKey() (publicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return publicKey{}, errors.New("not a signature key")
	}
	var (
		k   crypto.PublicKey
		err error
	)
	switch j.Kty {
	case "RSA":
		k, err = j.rsa()
	case "EC":
		k, err = j.ec()
	case "OKP":
		k, err = j.okp()
	default:
		return publicKey{}, fmt.Errorf("unsupported kty")
	}
	if err == nil {
		err = checkPublicKey(k)
	}
	if err != nil {
		return publicKey{}, err
	}
	if j.Alg != "" && j.Alg != algFor(k) {
		return publicKey{}, errors.New("alg does not fit the key")
	}
	return publicKey{id: j.Kid, alg: j.Alg, key: k}, nil
}

func (j jwk) rsa() (*rsa.PublicKey, error) {
	n, err := b64(j.N)
	if err != nil || len(n) == 0 {
		return nil, errors.New("bad n")
	}
	e, err := b64(j.E)
	e = bytes.TrimLeft(e, "\x00")
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("bad e")
	}
	var exp int
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
		return nil, errors.New("bad e")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

func (j jwk) ec() (*ecdsa.PublicKey, error) {
	if j.Crv != "P-256" {
		return nil, errors.New("unsupported crv")
	}
	x, err1 := b64(j.X)
	y, err2 := b64(j.Y)
	if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("bad x or y")
	}
	point := make([]byte, 0, 65)
	point = append(append(append(point, 4), x...), y...)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
}

func (j jwk) okp() (ed25519.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return nil, errors.New("unsupported crv")
	}
	x, err := b64(j.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, errors.New("bad x")
	}
	return ed25519.PublicKey(x), nil
}

// b64 decodes base64url without padding, tolerating padding some issuers add.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
