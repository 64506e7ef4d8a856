package auth

// Error is why a token, or an API key, was refused. Reason is a short machine
// string meant for a close frame's reason and for logs; Message says the same
// for a person. Neither ever holds the token, a key or a secret, nor a value
// copied from the token.
//
// Compare with errors.Is against the Err values below: two *Error match when
// their reasons are equal.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return "auth: " + e.Reason + ": " + e.Message }

// Is reports whether target is an *Error with the same Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// Reasons, as sentinels for errors.Is. Verify returns only these reasons;
// APIKeys.Check returns ErrMissing, ErrUnknownKey and ErrForbidden.
var (
	ErrMissing       = &Error{Reason: "missing", Message: "no credentials"}
	ErrTooLarge      = &Error{Reason: "too_large", Message: "token too large"}
	ErrMalformed     = &Error{Reason: "malformed", Message: "token is not a well-formed JWT"}
	ErrBadAlgorithm  = &Error{Reason: "bad_algorithm", Message: "algorithm not accepted"}
	ErrUnknownKey    = &Error{Reason: "unknown_key", Message: "no key to verify the token"}
	ErrBadSignature  = &Error{Reason: "bad_signature", Message: "signature does not verify"}
	ErrWrongIssuer   = &Error{Reason: "wrong_issuer", Message: "token issuer not accepted"}
	ErrWrongAudience = &Error{Reason: "wrong_audience", Message: "token audience not accepted"}
	ErrExpired       = &Error{Reason: "expired", Message: "token expired"}
	ErrNotYetValid   = &Error{Reason: "not_yet_valid", Message: "token not valid yet"}
	ErrBadClaims     = &Error{Reason: "bad_claims", Message: "token claims are invalid"}
	ErrForbidden     = &Error{Reason: "forbidden", Message: "key lacks the scope"}
)

// fail returns a fresh *Error with the reason of base and a more precise
// message. Messages are constants chosen here, never text from the token.
func fail(base *Error, msg string) *Error {
	return &Error{Reason: base.Reason, Message: msg}
}
