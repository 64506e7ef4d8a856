package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/client"
	"github.com/switchyard/switchyard/protocols"
)

// TestAuthOptions: a node started with an HMAC secret (from a file),
// anonymous read access and a scoped API key checks tokens, capabilities
// and keys as configured.
func TestAuthOptions(t *testing.T) {
	dir := t.TempDir()
	secret := "a-secret-of-thirty-two-bytes-or-more!"
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBinary(t, "--listen", "", "--http", "127.0.0.1:0",
		"--auth.hmac-secrets", "@"+filepath.Join(dir, "secret"), "--auth.audience", "sy",
		"--auth.anonymous", `[{"channels":["public:*"],"allow":["subscribe"]}]`,
		"--api-keys", "backend:backend-key-0123456789:publish")
	ws := b["WebSocket"]
	if ws == "" {
		t.Fatalf("no WebSocket URL: %v", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Anonymous: may read public:*, nothing else.
	anon, err := client.Dial(ctx, ws, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Subscribe(ctx, "public:news"); err != nil {
		t.Fatalf("anonymous subscribe: %v", err)
	}
	var re *protocols.RequestError
	if _, err := anon.Publish(ctx, "public:news", []byte("x")); !errors.As(err, &re) || re.Code != protocols.ErrCodePermissionDenied {
		t.Fatalf("anonymous publish: %v", err)
	}

	// A token for the audience.
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "aud": "sy", "exp": time.Now().Add(time.Hour).Unix(),
		"caps": []any{map[string]any{"channels": []string{"*"}, "allow": []string{"subscribe", "publish"}}}}).SignedString([]byte(secret))
	c, err := client.Dial(ctx, ws, client.Options{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "public:news", []byte("x")); err != nil {
		t.Fatalf("publish with a token: %v", err)
	}
	bad, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	var ce *protocols.CloseError
	if _, err := client.Dial(ctx, ws, client.Options{Token: bad}); !errors.As(err, &ce) || ce.Code != protocols.CodeUnauthorized {
		t.Fatalf("wrong audience: %v", err)
	}

	// The scoped key publishes, the dev key still does everything.
	api := strings.Replace(ws, "ws://", "http://", 1)
	api = strings.TrimSuffix(api, "/ws") + "/api/publish"
	for key, want := range map[string]int{"backend-key-0123456789": 200, "wrong-key-0123456789ab": 401, devAPIKey: 200} {
		req, _ := http.NewRequest("POST", api, strings.NewReader(`{"channel":"public:news","data":"y"}`))
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("publish with %s: %d, want %d", key, resp.StatusCode, want)
		}
	}
}
