package mesh

// Link protocol.
//
// Nodes forward publications, requests and replies over links: TLS 1.3
// over TCP, mutually authenticated by the mesh CA. Each node keeps one
// outbound connection per peer, dialled by the sender with ServerName =
// the peer's node name, and writes everything it sends to that peer on it:
// deliveries, requests and replies alike. Inbound connections are only read.
// A node therefore has, per peer P, one ordered byte stream to P and one
// from P, and the ordering argument is short:
//
//   - The owner O answers B's registration of channel c from inside
//     local.Hold(c, ...), by enqueueing the reply on O→B and adding B to c's
//     routes. Every delivery of c sequenced afterwards is enqueued on O→B
//     after the reply, and B's single reader of O→B calls local.Registered
//     before local.Deliver for those.
//   - O's answer to B's publish request is enqueued after local.Sequence
//     returned, so after O's delivery of that publication to B (if B is
//     interested): B's Publish returns after B delivered it.
//
// The dialler's first message is hello; the acceptor checks that the named
// node is a current member and one of the DNS SANs of the client
// certificate (which TLS verified against the mesh CA), and answers with
// one byte, the only byte that ever travels against the direction of a
// link: 0x01 accepted; 0x00 refused because the dialler is not a member in
// the acceptor's view (after a few of those the dialler joins the acceptor
// by memberlist push/pull, which heals views that disagree after a
// partition); for any other refusal the connection just closes. The
// dialler considers the link up only after 0x01: with TLS 1.3 its
// handshake completes before the acceptor has even checked its
// certificate. A newer inbound connection from a peer replaces the older
// one only after the older one's reader has stopped, so a peer's messages
// are never handled by two readers at once.
//
// Every message is a type byte, a varint payload length and the payload.
// The payload is a protobuf message of mesh/proto/link.proto (generated
// into mesh/internal/wirepb by scripts/generate.sh), one per type, except
// for signals:
//
//	1 hello            Hello: version (linkVersion), node name
//	2 deliver          Deliver: channel, epoch, offset, frame = the Message
//	                   frame exactly as the owner encoded it (length
//	                   prefix included); frame is the last field (below)
//	3 publish          Publish: request id, channel, idempotency key, data
//	4 publish reply    PublishReply: request id, epoch, offset, duplicate,
//	                   error ("" = ok)
//	5 register         Register: request id, channel, and the registering
//	                   node's epoch and offset for it ("", 0: none)
//	6 register reply   RegisterReply: request id, channel, epoch, offset
//	                   and history, the newest publications (Publication:
//	                   offset, frame) that fit in maxHistoryReply, oldest
//	                   first
//	7 unregister       Unregister: channel
//	8 signal           not a link.proto message: a message of the node's
//	                   WebRTC signaling, opaque to the mesh (signal.go)
//	9 history          History: request id, channel
//	10 history reply   RegisterReply, as for a register
//	11 replicate       Replicate (replica.go)
//	12 replica ack     ReplicaAck
//	13 hand-off        HandOff
//	14 hand-off reply  HandOffReply
//	15 presence update PresenceUpdate (a node → the channel's owner)
//	16 presence event  PresenceUpdate (the owner → nodes with subscribers)
//	17 presence query  PresenceQuery (presence.go)
//	18 presence reply  PresenceReply
//
// Strings are UTF-8, as protobuf wants: the encoders replace bytes that
// are not (names the edge gives are ASCII). decodeMessage decodes types
// 1–10 into the fields of a message and passes the payload of the others
// on as is; a payload that does not parse is a bad message.
//
// Writers (one goroutine per outbound link) drain their queue without
// blocking, write the batch through one bufio.Writer and flush once, with a
// write deadline per flush. A deliver is written as a small header plus the
// owner's frame bytes, shared by every peer: no copy, no re-encoding. The
// header (deliverHeader) is the type, the length and the Deliver fields
// before frame, then frame's tag and length, written with protowire, so
// that the frame bytes complete the Deliver. The reader decodes it with
// protowire too (decodeDeliver), the frame aliasing the payload it read
// (the generated Unmarshal would copy it).
// Beside each writer a watcher blocks in Read on the outbound connection:
// the acceptor never writes after its acknowledgement, so the read ends
// when the acceptor closes the link (it dropped us for a moment, or hit a
// bad message), and the link is reset at once instead of writing into a
// dead connection until the kernel notices.
//
// A queue that overflows is dropped whole, the connection closed and
// re-dialled. Whenever a link is reset, both ends fail the requests waiting
// on the other and register again the channels the other owns: the
// positions in Registered let the edge see the gap and recover.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/mesh/internal/wirepb"
	"github.com/switchyard/switchyard/protocols"
)

const (
	// linkVersion is the link protocol's version, in the hello (1 was the
	// hand-written encoding that came before the schema).
	linkVersion    = 2
	helloAck       = 0x01 // link accepted
	helloNotMember = 0x00 // link refused: you are not a member in my view

	msgHello         = 1
	msgDeliver       = 2
	msgPublish       = 3
	msgPublishReply  = 4
	msgRegister      = 5
	msgRegisterReply = 6
	msgUnregister    = 7
	msgSignal        = 8
	msgHistory       = 9
	msgHistoryReply  = 10

	// maxLinkMessage bounds one message's payload (a frame is at most
	// 64 KiB by default; this leaves room for larger configured limits).
	maxLinkMessage = 16 << 20

	// maxScratch bounds the payload a reader decodes in its reused buffer;
	// a larger one (a long history) gets a buffer of its own, garbage once
	// decoded, so that a link does not keep megabytes for its lifetime.
	maxScratch = 64 << 10
)

// The field numbers of Deliver (mesh/proto/link.proto), which
// deliverHeader writes and decodeDeliver reads with protowire, and their
// tags (one byte each).
const (
	deliverChannel protowire.Number = 1
	deliverEpoch   protowire.Number = 2
	deliverOffset  protowire.Number = 3
	deliverFrame   protowire.Number = 4
	deliverSent    protowire.Number = 5

	deliverChannelTag = byte(deliverChannel)<<3 | byte(protowire.BytesType)
	deliverEpochTag   = byte(deliverEpoch)<<3 | byte(protowire.BytesType)
	deliverOffsetTag  = byte(deliverOffset)<<3 | byte(protowire.VarintType)
	deliverFrameTag   = byte(deliverFrame)<<3 | byte(protowire.BytesType)
	deliverSentTag    = byte(deliverSent)<<3 | byte(protowire.Fixed64Type)
)

// publicationOverhead bounds what a Publication adds to its frame in a
// RegisterReply: the history tag and length, the offset and its tag, the
// frame's tag and length.
const publicationOverhead = 1 + 5 + 1 + 10 + 1 + 5

var errLinkMessage = errors.New("mesh: malformed link message")

// item is one queued message: hdr, then body written as is. Deliveries
// share hdr and body across peers; neither is modified after queueing.
type item struct {
	hdr  []byte
	body []byte
}

func (it item) size() int { return len(it.hdr) + len(it.body) }

// startMsg appends the type and payload length of a message.
func startMsg(b []byte, typ byte, payload int) []byte {
	b = append(b, typ)
	return protowire.AppendVarint(b, uint64(payload))
}

// marshalMsg frames m as a message of type typ. The encoders pass strings
// through validUTF8, so that marshalling cannot fail.
func marshalMsg(typ byte, m proto.Message) item {
	n := proto.Size(m)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(n))+n), typ, n)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	if err != nil { // every string is UTF-8
		panic(fmt.Sprintf("mesh: encode link message %d: %v", typ, err))
	}
	return item{hdr: b}
}

// validUTF8 returns s with the bytes that are not UTF-8 (which protobuf
// strings must be) replaced by U+FFFD. Names the edge gives are ASCII; a
// channel whose name is not UTF-8 does not work across the mesh (it is not
// gossiped either).
func validUTF8(s string) string {
	for i := 0; i < len(s); i++ { // ASCII first: faster than utf8.ValidString for short names
		if s[i] >= utf8.RuneSelf {
			if utf8.ValidString(s[i:]) {
				return s
			}
			return strings.ToValidUTF8(s, "\uFFFD")
		}
	}
	return s
}

func helloMsg(name string) item {
	return marshalMsg(msgHello, &wirepb.Hello{Version: linkVersion, Name: validUTF8(name)})
}

// deliverHeader is the header of a deliver message whose frame has
// frameLen bytes: type, payload length, then the fields of Deliver up to
// the frame's tag and length, with protowire. The header and the frame
// bytes together are thus the message, its payload exactly the protobuf
// encoding of Deliver{channel, epoch, offset, frame} (fields with zero
// values left out, as generated code does).
func deliverHeader(channel, epoch string, offset uint64, frameLen int) []byte {
	return deliverHeaderAt(channel, epoch, offset, frameLen, 0)
}

// deliverHeaderAt is deliverHeader with the time the owner sends it
// (Deliver.sent_unix_nano; 0: none), written before the frame.
func deliverHeaderAt(channel, epoch string, offset uint64, frameLen int, sent int64) []byte {
	channel, epoch = validUTF8(channel), validUTF8(epoch)
	f := 0
	if sent != 0 {
		f += 1 + 8
	}
	if channel != "" {
		f += 1 + protowire.SizeBytes(len(channel))
	}
	if epoch != "" {
		f += 1 + protowire.SizeBytes(len(epoch))
	}
	if offset != 0 {
		f += 1 + protowire.SizeVarint(offset)
	}
	if frameLen > 0 {
		f += 1 + protowire.SizeVarint(uint64(frameLen))
	}
	p := f + frameLen
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+f), msgDeliver, p)
	if channel != "" {
		b = protowire.AppendString(append(b, deliverChannelTag), channel)
	}
	if epoch != "" {
		b = protowire.AppendString(append(b, deliverEpochTag), epoch)
	}
	if offset != 0 {
		b = protowire.AppendVarint(append(b, deliverOffsetTag), offset)
	}
	if sent != 0 {
		b = protowire.AppendFixed64(append(b, deliverSentTag), uint64(sent))
	}
	if frameLen > 0 {
		b = protowire.AppendVarint(append(b, deliverFrameTag), uint64(frameLen))
	}
	return b
}

func publishMsg(id uint64, channel, key string, data []byte) item {
	// A copy of data: the caller may reuse it once Publish returns.
	return marshalMsg(msgPublish, &wirepb.Publish{Id: id, Channel: validUTF8(channel), Key: validUTF8(key), Data: data})
}

func publishReplyMsg(id uint64, epoch string, offset uint64, dup bool, errText string) item {
	return marshalMsg(msgPublishReply, &wirepb.PublishReply{Id: id, Epoch: validUTF8(epoch), Offset: offset, Duplicate: dup, Error: validUTF8(errText)})
}

func registerMsg(id uint64, channel, epoch string, offset uint64) item {
	return marshalMsg(msgRegister, &wirepb.Register{Id: id, Channel: validUTF8(channel), Epoch: validUTF8(epoch), Offset: offset})
}

func registerReplyMsg(id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	return positionMsg(msgRegisterReply, id, channel, epoch, offset, history)
}

func historyMsg(id uint64, channel string) item {
	return marshalMsg(msgHistory, &wirepb.History{Id: id, Channel: validUTF8(channel)})
}

func historyReplyMsg(id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	return positionMsg(msgHistoryReply, id, channel, epoch, offset, history)
}

// positionMsg encodes a channel's position and history as a RegisterReply
// (register and history replies).
func positionMsg(typ byte, id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	// The newest publications that fit in maxHistoryReply.
	size, first := 0, len(history)
	for first > 0 {
		n := len(history[first-1].Frame) + publicationOverhead
		if size+n > maxHistoryReply {
			break
		}
		size += n
		first--
	}
	history = history[first:]
	m := &wirepb.RegisterReply{Id: id, Channel: validUTF8(channel), Epoch: validUTF8(epoch), Offset: offset}
	if len(history) > 0 {
		pubs := make([]wirepb.Publication, len(history))
		m.History = make([]*wirepb.Publication, len(history))
		for i, h := range history {
			p := &pubs[i]
			p.Offset, p.Frame = h.Offset, h.Frame
			m.History[i] = p
		}
	}
	return marshalMsg(typ, m)
}

func unregisterMsg(channel string) item {
	return marshalMsg(msgUnregister, &wirepb.Unregister{Channel: validUTF8(channel)})
}

// message is a decoded link message. rest is the payload's own bytes (a
// deliver's frame, the whole payload of a signal and of messages 11–18);
// every other field is a copy.
type message struct {
	typ     byte
	id      uint64
	name    string // hello
	version uint64 // hello
	channel string
	epoch   string
	offset  uint64
	errText string
	key     string                  // publish: idempotency key
	dup     bool                    // publish reply: a duplicate
	rest    []byte                  // deliver: frame; publish: data; signal, 11–18: the payload
	sent    int64                   // deliver: when the owner sent it (unix nanoseconds); 0: not told
	history []protocols.Publication // register and history replies
}

// decodeMessage parses the payload of a message of type typ.
func decodeMessage(typ byte, p []byte) (message, error) {
	m := message{typ: typ}
	var err error
	switch typ {
	case msgHello:
		var pb wirepb.Hello
		err = proto.Unmarshal(p, &pb)
		m.version, m.name = pb.Version, pb.Name
	case msgDeliver:
		err = decodeDeliver(p, &m)
	case msgPublish:
		var pb wirepb.Publish
		err = proto.Unmarshal(p, &pb)
		m.id, m.channel, m.key, m.rest = pb.Id, pb.Channel, pb.Key, pb.Data
	case msgPublishReply:
		var pb wirepb.PublishReply
		err = proto.Unmarshal(p, &pb)
		m.id, m.epoch, m.offset, m.dup, m.errText = pb.Id, pb.Epoch, pb.Offset, pb.Duplicate, pb.Error
	case msgRegister:
		var pb wirepb.Register
		err = proto.Unmarshal(p, &pb)
		m.id, m.channel, m.epoch, m.offset = pb.Id, pb.Channel, pb.Epoch, pb.Offset
	case msgHistory:
		var pb wirepb.History
		err = proto.Unmarshal(p, &pb)
		m.id, m.channel = pb.Id, pb.Channel
	case msgRegisterReply, msgHistoryReply:
		var pb wirepb.RegisterReply
		err = proto.Unmarshal(p, &pb)
		m.id, m.channel, m.epoch, m.offset = pb.Id, pb.Channel, pb.Epoch, pb.Offset
		if len(pb.History) > 0 {
			m.history = make([]protocols.Publication, len(pb.History))
			for i, h := range pb.History {
				m.history[i] = protocols.Publication{Offset: h.GetOffset(), Frame: h.GetFrame()}
			}
		}
	case msgUnregister:
		var pb wirepb.Unregister
		err = proto.Unmarshal(p, &pb)
		m.channel = pb.Channel
	case msgSignal, msgReplicate, msgReplicaAck, msgHandOff, msgHandOffReply,
		msgPresenceUpdate, msgPresenceEvent, msgPresenceQuery, msgPresenceReply:
		m.rest = p
	default:
		return message{}, fmt.Errorf("%w: unknown type %d", errLinkMessage, typ)
	}
	if err != nil {
		return message{}, fmt.Errorf("%w: type %d: %v", errLinkMessage, typ, err)
	}
	return m, nil
}

// decodeDeliver decodes a Deliver with protowire, as the generated
// Unmarshal would (fields in any order, the last of a field repeated wins,
// unknown fields and known ones of another wire type skipped, strings
// UTF-8; FuzzLinkMessages compares the two), except that the frame aliases
// p instead of being copied: deliveries are the hot path
// (BenchmarkDecodeDeliver, BenchmarkDecodeDeliverGenerated).
func decodeDeliver(p []byte, m *message) error {
	bad := false // a string that is not UTF-8
	for len(p) > 0 {
		tag, n := uint64(p[0]), 1 // one byte for the fields of Deliver
		if tag >= 0x80 {
			if tag, n = protowire.ConsumeVarint(p); n < 0 {
				return protowire.ParseError(n)
			}
		}
		num, wt := tag>>3, protowire.Type(tag&7)
		if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) || wt == protowire.EndGroupType {
			return fmt.Errorf("bad tag %#x", tag)
		}
		p = p[n:]
		var v []byte
		switch tag {
		case uint64(deliverChannelTag):
			v, n = protowire.ConsumeBytes(p)
			m.channel, bad = string(v), bad || !isUTF8(v)
		case uint64(deliverEpochTag):
			v, n = protowire.ConsumeBytes(p)
			m.epoch, bad = string(v), bad || !isUTF8(v)
		case uint64(deliverOffsetTag):
			m.offset, n = protowire.ConsumeVarint(p)
		case uint64(deliverFrameTag):
			m.rest, n = protowire.ConsumeBytes(p)
		case uint64(deliverSentTag):
			var v uint64
			v, n = protowire.ConsumeFixed64(p)
			m.sent = int64(v)
		default:
			n = protowire.ConsumeFieldValue(protowire.Number(num), wt, p)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		p = p[n:]
	}
	if bad {
		return errors.New("a string field is not UTF-8")
	}
	return nil
}

// isUTF8 is utf8.Valid, shorter for short ASCII strings.
func isUTF8(b []byte) bool {
	for i, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b[i:])
		}
	}
	return true
}

// readMessage reads the next message. The payload of a deliver, a signal
// and messages 11–18 is a new slice (the frame and the payload outlive the
// read); the others, which decodeMessage copies from, reuse *scratch up to
// maxScratch bytes.
func readMessage(br *bufio.Reader, scratch *[]byte) (message, error) {
	typ, err := br.ReadByte()
	if err != nil {
		return message{}, err // io.EOF between messages: a clean end
	}
	n, err := readUvarint(br)
	if err != nil {
		return message{}, err
	}
	if n > maxLinkMessage {
		return message{}, fmt.Errorf("%w: %d bytes, limit %d", errLinkMessage, n, maxLinkMessage)
	}
	var p []byte
	if typ == msgDeliver || typ == msgSignal || typ >= msgReplicate || n > maxScratch {
		p = make([]byte, n)
	} else {
		if uint64(cap(*scratch)) < n {
			*scratch = make([]byte, n)
		}
		p = (*scratch)[:n]
	}
	if _, err := io.ReadFull(br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return message{}, err
	}
	return decodeMessage(typ, p)
}

func readUvarint(br *bufio.Reader) (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: bad length", errLinkMessage)
}
