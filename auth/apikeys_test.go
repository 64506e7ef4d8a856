package auth

import (
	"errors"
	"strings"
	"testing"
)

var testAPIKeys = []APIKey{
	{Name: "publisher", Key: "pub-0123456789abcdef", Scopes: []string{ScopePublish}},
	{Name: "reader", Key: "read-0123456789abcdef", Scopes: []string{ScopeHistory, ScopePresence}},
	{Name: "ops", Key: "ops-0123456789abcdef", Scopes: []string{ScopeNodes}},
	{Name: "root", Key: "root-0123456789abcdef", Scopes: []string{ScopeAdmin}},
}

func TestAPIKeysCheck(t *testing.T) {
	keys, err := NewAPIKeys(testAPIKeys)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, scope string
		name       string // expected name ("" when unknown)
		reason     string // "" : allowed
	}{
		{"pub-0123456789abcdef", ScopePublish, "publisher", ""},
		{"pub-0123456789abcdef", ScopeHistory, "publisher", "forbidden"},
		{"pub-0123456789abcdef", ScopeAdmin, "publisher", "forbidden"},
		{"read-0123456789abcdef", ScopeHistory, "reader", ""},
		{"read-0123456789abcdef", ScopePresence, "reader", ""},
		{"read-0123456789abcdef", ScopePublish, "reader", "forbidden"},
		{"ops-0123456789abcdef", ScopeNodes, "ops", ""},
		{"ops-0123456789abcdef", ScopePublish, "ops", "forbidden"},
		{"root-0123456789abcdef", ScopePublish, "root", ""},
		{"root-0123456789abcdef", ScopeHistory, "root", ""},
		{"root-0123456789abcdef", ScopePresence, "root", ""},
		{"root-0123456789abcdef", ScopeNodes, "root", ""},
		{"root-0123456789abcdef", ScopeAdmin, "root", ""},
		{"root-0123456789abcdef", "pubish", "root", "forbidden"}, // a typo is never granted, even to admin
		{"root-0123456789abcdef", "", "root", "forbidden"},
		{"root-0123456789abcdeF", ScopePublish, "", "unknown_key"},
		{"root-0123456789abcde", ScopePublish, "", "unknown_key"},
		{"root-0123456789abcdef ", ScopePublish, "", "unknown_key"},
		{"publisher", ScopePublish, "", "unknown_key"}, // a name is not a key
		{"", ScopePublish, "", "missing"},
	}
	for _, tc := range tests {
		name, err := keys.Check(tc.key, tc.scope)
		if got := reasonOf(t, err); got != tc.reason || name != tc.name {
			t.Errorf("Check(%q, %q) = %q, %q; want %q, %q", tc.key, tc.scope, name, got, tc.name, tc.reason)
		}
		if err != nil && strings.Contains(err.Error(), tc.key) && tc.key != "" {
			t.Errorf("error %q holds the key", err)
		}
	}
	if _, err := keys.Check("nope-0123456789abcdef", ScopePublish); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("errors.Is(ErrUnknownKey) failed for %v", err)
	}
	if _, err := keys.Check("pub-0123456789abcdef", ScopeNodes); !errors.Is(err, ErrForbidden) {
		t.Errorf("errors.Is(ErrForbidden) failed for %v", err)
	}
}

func TestAPIKeysNilAndEmpty(t *testing.T) {
	var nilKeys *APIKeys
	if _, err := nilKeys.Check("pub-0123456789abcdef", ScopePublish); reasonOf(t, err) != "unknown_key" {
		t.Errorf("nil APIKeys: %v", err)
	}
	empty, err := NewAPIKeys(nil)
	if err != nil || empty.Len() != 0 {
		t.Fatalf("NewAPIKeys(nil) = %v, %v", empty, err)
	}
	if _, err := empty.Check("pub-0123456789abcdef", ScopePublish); reasonOf(t, err) != "unknown_key" {
		t.Errorf("empty APIKeys: %v", err)
	}
}

func TestNewAPIKeysErrors(t *testing.T) {
	ok := APIKey{Name: "a", Key: "0123456789abcdef", Scopes: []string{ScopePublish}}
	tests := []struct {
		name string
		keys []APIKey
		want string
	}{
		{"empty name", []APIKey{{Key: ok.Key, Scopes: ok.Scopes}}, "empty Name"},
		{"duplicate name", []APIKey{ok, {Name: "a", Key: "fedcba9876543210", Scopes: ok.Scopes}}, "duplicate Name"},
		{"short key", []APIKey{{Name: "a", Key: "short", Scopes: ok.Scopes}}, "shorter than 16"},
		{"duplicate key", []APIKey{ok, {Name: "b", Key: ok.Key, Scopes: ok.Scopes}}, "same Key"},
		{"no scopes", []APIKey{{Name: "a", Key: ok.Key}}, "no Scopes"},
		{"unknown scope", []APIKey{{Name: "a", Key: ok.Key, Scopes: []string{"write"}}}, "unknown scope"},
	}
	for _, tc := range tests {
		_, err := NewAPIKeys(tc.keys)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), ok.Key) {
			t.Errorf("%s: error %q holds a key", tc.name, err)
		}
	}
}

func BenchmarkAPIKeysCheck(b *testing.B) {
	keys, err := NewAPIKeys(testAPIKeys)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keys.Check("read-0123456789abcdef", ScopeHistory); err != nil {
			b.Fatal(err)
		}
	}
}
