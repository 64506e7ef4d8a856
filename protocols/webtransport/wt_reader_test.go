package webtransport

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchyard/switchyard/protocols"
)

// chunkReader returns its data in reads of at most step bytes, then err.
type chunkReader struct {
	data []byte
	step int
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := min(len(p), c.step, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func testWire(src io.Reader, max int) *wire {
	return &wire{srv: &Server{}, src: src, max: max}
}

func frame(body []byte) []byte {
	return append(protowire.AppendVarint(nil, uint64(len(body))), body...)
}

func filled(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// Frames come out whole and in order however the stream cuts them: byte by
// byte, in odd pieces or all at once, small ones from the read buffer and
// those larger than it from a buffer of their own.
func TestWireReadFrames(t *testing.T) {
	bodies := [][]byte{
		[]byte("a"), {}, filled(127, 'b'), filled(128, 'c'), filled(readBufferSize, 'd'),
		filled(readBufferSize+1, 'e'), []byte("f"), filled(3*readBufferSize+17, 'g'), filled(300, 'h'),
	}
	var stream []byte
	for _, b := range bodies {
		stream = append(stream, frame(b)...)
	}
	for _, step := range []int{1, 2, 3, 7, 100, 1500, readBufferSize, len(stream)} {
		w := testWire(&chunkReader{data: stream, step: step, err: io.EOF}, 1<<20)
		for i, want := range bodies {
			got, err := w.ReadFrame()
			if err != nil {
				t.Fatalf("step %d, frame %d: %v", step, i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("step %d, frame %d: got %d bytes, want %d", step, i, len(got), len(want))
			}
		}
		if _, err := w.ReadFrame(); err != io.EOF {
			t.Fatalf("step %d: after the last frame: %v, want io.EOF", step, err)
		}
	}
}

func TestWireReadErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		stream []byte
		err    error // of the stream after its data
		want   error
	}{
		{"too large", frame(filled(101, 'x')), io.EOF, protocols.ErrFrameTooLarge},
		{"prefix too long", []byte{0x80, 0x80, 0x80, 0x80, 0x01}, io.EOF, protocols.ErrMalformed},
		{"end in the prefix", []byte{0x80}, io.EOF, io.ErrUnexpectedEOF},
		{"end in the body", frame([]byte("hello"))[:3], io.EOF, io.ErrUnexpectedEOF},
		{"failure between frames", nil, boom, boom},
		{"failure in the body", frame([]byte("hello"))[:3], boom, boom},
	} {
		w := testWire(&chunkReader{data: tc.stream, step: 2, err: tc.err}, 100)
		if _, err := w.ReadFrame(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A frame larger than the read buffer that the stream cuts short.
	w := testWire(&chunkReader{data: frame(filled(2*readBufferSize, 'x'))[:readBufferSize], step: 1000, err: io.EOF}, 1<<20)
	if _, err := w.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Errorf("large frame cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

// pipeReader is a stream whose reads block until the test writes.
type pipeReader struct {
	mu   sync.Mutex
	more *sync.Cond
	data []byte
	err  error
}

func newPipeReader() *pipeReader {
	p := &pipeReader{}
	p.more = sync.NewCond(&p.mu)
	return p
}

func (p *pipeReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.data) == 0 && p.err == nil {
		p.more.Wait()
	}
	if len(p.data) == 0 {
		return 0, p.err
	}
	n := copy(b, p.data)
	p.data = p.data[n:]
	return n, nil
}

func (p *pipeReader) write(b []byte, err error) {
	p.mu.Lock()
	p.data = append(p.data, b...)
	if err != nil {
		p.err = err
	}
	p.mu.Unlock()
	p.more.Broadcast()
}

// An armed wire keeps no read buffer; its waiter runs wake once bytes
// come, after which the frames read without waiting; and the stream's end
// wakes it too.
func TestWireArm(t *testing.T) {
	p := newPipeReader()
	w := testWire(p, 1<<20)
	woken := make(chan struct{}, 1)
	wake := func() { woken <- struct{}{} }

	if w.Buffered() {
		t.Fatal("a new wire has bytes")
	}
	if !w.Arm(wake) {
		t.Fatal("Arm refused")
	}
	if w.rd != nil {
		t.Fatal("an armed wire keeps its read buffer")
	}
	select {
	case <-woken:
		t.Fatal("woken without bytes")
	case <-time.After(20 * time.Millisecond):
	}
	big := filled(2*readBufferSize, 'z')
	p.write(append(append(frame([]byte("one")), frame(big)...), frame([]byte("two"))...), nil)
	<-woken
	if !w.Buffered() {
		t.Fatal("woken, but nothing buffered")
	}
	for _, want := range [][]byte{[]byte("one"), big, []byte("two")} {
		got, err := w.ReadFrame()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadFrame: %d bytes, %v; want %d bytes", len(got), err, len(want))
		}
	}
	if w.Buffered() {
		t.Fatal("bytes left after the last frame")
	}
	if !w.Arm(wake) {
		t.Fatal("Arm refused")
	}
	if w.rd != nil || w.body != nil {
		t.Fatal("an armed wire keeps its buffers")
	}
	p.write(nil, io.EOF)
	<-woken
	if !w.Buffered() {
		t.Fatal("the stream's end is not reported as buffered")
	}
	if _, err := w.ReadFrame(); err != io.EOF {
		t.Fatalf("ReadFrame at the end: %v, want io.EOF", err)
	}
	w.srv.readers.Wait()
}

// Arm refuses once the wire is aborted or the server closes: the session
// reads on the goroutine it has.
func TestWireArmRefused(t *testing.T) {
	w := testWire(newPipeReader(), 100)
	w.aborting.Store(true)
	if w.Arm(func() { t.Error("woken") }) {
		t.Error("Arm accepted after Abort")
	}
	w = testWire(newPipeReader(), 100)
	w.srv.stopped = true
	if w.Arm(func() { t.Error("woken") }) {
		t.Error("Arm accepted after Close")
	}
}

// recorder keeps what each Write got.
type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, p)
	return len(p), nil
}

// A batch goes out in one write: a lone frame as it is, anything else
// joined in a pooled buffer, the stream's header first.
func TestWriteBatch(t *testing.T) {
	one := []byte("one")
	var r recorder
	if err := writeBatch(&r, nil, [][]byte{one}); err != nil {
		t.Fatal(err)
	}
	if len(r.writes) != 1 || &r.writes[0][0] != &one[0] {
		t.Fatalf("a lone frame was copied: %q", r.writes)
	}
	for _, tc := range []struct {
		head   []byte
		frames [][]byte
		want   string
	}{
		{nil, [][]byte{one, []byte("two")}, "onetwo"},
		{[]byte{7}, [][]byte{one}, "\x07one"},
		{[]byte{7}, [][]byte{one, []byte("two")}, "\x07onetwo"},
	} {
		var r recorder
		if err := writeBatch(&recorderCopy{&r}, tc.head, tc.frames); err != nil {
			t.Fatal(err)
		}
		if len(r.writes) != 1 || string(r.writes[0]) != tc.want {
			t.Errorf("head %q, frames %q: wrote %q, want one write of %q", tc.head, tc.frames, r.writes, tc.want)
		}
	}
}

// recorderCopy records copies: writeBatch reuses its buffer once Write
// has returned.
type recorderCopy struct{ r *recorder }

func (c *recorderCopy) Write(p []byte) (int, error) { return c.r.Write(bytes.Clone(p)) }

// A polled session reads every frame, one at a time or in a burst, from
// the waiter that found it or from one started for it, and ends at the
// stream's end with no waiter left.
func TestWirePolledSession(t *testing.T) {
	p := newPipeReader()
	w := testWire(p, 1<<20)
	h := &benchHandler{got: make(chan struct{}, 200), closed: make(chan struct{})}
	r := httptest.NewRequest(http.MethodConnect, "/wt", nil)
	protocols.ServePolled(w, protocols.WebTransport, r, h, protocols.SessionConfig{PingInterval: -1})
	body := protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Publish{Publish: &protocols.Publish{Channel: "c", Data: []byte("x")}}})
	for range 3 {
		p.write(body, nil)
		<-h.got
	}
	var burst []byte
	for range 100 {
		burst = append(burst, body...)
	}
	for _, cut := range []int{1, 7, len(burst) / 2, len(burst)} {
		p.write(burst[:cut], nil)
		time.Sleep(time.Millisecond)
		p.write(burst[cut:], nil)
		for range 100 {
			<-h.got
		}
	}
	p.write(nil, io.EOF)
	<-h.closed
	w.srv.readers.Wait()
	if len(h.got) != 0 {
		t.Errorf("%d frames too many", len(h.got))
	}
}

// benchHandler counts the frames it gets on a channel.
type benchHandler struct {
	got    chan struct{}
	closed chan struct{}
}

func (h *benchHandler) Accept(protocols.Session, *http.Request) (protocols.Handler, error) {
	return h, nil
}
func (h *benchHandler) HandleFrame(*protocols.Frame) error { h.got <- struct{}{}; return nil }
func (h *benchHandler) Closed(*protocols.CloseError)       { close(h.closed) }

// BenchmarkWireRoundTrip times one frame from the client to the handler
// with nothing else in flight: the case where a polled session arms and
// wakes for every frame, against a read loop (Serve).
func BenchmarkWireRoundTrip(b *testing.B) {
	body := protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Publish{Publish: &protocols.Publish{Channel: "bench", Data: make([]byte, 128)}}})
	for _, polled := range []bool{false, true} {
		name := "serve"
		if polled {
			name = "polled"
		}
		b.Run(name, func(b *testing.B) {
			p := newPipeReader()
			w := testWire(p, 1<<20)
			h := &benchHandler{got: make(chan struct{}), closed: make(chan struct{})}
			cfg := protocols.SessionConfig{PingInterval: -1}
			r := httptest.NewRequest(http.MethodConnect, "/wt", nil)
			if polled {
				protocols.ServePolled(w, protocols.WebTransport, r, h, cfg)
			} else {
				go protocols.Serve(w, protocols.WebTransport, r, h, cfg)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.write(body, nil)
				<-h.got
			}
			p.write(nil, io.EOF)
			<-h.closed
			w.srv.readers.Wait()
		})
	}
}
