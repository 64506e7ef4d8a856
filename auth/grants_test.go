package auth

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGrantsAllows(t *testing.T) {
	tests := []struct {
		pattern, channel string
		want             bool
	}{
		{"chat", "chat", true},
		{"chat", "chatx", false},
		{"chat", "chat:1", false},
		{"chat", "cha", false},
		{"chat", "Chat", false},
		{"chat", "chat ", false},
		{"chat:*", "chat:1", true},
		{"chat:*", "chat:room:7", true},
		{"chat:*", "chat:", false}, // the star stands for at least one byte
		{"chat:*", "chat", false},
		{"chat:*", "chatx", false},
		{"chat:*", "chat;1", false},
		{"chat:*", "CHAT:1", false},
		{"chat:*", "xchat:1", false},
		{"chat*", "chatx", true},
		{"chat*", "chat", false},
		{"*", "anything", true},
		{"*", "", false},
		{"a:b:*", "a:b:c:d", true},
		{"a:b:*", "a:bc", false},
		{"chat:*:x", "chat:1:x", false}, // invalid: matches only itself, literally
		{"chat:*:x", "chat:*:x", true},
	}
	for _, tc := range tests {
		g := Grants{{Channels: []string{tc.pattern}, Allow: []Action{Subscribe}}}
		if got := g.Allows(tc.channel, Subscribe); got != tc.want {
			t.Errorf("%q allows %q = %v, want %v", tc.pattern, tc.channel, got, tc.want)
		}
		if g.Allows(tc.channel, Publish) {
			t.Errorf("%q allows publish on %q, granted only subscribe", tc.pattern, tc.channel)
		}
	}
}

func TestGrantsUnion(t *testing.T) {
	g := Grants{
		{Channels: []string{"chat:*"}, Allow: []Action{Subscribe, History}},
		{Channels: []string{"chat:mine", "signal:*"}, Allow: []Action{Publish, Signal}},
	}
	for _, c := range []struct {
		ch   string
		a    Action
		want bool
	}{
		{"chat:a", Subscribe, true},
		{"chat:a", History, true},
		{"chat:a", Publish, false},
		{"chat:mine", Publish, true},
		{"chat:mine", Subscribe, true},
		{"signal:room", Signal, true},
		{"signal:room", Subscribe, false},
		{"chat:a", Presence, false},
		{"chat:a", Action("Subscribe"), false},
		{"chat:a", Action(""), false},
	} {
		if got := g.Allows(c.ch, c.a); got != c.want {
			t.Errorf("Allows(%q, %q) = %v, want %v", c.ch, c.a, got, c.want)
		}
	}
	var none Grants
	if none.Allows("x", Subscribe) {
		t.Error("nil grants allow something")
	}
}

func TestParseAction(t *testing.T) {
	for _, s := range []string{"subscribe", "publish", "presence", "history", "signal"} {
		if a, err := ParseAction(s); err != nil || string(a) != s {
			t.Errorf("ParseAction(%q) = %q, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "Subscribe", "SUBSCRIBE", " subscribe", "admin", "*", "sub"} {
		if _, err := ParseAction(s); err == nil {
			t.Errorf("ParseAction(%q) succeeded", s)
		}
	}
}

func TestParseGrants(t *testing.T) {
	good := `[{"channels": ["chat:*", "lobby"], "allow": ["subscribe", "presence"]}, {"channels": ["*"], "allow": ["history"]}]`
	g, err := ParseGrants([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || !g.Allows("lobby", Presence) || !g.Allows("x", History) || g.Allows("x", Subscribe) {
		t.Fatalf("grants = %+v", g)
	}
	for _, ok := range []string{`[]`, `null`, ` [ ] `} {
		if _, err := ParseGrants([]byte(ok)); err != nil {
			t.Errorf("ParseGrants(%s): %v", ok, err)
		}
	}
	bad := map[string]string{
		"unknown action":   `[{"channels": ["a"], "allow": ["subscribe", "delete"]}]`,
		"upper case":       `[{"channels": ["a"], "allow": ["Subscribe"]}]`,
		"star in middle":   `[{"channels": ["a*b"], "allow": ["subscribe"]}]`,
		"star at start":    `[{"channels": ["*a"], "allow": ["subscribe"]}]`,
		"double star":      `[{"channels": ["a**"], "allow": ["subscribe"]}]`,
		"empty pattern":    `[{"channels": [""], "allow": ["subscribe"]}]`,
		"no channels":      `[{"channels": [], "allow": ["subscribe"]}]`,
		"no allow":         `[{"channels": ["a"]}]`,
		"misspelt field":   `[{"chanels": ["a"], "allow": ["subscribe"]}]`,
		"extra field":      `[{"channels": ["a"], "allow": ["subscribe"], "deny": ["publish"]}]`,
		"not a list":       `{"channels": ["a"], "allow": ["subscribe"]}`,
		"channels string":  `[{"channels": "a", "allow": ["subscribe"]}]`,
		"allow number":     `[{"channels": ["a"], "allow": [1]}]`,
		"trailing data":    `[] []`,
		"trailing garbage": `[]x`,
		"truncated":        `[{"channels": ["a"]`,
		"empty":            ``,
	}
	for name, in := range bad {
		if g, err := ParseGrants([]byte(in)); err == nil {
			t.Errorf("%s: ParseGrants(%s) = %+v, want an error", name, in, g)
		}
	}
}

func TestGrantsJSONRoundTrip(t *testing.T) {
	g := Grants{{Channels: []string{"chat:*"}, Allow: []Action{Subscribe, Publish}}}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"channels":["chat:*"],"allow":["subscribe","publish"]}]`; string(b) != want {
		t.Fatalf("json = %s, want %s", b, want)
	}
	back, err := ParseGrants(b)
	if err != nil || !back.Allows("chat:1", Publish) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestGrantsValidateMessagesHoldNoValues(t *testing.T) {
	secretish := "chan*nel-named-after-a-secret"
	err := Grants{{Channels: []string{secretish}, Allow: []Action{"x-secret-action"}}}.Validate()
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Validate = %v", err)
	}
}

func BenchmarkGrantsAllows(b *testing.B) {
	g := Grants{
		{Channels: []string{"news", "sport:*"}, Allow: []Action{Subscribe, History}},
		{Channels: []string{"chat:room-1", "chat:room-2", "chat:*"}, Allow: []Action{Subscribe, Publish, Presence}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if !g.Allows("chat:room-9", Publish) {
			b.Fatal("denied")
		}
	}
}
