package mesh

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Helpers of the hand-written datagram encoding (datagram.go): protowire
// varints and varint-length-prefixed strings. Link messages, gossip and
// node metadata are generated protobuf messages instead (mesh/proto).

var errShort = errors.New("mesh: truncated or malformed field")

func appendUvarint(b []byte, v uint64) []byte { return protowire.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte { return protowire.AppendString(b, s) }

func sizeString(s string) int { return protowire.SizeBytes(len(s)) }

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
