// Package auth verifies client tokens (JWT) into an Identity with channel
// grants, and checks API keys of the HTTP API. It does no I/O on the hot
// path except a rate-limited JWKS refresh when a token names an unknown key.
//
// # Tokens
//
// A token is a compact JWS (RFC 7515/7519), at most 8 KiB by default, signed
// with HS256 (HMAC secret), RS256 (RSA ≥ 2048 bits), ES256 (ECDSA P-256) or
// EdDSA (Ed25519). Any other "alg", "none" included, is refused, and each key
// verifies only its own algorithm: an HMAC secret never verifies RS256, an RSA
// key is never used as an HMAC secret. The optional "kid" header picks keys
// from a JWK Set; a "crit" header is refused; "jku", "jwk" and "x5u" are
// ignored (keys never come from the token).
//
// Claims:
//
//	sub   string     required; the user id, at most 256 bytes, no control characters
//	exp   NumericDate required unless Config.ExpiryOptional
//	nbf   NumericDate optional; not valid before (minus Leeway)
//	iat   NumericDate optional; a token issued in the future (beyond Leeway) is refused
//	aud   string or [string]  must contain Config.Audience when that is set
//	iss   string     must equal Config.Issuer when that is set
//	info  any JSON   optional; handed on as raw bytes, at most 1024 bytes
//	caps  [grant]    optional; absent means no channel is allowed
//
// A grant is {"channels": [pattern...], "allow": [action...]}. A pattern is
// an exact channel name, a prefix ending in "*" ("chat:*" matches "chat:x" but
// not "chat:" nor "chatx"), or "*" alone (any channel). Actions are
// "subscribe", "publish", "presence", "history" and "signal". Unknown fields,
// unknown actions and a "*" before the end make the token invalid
// (bad_claims). Example payload:
//
//	{
//	  "sub": "u-42", "exp": 1767225600, "aud": "switchyard", "iss": "https://id.example",
//	  "info": {"name": "Ada"},
//	  "caps": [
//	    {"channels": ["chat:*", "lobby"], "allow": ["subscribe", "presence", "history"]},
//	    {"channels": ["chat:room-7"], "allow": ["publish"]}
//	  ]
//	}
//
// # Errors
//
// Verify fails only with an *Error whose Reason is one of missing, too_large,
// malformed, bad_algorithm, unknown_key, bad_signature, wrong_issuer,
// wrong_audience, expired, not_yet_valid, bad_claims. Claims are checked only
// after the signature, in that order. No message holds the token or a key.
//
// # API keys
//
// APIKeys holds named keys with scopes publish, history, presence, nodes and
// admin (admin implies all). Check hashes the presented key and compares it
// with every stored hash in constant time.
package auth
