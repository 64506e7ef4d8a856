package protocols

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// sampleFrames are valid frames of every kind, used by tests and as fuzz
// seeds.
func sampleFrames() []*Frame {
	return []*Frame{
		{Id: 1, Kind: &Frame_Connect{Connect: &Connect{Token: "t", Client: "switchyard-go/0.1", Protocol: ProtocolVersion}}},
		{Id: 1, Kind: &Frame_Connected{Connected: &Connected{SessionId: "abc", PingIntervalMs: 25000, PongTimeoutMs: 10000, MaxFrameSize: 65536, Node: "n1", Region: "eu", Protocol: ProtocolVersion}}},
		{Id: 2, Kind: &Frame_Subscribe{Subscribe: &Subscribe{Channel: "news"}}},
		{Id: 2, Kind: &Frame_Subscribed{Subscribed: &Subscribed{Channel: "news", Epoch: "e1", Offset: 7}}},
		{Id: 3, Kind: &Frame_Unsubscribe{Unsubscribe: &Unsubscribe{Channel: "news"}}},
		{Id: 3, Kind: &Frame_Unsubscribed{Unsubscribed: &Unsubscribed{Channel: "news"}}},
		{Id: 4, Kind: &Frame_Publish{Publish: &Publish{Channel: "news", Data: []byte{0, 1, 2, 255}}}},
		{Id: 4, Kind: &Frame_PublishAck{PublishAck: &PublishAck{Epoch: "e1", Offset: 8}}},
		{Kind: &Frame_Message{Message: &Message{Channel: "news", Epoch: "e1", Offset: 8, Data: []byte("hello")}}},
		{Id: 5, Kind: &Frame_Error{Error: &Error{Code: uint32(ErrCodeInvalidChannel), Message: "bad name"}}},
		{Kind: &Frame_Ping{Ping: &Ping{}}},
		{Kind: &Frame_Pong{Pong: &Pong{}}},
		{Kind: &Frame_Disconnect{Disconnect: &Disconnect{Code: uint32(CodeGoingAway), Reason: "bye", Reconnect: true, ReconnectAfterMs: 100}}},
	}
}

func encodeAll(t testing.TB, frames []*Frame) []byte {
	var b []byte
	for _, f := range frames {
		var err error
		if b, err = AppendFrame(b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestRoundTripEveryKind(t *testing.T) {
	frames := sampleFrames()
	stream := encodeAll(t, frames)
	var got []*Frame
	err := SplitFrames(stream, DefaultMaxFrameSize, func(body []byte) error {
		f, err := DecodeFrame(body)
		if err != nil {
			return err
		}
		got = append(got, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(frames) {
		t.Fatalf("got %d frames, want %d", len(got), len(frames))
	}
	for i := range frames {
		if !proto.Equal(got[i], frames[i]) {
			t.Errorf("frame %d: got %v, want %v", i, got[i], frames[i])
		}
	}
}

func TestEncodeMessageMatchesProto(t *testing.T) {
	cases := []struct {
		channel, epoch string
		offset         uint64
		data           []byte
	}{
		{"news", "e1", 1, []byte("hello")},
		{"a", "", 0, nil},
		{"chat:room/1", "abcdefgh", 1 << 40, bytes.Repeat([]byte{7}, 300)},
		{"x", "e", 127, make([]byte, 70000)},
	}
	for _, c := range cases {
		want := MustEncode(&Frame{Kind: &Frame_Message{Message: &Message{Channel: c.channel, Epoch: c.epoch, Offset: c.offset, Data: c.data}}})
		got := EncodeMessage(c.channel, c.epoch, c.offset, c.data)
		if !bytes.Equal(got, want) {
			t.Errorf("EncodeMessage(%q, %q, %d, %d bytes) differs from proto.Marshal", c.channel, c.epoch, c.offset, len(c.data))
		}
		if cap(got) != len(got) {
			t.Errorf("EncodeMessage allocated %d bytes for %d", cap(got), len(got))
		}
	}
}

func TestEncodeMessageOneAllocation(t *testing.T) {
	data := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() { _ = EncodeMessage("news", "e1", 42, data) })
	if allocs != 1 {
		t.Fatalf("EncodeMessage: %v allocations, want 1", allocs)
	}
}

func TestFrameReaderSplitInput(t *testing.T) {
	frames := sampleFrames()
	stream := encodeAll(t, frames)
	for _, name := range []string{"one byte", "half"} {
		var r io.Reader = bytes.NewReader(stream)
		if name == "one byte" {
			r = iotest.OneByteReader(r)
		} else {
			r = iotest.HalfReader(r)
		}
		fr := NewFrameReader(r, DefaultMaxFrameSize)
		for i, want := range frames {
			body, err := fr.Next()
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			got, err := DecodeFrame(body)
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%s: frame %d: got %v want %v", name, i, got, want)
			}
		}
		if _, err := fr.Next(); err != io.EOF {
			t.Fatalf("%s: after the last frame: %v, want io.EOF", name, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	big := EncodeMessage("news", "e", 1, make([]byte, 2000))
	cases := []struct {
		name  string
		input []byte
		max   int
		want  error
	}{
		{"empty message", nil, 1024, ErrMalformed},
		{"frame over limit", big, 1024, ErrFrameTooLarge},
		{"cut short", []byte{10, 1, 2}, 1024, ErrMalformed},
		{"prefix too long", []byte{0x80, 0x80, 0x80, 0x80, 0x01}, 1 << 30, ErrMalformed},
		{"garbage body", []byte{3, 0xff, 0xff, 0xff}, 1024, ErrMalformed},
		{"no kind", []byte{2, 0x08, 0x05}, 1024, ErrMalformed},
	}
	for _, c := range cases {
		err := SplitFrames(c.input, c.max, func(body []byte) error {
			_, err := DecodeFrame(body)
			return err
		})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		_, err = readAll(bytes.NewReader(c.input), c.max)
		if len(c.input) > 0 && !errors.Is(err, c.want) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s (stream): got %v, want %v", c.name, err, c.want)
		}
	}
}

// readAll decodes every frame of a stream.
func readAll(r io.Reader, max int) ([]*Frame, error) {
	fr := NewFrameReader(r, max)
	var out []*Frame
	for {
		body, err := fr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		f, err := DecodeFrame(body)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

func TestCloseCodeRanges(t *testing.T) {
	for _, c := range []struct {
		code      CloseCode
		reconnect bool
		app       bool
	}{
		{1000, true, false}, {1006, true, false},
		{CodeGoingAway, true, false}, {CodeSlowConsumer, true, false}, {CodeHeartbeatTimeout, true, false},
		{3499, true, false}, {CodeBadFrame, false, false}, {CodeOriginNotAllowed, false, false}, {3999, false, false},
		{4000, true, true}, {4499, true, true}, {4500, false, true}, {4999, false, true},
	} {
		if got := c.code.Reconnect(); got != c.reconnect {
			t.Errorf("%d.Reconnect() = %v", c.code, got)
		}
		if got := c.code.Application(); got != c.app {
			t.Errorf("%d.Application() = %v", c.code, got)
		}
	}
	if r := TrimReason(string(bytes.Repeat([]byte("é"), 100))); len(r) > MaxReasonLen || len(r)%2 != 0 {
		t.Errorf("TrimReason split a rune or kept %d bytes", len(r))
	}
}

// FuzzDecode feeds arbitrary bytes, whole and split, to both decoders:
// they must never panic, must agree, and must round-trip what they accept.
func FuzzDecode(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(MustEncode(fr), uint8(3))
	}
	f.Add(encodeAll(f, sampleFrames()), uint8(1))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x01}, uint8(2))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const max = 4096
		var whole []*Frame
		wholeErr := SplitFrames(data, max, func(body []byte) error {
			fr, err := DecodeFrame(body)
			if err != nil {
				return err
			}
			whole = append(whole, fr)
			return nil
		})
		var r io.Reader = bytes.NewReader(data)
		if chunk > 0 {
			r = &chunkReader{data: data, n: int(chunk)}
		}
		streamed, streamErr := readAll(r, max)
		if (wholeErr == nil) != (streamErr == nil) && len(data) > 0 {
			t.Fatalf("decoders disagree: whole %v, stream %v", wholeErr, streamErr)
		}
		if wholeErr != nil {
			return
		}
		if len(whole) != len(streamed) {
			t.Fatalf("whole %d frames, stream %d", len(whole), len(streamed))
		}
		for i := range whole {
			if !proto.Equal(whole[i], streamed[i]) {
				t.Fatalf("frame %d differs", i)
			}
			b, err := EncodeFrame(whole[i])
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again, err := readAll(bytes.NewReader(b), 1<<20)
			if err != nil || len(again) != 1 || !proto.Equal(again[0], whole[i]) {
				t.Fatalf("frame %d does not round-trip: %v", i, err)
			}
		}
	})
}

// chunkReader returns at most n bytes per Read, as a network would.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// Invalid UTF-8 in a string field does not fail the frame: the bad bytes
// become U+FFFD, so that the request reaches the checks that answer it.
// Other faults still fail it.
func TestDecodeInvalidUTF8(t *testing.T) {
	sub := protowire.AppendTag(nil, 1, protowire.BytesType)
	sub = protowire.AppendBytes(sub, []byte("room-\xff"))
	frame := func(kind protowire.Number, inner []byte) []byte {
		b := protowire.AppendTag(nil, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, 7)
		b = protowire.AppendTag(b, kind, protowire.BytesType)
		return protowire.AppendBytes(b, inner)
	}
	f, err := DecodeFrame(frame(4, sub))
	if err != nil {
		t.Fatal(err)
	}
	if f.Id != 7 || f.GetSubscribe().GetChannel() != "room-\uFFFD" {
		t.Fatalf("got %v", f)
	}
	// Publish data is bytes: kept as sent.
	pub := append(append([]byte(nil), sub...), protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff, 0xfe})...)
	f, err = DecodeFrame(frame(8, pub))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.GetPublish(); p.Channel != "room-\uFFFD" || !bytes.Equal(p.Data, []byte{0xff, 0xfe}) {
		t.Fatalf("got %v", f)
	}
	// Cut short after the bad string: still malformed.
	bad := frame(4, sub)
	if _, err := DecodeFrame(bad[:len(bad)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cut frame: %v, want ErrMalformed", err)
	}
}
