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
// Strings are varint-length-prefixed, integers varints (protowire); "rest"
// is the remainder of the payload, as is:
//
//	1 hello            version, node name
//	2 deliver          channel, epoch, offset, rest = the Message frame
//	                   exactly as the owner encoded it (length prefix included)
//	3 publish          request id, channel, idempotency key, rest = data
//	4 publish reply    request id, epoch, offset, duplicate (a byte),
//	                   error ("" = ok)
//	5 register         request id, channel, and the registering node's
//	                   epoch and offset for it ("", 0: none)
//	6 register reply   request id, channel, epoch, offset, history count,
//	                   then per publication: offset, Message frame
//	7 unregister       channel
//	8 signal           rest = a message of the node's WebRTC signaling,
//	                   opaque to the mesh (signal.go)
//	9 history          request id, channel
//	10 history reply   as a register reply: request id, channel, epoch,
//	                   offset, history count, per publication offset, frame
//	11 replicate       protobuf (mesh/proto/link.proto) Replicate
//	12 replica ack     ReplicaAck
//	13 hand-off        HandOff
//	14 hand-off reply  HandOffReply
//	15 presence update PresenceUpdate (a node → the channel's owner)
//	16 presence event  PresenceUpdate (the owner → nodes with subscribers)
//	17 presence query  PresenceQuery
//	18 presence reply  PresenceReply
//
// Writers (one goroutine per outbound link) drain their queue without
// blocking, write the batch through one bufio.Writer and flush once, with a
// write deadline per flush. A deliver is written as a small header plus the
// owner's frame bytes, shared by every peer: no copy, no re-encoding.
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
	"github.com/switchyard/switchyard/protocols"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

const (
	linkVersion    = 1
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
)

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

func helloMsg(name string) item {
	p := protowire.SizeVarint(linkVersion) + sizeString(name)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), msgHello, p)
	b = appendUvarint(b, linkVersion)
	return item{hdr: appendString(b, name)}
}

// deliverHeader is the header of a deliver message whose rest is a frame of
// frameLen bytes.
func deliverHeader(channel, epoch string, offset uint64, frameLen int) []byte {
	f := sizeString(channel) + sizeString(epoch) + protowire.SizeVarint(offset)
	p := f + frameLen
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+f), msgDeliver, p)
	b = appendString(b, channel)
	b = appendString(b, epoch)
	return appendUvarint(b, offset)
}

func publishMsg(id uint64, channel, key string, data []byte) item {
	p := protowire.SizeVarint(id) + sizeString(channel) + sizeString(key) + len(data)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), msgPublish, p)
	b = appendUvarint(b, id)
	b = appendString(b, channel)
	b = appendString(b, key)
	return item{hdr: append(b, data...)} // a copy: the caller may reuse data once Publish returns
}

func publishReplyMsg(id uint64, epoch string, offset uint64, dup bool, errText string) item {
	p := protowire.SizeVarint(id) + sizeString(epoch) + protowire.SizeVarint(offset) + 1 + sizeString(errText)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), msgPublishReply, p)
	b = appendUvarint(b, id)
	b = appendString(b, epoch)
	b = appendUvarint(b, offset)
	b = append(b, boolByte(dup))
	return item{hdr: appendString(b, errText)}
}

func registerMsg(id uint64, channel, epoch string, offset uint64) item {
	p := protowire.SizeVarint(id) + sizeString(channel) + sizeString(epoch) + protowire.SizeVarint(offset)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), msgRegister, p)
	b = appendUvarint(b, id)
	b = appendString(b, channel)
	b = appendString(b, epoch)
	return item{hdr: appendUvarint(b, offset)}
}

func registerReplyMsg(id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	return positionMsg(msgRegisterReply, id, channel, epoch, offset, history)
}

func historyMsg(id uint64, channel string) item {
	it := registerMsg(id, channel, "", 0)
	it.hdr[0] = msgHistory // the same fields
	return it
}

func historyReplyMsg(id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	return positionMsg(msgHistoryReply, id, channel, epoch, offset, history)
}

// positionMsg encodes a channel's position and history (register and
// history replies).
func positionMsg(typ byte, id uint64, channel, epoch string, offset uint64, history []protocols.Publication) item {
	// The newest publications that fit in maxHistoryReply.
	size, first := 0, len(history)
	for first > 0 {
		h := history[first-1]
		n := protowire.SizeVarint(h.Offset) + protowire.SizeBytes(len(h.Frame))
		if size+n > maxHistoryReply {
			break
		}
		size += n
		first--
	}
	history = history[first:]
	p := protowire.SizeVarint(id) + sizeString(channel) + sizeString(epoch) + protowire.SizeVarint(offset) +
		protowire.SizeVarint(uint64(len(history))) + size
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), typ, p)
	b = appendUvarint(b, id)
	b = appendString(b, channel)
	b = appendString(b, epoch)
	b = appendUvarint(b, offset)
	b = appendUvarint(b, uint64(len(history)))
	for _, h := range history {
		b = appendUvarint(b, h.Offset)
		b = protowire.AppendBytes(b, h.Frame)
	}
	return item{hdr: b}
}

func unregisterMsg(channel string) item {
	p := sizeString(channel)
	b := startMsg(make([]byte, 0, 1+protowire.SizeVarint(uint64(p))+p), msgUnregister, p)
	return item{hdr: appendString(b, channel)}
}

// message is a decoded link message. Byte fields alias the payload.
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
	rest    []byte                  // deliver: frame; publish: data
	history []protocols.Publication // register reply
}

// decodeMessage parses the payload of a message of type typ.
func decodeMessage(typ byte, p []byte) (message, error) {
	r := reader{b: p}
	m := message{typ: typ}
	switch typ {
	case msgHello:
		m.version, m.name = r.uvarint(), r.string()
	case msgDeliver:
		m.channel, m.epoch, m.offset = r.string(), r.string(), r.uvarint()
		m.rest, r.b = r.b, nil
	case msgPublish:
		m.id, m.channel, m.key = r.uvarint(), r.string(), r.string()
		m.rest, r.b = r.b, nil
	case msgPublishReply:
		m.id, m.epoch, m.offset, m.dup, m.errText = r.uvarint(), r.string(), r.uvarint(), r.bool(), r.string()
	case msgRegister, msgHistory:
		m.id, m.channel, m.epoch, m.offset = r.uvarint(), r.string(), r.string(), r.uvarint()
	case msgRegisterReply, msgHistoryReply:
		m.id, m.channel, m.epoch, m.offset = r.uvarint(), r.string(), r.string(), r.uvarint()
		if n := r.count(2); n > 0 {
			m.history = make([]protocols.Publication, n)
			for i := range m.history {
				m.history[i] = protocols.Publication{Offset: r.uvarint(), Frame: r.bytes()}
			}
		}
	case msgUnregister:
		m.channel = r.string()
	case msgSignal, msgReplicate, msgReplicaAck, msgHandOff, msgHandOffReply,
		msgPresenceUpdate, msgPresenceEvent, msgPresenceQuery, msgPresenceReply:
		m.rest, r.b = r.b, nil
	default:
		return message{}, fmt.Errorf("%w: unknown type %d", errLinkMessage, typ)
	}
	if r.err != nil || len(r.b) != 0 {
		return message{}, fmt.Errorf("%w: type %d", errLinkMessage, typ)
	}
	return m, nil
}

// readMessage reads the next message. The payload of deliver, publish,
// signal and register reply messages is a new slice (the frame and the data outlive the read); the
// others reuse *scratch.
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
	if typ == msgDeliver || typ == msgPublish || typ == msgSignal || typ == msgRegisterReply || typ == msgHistoryReply ||
		typ >= msgReplicate {
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
