package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/switchyard/switchyard/mesh"
	"github.com/switchyard/switchyard/signaling"
)

// newSignaling builds the node's WebRTC signaling (/signal) and, with
// --turn-listen, starts the embedded TURN server, whose URL then leads the
// ICE servers handed to peers. origin is the node's Origin check (the node
// is built after this).
func newSignaling(o options, cluster *mesh.Cluster, origin func(*http.Request) bool, authorize func(context.Context, string, string) error, logger *slog.Logger) (*signaling.Server, *signaling.TURNServer, error) {
	secret, err := turnSecret(o)
	if err != nil {
		return nil, nil, err
	}
	ice := append([]signaling.ICEServer(nil), o.iceServers...)
	var ts *signaling.TURNServer
	if o.turnListen != "" {
		cfg := signaling.TURNConfig{Listen: o.turnListen, Secret: secret}
		if o.turnRelayIP != "" {
			cfg.RelayIP = net.ParseIP(o.turnRelayIP)
		}
		ts, err = signaling.StartTURN(cfg)
		if err != nil {
			return nil, nil, err
		}
		ice = append([]signaling.ICEServer{{URLs: []string{ts.URL()}}}, ice...)
	}
	cfg := signaling.Config{
		CheckOrigin: origin,
		Authorize:   authorize,
		Logger:      logger,
		ICEServers:  ice,
		TURNSecret:  secret,
		TURNTTL:     o.turnTTL,
		MaxRoomSize: o.roomSize,
		Grace:       o.signalGrace,
	}
	if o.signalGrace == 0 {
		cfg.Grace = -1 // --signal-grace 0: none
	}
	if cluster != nil {
		cfg.Cluster = cluster
	}
	if secret != "" && ts == nil && !hasTURN(ice) {
		logger.Warn("--turn-secret is set but no TURN server is: give a turn: URL in --ice-servers, or --turn-listen")
	}
	s, err := signaling.New(cfg)
	if err != nil {
		if ts != nil {
			ts.Close()
		}
		return nil, nil, err
	}
	if cluster != nil {
		cluster.SetSignals(s)
	}
	return s, ts, nil
}

// turnSecret reads --turn-secret (a value or @FILE); with an embedded TURN
// server and no secret, it makes one up: only this node hands out its
// credentials.
func turnSecret(o options) (string, error) {
	v := o.turnSecret
	if strings.HasPrefix(v, "@") {
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("--turn-secret: %w", err)
		}
		v = strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("--turn-secret: %s is empty", o.turnSecret[1:])
		}
	}
	if v == "" && o.turnListen != "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		v = base64.RawURLEncoding.EncodeToString(b[:])
	}
	return v, nil
}

func hasTURN(servers []signaling.ICEServer) bool {
	for _, s := range servers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				return true
			}
		}
	}
	return false
}
