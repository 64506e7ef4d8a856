package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Action is something a client may do on a channel.
type Action string

// The actions a grant can allow.
const (
	Subscribe Action = "subscribe"
	Publish   Action = "publish"
	Presence  Action = "presence" // read presence and appear in it
	History   Action = "history"
	Signal    Action = "signal" // WebRTC signaling in the room of that name
)

// ParseAction returns the Action named s (exact, lower case).
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Subscribe, Publish, Presence, History, Signal:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q", clip(s))
}

// Grant allows the actions in Allow on the channels matching any pattern in
// Channels. A pattern is an exact channel name ("chat"), a prefix followed by
// a star ("chat:*": every channel that starts with "chat:" and has at least
// one more byte), or a star alone (every channel). A star anywhere but at the
// end is invalid.
type Grant struct {
	Channels []string `json:"channels"`
	Allow    []Action `json:"allow"`
}

// Grants is a list of grants; an action is allowed if any grant allows it.
// The zero value allows nothing.
type Grants []Grant

// Allows reports whether the grants allow action a on channel.
func (g Grants) Allows(channel string, a Action) bool {
	if channel == "" {
		return false
	}
	for i := range g {
		if !slices.Contains(g[i].Allow, a) {
			continue
		}
		for _, p := range g[i].Channels {
			if matchPattern(p, channel) {
				return true
			}
		}
	}
	return false
}

// matchPattern reports whether channel matches p. An invalid pattern (a star
// before the end) matches only itself, literally.
func matchPattern(p, channel string) bool {
	prefix, ok := strings.CutSuffix(p, "*")
	if !ok || strings.Contains(prefix, "*") {
		return p == channel
	}
	return len(channel) > len(prefix) && strings.HasPrefix(channel, prefix)
}

// Validate reports the first invalid grant: no channels, no actions, an
// unknown action, or a bad pattern. Its messages give positions, not values,
// so they are safe to return to whoever sent the grants.
func (g Grants) Validate() error {
	for i, gr := range g {
		if len(gr.Channels) == 0 {
			return fmt.Errorf("grant %d: no channels", i)
		}
		if len(gr.Allow) == 0 {
			return fmt.Errorf("grant %d: no actions in allow", i)
		}
		for j, p := range gr.Channels {
			if p == "" {
				return fmt.Errorf("grant %d: channel %d: empty pattern", i, j)
			}
			if strings.Contains(strings.TrimSuffix(p, "*"), "*") {
				return fmt.Errorf("grant %d: channel %d: '*' is allowed only at the end", i, j)
			}
		}
		for j, a := range gr.Allow {
			if _, err := ParseAction(string(a)); err != nil {
				return fmt.Errorf("grant %d: allow %d: unknown action", i, j)
			}
		}
	}
	return nil
}

// ParseGrants decodes and validates a JSON list of grants, the format of the
// "caps" claim: [{"channels": ["chat:*"], "allow": ["subscribe"]}]. Unknown
// fields are refused so that a misspelt "channels" is not silently ignored.
func ParseGrants(data []byte) (Grants, error) {
	g, err := decodeGrants(data)
	if err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	return g, nil
}

// decodeGrants decodes exactly one JSON list of grants, refusing unknown
// fields and trailing data.
func decodeGrants(data []byte) (Grants, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var g Grants
	if err := dec.Decode(&g); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the list")
	}
	return g, nil
}

// clone returns a deep copy, so a caller may not change grants it was handed.
func (g Grants) clone() Grants {
	if g == nil {
		return nil
	}
	out := make(Grants, len(g))
	for i, gr := range g {
		out[i] = Grant{Channels: slices.Clone(gr.Channels), Allow: slices.Clone(gr.Allow)}
	}
	return out
}

// clip shortens s for an error message about configuration.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
