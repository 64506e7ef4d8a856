// Package hol holds the head-of-line test of issue 8: under packet loss,
// a small-message channel beside a bulky one keeps a lower p99 latency on
// WebTransport with per-subscription streams than on a single WebTransport
// stream or on WebSocket. The package has no code of its own; the test is
// in hol_test.go and needs root (it creates a network namespace and an
// nftables rule), else it skips.
//
//	go test -v -count=1 ./bench/hol/
//	go test -v -count=1 ./bench/hol/ -hol.loss=5 -hol.duration=8s
package hol
