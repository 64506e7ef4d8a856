package protocols

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// A datagram of a volatile channel (a QUIC datagram on WebTransport; a
// Datagram frame on WebSocket carries the same fields) is:
//
//	alias:varint  seq:varint  payload
//
// alias names the subscription (Subscribe.alias); seq is the channel's
// datagram sequence number from the server, the client's own counter from
// a client (the server renumbers). The payload is the rest.

// MaxAlias is the largest subscription alias: two varint bytes.
const MaxAlias = 1<<14 - 1

// DefaultMaxDatagramSize is the default largest payload of a volatile
// publication. A QUIC path carries at least 1,200-byte packets; less the
// QUIC and WebTransport headers, the AEAD tag and this format's own
// (at most 2 + 10 bytes), a datagram of this payload always fits.
const DefaultMaxDatagramSize = 1100

// AppendDatagram appends a datagram to dst.
func AppendDatagram(dst []byte, alias uint32, seq uint64, payload []byte) []byte {
	dst = protowire.AppendVarint(dst, uint64(alias))
	dst = protowire.AppendVarint(dst, seq)
	return append(dst, payload...)
}

// ParseDatagram splits a datagram; payload aliases b.
func ParseDatagram(b []byte) (alias uint32, seq uint64, payload []byte, err error) {
	a, n := protowire.ConsumeVarint(b)
	if n < 0 || a > MaxAlias {
		return 0, 0, nil, fmt.Errorf("%w: datagram alias", ErrMalformed)
	}
	s, m := protowire.ConsumeVarint(b[n:])
	if m < 0 {
		return 0, 0, nil, fmt.Errorf("%w: datagram sequence number", ErrMalformed)
	}
	return uint32(a), s, b[n+m:], nil
}

// AppendVarintAlias appends the header of a subscription's stream: its
// alias as a varint.
func AppendVarintAlias(dst []byte, alias uint32) []byte {
	return protowire.AppendVarint(dst, uint64(alias))
}
