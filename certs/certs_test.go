package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func newDev(t testing.TB, cfg DevConfig) *Store {
	t.Helper()
	s, err := NewDev(cfg)
	if err != nil {
		t.Fatalf("NewDev: %v", err)
	}
	return s
}

func TestNewDevCertificate(t *testing.T) {
	now := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	s := newDev(t, DevConfig{Now: func() time.Time { return now }})
	if !s.Dev() {
		t.Error("Dev() = false for a NewDev store")
	}
	cert, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	if len(cert.Certificate) != 1 || !bytes.Equal(cert.Certificate[0], leaf.Raw) {
		t.Error("Certificate[0] is not the leaf DER")
	}

	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if priv, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok || !priv.PublicKey.Equal(pub) {
		t.Error("private key does not match the leaf")
	}
	if leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("SignatureAlgorithm = %v", leaf.SignatureAlgorithm)
	}
	// CheckSignatureFrom would insist on a CA parent; a self-signed leaf is
	// signed by its own key.
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Error("issuer differs from subject")
	}
	if leaf.Subject.CommonName != "switchyard dev" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", leaf.SerialNumber)
	}

	wantNotBefore := now.Add(-time.Minute).Truncate(time.Second)
	if !leaf.NotBefore.Equal(wantNotBefore) {
		t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, wantNotBefore)
	}
	validity := leaf.NotAfter.Sub(leaf.NotBefore)
	if validity != 10*24*time.Hour {
		t.Errorf("validity = %v, want the 10 day default", validity)
	}
	if validity >= 14*24*time.Hour {
		t.Errorf("validity %v is not under 14 days", validity)
	}

	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("DNSNames = %v", leaf.DNSNames)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if !slices.EqualFunc(leaf.IPAddresses, wantIPs, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, wantIPs)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%q): %v", h, err)
		}
	}

	checkHash(t, s.Hash(), leaf)
}

// checkHash checks h against leaf.
func checkHash(t *testing.T, h Hash, leaf *x509.Certificate) {
	t.Helper()
	sum := sha256.Sum256(leaf.Raw)
	if h.Algorithm != "sha-256" {
		t.Errorf("Algorithm = %q", h.Algorithm)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(h.Value)
	if err != nil {
		t.Fatalf("Value %q is not std base64: %v", h.Value, err)
	}
	if !bytes.Equal(raw, sum[:]) {
		t.Errorf("Value %q is not the SHA-256 of the leaf", h.Value)
	}
	if HashDER(leaf.Raw) != h.Value {
		t.Errorf("HashDER = %q, Hash().Value = %q", HashDER(leaf.Raw), h.Value)
	}
	if !h.NotAfter.Equal(leaf.NotAfter) || h.NotAfter.Location() != time.UTC {
		t.Errorf("NotAfter = %v, want %v in UTC", h.NotAfter, leaf.NotAfter)
	}
}

func TestHashDER(t *testing.T) {
	// SHA-256 of the empty string.
	if got, want := HashDER(nil), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; got != want {
		t.Errorf("HashDER(nil) = %q, want %q", got, want)
	}
}

func TestHashJSON(t *testing.T) {
	h := Hash{
		Algorithm: "sha-256",
		Value:     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		NotAfter:  time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"algorithm":"sha-256","value":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","notAfter":"2030-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
}

func TestNewDevHosts(t *testing.T) {
	s := newDev(t, DevConfig{Hosts: []string{"edge.example", "10.1.2.3", "fd00::7", "*.dev.example"}})
	l := mustLeaf(t, s)
	if !slices.Equal(l.DNSNames, []string{"edge.example", "*.dev.example"}) {
		t.Errorf("DNSNames = %v", l.DNSNames)
	}
	wantIPs := []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("fd00::7")}
	if !slices.EqualFunc(l.IPAddresses, wantIPs, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", l.IPAddresses, wantIPs)
	}
	if err := l.VerifyHostname("127.0.0.1"); err == nil {
		t.Error("explicit Hosts still include the default 127.0.0.1")
	}
}

func mustLeaf(t testing.TB, s *Store) *x509.Certificate {
	t.Helper()
	c, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func TestNewDevValidity(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		cfg  DevConfig
		want error // nil: accepted
	}{
		{"14 days", DevConfig{Validity: 14 * day}, ErrValidityTooLong},
		{"30 days", DevConfig{Validity: 30 * day}, ErrValidityTooLong},
		{"just under 14 days", DevConfig{Validity: 14*day - time.Second}, nil},
		{"negative", DevConfig{Validity: -time.Hour}, ErrInvalidConfig},
		{"within clock skew", DevConfig{Validity: time.Minute}, ErrInvalidConfig},
		{"two minutes", DevConfig{Validity: 2 * time.Minute}, nil},
		{"RotateBefore negative", DevConfig{RotateBefore: -time.Hour}, ErrInvalidConfig},
		{"RotateBefore equals Validity", DevConfig{Validity: day, RotateBefore: day}, ErrInvalidConfig},
		{"RotateBefore leaves no life", DevConfig{Validity: day, RotateBefore: day - time.Minute}, ErrInvalidConfig},
		{"empty host", DevConfig{Hosts: []string{"localhost", ""}}, ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewDev(tc.cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("NewDev: %v", err)
				}
				l := mustLeaf(t, s)
				if got := l.NotAfter.Sub(l.NotBefore); got != tc.cfg.Validity {
					t.Errorf("validity = %v, want %v", got, tc.cfg.Validity)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("NewDev error = %v, want %v", err, tc.want)
			}
			if s != nil {
				t.Error("non-nil Store with an error")
			}
			t.Logf("error: %v", err)
		})
	}
	_, err := NewDev(DevConfig{Validity: 14 * day})
	if msg := err.Error(); !strings.Contains(msg, "14 days") || !strings.Contains(msg, "336h") {
		t.Errorf("error %q should name the limit and the value", msg)
	}
}

func TestNewDevDoesNotAliasHosts(t *testing.T) {
	hosts := []string{"a.example"}
	s := newDev(t, DevConfig{Hosts: hosts})
	hosts[0] = "b.example"
	if got := s.cfg.Hosts[0]; got != "a.example" {
		t.Errorf("Store sees the caller's later edit: %q", got)
	}
}

func TestTLSConfig(t *testing.T) {
	s := newDev(t, DevConfig{})
	a, b := s.TLSConfig(), s.TLSConfig()
	if a == b {
		t.Error("TLSConfig returned the same *tls.Config twice")
	}
	if a.MinVersion != tls.VersionTLS12 || a.GetCertificate == nil || len(a.Certificates) != 0 {
		t.Errorf("TLSConfig = %+v", a)
	}
	a.NextProtos = []string{"h3"}
	if len(b.NextProtos) != 0 {
		t.Error("configs share state")
	}
}

// TestDevRotation runs the rotation loop on synctest's fake clock: each
// rotation must happen exactly RotateBefore ahead of NotAfter, never after
// expiry, and GetCertificate must serve the new certificate.
func TestDevRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const validity, rotateBefore = 10 * 24 * time.Hour, 80 * time.Hour
		s := newDev(t, DevConfig{}) // defaults: time.Now is the fake clock here
		ch, cancelSub := s.Subscribe()
		defer cancelSub()

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()

		start := time.Now()
		prev := s.Hash()
		prevSerial := mustLeaf(t, s).SerialNumber
		for i := range 3 {
			h := <-ch
			now := time.Now()
			if want := prev.NotAfter.Add(-rotateBefore); !now.Equal(want) {
				t.Errorf("rotation %d at %v, want %v", i, now, want)
			}
			if !now.Before(prev.NotAfter) {
				t.Errorf("rotation %d at %v, after expiry %v", i, now, prev.NotAfter)
			}
			if h.Value == prev.Value {
				t.Fatalf("rotation %d kept hash %s", i, h.Value)
			}
			if got := s.Hash(); got != h {
				t.Errorf("Hash() = %+v, notified %+v", got, h)
			}
			leaf := mustLeaf(t, s)
			checkHash(t, h, leaf)
			if leaf.SerialNumber.Cmp(prevSerial) == 0 {
				t.Error("serial reused")
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != validity {
				t.Errorf("rotated validity = %v", got)
			}
			if !leaf.NotAfter.After(prev.NotAfter) {
				t.Errorf("new NotAfter %v not after old %v", leaf.NotAfter, prev.NotAfter)
			}
			prev, prevSerial = h, leaf.SerialNumber
		}
		if got, want := time.Since(start), 3*(validity-rotateBefore-time.Minute); got != want {
			t.Errorf("3 rotations took %v, want %v", got, want)
		}

		if err := s.Run(ctx); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v, want ErrRunning", err)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
		select {
		case h := <-ch:
			t.Errorf("unexpected rotation after Run ended: %+v", h)
		default:
		}
	})
}

// TestDevRotationInjectedClock drives Run with DevConfig.Now showing a wall
// clock already past the rotation point (a host resumed from suspend): Run
// must rotate at once, dating the new certificate from that clock.
func TestDevRotationInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		offset := time.Duration(0)
		s := newDev(t, DevConfig{Now: func() time.Time { return time.Now().Add(offset) }})
		ch, cancelSub := s.Subscribe()
		defer cancelSub()
		old := s.Hash()
		offset = 9 * 24 * time.Hour // past the rotation point, before expiry

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		h := <-ch
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if h.Value == old.Value || !h.NotAfter.After(old.NotAfter) {
			t.Errorf("rotated to %+v from %+v", h, old)
		}
		leaf := mustLeaf(t, s)
		if want := time.Now().Add(offset - time.Minute).Truncate(time.Second); !leaf.NotBefore.Equal(want) {
			t.Errorf("NotBefore = %v, want %v from the injected clock", leaf.NotBefore, want)
		}
	})
}

// handshake runs one real TLS handshake over loopback TCP between a server
// using srv and a client using cli, and returns both ends (nil on error).
func handshake(t *testing.T, srv, cli *tls.Config) (client, server *tls.Conn, err error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   *tls.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{nil, err}
			return
		}
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			tc.Close()
			done <- result{nil, err}
			return
		}
		done <- result{tc, nil}
	}()
	client, err = tls.Dial("tcp", ln.Addr().String(), cli)
	r := <-done
	if err != nil {
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, err
	}
	if r.err != nil {
		client.Close()
		t.Fatalf("server handshake: %v", r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c, nil
}

// rootsFor trusts exactly leaf, as a client given the certificate would.
func rootsFor(leaf *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool}
}

// pinned accepts exactly the certificate whose HashDER is hash, as a browser
// given serverCertificateHashes does.
func pinned(hash string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf := cs.PeerCertificates[0]
			if got := HashDER(leaf.Raw); got != hash {
				return errors.New("certificate hash " + got + " is not pinned")
			}
			now := time.Now()
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return errors.New("certificate outside its validity")
			}
			return nil
		},
	}
}

func echo(t *testing.T, client, server *tls.Conn) {
	t.Helper()
	msg := []byte("ping")
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(msg)
		errc <- err
	}()
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(server, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestHandshakeAcrossRotation does real TLS handshakes over loopback before
// and after a rotation performed by Run, with no restart: new handshakes get
// the new certificate, a connection made before keeps working, and a client
// still pinning the old hash is refused.
func TestHandshakeAcrossRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newDev(t, DevConfig{})
		srv := s.TLSConfig()
		oldLeaf, oldHash := mustLeaf(t, s), s.Hash().Value

		before, beforeSrv, err := handshake(t, srv, rootsFor(oldLeaf))
		if err != nil {
			t.Fatalf("handshake before rotation (RootCAs): %v", err)
		}
		if _, _, err := handshake(t, srv, pinned(oldHash)); err != nil {
			t.Fatalf("handshake before rotation (pinned hash): %v", err)
		}

		ch, cancelSub := s.Subscribe()
		defer cancelSub()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		h := <-ch
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if h.Value == oldHash {
			t.Fatal("no new certificate")
		}

		newLeaf := mustLeaf(t, s)
		c, _, err := handshake(t, srv, rootsFor(newLeaf))
		if err != nil {
			t.Fatalf("handshake after rotation (RootCAs): %v", err)
		}
		if got := HashDER(c.ConnectionState().PeerCertificates[0].Raw); got != h.Value {
			t.Errorf("server presented %s after rotation, want %s", got, h.Value)
		}
		if _, _, err := handshake(t, srv, pinned(h.Value)); err != nil {
			t.Fatalf("handshake after rotation (pinned hash): %v", err)
		}
		if _, _, err := handshake(t, srv, pinned(oldHash)); err == nil {
			t.Error("client pinning the old hash accepted the new certificate")
		}
		if _, _, err := handshake(t, srv, rootsFor(oldLeaf)); err == nil {
			t.Error("client trusting only the old leaf accepted the new certificate")
		}

		// The connection made before the rotation is untouched.
		if got := HashDER(before.ConnectionState().PeerCertificates[0].Raw); got != oldHash {
			t.Errorf("old connection now reports %s", got)
		}
		echo(t, before, beforeSrv)
	})
}

func TestSubscribeCancel(t *testing.T) {
	s := newDev(t, DevConfig{})
	ch, cancel := s.Subscribe()
	ch2, cancel2 := s.Subscribe()
	defer cancel2()
	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
	// A subscriber that never reads sees only the latest hash and does not
	// block rotations.
	var last Hash
	for range 3 {
		c, err := generate(s.cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s.swap(c)
		last = c.hash
	}
	if got := <-ch2; got != last {
		t.Errorf("got %+v, want the latest %+v", got, last)
	}
	select {
	case h := <-ch2:
		t.Errorf("stale hash queued: %+v", h)
	default:
	}
}

// writePair writes a self-signed certificate for key and the key itself, as
// PEM files in dir, and returns the certificate DER.
func writePair(t *testing.T, dir string, key crypto.Signer) (certFile, keyFile string, der []byte) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der = makeCert(t, key)
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, keyPEM(t, key))
	return certFile, keyFile, der
}

func makeCert(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "edge.test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

// mtimes hands out distinct modification times for writeFile.
var mtimes atomic.Int64

// writeFile writes data to name and gives it a modification time no other
// write in this test binary gets. Linux stamps files with a coarse clock
// tick, so two quick rewrites of the same size could otherwise look
// unchanged to the poller; a real renewal is far apart in time.
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1_700_000_000+mtimes.Add(1), 0)
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func ecKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadFiles(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ECDSA P-256", ecKey(t)},
		{"ECDSA P-384", p384},
		{"Ed25519", edKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile, der := writePair(t, t.TempDir(), tc.key)
			s, err := LoadFiles(certFile, keyFile, nil)
			if err != nil {
				t.Fatalf("LoadFiles: %v", err)
			}
			if s.Dev() {
				t.Error("Dev() = true for a file store")
			}
			leaf := mustLeaf(t, s)
			if !bytes.Equal(leaf.Raw, der) {
				t.Fatal("served leaf is not the file's certificate")
			}
			checkHash(t, s.Hash(), leaf)

			c, _, err := handshake(t, s.TLSConfig(), rootsFor(leaf))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !bytes.Equal(c.ConnectionState().PeerCertificates[0].Raw, der) {
				t.Error("handshake presented another certificate")
			}
		})
	}
}

func TestLoadFilesErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writePair(t, dir, ecKey(t))
	other := filepath.Join(dir, "other-key.pem")
	writeFile(t, other, keyPEM(t, ecKey(t)))
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("this is not PEM\n"))
	badPEM := filepath.Join(dir, "bad.pem")
	writeFile(t, badPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name       string
		cert, key  string
		is         error
		msgHasPath string
		msgHas     string
	}{
		{"missing cert", missing, keyFile, fs.ErrNotExist, missing, "certificate file"},
		{"missing key", certFile, missing, fs.ErrNotExist, missing, "key file"},
		{"garbage cert", garbage, keyFile, ErrKeyPair, garbage, "PEM"},
		{"garbage key", certFile, garbage, ErrKeyPair, garbage, "PEM"},
		{"cert not DER", badPEM, keyFile, ErrKeyPair, badPEM, "x509"},
		{"key swapped with cert", keyFile, certFile, ErrKeyPair, keyFile, ""},
		{"mismatched key", certFile, other, ErrKeyPair, other, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadFiles(tc.cert, tc.key, nil)
			if err == nil {
				t.Fatal("LoadFiles succeeded")
			}
			if s != nil {
				t.Error("non-nil Store with an error")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.msgHasPath) || !strings.Contains(msg, tc.msgHas) {
				t.Errorf("error %q should mention %q and %q", msg, tc.msgHasPath, tc.msgHas)
			}
			t.Logf("error: %v", err)
		})
	}
}

// logRecords is a slog.Handler that sends warnings and errors to a channel.
type logRecords chan slog.Record

func (l logRecords) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l logRecords) Handle(_ context.Context, r slog.Record) error  { l <- r; return nil }
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler             { return l }
func (l logRecords) WithGroup(string) slog.Handler                  { return l }

func recordErr(r slog.Record) string {
	var s string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			s = a.Value.String()
		}
		return true
	})
	return s
}

// TestFileReload runs Run on a file store with synctest's fake clock driving
// the 30 s poll: a new pair is picked up, garbage and a half-written pair
// are refused with a warning while the old certificate keeps serving.
func TestFileReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile, der1 := writePair(t, dir, ecKey(t))
		warnings := make(logRecords, 16)
		s, err := LoadFiles(certFile, keyFile, slog.New(warnings))
		if err != nil {
			t.Fatal(err)
		}
		ch, cancelSub := s.Subscribe()
		defer cancelSub()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()

		// A new pair replaces the old one.
		_, _, der2 := writePair(t, dir, ecKey(t))
		h := <-ch
		if h.Value != HashDER(der2) || s.Hash() != h {
			t.Fatalf("reloaded hash %s, want %s", h.Value, HashDER(der2))
		}
		if h.Value == HashDER(der1) {
			t.Fatal("still the first certificate")
		}
		srv := s.TLSConfig()
		if _, _, err := handshake(t, srv, pinned(h.Value)); err != nil {
			t.Fatalf("handshake after reload: %v", err)
		}
		cert2, _ := s.GetCertificate(nil)

		// Garbage: warned about, old certificate kept.
		writeFile(t, certFile, []byte("garbage"))
		r := <-warnings
		if !strings.Contains(r.Message, "keeping the current certificate") ||
			!strings.Contains(recordErr(r), ErrKeyPair.Error()) {
			t.Errorf("warning %q err=%q", r.Message, recordErr(r))
		}
		if got, _ := s.GetCertificate(nil); got != cert2 {
			t.Error("certificate replaced by garbage")
		}
		if _, _, err := handshake(t, srv, pinned(h.Value)); err != nil {
			t.Fatalf("handshake with garbage on disk: %v", err)
		}

		// Half-written renewal: new certificate, old key. Refused, then
		// picked up once the key lands.
		key3 := ecKey(t)
		der3 := makeCert(t, key3)
		writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der3}))
		r = <-warnings
		if !strings.Contains(recordErr(r), "does not match") {
			t.Errorf("warning err=%q, want a key mismatch", recordErr(r))
		}
		if got, _ := s.GetCertificate(nil); got != cert2 {
			t.Error("certificate replaced by a mismatched pair")
		}
		writeFile(t, keyFile, keyPEM(t, key3))
		if h := <-ch; h.Value != HashDER(der3) {
			t.Fatalf("reloaded %s, want %s", h.Value, HashDER(der3))
		}
		if _, _, err := handshake(t, srv, pinned(HashDER(der3))); err != nil {
			t.Fatalf("handshake after second reload: %v", err)
		}

		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run = %v", err)
		}
		select {
		case r := <-warnings:
			t.Errorf("unexpected warning %q err=%q", r.Message, recordErr(r))
		default:
		}
	})
}

// TestReloadWarnsOnce checks that a bad version of the files is logged once,
// not at every poll, and that a missing file is survived too.
func TestReloadWarnsOnce(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, der := writePair(t, dir, ecKey(t))
	warnings := make(logRecords, 16)
	s, err := LoadFiles(certFile, keyFile, slog.New(warnings))
	if err != nil {
		t.Fatal(err)
	}
	s.reload()
	if len(warnings) != 0 {
		t.Fatal("warning for unchanged files")
	}
	writeFile(t, keyFile, []byte("garbage"))
	for range 3 {
		s.reload()
	}
	if n := len(warnings); n != 1 {
		t.Errorf("%d warnings for one bad key file, want 1", n)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.reload()
	}
	if n := len(warnings); n != 2 {
		t.Errorf("%d warnings after removing the cert, want 2", n)
	}
	if s.Hash().Value != HashDER(der) {
		t.Error("certificate lost")
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	s := newDev(b, DevConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c, _ := s.GetCertificate(nil); c == nil {
				b.Fatal("nil certificate")
			}
		}
	})
}
