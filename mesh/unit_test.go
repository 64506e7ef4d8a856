package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
	"github.com/switchyard/switchyard/protocols"
)

func TestOwnerSpread(t *testing.T) {
	members := map[string]Member{}
	for i := range 5 {
		name := fmt.Sprintf("node-%d", i)
		members[name] = Member{Name: name}
	}
	v := newOwnerView(members)
	counts := map[string]int{}
	const n = 50000
	for i := range n {
		counts[v.owner(fmt.Sprintf("channel-%d", i))]++
	}
	for name, c := range counts {
		if math.Abs(float64(c)-n/5) > n/5*0.05 {
			t.Fatalf("%s owns %d of %d channels: uneven %v", name, c, n, counts)
		}
	}
	// Removing a member moves only its channels.
	delete(members, "node-2")
	v2 := newOwnerView(members)
	for i := range 2000 {
		ch := fmt.Sprintf("channel-%d", i)
		if o := v.owner(ch); o != "node-2" && v2.owner(ch) != o {
			t.Fatalf("%s moved from %s to %s", ch, o, v2.owner(ch))
		}
	}
	// Draining members own nothing while others exist; all drain: all own.
	for name, m := range members {
		m.Draining = name != "node-0"
		members[name] = m
	}
	if o := newOwnerView(members).owner("anything"); o != "node-0" {
		t.Fatalf("owner %s, want the only non-draining node", o)
	}
	m := members["node-0"]
	m.Draining = true
	members["node-0"] = m
	if o := newOwnerView(members).owner("anything"); o == "" {
		t.Fatal("all draining: no owner")
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Name: "n1", Bind: "127.0.0.1:0", ForwardBind: "127.0.0.1:0", TLS: meshTLS(t, nil, "n1"), Logger: slog.New(slog.DiscardHandler)}
	if _, err := New(good, newFakeLocal("n1")); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := map[string]func(*Config){
		"Name is required":        func(c *Config) { c.Name = "" },
		"DNS name":                func(c *Config) { c.Name = "bad name" },
		"Bind is required":        func(c *Config) { c.Bind = "" },
		"Bind":                    func(c *Config) { c.Bind = "nope" },
		"Key must be":             func(c *Config) { c.Key = []byte("short") },
		"Profile":                 func(c *Config) { c.Profile = "moon" },
		"ForwardBind is required": func(c *Config) { c.ForwardBind = "" },
		"TLS is required":         func(c *Config) { c.TLS = nil },
		"RootCAs and ClientCAs":   func(c *Config) { c.TLS = c.TLS.Clone(); c.TLS.ClientCAs = nil },
		"no node certificate":     func(c *Config) { c.TLS = c.TLS.Clone(); c.TLS.Certificates = nil },
		"Join seed":               func(c *Config) { c.Join = []string{"no-port"} },
		"must not be negative":    func(c *Config) { c.LinkQueue = -1 },
		"metadata is":             func(c *Config) { c.PublicURLs = map[string]string{"ws": strings.Repeat("x", 500)} },
		"LANBind is required": func(c *Config) {
			c.Profile, c.Bind, c.Transport = ProfileWAN, "", (*testTransport)(nil)
		},
		"LANBind \"nope\"":     func(c *Config) { c.Profile, c.LANBind = ProfileWAN, "nope" },
		"LANAdvertise \"x:y\"": func(c *Config) { c.Profile, c.LANAdvertise = ProfileWAN, "x:y" },
	}
	for want, mutate := range cases {
		cfg := good
		mutate(&cfg)
		_, err := New(cfg, newFakeLocal("n1"))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	if _, err := New(good, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil Local: %v", err)
	}
	// With Profile "wan", the LAN pool's address takes room in the metadata.
	fits := good
	for n := 300; ; n++ {
		fits.PublicURLs = map[string]string{"ws": strings.Repeat("x", n)}
		wan := fits
		wan.Profile = ProfileWAN
		if _, err := New(wan, newFakeLocal("n1")); err != nil {
			if !strings.Contains(err.Error(), "metadata is") {
				t.Fatalf("wan profile: %v", err)
			}
			break
		}
	}
	if _, err := New(fits, newFakeLocal("n1")); err != nil {
		t.Errorf("metadata without a LAN pool address: %v", err)
	}
	w := good
	w.Profile = ProfileWAN
	if d := w.withDefaults(); d.LANBind != "127.0.0.1:0" {
		t.Errorf("LANBind default with Bind %q: %q", w.Bind, d.LANBind)
	}
	if d := good.withDefaults(); d.LANBind != "" {
		t.Errorf("LANBind default with Profile lan: %q", d.LANBind)
	}
	d := good.withDefaults()
	if d.Region != "local" || d.Profile != ProfileLAN || d.LinkQueue != 65536 || d.RejoinInterval.Seconds() != 10 || d.RequestTimeout.Seconds() != 5 || d.Logger == nil {
		t.Errorf("defaults: %+v", d)
	}
}

func TestMeta(t *testing.T) {
	m := nodeMeta{Region: "eu", Forward: "10.0.0.1:7000", LAN: "10.0.0.1:7001", URLs: map[string]string{"ws": "wss://a/ws"}, Drain: true}
	got, err := decodeMeta(m.encode())
	if err != nil || got.Region != "eu" || got.Forward != m.Forward || got.member("n", "").LANAddr != m.LAN || got.URLs["ws"] != "wss://a/ws" || !got.Drain || got.Version != metaVersion {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := decodeMeta(nil); err == nil {
		t.Fatal("empty metadata decoded")
	}
}

// TestLinkMessages round-trips every message type through the stream
// reader, with the deliver frame passed through byte for byte.
func TestLinkMessages(t *testing.T) {
	frame := protocols.EncodeMessage("room", "ep", 42, []byte("payload"))
	var buf bytes.Buffer
	its := []item{
		helloMsg("n1"),
		{hdr: deliverHeader("room", "ep", 42, len(frame)), body: frame},
		publishMsg(7, "room", "k-1", []byte("data")),
		publishReplyMsg(7, "ep", 43, true, "boom"),
		registerMsg(8, "room", "ep", 41),
		registerReplyMsg(8, "room", "ep", 43, []protocols.Publication{{Offset: 42, Frame: []byte("f42")}, {Offset: 43, Frame: []byte("f43")}}),
		unregisterMsg("room"),
		historyMsg(9, "room"),
		historyReplyMsg(9, "room", "ep", 44, []protocols.Publication{{Offset: 44, Frame: []byte("f44")}}),
		{hdr: startMsg(nil, msgSignal, 3), body: []byte("sig")},
		{hdr: startMsg(nil, msgReplicate, 3), body: []byte("rep")},
	}
	for _, it := range its {
		buf.Write(it.hdr)
		buf.Write(it.body)
	}
	br := bufio.NewReader(&buf)
	var scratch []byte
	want := []message{
		{typ: msgHello, version: linkVersion, name: "n1"},
		{typ: msgDeliver, channel: "room", epoch: "ep", offset: 42, rest: frame},
		{typ: msgPublish, id: 7, channel: "room", key: "k-1", rest: []byte("data")},
		{typ: msgPublishReply, id: 7, epoch: "ep", offset: 43, dup: true, errText: "boom"},
		{typ: msgRegister, id: 8, channel: "room", epoch: "ep", offset: 41},
		{typ: msgRegisterReply, id: 8, channel: "room", epoch: "ep", offset: 43,
			history: []protocols.Publication{{Offset: 42, Frame: []byte("f42")}, {Offset: 43, Frame: []byte("f43")}}},
		{typ: msgUnregister, channel: "room"},
		{typ: msgHistory, id: 9, channel: "room"},
		{typ: msgHistoryReply, id: 9, channel: "room", epoch: "ep", offset: 44,
			history: []protocols.Publication{{Offset: 44, Frame: []byte("f44")}}},
		{typ: msgSignal, rest: []byte("sig")},
		{typ: msgReplicate, rest: []byte("rep")},
	}
	for i, w := range want {
		m, err := readMessage(br, &scratch)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.typ != w.typ || m.id != w.id || m.name != w.name || m.version != w.version || m.channel != w.channel ||
			m.epoch != w.epoch || m.offset != w.offset || m.errText != w.errText || !bytes.Equal(m.rest, w.rest) ||
			m.key != w.key || m.dup != w.dup ||
			!reflect.DeepEqual(m.history, w.history) {
			t.Fatalf("message %d: %+v, want %+v", i, m, w)
		}
	}
	if _, err := readMessage(br, &scratch); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	if _, err := readMessage(bufio.NewReader(bytes.NewReader([]byte{msgDeliver, 0xff, 0xff, 0xff, 0xff, 0x7f})), &scratch); err == nil {
		t.Fatal("oversized message accepted")
	}
	if _, err := readMessage(bufio.NewReader(bytes.NewReader([]byte{99, 0})), &scratch); err == nil {
		t.Fatal("unknown type accepted")
	}

	// Each payload is its protobuf message; a payload that does not parse
	// is refused.
	read := func(it item) (message, error) {
		return readMessage(bufio.NewReader(bytes.NewReader(append(slices.Clip(it.hdr), it.body...))), &scratch)
	}
	it := publishReplyMsg(7, "ep", 43, true, "boom")
	var reply wirepb.PublishReply
	if err := proto.Unmarshal(it.hdr[2:], &reply); err != nil || reply.Id != 7 || reply.Epoch != "ep" || reply.Offset != 43 ||
		!reply.Duplicate || reply.Error != "boom" {
		t.Fatalf("publish reply payload: %v %v", &reply, err)
	}
	for _, typ := range []byte{msgHello, msgDeliver, msgPublish, msgPublishReply, msgRegister, msgRegisterReply, msgUnregister, msgHistory, msgHistoryReply} {
		notUTF8 := []byte{0x12, 1, 0xff} // field 2 is a string in each but Unregister
		if typ == msgUnregister {
			notUTF8[0] = 0x0a
		}
		for _, bad := range [][]byte{{0xff}, {0x0a, 5, 'a'}, notUTF8} { // and a bad tag, a short field
			if m, err := read(item{hdr: startMsg(nil, typ, len(bad)), body: bad}); err == nil {
				t.Errorf("type %d: % x decoded: %+v", typ, bad, m)
			}
		}
	}

	// Names that are not UTF-8 are sent with U+FFFD instead of failing.
	if m, err := read(registerMsg(1, "a\xffb", "e", 1)); err != nil || m.channel != "a\uFFFDb" {
		t.Fatalf("a channel that is not UTF-8: %q %v", m.channel, err)
	}
	if m, err := read(item{hdr: deliverHeader("a\xff", "e", 1, 1), body: []byte("x")}); err != nil || m.channel != "a\uFFFD" {
		t.Fatalf("a deliver's channel that is not UTF-8: %q %v", m.channel, err)
	}

	// A reply carries the newest publications that fit in maxHistoryReply.
	big := make([]protocols.Publication, 9)
	for i := range big {
		big[i] = protocols.Publication{Offset: uint64(i + 1), Frame: bytes.Repeat([]byte{byte(i)}, maxHistoryReply/8)}
	}
	it = historyReplyMsg(3, "room", "ep", 9, big)
	if len(it.hdr) > maxHistoryReply+100 {
		t.Fatalf("history reply of %d bytes, limit %d", len(it.hdr), maxHistoryReply)
	}
	m, err := read(it)
	if err != nil || len(m.history) != 7 || !reflect.DeepEqual(m.history, big[2:]) {
		t.Fatalf("history reply: %d publications, %v; want the newest 7", len(m.history), err)
	}
}

// TestDeliverIsProtobuf: a deliver's header and frame together are the
// message whose payload is the protobuf encoding of Deliver, and
// decodeDeliver reads what the generated code writes.
func TestDeliverIsProtobuf(t *testing.T) {
	for _, c := range []struct {
		channel, epoch string
		offset         uint64
		frame          []byte
	}{
		{"room", "ep", 42, protocols.EncodeMessage("room", "ep", 42, []byte("payload"))},
		{"room", "", 7, []byte("volatile")}, // ForwardVolatile: no epoch
		{"", "", 0, nil},
		{strings.Repeat("c", 300), "e", 1 << 63, make([]byte, 70000)},
	} {
		want, err := proto.Marshal(&wirepb.Deliver{Channel: c.channel, Epoch: c.epoch, Offset: c.offset, Frame: c.frame})
		if err != nil {
			t.Fatal(err)
		}
		got := append(deliverHeader(c.channel, c.epoch, c.offset, len(c.frame)), c.frame...)
		if !bytes.Equal(got, append(startMsg(nil, msgDeliver, len(want)), want...)) {
			t.Fatalf("%q %q %d: header and frame % x, want the Deliver % x", c.channel, c.epoch, c.offset, got[:min(len(got), 64)], want[:min(len(want), 64)])
		}
	}
	// With the send time, written before the frame: the generated
	// Unmarshal reads the same message.
	frame := protocols.EncodeMessage("room", "ep", 42, []byte("payload"))
	at := append(deliverHeaderAt("room", "ep", 42, len(frame), 1_700_000_000_123456789), frame...)
	size, n := protowire.ConsumeVarint(at[1:])
	payload := at[1+n:]
	var pb wirepb.Deliver
	if err := proto.Unmarshal(payload, &pb); err != nil || at[0] != msgDeliver || int(size) != len(payload) ||
		pb.SentUnixNano != 1_700_000_000_123456789 || !bytes.Equal(pb.Frame, frame) || pb.Offset != 42 {
		t.Fatalf("with a send time: %v, %+v", err, &pb)
	}
	if m, err := decodeMessage(msgDeliver, payload); err != nil || m.sent != 1_700_000_000_123456789 || !bytes.Equal(m.rest, frame) {
		t.Fatalf("decoded with a send time: %+v, %v", m, err)
	}
	// Fields out of order, repeated, of another wire type and unknown: as
	// the generated Unmarshal reads them.
	var p []byte
	p = protowire.AppendTag(p, deliverFrame, protowire.BytesType)
	p = protowire.AppendString(p, "frame")
	p = protowire.AppendTag(p, 9, protowire.VarintType)
	p = protowire.AppendVarint(p, 5)
	p = protowire.AppendTag(p, deliverOffset, protowire.VarintType)
	p = protowire.AppendVarint(p, 3)
	p = protowire.AppendTag(p, deliverChannel, protowire.BytesType)
	p = protowire.AppendString(p, "first")
	p = protowire.AppendTag(p, deliverChannel, protowire.BytesType)
	p = protowire.AppendString(p, "room")
	p = protowire.AppendTag(p, deliverEpoch, protowire.VarintType)
	p = protowire.AppendVarint(p, 1)
	checkDeliver(t, p)
	for _, bad := range [][]byte{
		[]byte("\xdd\xdd\xdd\xdd00000"), // field number above the largest
		{0x04},                          // an end group (field 0)
		{0x0c},                          // an end group (field 1)
		{0x0b, 0x0c, 0x0c},              // a group ended twice
		{0x12, 2, 'e', 0xff},            // an epoch that is not UTF-8
	} {
		checkDeliver(t, bad)
	}
	m, err := decodeMessage(msgDeliver, p)
	if err != nil || m.channel != "room" || m.epoch != "" || m.offset != 3 || string(m.rest) != "frame" {
		t.Fatalf("%+v %v", m, err)
	}
}

// checkDeliver fails t if decodeMessage decodes the deliver payload p
// otherwise than the generated Unmarshal.
func checkDeliver(t testing.TB, p []byte) {
	t.Helper()
	m, err := decodeMessage(msgDeliver, p)
	var d wirepb.Deliver
	perr := proto.Unmarshal(p, &d)
	if (err == nil) != (perr == nil) {
		t.Fatalf("% x: decodeDeliver %v, generated Unmarshal %v", p, err, perr)
	}
	if err == nil && (m.channel != d.Channel || m.epoch != d.Epoch || m.offset != d.Offset || !bytes.Equal(m.rest, d.Frame)) {
		t.Fatalf("% x: decodeDeliver %+v, generated Unmarshal %v", p, m, &d)
	}
}

func FuzzLinkMessages(f *testing.F) {
	frame := protocols.EncodeMessage("room", "ep", 42, []byte("payload"))
	var seed bytes.Buffer
	for _, it := range []item{helloMsg("n1"), {hdr: deliverHeader("room", "ep", 42, len(frame)), body: frame},
		publishMsg(1, "c", "", []byte("d")), publishReplyMsg(1, "e", 2, false, ""), registerMsg(3, "c", "", 0), registerReplyMsg(3, "c", "e", 4, nil), unregisterMsg("c"),
		historyMsg(4, "c"), historyReplyMsg(4, "c", "e", 5, []protocols.Publication{{Offset: 5, Frame: []byte("f")}}),
		{hdr: startMsg(nil, msgSignal, 1), body: []byte("s")}} {
		seed.Write(it.hdr)
		seed.Write(it.body)
	}
	f.Add(seed.Bytes())
	f.Add(seed.Bytes()[:7])                                // split input
	f.Add(deliverHeader("room", "ep", 42, len(frame))[2:]) // a Deliver payload, split
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDeliver(t, b) // b as a deliver's payload
		br := bufio.NewReader(bytes.NewReader(b))
		var scratch []byte
		for range 1000 {
			if _, err := readMessage(br, &scratch); err != nil {
				return
			}
		}
	})
}
