package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// serverFrame encodes one unmasked frame as a server sends it, with the
// payload length in the given encoding: 7 (in the second byte), 16 or 64
// bits; 0 picks the shortest.
func serverFrame(fin bool, op byte, payload []byte, lenBits int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	n := len(payload)
	if lenBits == 0 {
		switch {
		case n <= 125:
			lenBits = 7
		case n <= 0xffff:
			lenBits = 16
		default:
			lenBits = 64
		}
	}
	var f []byte
	switch lenBits {
	case 7:
		f = []byte{b0, byte(n)}
	case 16:
		f = binary.BigEndian.AppendUint16([]byte{b0, 126}, uint16(n))
	case 64:
		f = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	}
	return append(f, payload...)
}

// collect feeds the pieces to a fresh wsReader and describes what it got.
func collect(t *testing.T, max int, pieces ...[]byte) ([]string, error) {
	t.Helper()
	r := wsReader{max: max}
	var got []string
	fn := func(op byte, p []byte) error {
		if len(p) > 40 {
			got = append(got, fmt.Sprintf("%x:%d bytes %x", op, len(p), p[:4]))
		} else {
			got = append(got, fmt.Sprintf("%x:%s", op, p))
		}
		return nil
	}
	for _, p := range pieces {
		if err := r.feed(p, fn); err != nil {
			return got, err
		}
	}
	if len(r.pending) != 0 || r.op != 0 {
		t.Fatalf("%d bytes pending, message %#x in progress after the whole stream", len(r.pending), r.op)
	}
	return got, nil
}

func TestWSReaderSplits(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 7000) // 70,000 bytes: a 64-bit length
	var stream []byte
	add := func(f []byte) { stream = append(stream, f...) }
	add(serverFrame(true, opText, []byte("ready"), 0))
	add(serverFrame(true, opBinary, nil, 0))
	add(serverFrame(true, opBinary, []byte(strings.Repeat("x", 125)), 0))
	add(serverFrame(true, opBinary, []byte(strings.Repeat("y", 126)), 0)) // 16 bits
	add(serverFrame(true, opBinary, []byte(strings.Repeat("z", 300)), 0)) // 16 bits
	add(serverFrame(true, opBinary, []byte("short, 64-bit length"), 64))  // not minimal, still valid to read
	add(serverFrame(true, opBinary, []byte("short, 16-bit length"), 16))  //
	add(serverFrame(false, opBinary, []byte("frag"), 0))                  // a fragmented message …
	add(serverFrame(true, opPing, []byte("p1"), 0))                       // … a control frame between its fragments …
	add(serverFrame(false, opContinuation, []byte("ment"), 16))           //
	add(serverFrame(true, opContinuation, []byte("ed"), 0))               // … and its end
	add(serverFrame(true, opPong, nil, 0))                                //
	add(serverFrame(false, opText, []byte("a"), 0))                       //
	add(serverFrame(true, opContinuation, nil, 0))                        // an empty last fragment
	add(serverFrame(true, opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, 0)) // 1000 "bye"
	want := []string{
		"1:ready", "2:", "2:125 bytes 78787878",
		"2:126 bytes 79797979", "2:300 bytes 7a7a7a7a",
		"2:short, 64-bit length", "2:short, 16-bit length",
		"9:p1", "2:fragmented", "a:", "1:a", "8:\x03\xe8bye",
	}
	check := func(name string, got []string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
	got, err := collect(t, 1<<20, stream)
	check("whole", got, err)
	for i := 1; i < len(stream); i++ {
		got, err := collect(t, 1<<20, stream[:i], stream[i:])
		check(fmt.Sprintf("split at %d", i), got, err)
		for j := i + 1; j < len(stream); j += 7 {
			got, err := collect(t, 1<<20, stream[:i], stream[i:j], stream[j:])
			check(fmt.Sprintf("split at %d and %d", i, j), got, err)
		}
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	got, err = collect(t, 1<<20, bytewise...)
	check("a byte at a time", got, err)

	// A 64-bit length for real, a byte at a time and in two pieces around
	// every byte of its header and the last bytes.
	bf := serverFrame(true, opBinary, big, 0)
	if bf[1] != 127 {
		t.Fatalf("a %d-byte payload did not take a 64-bit length", len(big))
	}
	bf = append(bf, serverFrame(true, opText, []byte("after"), 0)...)
	want = []string{fmt.Sprintf("2:%d bytes %x", len(big), big[:4]), "1:after"}
	bytewise = bytewise[:0]
	for i := range bf {
		bytewise = append(bytewise, bf[i:i+1])
	}
	got, err = collect(t, 1<<20, bytewise...)
	check("64-bit, a byte at a time", got, err)
	for _, i := range []int{1, 2, 3, 5, 9, 10, 11, len(bf) - 8, len(bf) - 7, len(bf) - 1} {
		got, err := collect(t, 1<<20, bf[:i], bf[i:])
		check(fmt.Sprintf("64-bit, split at %d", i), got, err)
	}
}

func TestWSReaderErrors(t *testing.T) {
	masked := serverFrame(true, opBinary, []byte("x"), 0)
	masked[1] |= 0x80
	rsv := serverFrame(true, opBinary, []byte("x"), 0)
	rsv[0] |= 0x40 // permessage-deflate, never negotiated
	for _, tc := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"masked", masked, "masked"},
		{"reserved bits", rsv, "reserved"},
		{"unknown opcode", serverFrame(true, 0x3, nil, 0), "opcode"},
		{"long ping", serverFrame(true, opPing, make([]byte, 126), 0), "control"},
		{"fragmented ping", serverFrame(false, opPing, nil, 0), "control"},
		{"lone continuation", serverFrame(true, opContinuation, []byte("x"), 0), "continuation"},
		{"message in a message", append(serverFrame(false, opBinary, []byte("a"), 0), serverFrame(true, opText, []byte("b"), 0)...), "inside"},
		{"too long", serverFrame(true, opBinary, make([]byte, 101), 0), "longer"},
		{"too long in fragments", append(serverFrame(false, opBinary, make([]byte, 60), 0), serverFrame(true, opContinuation, make([]byte, 60), 0)...), "longer"},
		{"too long, header only", serverFrame(true, opBinary, make([]byte, 70000), 0)[:10], "longer"},
	} {
		_, err := collect(t, 100, tc.stream)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one about %q", tc.name, err, tc.want)
		}
	}
	// An error of the callback ends the parse.
	r := wsReader{max: 100}
	stream := append(serverFrame(true, opBinary, []byte("a"), 0), serverFrame(true, opBinary, []byte("b"), 0)...)
	calls := 0
	err := r.feed(stream, func(byte, []byte) error { calls++; return fmt.Errorf("stop") })
	if err == nil || calls != 1 {
		t.Errorf("err %v after %d calls, want stop after 1", err, calls)
	}
	for _, tc := range []struct {
		p    []byte
		code int
		text string
		err  bool
	}{{nil, 1005, "", false}, {[]byte{0x03}, 0, "", true}, {[]byte{0x03, 0xe9, 'x'}, 1001, "x", false}} {
		code, text, err := closeFrame(tc.p)
		if code != tc.code || text != tc.text || (err != nil) != tc.err {
			t.Errorf("closeFrame(%x) = %d, %q, %v", tc.p, code, text, err)
		}
	}
}
