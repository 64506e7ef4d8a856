package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// API key scopes. ScopeAdmin implies every other scope.
const (
	ScopePublish  = "publish"
	ScopeHistory  = "history"
	ScopePresence = "presence"
	ScopeNodes    = "nodes"
	ScopeAdmin    = "admin"
)

var scopeBits = map[string]uint8{
	ScopePublish:  1 << 0,
	ScopeHistory:  1 << 1,
	ScopePresence: 1 << 2,
	ScopeNodes:    1 << 3,
	ScopeAdmin:    1 << 4,
}

// allScopes is what an admin key holds.
const allScopes = 1<<5 - 1

// minAPIKeyBytes is the shortest key accepted.
const minAPIKeyBytes = 16

// APIKey is one key of the HTTP API. Name identifies it in logs; Key is the
// secret a caller presents.
type APIKey struct {
	Name   string
	Key    string
	Scopes []string
}

// APIKeys checks API keys. Keys are kept only as SHA-256 hashes, and Check
// compares the presented key's hash with every stored hash in constant time,
// so its duration does not depend on which key, if any, matched. A nil
// *APIKeys knows no key.
type APIKeys struct {
	// immutable after NewAPIKeys
	entries []apiKeyEntry
}

type apiKeyEntry struct {
	name   string
	hash   [sha256.Size]byte
	scopes uint8
}

// NewAPIKeys checks keys (names non-empty and unique, keys at least 16 bytes
// and unique, scopes known and at least one) and returns the set.
func NewAPIKeys(keys []APIKey) (*APIKeys, error) {
	a := &APIKeys{entries: make([]apiKeyEntry, 0, len(keys))}
	names := make(map[string]bool, len(keys))
	hashes := make(map[[sha256.Size]byte]bool, len(keys))
	for i, k := range keys {
		switch {
		case k.Name == "":
			return nil, fmt.Errorf("auth: api keys[%d]: empty Name", i)
		case names[k.Name]:
			return nil, fmt.Errorf("auth: api keys[%d] (%s): duplicate Name", i, clip(k.Name))
		case len(k.Key) < minAPIKeyBytes:
			return nil, fmt.Errorf("auth: api keys[%d] (%s): Key shorter than %d bytes", i, clip(k.Name), minAPIKeyBytes)
		case len(k.Scopes) == 0:
			return nil, fmt.Errorf("auth: api keys[%d] (%s): no Scopes", i, clip(k.Name))
		}
		e := apiKeyEntry{name: k.Name, hash: sha256.Sum256([]byte(k.Key))}
		if hashes[e.hash] {
			return nil, fmt.Errorf("auth: api keys[%d] (%s): same Key as another entry", i, clip(k.Name))
		}
		for _, s := range k.Scopes {
			bit, ok := scopeBits[s]
			if !ok {
				return nil, fmt.Errorf("auth: api keys[%d] (%s): unknown scope %q (want publish, history, presence, nodes or admin)", i, clip(k.Name), clip(s))
			}
			e.scopes |= bit
			if s == ScopeAdmin {
				e.scopes = allScopes
			}
		}
		names[k.Name] = true
		hashes[e.hash] = true
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// Check returns the name of the key and nil if key is known and has scope
// (or admin). Otherwise it returns an *Error: ErrMissing for an empty key
// (HTTP 401), ErrUnknownKey for a key it does not know (401), ErrForbidden
// for a known key without the scope (403; name is then set, for logs). An
// unknown scope is never granted, not even to admin.
func (a *APIKeys) Check(key, scope string) (name string, err error) {
	if key == "" {
		return "", fail(ErrMissing, "no API key")
	}
	h := sha256.Sum256([]byte(key))
	match := -1
	if a != nil {
		for i := range a.entries {
			eq := subtle.ConstantTimeCompare(h[:], a.entries[i].hash[:])
			match = subtle.ConstantTimeSelect(eq, i, match)
		}
	}
	if match < 0 {
		return "", fail(ErrUnknownKey, "unknown API key")
	}
	e := &a.entries[match]
	bit, ok := scopeBits[scope]
	if !ok || e.scopes&bit != bit {
		return e.name, fail(ErrForbidden, "API key lacks scope "+scope)
	}
	return e.name, nil
}

// Len returns the number of keys.
func (a *APIKeys) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}
