package signaling

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// TURNCredentials returns TURN REST credentials for user, valid until
// expiry: username "expiry:user" (Unix seconds) and the base64 of
// HMAC-SHA1(secret, username), which coturn (use-auth-secret) and
// pion/turn's long-term auth handler accept.
func TURNCredentials(secret, user string, expiry time.Time) (username, credential string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// CheckTURNCredentials checks credentials made by TURNCredentials at now.
func CheckTURNCredentials(secret, username, credential string, now time.Time) error {
	exp, _, ok := strings.Cut(username, ":")
	if !ok {
		return errors.New("signaling: TURN username is not expiry:user")
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errors.New("signaling: TURN username's expiry is not a number")
	}
	if now.Unix() > t {
		return errors.New("signaling: TURN credentials expired")
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(credential)) {
		return errors.New("signaling: TURN credential does not match")
	}
	return nil
}

// iceServersFor is the iceServers list for peer: the configured servers,
// TURN ones without a username given fresh credentials when a secret is set.
func (s *Server) iceServersFor(peer string, now time.Time) []ICEServer {
	out := make([]ICEServer, 0, len(s.cfg.ICEServers))
	for _, is := range s.cfg.ICEServers {
		if is.Username == "" && s.cfg.TURNSecret != "" && isTURN(is.URLs) {
			is.Username, is.Credential = TURNCredentials(s.cfg.TURNSecret, peer, now.Add(s.cfg.TURNTTL))
		}
		is.URLs = append([]string(nil), is.URLs...)
		out = append(out, is)
	}
	return out
}

func isTURN(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}
