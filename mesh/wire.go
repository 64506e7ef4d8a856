package mesh

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Helpers of the hand-written encodings (links, datagrams): protowire
// varints and varint-length-prefixed strings. Gossip and node metadata are
// generated protobuf messages instead (mesh/proto/gossip.proto).

var errShort = errors.New("mesh: truncated or malformed field")

func appendUvarint(b []byte, v uint64) []byte { return protowire.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte { return protowire.AppendString(b, s) }

func sizeString(s string) int { return protowire.SizeBytes(len(s)) }

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// reader consumes fields from b; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail()
		return false
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		r.fail()
		return nil
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

// count reads a count of items that take at least min bytes each, and
// fails if the rest of the input cannot hold that many.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)/min) {
		r.fail()
		return 0
	}
	return int(n)
}
