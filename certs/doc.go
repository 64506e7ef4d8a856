// Package certs holds the TLS certificate of an edge node and keeps it fresh.
//
// A Store serves one certificate to new TLS handshakes through
// GetCertificate (a lock-free atomic load) and swaps it while running,
// without a restart; connections already established keep the certificate
// they were made with. There are two kinds of Store:
//
//   - NewDev generates a self-signed ECDSA P-256 certificate valid for less
//     than 14 days, the kind browsers accept for WebTransport through
//     serverCertificateHashes. Run regenerates it RotateBefore ahead of its
//     NotAfter. Clients pin the certificate by its hash, which the node
//     serves as JSON (see Hash) on /certhash; after a rotation they fetch it
//     again.
//   - LoadFiles reads a real PEM certificate and key. Run re-reads the files
//     when their modification time or size changes (for example after an
//     ACME renewal) and keeps the current certificate, logging a warning,
//     while the new files are missing, garbage or do not match.
//
// Typical wiring:
//
//	store, err := certs.NewDev(certs.DevConfig{Logger: logger})
//	if err != nil {
//		return err
//	}
//	go store.Run(ctx) // started through the node's errgroup
//	tlsConf := store.TLSConfig()
//	tlsConf.NextProtos = []string{"h3"}
//
// The package uses only the standard library, reads no environment
// variables and starts no goroutine of its own: all background work happens
// inside Run, on the caller's goroutine.
package certs
