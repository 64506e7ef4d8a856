package auth_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchyard/switchyard/auth"
)

func ExampleVerifier() {
	secret := []byte("an HMAC secret of at least 32 bytes, from your config")
	v, err := auth.New(auth.Config{
		HMACSecrets: [][]byte{secret},
		Audience:    "switchyard",
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	// Your back end issues the token; here the jwt package stands in for it.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":  "user-42",
		"aud":  "switchyard",
		"exp":  time.Now().Add(time.Hour).Unix(),
		"info": map[string]string{"name": "Ada"},
		"caps": []map[string][]string{
			{"channels": {"chat:*"}, "allow": {"subscribe", "presence"}},
			{"channels": {"chat:lobby"}, "allow": {"publish"}},
		},
	}).SignedString(secret)
	if err != nil {
		panic(err)
	}

	id, err := v.Verify(context.Background(), token)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.User, string(id.Info))
	fmt.Println(id.Grants.Allows("chat:lobby", auth.Publish))
	fmt.Println(id.Grants.Allows("chat:other", auth.Publish))

	_, err = v.Verify(context.Background(), token[:len(token)-4]+"AAAA")
	var ae *auth.Error
	if errors.As(err, &ae) {
		fmt.Println(ae.Reason) // the reason the server sends in close code 3502
	}
	// Output:
	// user-42 {"name":"Ada"}
	// true
	// false
	// bad_signature
}
