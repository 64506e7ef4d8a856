package protocols

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The worked bytes of docs/protocol.md section 11.
func TestDatagramVectors(t *testing.T) {
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"datagram", AppendDatagram(nil, 3, 300, []byte("hi")), "03 ac 02 68 69"},
		{"connect with streams", MustEncode(&Frame{Id: 1, Kind: &Frame_Connect{Connect: &Connect{Protocol: ProtocolVersion, Streams: true}}}),
			"15 08 01 12 11 1a 0d 73 77 69 74 63 68 79 61 72 64 2e 76 31 20 01"},
		{"subscribe with alias", MustEncode(&Frame{Id: 2, Kind: &Frame_Subscribe{Subscribe: &Subscribe{Channel: "game:1", Alias: 3}}}),
			"0e 08 02 22 0a 0a 06 67 61 6d 65 3a 31 10 03"},
		{"subscribed volatile", MustEncode(&Frame{Id: 2, Kind: &Frame_Subscribed{Subscribed: &Subscribed{Channel: "game:1", Offset: 299, Alias: 3, Volatile: true}}}),
			"13 08 02 2a 0f 0a 06 67 61 6d 65 3a 31 18 ab 02 20 03 28 01"},
		{"datagram frame", MustEncode(&Frame{Kind: &Frame_Datagram{Datagram: &Datagram{Alias: 3, Seq: 1, Data: []byte("hi")}}}),
			"0a 7a 08 08 03 10 01 1a 02 68 69"},
		{"volatile message", EncodeMessage("game:1", "", 300, []byte("hi")), "11 52 0f 0a 06 67 61 6d 65 3a 31 18 ac 02 22 02 68 69"},
		{"subscription stream", append(AppendVarintAlias(nil, 7), EncodeMessage("news", "AbCdEfGh", 42, []byte("hi"))...),
			"07 18 52 16 0a 04 6e 65 77 73 12 08 41 62 43 64 45 66 47 68 18 2a 22 02 68 69"},
	} {
		if want := unhex(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, want)
		}
	}
}

func TestParseDatagram(t *testing.T) {
	alias, seq, payload, err := ParseDatagram(unhex(t, "03 ac 02 68 69"))
	if err != nil || alias != 3 || seq != 300 || string(payload) != "hi" {
		t.Fatalf("%d %d %q %v", alias, seq, payload, err)
	}
	for _, bad := range []string{"", "80", "03", "03 80", "ff ff 01 00"} {
		if _, _, _, err := ParseDatagram(unhex(t, bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzParseDatagram(f *testing.F) {
	f.Add(AppendDatagram(nil, 3, 300, []byte("hi")))
	f.Add(AppendDatagram(nil, MaxAlias, 1<<63, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		alias, seq, payload, err := ParseDatagram(b)
		if err != nil {
			return
		}
		if got := AppendDatagram(nil, alias, seq, payload); len(got) > len(b) {
			t.Fatalf("re-encoded %d bytes from %d", len(got), len(b))
		}
	})
}
