package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchyard/switchyard/bench/internal/naive"
	"github.com/switchyard/switchyard/protocols"
)

// Field numbers of the Frame kinds the load generator looks at, from
// protocols/proto/switchyard.proto. The hot path reads them with protowire
// instead of decoding whole frames; TestFrameKind checks them against the
// generated code.
const (
	fieldFrameID         = 1
	fieldFrameConnected  = 3
	fieldFrameSubscribed = 5
	fieldFramePublishAck = 9
	fieldFrameMessage    = 10
	fieldFrameError      = 11
	fieldFramePing       = 12
	fieldFrameDisconnect = 14
	fieldMessageData     = 4
)

// switchyard speaks switchyard.v1: length-prefixed protobuf frames, one or
// more per binary WebSocket message.
type switchyard struct {
	channel        string
	connect        []byte
	subscribeFrame []byte
	pong           []byte
	maxFrame       int
}

func newSwitchyard(channel string) *switchyard {
	return &switchyard{
		channel: channel,
		connect: protocols.MustEncode(&protocols.Frame{Id: 1, Kind: &protocols.Frame_Connect{Connect: &protocols.Connect{
			Client: "switchyard-loadgen", Protocol: protocols.ProtocolVersion,
		}}}),
		subscribeFrame: protocols.MustEncode(&protocols.Frame{Id: 2, Kind: &protocols.Frame_Subscribe{Subscribe: &protocols.Subscribe{Channel: channel}}}),
		pong:           protocols.MustEncode(&protocols.Frame{Kind: &protocols.Frame_Pong{Pong: &protocols.Pong{}}}),
		maxFrame:       16 << 20,
	}
}

var _ protocol = (*switchyard)(nil)

func (sy *switchyard) acks() bool { return true }

func (sy *switchyard) subscribe(s *subscriber) error {
	// Connect and Subscribe in one message: the server reads them in order.
	msg := append(append([]byte(nil), sy.connect...), sy.subscribeFrame...)
	return s.c.WriteMessage(websocket.BinaryMessage, msg)
}

func (sy *switchyard) connectPublisher(p *publisher) error {
	if err := p.write(sy.connect); err != nil {
		return err
	}
	// Wait for Connected before publishing; the read loop starts after.
	deadline := time.Now().Add(10 * time.Second)
	_ = p.c.SetReadDeadline(deadline)
	defer p.c.SetReadDeadline(time.Time{})
	for {
		typ, msg, err := p.c.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for connected: %w", err)
		}
		if typ != websocket.BinaryMessage {
			continue
		}
		connected := false
		err = protocols.SplitFrames(msg, sy.maxFrame, func(body []byte) error {
			kind, _, err := frameKind(body)
			switch {
			case err != nil:
				return err
			case kind == fieldFrameConnected:
				connected = true
				return nil
			case kind == fieldFramePing:
				return p.write(sy.pong)
			}
			return fmt.Errorf("unexpected frame: %s", describe(body))
		})
		if err != nil {
			return err
		}
		if connected {
			return nil
		}
	}
}

func (sy *switchyard) publish(p *publisher, payload []byte) error {
	p.id++
	if p.id == 0 {
		p.id = 1
	}
	f, err := protocols.EncodeFrame(&protocols.Frame{Id: p.id, Kind: &protocols.Frame_Publish{Publish: &protocols.Publish{
		Channel: sy.channel, Data: payload,
	}}})
	if err != nil {
		return err
	}
	return p.write(f)
}

func (sy *switchyard) handlePublisher(p *publisher, msg []byte) error {
	return protocols.SplitFrames(msg, sy.maxFrame, func(body []byte) error {
		kind, _, err := frameKind(body)
		switch {
		case err != nil:
			return err
		case kind == fieldFramePublishAck:
			p.l.acked.Add(1)
		case kind == fieldFramePing:
			return p.write(sy.pong)
		case kind == fieldFrameError:
			p.l.fail("publisher: %s", describe(body))
		case kind == fieldFrameDisconnect:
			return fmt.Errorf("server closed the publisher: %s", describe(body))
		}
		return nil
	})
}

func (sy *switchyard) handle(s *subscriber, msg []byte) error {
	return protocols.SplitFrames(msg, sy.maxFrame, func(body []byte) error {
		kind, inner, err := frameKind(body)
		if err != nil {
			return err
		}
		switch kind {
		case fieldFrameMessage:
			data, err := messageData(inner)
			if err != nil {
				return err
			}
			s.deliver(data)
		case fieldFrameConnected:
		case fieldFrameSubscribed:
			s.markReady()
		case fieldFramePing:
			return s.c.WriteMessage(websocket.BinaryMessage, sy.pong)
		case fieldFrameDisconnect:
			return fmt.Errorf("server closed the session: %s", describe(body))
		case fieldFrameError:
			s.l.fail("subscriber %d: %s", s.i, describe(body))
		default:
			return fmt.Errorf("unexpected frame: %s", describe(body))
		}
		return nil
	})
}

func (sy *switchyard) handleText(*subscriber, []byte) error {
	return errors.New("text message from a switchyard server")
}

// frameKind returns the field number of a Frame body's kind and the kind's
// encoded message, without decoding the rest.
func frameKind(body []byte) (kind protowire.Number, inner []byte, err error) {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: %v", protocols.ErrMalformed, protowire.ParseError(n))
		}
		body = body[n:]
		if num != fieldFrameID && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return 0, nil, fmt.Errorf("%w: %v", protocols.ErrMalformed, protowire.ParseError(n))
			}
			return num, v, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: %v", protocols.ErrMalformed, protowire.ParseError(n))
		}
		body = body[n:]
	}
	return 0, nil, fmt.Errorf("%w: frame has no kind", protocols.ErrMalformed)
}

// messageData returns the data field of an encoded Message.
func messageData(m []byte) ([]byte, error) {
	var data []byte
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return nil, fmt.Errorf("%w: message: %v", protocols.ErrMalformed, protowire.ParseError(n))
		}
		m = m[n:]
		if num == fieldMessageData && typ == protowire.BytesType {
			data, n = protowire.ConsumeBytes(m)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, m)
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: message: %v", protocols.ErrMalformed, protowire.ParseError(n))
		}
		m = m[n:]
	}
	return data, nil
}

// describe decodes a frame fully, for error messages.
func describe(body []byte) string {
	f, err := protocols.DecodeFrame(body)
	if err != nil {
		return err.Error()
	}
	switch k := f.Kind.(type) {
	case *protocols.Frame_Error:
		return fmt.Sprintf("error %d: %s", k.Error.Code, k.Error.Message)
	case *protocols.Frame_Disconnect:
		return fmt.Sprintf("disconnect %d (%s): %s", k.Disconnect.Code, protocols.CloseCode(k.Disconnect.Code), k.Disconnect.Reason)
	}
	return fmt.Sprintf("%T", f.Kind)
}

// naiveProto speaks to the baseline server: each binary message is one
// payload, and a text message "ready" tells that the subscriber is in.
type naiveProto struct{}

var _ protocol = naiveProto{}

func (naiveProto) acks() bool                        { return false }
func (naiveProto) subscribe(*subscriber) error       { return nil }
func (naiveProto) connectPublisher(*publisher) error { return nil }

func (naiveProto) handle(s *subscriber, msg []byte) error {
	s.deliver(msg)
	return nil
}

func (naiveProto) handleText(s *subscriber, msg []byte) error {
	if string(msg) != naive.Ready {
		return fmt.Errorf("unexpected text message %q", msg)
	}
	s.markReady()
	return nil
}

func (naiveProto) publish(p *publisher, payload []byte) error { return p.write(payload) }

func (naiveProto) handlePublisher(*publisher, []byte) error { return nil }
