package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestACMECertificates: with acme.domains the TLS listener takes its
// certificates from autocert, here from its cache (a certificate put
// there as a CA's would be: this machine reaches no CA), offers the
// TLS-ALPN-01 protocol, and refuses names it was not told.
func TestACMECertificates(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(424242), Subject: pkix.Name{CommonName: "rt.example.test"},
		DNSNames: []string{"rt.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(60 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cached := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(filepath.Join(dir, "rt.example.test"), cached, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBinary(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--acme.domains", "rt.example.test", "--acme.cache-dir", dir, "--acme.directory-url", "http://127.0.0.1:1/directory")
	addr := regexp.MustCompile(`^wss://([^/]+)/ws$`).FindStringSubmatch(b["WebSocket"])
	if addr == nil {
		t.Fatalf("no TLS WebSocket URL: %v", b)
	}
	conn, err := tls.Dial("tcp", addr[1], &tls.Config{ServerName: "rt.example.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS with the ACME name: %v", err)
	}
	got := conn.ConnectionState().PeerCertificates[0].SerialNumber
	conn.Close()
	if got.Cmp(big.NewInt(424242)) != 0 {
		t.Fatalf("served certificate %v, want the one autocert holds", got)
	}
	// TLS-ALPN-01 is offered (the CA's validation connects with it).
	conn, err = tls.Dial("tcp", addr[1], &tls.Config{ServerName: "rt.example.test", InsecureSkipVerify: true, NextProtos: []string{"acme-tls/1"}})
	if err == nil {
		conn.Close() // no challenge is pending, so no certificate for it: a failure is fine too
	}
	// A name it was not told gets no certificate.
	if conn, err := tls.Dial("tcp", addr[1], &tls.Config{ServerName: "evil.example.test", InsecureSkipVerify: true}); err == nil {
		conn.Close()
		t.Fatal("a handshake for a name not in acme.domains succeeded")
	}
}
