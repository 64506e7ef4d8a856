package protocols

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ProtocolVersion is the version string exchanged in Connect and Connected.
const ProtocolVersion = "switchyard.v1"

// DefaultMaxFrameSize is the default limit on one frame, prefix excluded.
const DefaultMaxFrameSize = 64 << 10

// maxPrefixLen is the longest varint prefix we accept: 4 bytes carry up to
// 2^28-1, far above any sane frame limit.
const maxPrefixLen = 4

// AppendFrame appends f to dst as a length-prefixed frame.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	size := proto.Size(f)
	dst = protowire.AppendVarint(dst, uint64(size))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(dst, f)
}

// EncodeFrame returns f as a length-prefixed frame in a new slice.
func EncodeFrame(f *Frame) ([]byte, error) {
	size := proto.Size(f)
	dst := make([]byte, 0, protowire.SizeVarint(uint64(size))+size)
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(protowire.AppendVarint(dst, uint64(size)), f)
}

// MustEncode is EncodeFrame for frames built by the server itself, which
// always encode.
func MustEncode(f *Frame) []byte {
	b, err := EncodeFrame(f)
	if err != nil {
		panic(fmt.Sprintf("protocols: encode %T: %v", f.Kind, err))
	}
	return b
}

// Field numbers used by the hand-written encoder of Message frames, which
// must stay in step with proto/switchyard.proto (TestEncodeMessageMatchesProto
// checks it).
const (
	fieldFrameMessage   = 10
	fieldMessageChannel = 1
	fieldMessageEpoch   = 2
	fieldMessageOffset  = 3
	fieldMessageData    = 4
)

// EncodeMessage builds a length-prefixed Message frame in one allocation.
// It is the publish hot path: the hub encodes each publication once and
// hands the same bytes to every subscriber.
func EncodeMessage(channel, epoch string, offset uint64, data []byte) []byte {
	inner := 0
	if channel != "" {
		inner += 1 + protowire.SizeBytes(len(channel))
	}
	if epoch != "" {
		inner += 1 + protowire.SizeBytes(len(epoch))
	}
	if offset != 0 {
		inner += 1 + protowire.SizeVarint(offset)
	}
	if len(data) != 0 {
		inner += 1 + protowire.SizeBytes(len(data))
	}
	outer := 1 + protowire.SizeBytes(inner)
	b := make([]byte, 0, protowire.SizeVarint(uint64(outer))+outer)
	b = protowire.AppendVarint(b, uint64(outer))
	b = protowire.AppendTag(b, fieldFrameMessage, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	if channel != "" {
		b = protowire.AppendTag(b, fieldMessageChannel, protowire.BytesType)
		b = protowire.AppendString(b, channel)
	}
	if epoch != "" {
		b = protowire.AppendTag(b, fieldMessageEpoch, protowire.BytesType)
		b = protowire.AppendString(b, epoch)
	}
	if offset != 0 {
		b = protowire.AppendTag(b, fieldMessageOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, offset)
	}
	if len(data) != 0 {
		b = protowire.AppendTag(b, fieldMessageData, protowire.BytesType)
		b = protowire.AppendBytes(b, data)
	}
	return b
}

// DecodeFrame parses one frame body (without its length prefix). A
// well-formed frame of a kind this version does not know (a newer peer's)
// returns the frame, with its Id, and ErrUnknownKind; a frame with no kind
// at all is malformed. A string field that is not valid UTF-8 does not
// fail the frame: each bad sequence becomes U+FFFD, so that the request
// reaches the checks that answer it (a channel name with such bytes is
// refused like any other bad name).
func DecodeFrame(body []byte) (*Frame, error) {
	f := new(Frame)
	if err := proto.Unmarshal(body, f); err != nil {
		fixed, ferr := replaceInvalidUTF8(f.ProtoReflect().Descriptor(), body, 0)
		if ferr != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		f = new(Frame)
		if err := proto.Unmarshal(fixed, f); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if f.Kind == nil {
		if len(f.ProtoReflect().GetUnknown()) > 0 {
			return f, ErrUnknownKind
		}
		return nil, fmt.Errorf("%w: frame has no kind", ErrMalformed)
	}
	return f, nil
}

// maxNesting bounds the recursion of replaceInvalidUTF8; the schema nests
// two levels deep.
const maxNesting = 8

// replaceInvalidUTF8 re-encodes the message b of type md with every string
// field made valid UTF-8 (bad sequences become U+FFFD), leaving other
// fields as they are. It fails where b does not parse.
func replaceInvalidUTF8(md protoreflect.MessageDescriptor, b []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, errors.New("nested too deep")
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				v = []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
			}
		case protoreflect.MessageKind:
			inner, err := replaceInvalidUTF8(fd.Message(), v, depth+1)
			if err != nil {
				return nil, err
			}
			v = inner
		default:
			out = append(out, field...)
			continue
		}
		out = protowire.AppendTag(out, num, typ)
		out = protowire.AppendBytes(out, v)
	}
	return out, nil
}

// NextFrame cuts the first length-prefixed frame off b, which must hold it
// whole, and returns its body and the bytes after it.
func NextFrame(b []byte, maxSize int) (body, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k > maxPrefixLen {
		return nil, nil, fmt.Errorf("%w: bad length prefix", ErrMalformed)
	}
	if n > uint64(maxSize) {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxSize)
	}
	b = b[k:]
	if uint64(len(b)) < n {
		return nil, nil, fmt.Errorf("%w: frame cut short: %d of %d bytes", ErrMalformed, len(b), n)
	}
	return b[:n], b[n:], nil
}

// SplitFrames calls fn for each length-prefixed frame body in b, which must
// hold whole frames only (one WebSocket message). The body passed to fn
// aliases b.
func SplitFrames(b []byte, maxSize int, fn func(body []byte) error) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty message", ErrMalformed)
	}
	for len(b) > 0 {
		body, rest, err := NextFrame(b, maxSize)
		if err != nil {
			return err
		}
		if err := fn(body); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// MaxMessageSize is the largest WebSocket message (or batch) that carries
// frames of at most maxFrameSize bytes: one frame and its prefix.
func MaxMessageSize(maxFrameSize int) int { return maxFrameSize + maxPrefixLen }

// FrameReader reads length-prefixed frames from a byte stream (the
// WebTransport control stream), whatever the read boundaries.
type FrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// What a FrameReader keeps between frames: a small read buffer (frames
// larger than it are read straight into their body), and a body buffer
// that a larger frame replaces only until the next small one. An idle
// session holds little.
const (
	frameReadBuffer = 1 << 10
	frameKeepBody   = 4 << 10
)

// NewFrameReader reads frames of at most maxSize bytes from r.
func NewFrameReader(r io.Reader, maxSize int) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, frameReadBuffer), max: maxSize}
}

// Next returns the next frame body. It is valid until the following call.
// At a clean end of stream between frames it returns io.EOF.
func (fr *FrameReader) Next() ([]byte, error) {
	var n uint64
	for i := 0; ; i++ {
		c, err := fr.r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if i == maxPrefixLen {
			return nil, fmt.Errorf("%w: bad length prefix", ErrMalformed)
		}
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			break
		}
	}
	if n > uint64(fr.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if uint64(cap(fr.buf)) < n || (cap(fr.buf) > frameKeepBody && n <= frameKeepBody) {
		fr.buf = make([]byte, n, max(n, 256))
	}
	body := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// Publication is one entry of a channel's history: its offset and its
// Message frame as the owner encoded it (EncodeMessage, length prefix
// included), shared by the hub and the mesh.
type Publication struct {
	Offset uint64
	Frame  []byte
}

// ChannelState is a channel's state as its owner holds it: its position,
// its history (oldest first, ending at Offset) and the idempotency keys it
// applied within its window. The owner's successor keeps a copy, and an
// owner hands it to the next one.
type ChannelState struct {
	Epoch   string
	Offset  uint64
	History []Publication
	Keys    []AppliedKey
	// Owner: the state of the node that sequenced the channel (in a
	// hand-off), not a replica's.
	Owner bool
}

// AppliedKey is an idempotency key a channel's owner applied: the offset
// it got (in the state's epoch) and how long ago.
type AppliedKey struct {
	Key    string
	Offset uint64
	Age    time.Duration
}

// MessageData returns the payload of a length-prefixed Message frame (as
// EncodeMessage makes it).
func MessageData(frame []byte) ([]byte, bool) {
	body, _, err := NextFrame(frame, len(frame))
	if err != nil {
		return nil, false
	}
	f, err := DecodeFrame(body)
	if err != nil || f.GetMessage() == nil {
		return nil, false
	}
	return f.GetMessage().Data, true
}

// MaxIdempotencyKey is the longest Publish.idempotency_key, in bytes.
const MaxIdempotencyKey = 64
