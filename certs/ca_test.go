package certs

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// meshPair returns the TLS configs of two nodes issued by ca.
func meshNode(t *testing.T, ca *CA, name string) *tls.Config {
	t.Helper()
	cert, key, err := ca.Issue(name, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := MeshTLS(ca.CertPEM(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// meshHandshake runs a mutual-TLS handshake over loopback and returns the
// server's and the client's errors.
func meshHandshake(t *testing.T, server, clientCfg *tls.Config, serverName string) (error, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = io.WriteString(c, "ok")
		}
		srvErr <- err
	}()
	cc := clientCfg.Clone()
	cc.ServerName = serverName
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cc)
	if err == nil {
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
		c.Close()
	}
	return <-srvErr, err
}

func TestMeshMutualTLS(t *testing.T) {
	ca, err := NewCA("test mesh", 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := meshNode(t, ca, "node-a"), meshNode(t, ca, "node-b")
	if se, ce := meshHandshake(t, a, b, "node-a"); se != nil || ce != nil {
		t.Fatalf("same CA: server %v, client %v", se, ce)
	}
	// The dialer checks the peer's node name.
	if _, ce := meshHandshake(t, a, b, "node-c"); ce == nil {
		t.Fatal("a wrong node name was accepted")
	}
	// A node of another CA is refused both ways.
	other, _ := NewCA("other mesh", 0)
	stranger := meshNode(t, other, "node-x")
	if se, _ := meshHandshake(t, a, stranger, "node-a"); se == nil {
		t.Fatal("server accepted a client of another CA")
	}
	if _, ce := meshHandshake(t, stranger, b, "node-x"); ce == nil {
		t.Fatal("client accepted a server of another CA")
	}
	// A client without a certificate is refused.
	bare := &tls.Config{RootCAs: a.RootCAs}
	if se, _ := meshHandshake(t, a, bare, "node-a"); se == nil {
		t.Fatal("server accepted a client without a certificate")
	}
}

func TestCAFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("files", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(cf, kf); err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := again.Issue("n1", nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := MeshTLS(ca.CertPEM(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if na := cfg.Certificates[0].Leaf.NotAfter; na.After(ca.Cert.NotAfter) {
		t.Fatalf("node certificate outlives its CA: %v > %v", na, ca.Cert.NotAfter)
	}
	// A node certificate is not a CA.
	nodeCert, nodeKey := filepath.Join(dir, "n.pem"), filepath.Join(dir, "n.key")
	writeFile(t, nodeCert, cert)
	writeFile(t, nodeKey, key)
	if _, err := LoadCA(nodeCert, nodeKey); !errors.Is(err, ErrNotCA) {
		t.Fatalf("LoadCA of a node certificate: %v", err)
	}
	// A node certificate from another CA does not verify.
	other, _ := NewCA("other", 0)
	oc, ok, _ := other.Issue("n2", nil, 0)
	if _, err := MeshTLS(ca.CertPEM(), oc, ok); !errors.Is(err, ErrKeyPair) {
		t.Fatalf("foreign node certificate: %v", err)
	}
	if _, err := MeshTLS([]byte("junk"), cert, key); !errors.Is(err, ErrNotCA) {
		t.Fatalf("junk CA: %v", err)
	}
	if _, err := LoadMeshTLS(filepath.Join(dir, "missing"), nodeCert, nodeKey); err == nil {
		t.Fatal("missing CA file accepted")
	}
}
